#!/usr/bin/env bash
# The operability commands against pgBackRest's, one run, on the shared benchmark's workload
# (../shared/bench: a pgbench cluster with hash filler, "days" of changes).
#
#   sudo benches/operability/run.sh                  # from the project's root; SCALE=20: ~4 min idle
#   sudo QUIET_MAX_S=20 benches/operability/run.sh   # a busy host: wait at most 20 s (not 60) per step
#
# One primary cluster archives into both tools at once: its archive_command is
# `pgcairn archive-push %p && pgbackrest archive-push %p` (so each tool's waits for WAL include
# the other's push of the same segment; pgcairn's comes first). Steps, each timed with the
# shared harness's `measure` (page cache dropped, host idle first, /usr/bin/time -v, as postgres):
#   1. full backup with each; the day of changes; an incremental with each (pgBackRest
#      --type=incr); 3 small rounds (a tenth of the day each), each followed by an incremental
#      with each: 5 backups per repository.
#   2. pgcairn check vs pgbackrest check (both switch WAL and wait for it in the repository).
#   3. pgcairn key list (the cost of unlocking the keys, which every command below pays first);
#      pgcairn info --json vs pgbackrest info --output=json; pgcairn snapshots --json, metrics,
#      report --html (no peer).
#   4. A streaming standby (pg_basebackup -R, port PORT+1). Three equal small rounds, each
#      followed by a backup with each tool: from the standby (pgcairn --primary-db; pgBackRest
#      --backup-standby with pg2-path/pg2-port on this host), from the primary, from the standby
#      again. Rounds of the same size keep every backup's change the same; the first backup from
#      the standby's data directory is also the first with no parent snapshot of that directory.
#   5. A second cluster (initdb, port PORT+2), the same pgbench load, backed up into the same
#      pgcairn repository and into a second pgBackRest stanza of the same pgBackRest repository:
#      the growth of each repository against its first full backup (dedup across clusters).
#      Then info --json over both clusters.
# Before each backup the archiver is drained, so "growth" is the backup and the WAL archived
# while it ran. Every step must succeed (exit 0) and the results are checked (check status,
# backup_from, number of backups and snapshots, metrics' pgcairn_up); the script stops at the
# first failure and names it.
# Output: a Markdown table on stdout and in $DATA_ROOT/operability-results.md; commands and their
# output in $DATA_ROOT/log/bench.log, JSON outputs in $DATA_ROOT/out/.
#
# Env (defaults): SCALE=20, DATA_ROOT=/tmp/bench_operability, PORT=55632 (standby PORT+1, second
# cluster PORT+2), SMALL_TXNS=SCALE*30, PGCAIRN_BIN=<root>/target/release/pgcairn, and the shared
# harness's knobs (PASS, DROP_CACHES, QUIET_CORES, QUIET_MAX_S, FILLER, CLIENTS).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
B=$ROOT/../shared/bench
: "${SCALE:=20}" "${DATA_ROOT:=/tmp/bench_operability}" "${PORT:=55632}"
: "${PGCAIRN_BIN:=$ROOT/target/release/pgcairn}"
: "${SMALL_TXNS:=$((SCALE * 30))}"
export SCALE DATA_ROOT PORT
# shellcheck source=/dev/null
. "$B/lib.sh"

[ "$(id -u)" = 0 ] || { echo "run as root (the tools run as $PG_USER)" >&2; exit 2; }
[ -x "$PGCAIRN_BIN" ] || { echo "missing $PGCAIRN_BIN (cargo build --release --bin pgcairn)" >&2; exit 2; }
command -v pgbackrest >/dev/null || { echo "pgbackrest missing: run $B/setup-peers.sh" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq missing (apt-get install jq)" >&2; exit 2; }
STBY_PORT=$((PORT + 1)) SECOND_PORT=$((PORT + 2))
for p in "$PORT" "$STBY_PORT" "$SECOND_PORT"; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "port $p is in use (set PORT)" >&2; exit 2; }
done

