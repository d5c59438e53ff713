#!/usr/bin/env bash
# Makes sure the storage servers the offsite tests run on 127.0.0.1 are installed:
#   - s3s-fs 0.14.1 (an S3 server over a directory that checks SigV4 signatures), built with
#     cargo into target/tools/bin (pinned: later versions need a newer rustc than ours);
#   - Debian's openssh-server (sshd, with internal-sftp) and openssh-client (OpenDAL's sftp
#     service runs the system `ssh`);
#   - Debian's rclone (`rclone serve webdav`).
# Idempotent: what is already there is not installed again. apt-get runs as root, or through
# sudo (scripts/apt-install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

S3S_VERSION=0.14.1
tools=${PGCAIRN_TEST_TOOLS:-$PWD/target/tools}

if [ -x "$tools/bin/s3s-fs" ] && "$tools/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_VERSION"; then
    :
else
    if ! command -v cargo >/dev/null; then
        echo "install-offsite-servers.sh: cargo is needed to build s3s-fs $S3S_VERSION (install a Rust toolchain)" >&2
        exit 1
    fi
    echo "building s3s-fs $S3S_VERSION into $tools" >&2
    cargo install "s3s-fs@$S3S_VERSION" --locked --features binary --root "$tools" --quiet
fi

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v rclone >/dev/null || missing+=(rclone)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

exec scripts/apt-install.sh "${missing[@]}"
