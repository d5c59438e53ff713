#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL 15 (server, pgbench, pg_checksums) is installed, installing it
# with apt-get when it is missing (as root, or through sudo: scripts/apt-install.sh).
set -euo pipefail

if [ -x /usr/lib/postgresql/15/bin/postgres ] && [ -x /usr/lib/postgresql/15/bin/pgbench ]; then
    exit 0
fi
exec "$(dirname "$0")/apt-install.sh" postgresql-15