PRIMARY=$DATA_ROOT/pg/data STANDBY=$DATA_ROOT/pg/standby SECOND=$DATA_ROOT/pg/second
OUT=$DATA_ROOT/out
cleanup() {
  for d in "$PRIMARY" "$STANDBY" "$SECOND"; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
  done
  true
}
# A postmaster left by an interrupted earlier run holds the directory we are about to delete.
cleanup
trap cleanup EXIT
rm -rf "$DATA_ROOT"
install -d -o "$PG_USER" -g "$PG_USER" "$DATA_ROOT" "$DATA_ROOT/log" "$DATA_ROOT/tmp" "$DATA_ROOT/pg" "$REPOS" "$OUT"
BIN=$DATA_ROOT/pgcairn   # a copy: a rebuild during the run changes nothing
install -m 0755 "$PGCAIRN_BIN" "$BIN"

# ---- the two tools' repositories ----
# pgcairn's settings in a file, not the environment: the server's archive_command reads them.
CAIRN_REPO=$REPOS/pgcairn PGBR_REPO=$REPOS/pgbackrest
printf '%s\n' "$PASS" >"$DATA_ROOT/password"
cat >"$DATA_ROOT/pgcairn.toml" <<TOML
repo = "$CAIRN_REPO"
password_file = "$DATA_ROOT/password"
cache_dir = "$DATA_ROOT/cache"
TOML
# As the shared harness's pgbackrest peer (repo1: file-level incremental, zstd-3, AES-256,
# 2 processes), with the second cluster as a second stanza of the same repository.
PGBR_CONF=$DATA_ROOT/pgbackrest.conf
cat >"$PGBR_CONF" <<CONF
[global]
repo1-path=$PGBR_REPO
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PASS
repo1-retention-full=99
compress-type=zst
compress-level=3
process-max=2
start-fast=y
log-path=$DATA_ROOT/log
lock-path=$DATA_ROOT/tmp
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$PRIMARY
pg1-port=$PORT
pg1-socket-path=$SOCK

[bench2]
pg1-path=$SECOND
pg1-port=$SECOND_PORT
pg1-socket-path=$SOCK
CONF
chown "$PG_USER" "$DATA_ROOT/password" "$DATA_ROOT/pgcairn.toml" "$PGBR_CONF"
chmod 600 "$DATA_ROOT/password" "$DATA_ROOT/pgcairn.toml" "$PGBR_CONF"
CAIRN="$BIN --config $DATA_ROOT/pgcairn.toml"
PGBR="pgbackrest --config=$PGBR_CONF"
# The standby as pg2 on this host, for backup --backup-standby only: archive-push and check see
# the primary alone.
PGBR_STANDBY="--backup-standby --pg2-path=$STANDBY --pg2-port=$STBY_PORT --pg2-socket-path=$SOCK"
# shellcheck disable=SC2086  # CAIRN and PGBR are command lines: split into words on purpose
as_pg $CAIRN init >/dev/null

db() { echo "host=$SOCK port=$1 user=postgres dbname=postgres"; }
archive_cmd() { echo "$CAIRN archive-push %p && $PGBR --stanza=$1 archive-push %p"; }

# new_cluster DIR PORT STANZA: initdb, start, stanza-create, pgbench load. The stanza exists
# before the load's WAL reaches the archive_command.
new_cluster() {
  ARCHIVE_CMD=$(archive_cmd "$3") "$B/pg-cluster.sh" init "$1" "$2"
  "$B/pg-cluster.sh" start "$1" "$2"
  # shellcheck disable=SC2086
  as_pg $PGBR --stanza="$3" stanza-create
  PORT=$2 "$B/workload.sh" load
}

