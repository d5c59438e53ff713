#!/usr/bin/env bash
# WAL archiving benchmark: pgcairn and pgBackRest `archive-push` on the same WAL segments, one run.
#
#   sudo benches/archive_push/run.sh                       # from the project's root; ~3-5 min
#   sudo PGCAIRN_BIN=/tmp/pgcairn-bench benches/archive_push/run.sh
#
# 1. Corpus (built once, reused while its settings match; REBUILD=1 forces it): a throwaway PG15
#    cluster (shared harness: ../shared/bench/pg-cluster.sh, workload.sh with FILLER) archives with
#    `cp %p corpus/%f`: FORCED mostly-empty segments (a small write, then pg_switch_wal(), as
#    archive_timeout makes them), `pgbench -i` at SCALE, then timed pgbench runs until the corpus
#    holds N segments. The stopped cluster's data directory is kept: both tools read
#    global/pg_control from it to check the system identifier.
# 2. Per tool, a fresh repository and a hard-linked copy of that data directory whose pg_wal/
#    holds the first N corpus segments (hard links) with an archive_status/<seg>.ready each. The
#    driver then does what PostgreSQL's archiver does: in name order, from the data directory,
#    `sh -c "<archive_command with %p = pg_wal/<seg>>"` as postgres; on exit 0 .ready -> .done.
#    Per call: wall time and peak RSS (wait4 rusage, as /usr/bin/time -f %M reports it).
# 3. Checks the archive afterwards (repository file count; archive-get of three segments, cmp).
#
# Tools (TOOLS, default all four; a pgcairn row is skipped if PGCAIRN_BIN has no archive-push,
# the async one also if `archive-push --help` does not mention --async):
#   pgcairn-sync      pgcairn --repo R --password-file F --cache-dir C archive-push %p
#   pgcairn-async     same + $PGCAIRN_ASYNC_OPTS (default --async)
#   pgbackrest-sync   pgbackrest --stanza=bench archive-push %p   (zst level 3, aes-256-cbc)
#   pgbackrest-async  same + archive-async=y spool-path process-max=2
#
# Env (defaults): DATA_ROOT=/tmp/bench_data (everything under $DATA_ROOT/archive), N=96,
# SCALE=20, FORCED=4, FILLER=hash, CLIENTS=2, CHECKPOINT_TIMEOUT=30s, PGCAIRN_BIN=
# <root>/target/release/pgcairn, PGCAIRN_INIT_OPTS (e.g. "--compression-level 3"),
# PASS, DROP_CACHES=1, QUIET_CORES, QUIET_MAX_S (lib.sh), PORT (default: first free from 55460).
# Output: markdown table on stdout and in $DATA_ROOT/archive/results.md (+ results.csv, logs in
# $DATA_ROOT/archive/log, per-call latencies in $DATA_ROOT/archive/t/<tool>/calls.tsv).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
B=${BENCH_DIR:-$(cd "$ROOT/../shared/bench" && pwd)}

: "${DATA_ROOT:=/tmp/bench_data}"
W=$DATA_ROOT/archive
: "${N:=96}" "${SCALE:=20}" "${FORCED:=4}" "${FILLER:=hash}" "${CLIENTS:=2}" "${SEED:=42}"
: "${CHECKPOINT_TIMEOUT:=30s}" "${REBUILD:=0}"
: "${TOOLS:=pgcairn-sync pgcairn-async pgbackrest-sync pgbackrest-async}"
: "${PGCAIRN_BIN:=$ROOT/target/release/pgcairn}" "${PGCAIRN_INIT_OPTS:=}" "${PGCAIRN_ASYNC_OPTS:=--async}"
SEG_BYTES=$((16 * 1024 * 1024))

