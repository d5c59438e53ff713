#!/usr/bin/env bash
# Builds pgcairn and runs it against a throwaway local repository: init, a second password,
# the key list and an index check. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin pgcairn
bin=$PWD/target/release/pgcairn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export PGCAIRN_REPO=$work/repo PGCAIRN_CACHE_DIR=$work/cache
export PGCAIRN_PASSWORD_FILE=$work/password
umask 077
printf '%s\n' 'correct horse battery staple' > "$work/password"
printf '%s\n' 'a second, independent passphrase' > "$work/password-ops"

set -x
"$bin" init
"$bin" key add --new-password-file "$work/password-ops"
"$bin" key list
"$bin" --password-file "$work/password-ops" key list --json
"$bin" repair index