# drain PGDATA: wait until the server has archived every finished segment, so that a step's
# repository growth is its own.
drain() {
  local i
  for i in $(seq 1200); do
    [ -z "$(find "$1/pg_wal/archive_status" -name '*.ready' -print -quit)" ] && return 0
    sleep 0.1
  done
  echo "the archiver of $1 is stuck: see its log in $DATA_ROOT/log" >&2; exit 1
}

# round SEED: a small "day" of SMALL_TXNS transactions on the primary (then VACUUM, CHECKPOINT).
round() { TXNS=$SMALL_TXNS SEED=$1 "$B/workload.sh" day >>"$DATA_ROOT/log/workload.log" 2>&1; }

ROWS=$DATA_ROOT/rows.tsv
: >"$ROWS"
# timed REPO|- COMMAND: measures COMMAND; GROWTH = how many bytes REPO grew meanwhile (- for none)
timed() {
  local before=0
  [ "$1" = - ] || before=$(bytes "$1")
  measure "$2"
  GROWTH=-
  [ "$1" = - ] || GROWTH=$(($(bytes "$1") - before))
}
# row STEP TOOL NOTE: records the last measurement. Wall time from time -v's own clock (10 ms
# resolution: measure's M_WALL has 0.1 s, too coarse for info and check), and "*" when the host
# was not idle before the step.
row() {
  local growth=- wall
  [ "$GROWTH" = - ] || growth=$(mib "$GROWTH")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); w = 0
    for (i = 1; i <= n; i++) w = w * 60 + t[i]; printf "%.2f", w }' "$DATA_ROOT/tmp/time.$$")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$wall" \
    "$(awk -v u="$M_USER" -v s="$M_SYS" 'BEGIN{printf "%.2f", u+s}')" "$M_RSS_MIB" "$growth" \
    "$3" "${M_NOISY:+*}" >>"$ROWS"
  log "$1, $2: $wall s${M_NOISY:-}"
}
drain_all() { drain "$PRIMARY"; [ ! -d "$SECOND/pg_wal" ] || drain "$SECOND"; }
# cairn_backup STEP SLUG PGDATA DB [MORE OPTIONS]: a pgcairn backup of cluster "main" (or
# "second" for $SECOND); its JSON summary is kept as $OUT/SLUG.json and says what it read and
# stored.
cairn_backup() {
  local step=$1 slug=$2 pgdata=$3 conn=$4 cluster=main
  shift 4
  [ "$pgdata" = "$SECOND" ] && cluster=second
  drain_all
  timed "$CAIRN_REPO" "$CAIRN backup --pgdata $pgdata --db '$conn' --cluster $cluster --fast --json $* >$OUT/$slug.json"
  row "$step" pgcairn "$(jq -r '"read \(.read_bytes / 1048576 | round) MiB, stored \(.stored_bytes / 1048576 * 10 | round / 10) MiB" + (if .backup_from == "standby" then ", from the standby" else "" end)' "$OUT/$slug.json")"
}
# pgbr_backup STEP STANZA TYPE [standby]: a pgBackRest backup, from the standby with "standby"
pgbr_backup() {
  local from="" note="--type=$3"
  [ "${4:-}" = standby ] && from=$PGBR_STANDBY note+=" --backup-standby"
  drain_all
  timed "$PGBR_REPO" "$PGBR --stanza=$2 --type=$3 $from backup"
  row "$1" pgBackRest "$note"
}
stored_of() { jq -r .stored_bytes "$OUT/$1.json"; }

# ---- 1. one cluster, both tools, ~5 backups each ----
new_cluster "$PRIMARY" "$PORT" bench
PDB=$(db "$PORT")
cairn_backup "full backup" full "$PRIMARY" "$PDB"
pgbr_backup "full backup" bench full
"$B/workload.sh" day >>"$DATA_ROOT/log/workload.log" 2>&1
cairn_backup "incremental after the day" incr "$PRIMARY" "$PDB"
pgbr_backup "incremental after the day" bench incr
for i in 1 2 3; do
  round $((100 + i))
  cairn_backup "small incremental $i" "small$i" "$PRIMARY" "$PDB"
  pgbr_backup "small incremental $i" bench incr
