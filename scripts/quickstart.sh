#!/usr/bin/env bash
# The main job on a throwaway setup: builds pgcairn, creates a local repository, starts a
# PostgreSQL 15 cluster with data checksums that archives its WAL through pgcairn, loads pgbench
# data, takes a full and an incremental backup while pgbench writes, commits a row to keep and,
# a moment later, one to lose; then restores to the point in time between the two into a new
# directory, starts it and checks the data. Everything it creates is removed on exit, and a
# summary of what it did is printed after that.
# On a fresh Debian machine it first installs what is missing (as root, or through sudo): a C
# compiler, PostgreSQL 15 with psql and pgbench (scripts/install-postgres.sh), and a Rust
# toolchain through rustup (minimal profile, into ~/.cargo, PATH left alone).
# QUICKSTART_REPO=URL runs the same job against another repository (an empty S3 prefix, say),
# with credentials in the environment (docs/storage.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# Milliseconds since the epoch, and the time since such a reading as "12.3s", from bash's own
# clock (a decimal comma in some locales).
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
took() { local ms=$(($(now_ms) - $1)); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }
began=$(now_ms)
# What the summary at the end says, a line each; `doing` names the step under way.
summary=()
doing="installing what is missing"
work=""
finish() {
    local status=$?
    [ -n "$work" ] && cleanup
    echo
    echo "== summary (quick start took $(took "$began"))"
    [ ${#summary[@]} -eq 0 ] || printf '  %s\n' "${summary[@]}"
    if [ -n "$work" ]; then
        local repo="and the repository"
        [ -z "${QUICKSTART_REPO:-}" ] || repo="but not the repository at $QUICKSTART_REPO"
        echo "  removed: $work: the clusters, the restored copy, the cache, the password file, $repo"
    fi
    if [ "$status" = 0 ]; then
        echo "quick start: OK"
    else
        echo "quick start: FAILED (exit $status) while $doing" >&2
    fi
}
trap finish EXIT

echo "== a C compiler, PostgreSQL 15 and a Rust toolchain, installed if missing"
pgbin=/usr/lib/postgresql/15/bin
installed=()
# rustup's toolchain may be installed without being on PATH yet (a new login adds it).
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    . "$HOME/.cargo/env"
fi
apt_missing=()
# zstd, SQLite and the TLS library that pgcairn links are built from C.
command -v cc >/dev/null || apt_missing+=(gcc libc6-dev)
if ! command -v cargo >/dev/null; then
    command -v curl >/dev/null || apt_missing+=(curl)
    [ -f /etc/ssl/certs/ca-certificates.crt ] || apt_missing+=(ca-certificates)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
    scripts/apt-install.sh "${apt_missing[@]}"
    installed+=("${apt_missing[@]}")
fi
[ -x "$pgbin/postgres" ] && [ -x "$pgbin/pgbench" ] || installed+=(postgresql-15)
scripts/install-postgres.sh
if ! command -v cargo >/dev/null; then
    echo "installing a Rust toolchain with rustup (stable, minimal profile) into ~/.cargo" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --no-modify-path
    . "$HOME/.cargo/env"
    installed+=("Rust (rustup, in ~/.cargo/bin: not added to PATH)")
fi
need=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
have=$(rustc --version | cut -d' ' -f2)
if [ "$(printf '%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    echo "pgcairn needs Rust $need or newer, and this rustc is $have (Debian's?): run" \
        "'rustup update stable', or remove Debian's cargo and rustc so that this script installs rustup's" >&2
    exit 1
fi
if [ ${#installed[@]} -gt 0 ]; then
    summary+=("installed: ${installed[*]}")
else
    summary+=("installed nothing: a C compiler, PostgreSQL 15 and Rust $have were there")
fi

doing="building pgcairn"
t=$(now_ms)
cargo build --release --locked --bin pgcairn
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
summary+=("built $target_dir/release/pgcairn (Rust $have) in $(took "$t")")

work=$(mktemp -d)
chmod 755 "$work"
# PostgreSQL refuses to run as root: then the servers and pgcairn run as the postgres user.
if [ "$(id -u)" = 0 ]; then
    chown postgres "$work"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
# The servers listen only on a Unix socket in $work (listen_addresses=''), so the port only names
# the socket file: any number will do, whatever else runs on the machine.
port=5432
cleanup() {
    for d in "$work/data" "$work/restored"; do
        [ -f "$d/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
    done
    rm -rf "$work"
}
# A copy the postgres user can run wherever the checkout is (a home directory may be closed to
# it); the server's archive_command and restore_command run it too.
install -m 0755 "$target_dir/release/pgcairn" "$work/pgcairn"
bin=$work/pgcairn

pg_start() { as_pg "$pgbin/pg_ctl" -D "$1" -l "$1.log" -w -o "-p $2 -k $work -c listen_addresses=''" start >/dev/null; }
psql_at() { as_pg "$pgbin/psql" -h "$work" -p "$1" -U postgres -d postgres -Atc "$2"; }

export PGCAIRN_REPO=${QUICKSTART_REPO:-$work/repo} PGCAIRN_CACHE_DIR=$work/cache PGCAIRN_PASSWORD_FILE=$work/password
as_pg sh -c "umask 077; printf '%s\n' 'correct horse battery staple' > '$work/password'"
db="host=$work port=$port user=postgres dbname=postgres"
pgc() { as_pg env PGCAIRN_REPO="$PGCAIRN_REPO" PGCAIRN_CACHE_DIR="$PGCAIRN_CACHE_DIR" \
    PGCAIRN_PASSWORD_FILE="$PGCAIRN_PASSWORD_FILE" "$bin" "$@"; }
psql_src() { psql_at "$port" "$1"; }

echo "== a repository, and a PostgreSQL 15 cluster that archives its WAL into it"
doing="creating the repository and the cluster"
t=$(now_ms)
pgc init
as_pg "$pgbin/initdb" -k -A trust -U postgres -D "$work/data" >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
archive_mode = on
archive_command = '$bin --repo $PGCAIRN_REPO --password-file $work/password --cache-dir $work/cache archive-push %p'
CONF
pg_start "$work/data" "$port"
as_pg "$pgbin/pgbench" -h "$work" -p "$port" -U postgres -i -s 10 -q postgres 2>/dev/null
summary+=("cluster: PostgreSQL 15 with data checksums in $work/data, pgbench scale 10 loaded, archive_command = pgcairn archive-push; set up in $(took "$t")")

doing="checking the cluster's archiving"
set -x
pgc check --pgdata "$work/data" --db "$db" | tee "$work/check.txt"
set +x
summary+=("check: $(tail -n 1 "$work/check.txt")")

doing="backing up"
t=$(now_ms)
set -x
pgc backup --pgdata "$work/data" --db "$db" --fast --tag first | tee "$work/backup-first.txt"
as_pg "$pgbin/pgbench" -h "$work" -p "$port" -U postgres -n -T 3 postgres >/dev/null &
pgc backup --pgdata "$work/data" --db "$db" --fast --tag second | tee "$work/backup-second.txt"
wait
set +x
for tag in first second; do
    # "snapshot 1a2b3c4d saved (...)" and "  added 12.3 MiB (...) in 1.2s, ...".
    summary+=("backup --tag $tag: $(sed -n '1s/^snapshot //p' "$work/backup-$tag.txt"); $(sed -n 's/^  added //p' "$work/backup-$tag.txt")")
done
summary+=("two backups in $(took "$t"), the second while pgbench wrote")
psql_src "CREATE TABLE quickstart (note text); INSERT INTO quickstart VALUES ('keep me')" >/dev/null
target=$(psql_src "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1.1
psql_src "INSERT INTO quickstart VALUES ('a mistake made after $target')" >/dev/null
last=$(psql_src "SELECT pg_walfile_name(pg_switch_wal())")
until [ "$(psql_src "SELECT last_archived_wal >= '$last' FROM pg_stat_archiver")" = t ]; do sleep 0.2; done
summary+=("WAL: the server archived $(psql_src "SELECT archived_count FROM pg_stat_archiver") files into the repository through archive-push")
set -x
pgc snapshots
pgc info | tee "$work/info.txt"
set +x
# "  2 snapshots, 5 packs, 40.1 MiB on storage" and "  logical ... (dedup ...) -> stored ...".
summary+=("repository $PGCAIRN_REPO: $(sed -n '2s/^  //p' "$work/info.txt"); $(sed -n '3s/^  //p' "$work/info.txt")")

doing="restoring"
t=$(now_ms)
set -x
pgc restore --target-time "$target" --target-action promote --preview
pgc restore --target-time "$target" --target-action promote --pgdata "$work/restored" | tee "$work/restore.txt"
set +x
summary+=("restore to $target (between the row to keep and the one to lose): $(sed -n '1s/^restored //p' "$work/restore.txt")")

echo "== start the restored cluster: recovery replays the archived WAL up to $target"
doing="starting and checking the restored cluster"
t=$(now_ms)
pg_start "$work/restored" $((port + 1))
until [ "$(psql_at $((port + 1)) "SELECT NOT pg_is_in_recovery()")" = t ]; do sleep 0.2; done
accounts=$(psql_at $((port + 1)) "SELECT count(*) FROM pgbench_accounts")
balanced=$(psql_at $((port + 1)) "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)")
notes=$(psql_at $((port + 1)) "SELECT string_agg(note, ', ') FROM quickstart")
echo "restored: $accounts accounts, balances match history: $balanced, quickstart rows: $notes"
summary+=("restored cluster on port $((port + 1)): recovered and promoted in $(took "$t"); $accounts pgbench accounts (1000000 expected), balances match the history: $balanced, quickstart rows: '$notes' ('keep me' expected, the later mistake gone)")
if ! { [ "$accounts" = 1000000 ] && [ "$balanced" = t ] && [ "$notes" = "keep me" ]; }; then
    doing="checking the restored data: it is not what was committed before the target"
    exit 1
fi