# The shared helpers (as_pg, psql_src, log, drop_caches, wait_quiet, host_busy, bytes) with
# DATA_ROOT pointed at our directory, so the cluster's socket, logs and temp files live in $W.
free_port() {
  local p
  for p in $(seq 55460 55560); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    [ -e "$W/run/.s.PGSQL.$p" ] && continue
    echo "$p"; return 0
  done
  echo "no free port in 55460-55560" >&2; return 1
}
: "${PORT:=$(free_port)}"
export DATA_ROOT=$W SCALE PORT FILLER CLIENTS SEED
# shellcheck source=/dev/null
. "$B/lib.sh"
PGDATA_SRC=$W/pg/data CORPUS=$W/corpus META=$W/corpus/.meta
CORPUS_KEY="SCALE=$SCALE FILLER=$FILLER FORCED=$FORCED CHECKPOINT_TIMEOUT=$CHECKPOINT_TIMEOUT"

[ "$(id -u)" = 0 ] || [ "$(id -un)" = "$PG_USER" ] || { echo "run as root (or as $PG_USER)" >&2; exit 2; }
command -v pgbackrest >/dev/null || { echo "pgbackrest missing: run $B/setup-peers.sh" >&2; exit 2; }
install -d -o "$PG_USER" -g "$PG_USER" -m 755 "$W" "$W/log" "$W/tmp" "$W/t"