done

# ---- 2. check ----
timed - "$CAIRN check --pgdata $PRIMARY --db '$PDB' --json >$OUT/check.json"
jq -e '.status != "failed"' "$OUT/check.json" >/dev/null || { echo "pgcairn check failed: $OUT/check.json" >&2; exit 1; }
row check pgcairn "$(jq -r '"status \(.status), the segment reached the repository after \(.archive_seconds * 100 | round / 100) s"' "$OUT/check.json")"
timed - "$PGBR --stanza=bench check"
row check pgBackRest ""

# ---- 3. the reporting commands, over 5 backups ----
# What every pgcairn command below pays first: unlocking the keys (Argon2id) and listing them.
timed - "$CAIRN key list"
row "key list" pgcairn "unlocking the keys alone"
timed - "$CAIRN info --json >$OUT/info.json"
row "info --json" pgcairn ""
timed - "$PGBR --stanza=bench info --output=json >$OUT/pgbr-info.json"
row "info --json" pgBackRest "--output=json"
timed - "$CAIRN snapshots --json >$OUT/snapshots.json"
row "snapshots --json" pgcairn ""
timed - "$CAIRN metrics --output $OUT/metrics.prom"
row "metrics" pgcairn ""
timed - "$CAIRN report --html $OUT/report.html"
row "report --html" pgcairn "$(($(bytes "$OUT/report.html") / 1024)) KiB page"
n=$(jq length "$OUT/snapshots.json")
[ "$n" = 5 ] || { echo "pgcairn snapshots lists $n snapshots, expected 5" >&2; exit 1; }
jq -e 'all(.[]; .restorable)' "$OUT/snapshots.json" >/dev/null || { echo "a snapshot is not restorable: $OUT/snapshots.json" >&2; exit 1; }
n=$(jq '.[0].backup | length' "$OUT/pgbr-info.json")
[ "$n" = 5 ] || { echo "pgbackrest info lists $n backups, expected 5" >&2; exit 1; }
grep -qx 'pgcairn_up 1' "$OUT/metrics.prom" || { echo "metrics: no 'pgcairn_up 1' in $OUT/metrics.prom" >&2; exit 1; }
[ -s "$OUT/report.html" ] || { echo "report --html wrote nothing" >&2; exit 1; }

# ---- 4. backups from a hot standby ----
as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$STANDBY" -R -X stream -c fast
"$B/pg-cluster.sh" start "$STANDBY" "$STBY_PORT"
SDB=$(db "$STBY_PORT")
round 201
cairn_backup "from the standby (1st)" standby1 "$STANDBY" "$SDB" --primary-db "'$PDB'"
pgbr_backup "from the standby (1st)" bench incr standby
round 202
cairn_backup "from the primary (same round size)" primary2 "$PRIMARY" "$PDB"
pgbr_backup "from the primary (same round size)" bench incr
round 203
cairn_backup "from the standby (2nd)" standby2 "$STANDBY" "$SDB" --primary-db "'$PDB'"
pgbr_backup "from the standby (2nd)" bench incr standby
for s in standby1 standby2; do
  [ "$(jq -r .backup_from "$OUT/$s.json")" = standby ] || { echo "$s: backup_from is not standby: $OUT/$s.json" >&2; exit 1; }
done
n=$(grep -c 'backup command begin.*--backup-standby' "$DATA_ROOT/log/bench-backup.log" || true)
[ "$n" = 2 ] || { echo "pgBackRest's log shows $n backups with --backup-standby, expected 2" >&2; exit 1; }
"$B/pg-cluster.sh" stop "$STANDBY"

