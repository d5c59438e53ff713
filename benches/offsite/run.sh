#!/usr/bin/env bash
# Backup and restore throughput: a local S3 server against the local filesystem (issue 6), one
# run, on the shared benchmark's workload (../shared/bench: a pgbench cluster, one "day of
# changes").
#
#   sudo benches/offsite/run.sh                      # from the project's root; SCALE=20: ~6 min
#   sudo SCALE=100 benches/offsite/run.sh            # the shared benchmark's size (~1.5 GB)
#
# One cluster; two repositories side by side: a local directory and s3://bench/pgcairn on
# s3s-fs (scripts/install-offsite-servers.sh installs it; it checks SigV4 signatures and stores
# objects as files, on the same disk as the local repository). Steps, each timed with the
# shared harness's `measure` (page cache dropped, host idle first, /usr/bin/time -v):
#   full backup of the loaded cluster, to each repository
#   incremental backup after the day of changes, to each
#   restore of the latest snapshot from each into an empty directory (cluster stopped), then
#   the restored cluster is started and its pgbench_accounts checksum compared with the source.
# Output: a Markdown table on stdout and in $DATA_ROOT/offsite-results.md.
#
# Env (defaults): SCALE=20, DATA_ROOT=/tmp/bench_offsite, PORT=55532, S3_PORT=19000,
# PGCAIRN_BIN=<root>/target/release/pgcairn, S3S_FS=<root>/target/tools/bin/s3s-fs.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
B=$ROOT/../shared/bench
: "${SCALE:=20}" "${DATA_ROOT:=/tmp/bench_offsite}" "${PORT:=55532}" "${S3_PORT:=19000}"
: "${PGCAIRN_BIN:=$ROOT/target/release/pgcairn}" "${S3S_FS:=$ROOT/target/tools/bin/s3s-fs}"
export SCALE DATA_ROOT PORT
. "$B/lib.sh"

for tool in "$PGCAIRN_BIN" "$S3S_FS"; do
  [ -x "$tool" ] || { echo "missing $tool (cargo build --release; scripts/install-offsite-servers.sh)" >&2; exit 1; }
done
rm -rf "$DATA_ROOT"
install -d -o "$PG_USER" -g "$PG_USER" "$DATA_ROOT" "$DATA_ROOT/log" "$DATA_ROOT/tmp" "$DATA_ROOT/restore"
BIN=$DATA_ROOT/pgcairn
install -m 0755 "$PGCAIRN_BIN" "$BIN"

mkdir -p "$DATA_ROOT/s3/bench"
"$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret \
  "$DATA_ROOT/s3" >"$DATA_ROOT/log/s3s.log" 2>&1 &
S3_PID=$!
SRC=$DATA_ROOT/src
cleanup() {
  kill "$S3_PID" 2>/dev/null || true
  for d in "$SRC" "$DATA_ROOT"/restore/*; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
  done
  true
}
trap cleanup EXIT

# Settings in files, not the environment: the restored clusters' restore_command must find them.
echo bench >"$DATA_ROOT/password"
cat >"$DATA_ROOT/s3.toml" <<TOML
[storage]
endpoint = "http://127.0.0.1:$S3_PORT"
access_key_id = "bench"
secret_access_key = "bench-secret"
TOML
: >"$DATA_ROOT/local.toml"
chown "$PG_USER" "$DATA_ROOT/password" "$DATA_ROOT"/*.toml
chmod 600 "$DATA_ROOT/password" "$DATA_ROOT"/*.toml
declare -A REPO=([local]="$DATA_ROOT/repo" [s3]="s3://bench/pgcairn")
pgc() { # pgc local|s3 ARGS...: the pgcairn command line for that repository, for bash -c
  local where=$1; shift
  echo "$BIN --repo ${REPO[$where]} --config $DATA_ROOT/$where.toml --password-file $DATA_ROOT/password --cache-dir $DATA_ROOT/cache-$where $*"
}

# The cluster archives into both repositories: a snapshot is consistent only with its WAL.
ARCHIVE_CMD="$(pgc local archive-push %p) && $(pgc s3 archive-push %p)" "$B/pg-cluster.sh" init "$SRC"
for where in local s3; do as_pg bash -c "$(pgc "$where" init)" >/dev/null; done
"$B/pg-cluster.sh" start "$SRC"
"$B/workload.sh" load
db="host=$SOCK port=$PORT user=postgres dbname=postgres"

RESULTS=$DATA_ROOT/offsite-results.md
ROWS=$DATA_ROOT/rows.tsv
: >"$ROWS"
row() { # row STEP WHERE BYTES: records the last measurement
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$M_WALL" "$(awk -v u="$M_USER" -v s="$M_SYS" 'BEGIN{printf "%.1f", u+s}')" \
    "$M_RSS_MIB" "$3" >>"$ROWS"
  log "$1 $2: $M_WALL s"
}
data_bytes() { bytes "$SRC/base"; }

for step in full incremental; do
  if [ "$step" = incremental ]; then "$B/workload.sh" day; fi
  size=$(data_bytes)
  for where in local s3; do
    measure "$(pgc "$where" backup --pgdata "$SRC" --db "'$db'" --fast)"
    row "$step backup" "$where" "$size"
  done
done
expected=$(psql_src -c "SELECT count(*), sum(abalance) FROM pgbench_accounts")
"$B/pg-cluster.sh" stop "$SRC"

n=0
for where in local s3; do
  dest=$DATA_ROOT/restore/$where
  measure "$(pgc "$where" restore latest --pgdata "$dest")"
  row "restore" "$where" "$(bytes "$dest")"
  n=$((n + 1))
  sed -i "s/^archive_command = .*/archive_mode = off/" "$dest/postgresql.conf" 2>/dev/null || true
  "$B/pg-cluster.sh" start "$dest" $((PORT + n)) -c archive_mode=off
  got=$(P=$((PORT + n)) psql_src -c "SELECT count(*), sum(abalance) FROM pgbench_accounts")
  "$B/pg-cluster.sh" stop "$dest"
  [ "$got" = "$expected" ] || { echo "restore from $where: got $got, expected $expected" >&2; exit 1; }
done

{
  echo "| step | local s | S3 s | S3/local | local MB/s | S3 MB/s | CPU s local / S3 | peak RSS MiB local / S3 |"
  echo "|---|---:|---:|---:|---:|---:|---|---|"
  awk -F'\t' '
    { key = $1; wall[key, $2] = $3; cpu[key, $2] = $4; rss[key, $2] = $5; size[key] = $6
      if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
    END { for (i = 1; i <= n; i++) { k = order[i]; l = wall[k, "local"]; s = wall[k, "s3"]
      printf "| %s | %.1f | %.1f | %.2f | %.0f | %.0f | %s / %s | %s / %s |\n", k, l, s, s / l,
        size[k] / 1e6 / l, size[k] / 1e6 / s, cpu[k, "local"], cpu[k, "s3"], rss[k, "local"], rss[k, "s3"] } }' "$ROWS"
  echo
  echo "SCALE=$SCALE; data directory $(mib "$(data_bytes)") MiB of base/; MB/s over the data directory's base/ size; $(nproc) cores; $(date -u +%F)."
} | tee "$RESULTS"
