#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL 15 (server, pgbench, pg_checksums) is installed, installing it
# with apt-get when it is missing (as root, or through sudo).
set -euo pipefail

if [ -x /usr/lib/postgresql/15/bin/postgres ] && [ -x /usr/lib/postgresql/15/bin/pgbench ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install postgresql-15 (needs root)" >&2; exit 1; }
    sudo=sudo
fi
echo "installing Debian's postgresql-15" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql-15 >/dev/null