# ---- our servers, stopped by PID on any exit ----
PG_PID=
stop_pid() {   # PID: fast shutdown of a postmaster we started, waits until it is gone
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -INT "$pid"
  for i in $(seq 600); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "postmaster $pid did not stop in 60 s"
}
cleanup() { [ -z "$PG_PID" ] || { stop_pid "$PG_PID"; PG_PID=; }; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# A postmaster left running on our data directory by an interrupted earlier run of this script.
if [ -f "$PGDATA_SRC/postmaster.pid" ]; then
  old=$(head -1 "$PGDATA_SRC/postmaster.pid")
  if [ -n "$old" ] && grep -q postgres "/proc/$old/cmdline" 2>/dev/null; then
    log "stopping postmaster $old left by an earlier run"; stop_pid "$old"
  fi
fi

segments() { find "$CORPUS" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}' -printf '%f\n' | sort; }
nsegs() { segments | wc -l; }
ready_left() { find "$PGDATA_SRC/pg_wal/archive_status" -name '*.ready' | wc -l; }

# ---- 1. corpus ----
build_corpus() {
  log "building the corpus: $CORPUS_KEY, N=$N, port $PORT"
  rm -rf "$W/pg" "$CORPUS" "$W/run"
  install -d -o "$PG_USER" -g "$PG_USER" -m 755 "$CORPUS"
  ARCHIVE_CMD="cp %p $CORPUS/%f" "$B/pg-cluster.sh" init "$PGDATA_SRC" "$PORT"
  "$B/pg-cluster.sh" start "$PGDATA_SRC" "$PORT" -c "checkpoint_timeout=$CHECKPOINT_TIMEOUT" -c max_wal_size=1GB -c synchronous_commit=off
  PG_PID=$(head -1 "$PGDATA_SRC/postmaster.pid")
  local i t0=$SECONDS
  psql_src -c "CREATE TABLE tiny(i int, t timestamptz DEFAULT now())" -c "SELECT pg_switch_wal()" >/dev/null
  for i in $(seq "$FORCED"); do   # a few bytes of WAL, then the rest of the segment is zeros
    psql_src -c "INSERT INTO tiny(i) VALUES ($i)" -c "SELECT pg_switch_wal()" >/dev/null
  done
  "$B/workload.sh" load >> "$W/log/corpus.log" 2>&1
  log "loaded (scale $SCALE) in $((SECONDS - t0)) s; corpus has $(nsegs) segments"
  for i in $(seq 200); do
    [ "$(nsegs)" -lt "$N" ] || break
    as_pg "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -c "$CLIENTS" -j "$CLIENTS" -T 10 \
      --random-seed="$((SEED + i))" postgres >> "$W/log/corpus.log" 2>&1
  done
  psql_src -c "SELECT pg_switch_wal()" >/dev/null
  for i in $(seq 600); do [ "$(ready_left)" = 0 ] && break; sleep 0.1; done
  "$B/pg-cluster.sh" stop "$PGDATA_SRC" "$PORT"; PG_PID=
  local have; have=$(nsegs)
  [ "$have" -ge "$N" ] || { log "corpus has only $have segments (< N=$N)"; exit 1; }
  # What the N segments are like: zstd -3 ratio and full-page-image share (pg_waldump --stats).
  local first last ratio fpi
  first=$(segments | awk 'NR==1'); last=$(segments | awk -v n="$N" 'NR==n')
  ratio=$(segments | awk -v n="$N" 'NR<=n' | sed "s|^|$CORPUS/|" | xargs cat | zstd -3 -T2 -c | wc -c)
  ratio=$(awk -v a="$((N * SEG_BYTES))" -v b="$ratio" 'BEGIN{printf "%.2f", a/b}')
  fpi=$(as_pg "$PGBIN/pg_waldump" --stats -p "$CORPUS" "$first" "$last" 2>/dev/null | awk '/^Total/{gsub(/[][]/, "", $6); print $6}' || true)
  { echo "$CORPUS_KEY"
    echo "built $(date -u +%FT%TZ) in $((SECONDS - t0)) s: $have segments ($FORCED forced by pg_switch_wal after a small write, first $first)"
    echo "first N=$N segments: zstd -3 ratio ${ratio}x, full-page images ${fpi:-?} of WAL bytes (pg_waldump --stats)"
  } > "$META"
  log "corpus: $(sed -n 2p "$META")"
}
if [ "$REBUILD" = 1 ] || [ ! -f "$META" ] || [ "$(head -1 "$META")" != "$CORPUS_KEY" ] \
   || [ "$(nsegs)" -lt "$N" ] || [ ! -f "$PGDATA_SRC/global/pg_control" ]; then
  build_corpus
else
  log "reusing the corpus in $CORPUS ($(nsegs) segments; REBUILD=1 to rebuild)"
fi
segments | awk -v n="$N" 'NR<=n' > "$W/segments.txt"

# ---- 2. the archiver-like driver (runs as postgres, cwd = the data directory) ----
# argv: COMMAND_TEMPLATE SEGMENT_LIST CALLS_TSV LOG.  Prints "key=value" summary lines.
DRIVER=$(cat <<'PY'
import os, statistics, subprocess, sys, time
tmpl, seglist, calls_tsv, logpath = sys.argv[1:5]
segs = open(seglist).read().split()
log = open(logpath, "ab")
st = "pg_wal/archive_status/"
rows = []
t_start = time.monotonic_ns()
for seg in segs:
    cmd = tmpl.replace("%p", "pg_wal/" + seg).replace("%f", seg)
    t0 = time.monotonic_ns()
    p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    _, status, ru = os.wait4(p.pid, 0)
    t1 = time.monotonic_ns()
    rc = os.waitstatus_to_exitcode(status)
    p.returncode = rc
    rows.append((seg, (t1 - t0) / 1e6, rc, ru.ru_maxrss, ru.ru_utime + ru.ru_stime))
    if rc != 0:
        break
    os.rename(st + seg + ".ready", st + seg + ".done")
t_end = time.monotonic_ns()
with open(calls_tsv, "w") as f:
    f.write("segment\tms\texit\tmaxrss_kib\tcpu_s\n")
    for r in rows:
        f.write("%s\t%.3f\t%d\t%d\t%.3f\n" % r)
ok = [r for r in rows if r[2] == 0]
rest = sorted(r[1] for r in rows[1:])
print("calls=%d" % len(rows))
print("ok=%d" % len(ok))
print("total_s=%.3f" % ((t_end - t_start) / 1e9))
print("sum_s=%.3f" % (sum(r[1] for r in rows) / 1e3))
print("first_ms=%.1f" % rows[0][1])
print("median_ms=%.1f" % (statistics.median(rest) if rest else float("nan")))
print("p95_ms=%.1f" % (rest[max(0, -(-95 * len(rest) // 100) - 1)] if rest else float("nan")))
print("maxrss_kib=%d" % max(r[3] for r in rows))
print("maxrss_rest_kib=%d" % max([r[3] for r in rows[1:]] or [0]))
print("cpu_s=%.2f" % sum(r[4] for r in rows))
PY
)

# ---- 3. tools ----
PGCAIRN_OK=0 PGCAIRN_ASYNC=0 PGCAIRN_WHY=
if ! as_pg test -x "$PGCAIRN_BIN"; then
  PGCAIRN_WHY="$PGCAIRN_BIN is not an executable for $PG_USER"
elif ! help=$(as_pg "$PGCAIRN_BIN" archive-push --help 2>&1); then
  PGCAIRN_WHY="$PGCAIRN_BIN has no archive-push yet"
else
  PGCAIRN_OK=1
  case $help in *--async*) PGCAIRN_ASYNC=1;; esac
fi
PASSFILE=$W/pass
install -m 600 -o "$PG_USER" /dev/null "$PASSFILE"; printf '%s\n' "$PASS" > "$PASSFILE"

# tool_setup TOOL T: untimed; prints the archive_command (with %p) to use
tool_setup() {
  local tool=$1 T=$2
  case $tool in
  pgcairn-*)
    # shellcheck disable=SC2086  # PGCAIRN_INIT_OPTS: words on purpose
    as_pg "$PGCAIRN_BIN" init --repo "$T/repo" --password-file "$PASSFILE" --cache-dir "$T/cache" \
      $PGCAIRN_INIT_OPTS >> "$T/log/setup.log" 2>&1 || return 1
    local extra=""; [ "$tool" = pgcairn-async ] && extra="$PGCAIRN_ASYNC_OPTS "
    echo "$PGCAIRN_BIN --repo $T/repo --password-file $PASSFILE --cache-dir $T/cache archive-push $extra%p";;
  pgbackrest-*)
    { cat <<CONF
[global]
repo1-path=$T/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PASS
repo1-retention-full=99
compress-type=zst
compress-level=3
process-max=2
log-path=$T/log
lock-path=$T/lock
log-level-console=warn
log-level-file=info
CONF
      [ "$tool" = pgbackrest-async ] && printf 'archive-async=y\nspool-path=%s\n' "$T/spool"
      printf '\n[bench]\npg1-path=%s\n' "$T/pgdata"
    } > "$T/pgbackrest.conf"
    chown "$PG_USER" "$T/pgbackrest.conf" && chmod 600 "$T/pgbackrest.conf" || return 1
    as_pg pgbackrest --config="$T/pgbackrest.conf" --stanza=bench --no-online stanza-create >> "$T/log/setup.log" 2>&1 || return 1
    echo "pgbackrest --config=$T/pgbackrest.conf --stanza=bench archive-push %p";;
  esac
}

# tool_get TOOL T SEG DEST: fetch one segment back from the tool's repository, from the data
# directory as the server's restore_command runs (pgcairn finds the cluster's system id there)
tool_get() {
  cd "$2/pgdata" || return 2
  case $1 in
  pgcairn-*)    as_pg "$PGCAIRN_BIN" --repo "$2/repo" --password-file "$PASSFILE" --cache-dir "$2/cache" archive-get "$3" "$4";;
  pgbackrest-*) as_pg pgbackrest --config="$2/pgbackrest.conf" --stanza=bench --no-archive-async archive-get "$3" "$4";;
  esac
}

# After an async run a detached worker may still hold its lock: wait until every lock is free.
wait_locks() {
  local f
  for f in "$1"/lock/*.lock; do [ -e "$f" ] && { flock -w 60 "$f" true || log "lock $f still held"; }; done
  return 0
}

CSV=$W/results.csv
echo "tool,segments,MB,total_s,MB_s,segments_s,first_ms,median_ms,p95_ms,repo_MiB,peak_RSS_MiB,peak_RSS_after_first_MiB,calls_cpu_s,host_cpu_s,check" > "$CSV"
skip_row() { log "$1: skipped: $2"; echo "$1,skipped: $2,,,,,,,,,,,,," >> "$CSV"; }

run_tool() {
  local tool=$1 T=$W/t/$1 cmd seg sum h0 h1 check
  rm -rf "$T"
  install -d -o "$PG_USER" -g "$PG_USER" -m 700 "$T" "$T/log" "$T/lock" "$T/spool" "$T/get"
  # The data directory, hard-linked (the tools only read it), with a fresh pg_wal of N segments.
  cp -al "$PGDATA_SRC" "$T/pgdata"
  rm -rf "$T/pgdata/pg_wal" "$T/pgdata/postmaster.pid"
  install -d -o "$PG_USER" -g "$PG_USER" -m 700 "$T/pgdata/pg_wal" "$T/pgdata/pg_wal/archive_status"
  while read -r seg; do
    ln "$CORPUS/$seg" "$T/pgdata/pg_wal/$seg"
    : > "$T/pgdata/pg_wal/archive_status/$seg.ready"
  done < "$W/segments.txt"
  chown -R "$PG_USER:$PG_USER" "$T/pgdata/pg_wal"
  cmd=$(tool_setup "$tool" "$T") || { log "$tool: setup failed"; tail -5 "$T/log/setup.log" >&2; echo "$tool,setup FAILED,,,,,,,,,,,,," >> "$CSV"; return 0; }
  echo "$cmd" > "$T/command"

  drop_caches; wait_quiet
  log "$tool: $N segments: $cmd"
  h0=$(host_busy)
  sum=$(cd "$T/pgdata" && as_pg python3 -c "$DRIVER" "$cmd" "$W/segments.txt" "$T/calls.tsv" "$T/log/calls.log") \
    || { log "$tool: driver FAILED"; echo "$tool,driver FAILED,,,,,,,,,,,,," >> "$CSV"; return 0; }
  h1=$(host_busy)
  wait_locks "$T"
  local calls ok total_s sum_s first_ms median_ms p95_ms maxrss_kib maxrss_rest_kib cpu_s
  eval "$(printf '%s\n' "$sum" | grep -E '^[a-z0-9_]+=[0-9.na-]+$')"

  # Is the archive complete and right?
  check="exit 0 x$ok/$N"
  if [ "$ok" != "$N" ]; then
    check="FAILED at call $calls: $(awk -F'\t' 'NR>1 && $3!=0{print $1" exit "$3; exit}' "$T/calls.tsv") (see $T/log/calls.log)"
  else
    case $tool in pgbackrest-*)
      local files; files=$(find "$T/repo/archive/bench" -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}-[0-9a-f]{40}\..*' | wc -l)
      check+="; $files files in repo";;
    esac
    local got=0 bad=0 nf=0 rc
    local sample; mapfile -t sample < <(sed -n "2p;$((N / 2))p;${N}p" "$W/segments.txt")
    for seg in "${sample[@]}"; do
      rc=0; (tool_get "$tool" "$T" "$seg" "$T/get/$seg") < /dev/null >> "$T/log/get.log" 2>&1 || rc=$?
      if [ "$rc" = 0 ]; then
        if cmp -s "$CORPUS/$seg" "$T/get/$seg"; then got=$((got + 1)); else bad=$((bad + 1)); fi
      elif [ "$rc" = 1 ]; then nf=$((nf + 1)); else bad=$((bad + 1)); fi
    done
    check+="; archive-get+cmp: $got/3 equal"
    [ "$bad" = 0 ] || check+="; $bad FAILED"
    [ "$nf" = 0 ] || check+="; $nf not found (exit 1)"
  fi
  local host_cpu mb
  host_cpu=$(awk -v a="$h0" -v b="$h1" 'BEGIN{printf "%.1f", b-a}')
  mb=$(awk -v n="$ok" -v s="$SEG_BYTES" 'BEGIN{printf "%.0f", n*s/1e6}')
  echo "$tool,$ok,$mb,$total_s,$(awk -v m="$mb" -v t="$total_s" 'BEGIN{printf "%.1f", m/t}'),$(awk -v n="$ok" -v t="$total_s" 'BEGIN{printf "%.1f", n/t}'),$first_ms,$median_ms,$p95_ms,$(mib "$(bytes "$T/repo")"),$(awk -v k="$maxrss_kib" 'BEGIN{printf "%.0f", k/1024}'),$(awk -v k="$maxrss_rest_kib" 'BEGIN{printf "%.0f", k/1024}'),$cpu_s,$host_cpu,$check${M_NOISY:-}" >> "$CSV"
  log "$tool: $total_s s (calls alone $sum_s s), first $first_ms ms, median $median_ms ms, p95 $p95_ms ms; $check"
}

for tool in $TOOLS; do
  case $tool in
  pgcairn-sync)  [ "$PGCAIRN_OK" = 1 ] || { skip_row "$tool" "$PGCAIRN_WHY"; continue; };;
  pgcairn-async) [ "$PGCAIRN_OK" = 1 ] || { skip_row "$tool" "$PGCAIRN_WHY"; continue; }
                 [ "$PGCAIRN_ASYNC" = 1 ] || { skip_row "$tool" "archive-push --help does not mention --async"; continue; };;
  pgbackrest-sync|pgbackrest-async) ;;
  *) log "unknown tool $tool"; exit 2;;
  esac
  run_tool "$tool"
done

# ---- 4. report ----
ratio_rows() {   # pgcairn-X / pgbackrest-X for total s, median ms, repo MiB, peak RSS MiB
  awk -F, 'NR>1 && $4!="" {t[$1]=$4; m[$1]=$8; r[$1]=$10; s[$1]=$11}
    function q(a,b){ return (a=="" || b=="" || b==0) ? "n/a" : sprintf("%.2f", a/b) }
    END { for (i=1;i<=2;i++) { k=(i==1?"sync":"async"); c="pgcairn-" k; b="pgbackrest-" k
            if (!(c in t) || !(b in t)) { printf "| %s | n/a (a row is missing) | | | |\n", k; continue }
            printf "| %s | %s | %s | %s | %s |\n", k, q(t[c],t[b]), q(m[c],m[b]), q(r[c],r[b]), q(s[c],s[b]) } }' "$CSV"
}
{
  echo "# WAL archiving: pgcairn vs pgBackRest archive-push"
  echo
  echo "$(date -u +%FT%TZ), $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-72);" \
       "$(pgbackrest version); pgcairn: $([ "$PGCAIRN_OK" = 1 ] && as_pg "$PGCAIRN_BIN" --version || echo "skipped ($PGCAIRN_WHY)")."
  echo "Corpus: $(sed -n 2p "$META"); $(sed -n 3p "$META"); $CORPUS_KEY."
  echo "Driver: one archive_command at a time in name order, cwd = data directory, %p = pg_wal/<seg>;" \
       "page cache $([ "$DROP_CACHES" = 1 ] && echo dropped || echo NOT dropped) before each tool. MB = 10^6 bytes."
  echo
  echo "| tool | segments | MB | total s | MB/s | segments/s | first call ms | median ms | p95 ms | repo MiB | peak RSS MiB | peak RSS after 1st call MiB | CPU s (calls) | host CPU s | check |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F, 'NR>1 {r="|"; for(i=1;i<=NF;i++) r=r" "$i" |"; for(;i<=15;i++) r=r" |"; print r}' "$CSV"
  echo
  echo "| pgcairn / pgBackRest | total s | median ms | repo MiB | peak RSS MiB |"
  echo "|---|---|---|---|---|"
  ratio_rows
  echo
  echo "median and p95 are over calls 2..N (the first call is reported alone: pgcairn derives its key" \
       "there, pgBackRest async starts its worker). Peak RSS is that of the archive_command's own" \
       "process tree; pgBackRest's detached async worker is not in it (its CPU is in host CPU s)."
} > "$W/results.md"
cat "$W/results.md"