# ---- 5. a second cluster in the same repositories ----
new_cluster "$SECOND" "$SECOND_PORT" bench2
cairn_backup "second cluster: full backup" second "$SECOND" "$(db "$SECOND_PORT")"
pgbr_backup "second cluster: full backup" bench2 full
timed - "$CAIRN info --json >$OUT/info2.json"
row "info --json (2 clusters)" pgcairn ""
timed - "$PGBR info --output=json >$OUT/pgbr-info2.json"
row "info --json (2 clusters)" pgBackRest "both stanzas"
n=$(jq '[.[] | select(.name == "bench2") | .backup[]] | length' "$OUT/pgbr-info2.json")
[ "$n" = 1 ] || { echo "pgbackrest info: stanza bench2 has $n backups, expected 1" >&2; exit 1; }

# ---- report ----
RESULTS=$DATA_ROOT/operability-results.md
growth_of() { awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t { print $6 }' "$ROWS"; }
share() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f%%", 100 * a / b}'; }
{
  echo "| step | pgcairn wall s | pgBackRest wall s | pgcairn / pgBackRest | CPU s pgcairn / pgBackRest | peak RSS MiB pgcairn / pgBackRest | repo growth MiB pgcairn / pgBackRest | notes |"
  echo "|---|---:|---:|---:|---|---|---|---|"
  awk -F'\t' '
    { k = $1; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
      wall[k, $2] = $3 $8; w[k, $2] = $3; cpu[k, $2] = $4; rss[k, $2] = $5; growth[k, $2] = $6
      if ($7 != "") note[k] = note[k] (note[k] == "" ? "" : "; ") $2 ": " $7 }
    function v(a) { return a == "" ? "—" : a }
    function none(a) { return a == "" || a == "-" }
    END { for (i = 1; i <= n; i++) { k = order[i]; c = w[k, "pgcairn"]; b = w[k, "pgBackRest"]
      ratio = (c == "" || b == "" || b == 0) ? "—" : sprintf("%.2f", c / b)
      g = none(growth[k, "pgcairn"]) && none(growth[k, "pgBackRest"]) ? "" : v(growth[k, "pgcairn"]) " / " v(growth[k, "pgBackRest"])
      printf "| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n", k, v(wall[k, "pgcairn"]), v(wall[k, "pgBackRest"]), ratio,
        v(cpu[k, "pgcairn"]), v(cpu[k, "pgBackRest"]), v(rss[k, "pgcairn"]), v(rss[k, "pgBackRest"]), g, note[k] } }' "$ROWS"
  echo
  echo "\\* the host was busier than $QUIET_CORES cores for all of the $QUIET_MAX_S s waited before the step (another job on the machine)."
  echo
  c1=$(growth_of "full backup" pgcairn) c2=$(growth_of "second cluster: full backup" pgcairn)
  b1=$(growth_of "full backup" pgBackRest) b2=$(growth_of "second cluster: full backup" pgBackRest)
  echo "Second cluster (same load, its own initdb): pgcairn's repository grew $c2 MiB against $c1 MiB" \
    "for the first cluster's full backup ($(share "$c2" "$c1")); the backup itself says it stored" \
    "$(mib "$(stored_of second)") MiB against $(mib "$(stored_of full)") MiB" \
    "($(share "$(stored_of second)" "$(stored_of full)")). pgBackRest's repository grew $b2 MiB against" \
    "$b1 MiB ($(share "$b2" "$b1"))."
  echo
  echo "SCALE=$SCALE, FILLER=${FILLER:-hash}, small rounds of $SMALL_TXNS transactions;" \
    "base/ of the first cluster $(mib "$(bytes "$PRIMARY/base")") MiB; $(nproc) cores; $(date -u +%F);" \
    "pgcairn $(as_pg "$BIN" --version | awk '{print $2}') at $(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo '?');" \
    "$(pgbackrest version); page cache $([ "$DROP_CACHES" = 1 ] && echo dropped || echo NOT dropped) before each step."
} | tee "$RESULTS"
