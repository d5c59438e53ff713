#!/usr/bin/env bash
# The main job on a throwaway setup: builds pgcairn, creates a local repository, starts a
# PostgreSQL 15 cluster with data checksums that archives its WAL through pgcairn, loads pgbench
# data, takes a full and an incremental backup while pgbench writes, commits a row to keep and,
# a moment later, one to lose; then restores to the point in time between the two into a new
# directory, starts it and checks the data. Everything it creates is removed on exit.
# QUICKSTART_REPO=URL runs the same job against another repository (an empty S3 prefix, say),
# with credentials in the environment (docs/storage.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-postgres.sh
cargo build --release --locked --bin pgcairn
bin=$PWD/target/release/pgcairn
pgbin=/usr/lib/postgresql/15/bin

work=$(mktemp -d)
chmod 755 "$work"
# PostgreSQL refuses to run as root: then the servers and pgcairn run as the postgres user.
if [ "$(id -u)" = 0 ]; then
    chown postgres "$work"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    for d in "$work/data" "$work/restored"; do
        [ -f "$d/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

pg_start() { as_pg "$pgbin/pg_ctl" -D "$1" -l "$1.log" -w -o "-p $2 -k $work -c listen_addresses=''" start >/dev/null; }
psql_at() { as_pg "$pgbin/psql" -h "$work" -p "$1" -U postgres -d postgres -Atc "$2"; }

export PGCAIRN_REPO=${QUICKSTART_REPO:-$work/repo} PGCAIRN_CACHE_DIR=$work/cache PGCAIRN_PASSWORD_FILE=$work/password
as_pg sh -c "umask 077; printf '%s\n' 'correct horse battery staple' > '$work/password'"
db="host=$work port=$port user=postgres dbname=postgres"
pgc() { as_pg env PGCAIRN_REPO="$PGCAIRN_REPO" PGCAIRN_CACHE_DIR="$PGCAIRN_CACHE_DIR" \
    PGCAIRN_PASSWORD_FILE="$PGCAIRN_PASSWORD_FILE" "$bin" "$@"; }
psql_src() { psql_at "$port" "$1"; }

echo "== a repository, and a PostgreSQL 15 cluster that archives its WAL into it"
pgc init
as_pg "$pgbin/initdb" -k -A trust -U postgres -D "$work/data" >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
archive_mode = on
archive_command = '$bin --repo $PGCAIRN_REPO --password-file $work/password --cache-dir $work/cache archive-push %p'
CONF
pg_start "$work/data" "$port"
as_pg "$pgbin/pgbench" -h "$work" -p "$port" -U postgres -i -s 10 -q postgres 2>/dev/null

set -x
pgc backup --pgdata "$work/data" --db "$db" --fast --tag first
as_pg "$pgbin/pgbench" -h "$work" -p "$port" -U postgres -n -T 3 postgres >/dev/null &
pgc backup --pgdata "$work/data" --db "$db" --fast --tag second
wait
set +x
psql_src "CREATE TABLE quickstart (note text); INSERT INTO quickstart VALUES ('keep me')" >/dev/null
target=$(psql_src "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1.1
psql_src "INSERT INTO quickstart VALUES ('a mistake made after $target')" >/dev/null
last=$(psql_src "SELECT pg_walfile_name(pg_switch_wal())")
until [ "$(psql_src "SELECT last_archived_wal >= '$last' FROM pg_stat_archiver")" = t ]; do sleep 0.2; done
set -x
pgc snapshots
pgc info
pgc restore --target-time "$target" --target-action promote --preview
pgc restore --target-time "$target" --target-action promote --pgdata "$work/restored"
set +x

echo "== start the restored cluster: recovery replays the archived WAL up to $target"
pg_start "$work/restored" $((port + 1))
until [ "$(psql_at $((port + 1)) "SELECT NOT pg_is_in_recovery()")" = t ]; do sleep 0.2; done
accounts=$(psql_at $((port + 1)) "SELECT count(*) FROM pgbench_accounts")
balanced=$(psql_at $((port + 1)) "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)")
notes=$(psql_at $((port + 1)) "SELECT string_agg(note, ', ') FROM quickstart")
echo "restored: $accounts accounts, balances match history: $balanced, quickstart rows: $notes"
[ "$accounts" = 1000000 ] && [ "$balanced" = t ] && [ "$notes" = "keep me" ]
echo "quick start: OK"
