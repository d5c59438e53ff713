#!/usr/bin/env bash
# Prune and verify time and peak RSS against the number of chunks (issue 5), one run.
#
#   benches/prune_verify/run.sh                            # from the project's root; ~5 min
#   SIZES="250000 500000 1000000 2000000" benches/prune_verify/run.sh   # ~10 min on 2 vCPU
#
# Per size N (data chunks), in a fresh directory $WORK/<N>:
# 1. `cargo bench --bench prune_repo -- N DIR` builds a synthetic repository through the library
#    (benches/prune_repo.rs: one cluster, 10 snapshots a day apart, files of 1000 chunks of
#    256-1024 bytes, ~10.7% of the chunks new each day, 1 MiB packs, test-only key derivation).
# 2. Runs, one after another, each under /usr/bin/time -v (wall time, CPU time, peak RSS), with
#    --cache-dir $WORK/<N>/cache (deleted before the first command: it starts with a cold index
#    cache and learns every index file) and --no-key-cache:
#      snapshots                                  cold cache: reads every index file
#      snapshots                                  warm cache: the cost of opening alone
#      prune --keep-last 5 --dry-run --json
#      prune --keep-last 5 --unsafe-no-grace --json   forgets 5 snapshots, condemns, repacks
#      prune --keep-last 5 --unsafe-no-grace --json   deletes the packs the first one condemned
#      verify, verify --read-data                 if `verify --help` works in VERIFY_BIN
# 3. Records the index size (sum of index/ files), the cache file size, the repository size
#    before and after, and the blobs the walk reached (prune's JSON report).
#
# Env (defaults): SIZES="250000 500000 1000000", WORK=/tmp/bench_prune,
# PGCAIRN_BIN=<root>/target/release/pgcairn, VERIFY_BIN=$PGCAIRN_BIN (a binary with `verify`,
# for the verify rows only), PACK_SIZE_MIB=1, KEEP=0 (1: keep each repository).
# Both binaries are copied into $WORK first, so a rebuild during the run changes nothing.
# Output: Markdown tables on stdout and in $WORK/results.md; every command's output and its
# `time -v` report in $WORK/<N>/log/.
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

: "${SIZES:=250000 500000 1000000}" "${WORK:=/tmp/bench_prune}" "${KEEP:=0}"
: "${PGCAIRN_BIN:=$ROOT/target/release/pgcairn}" "${PACK_SIZE_MIB:=1}"
: "${VERIFY_BIN:=$PGCAIRN_BIN}"
export PACK_SIZE_MIB PGCAIRN_INSECURE_TEST_KDF=1

mkdir -p "$WORK"
BIN=$WORK/pgcairn VBIN=$WORK/pgcairn-verify RESULTS=$WORK/results.md
cp "$PGCAIRN_BIN" "$BIN"
cp "$VERIFY_BIN" "$VBIN"
HAVE_VERIFY=1
if ! "$VBIN" verify --help >/dev/null 2>&1; then
  HAVE_VERIFY=0
  echo "note: $VERIFY_BIN has no verify command; the verify rows are skipped" >&2
fi
(cd "$ROOT" && cargo bench --bench prune_repo --no-run 2>&1 | tail -1) >&2

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
bytes() { du -sb "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
cache_bytes() { find "$1" -type f -name 'index.sqlite*' -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

# The log file name of a command's row.
slug() { printf '%s' "$1" | tr -c 'a-zA-Z0-9' '_'; }

# run NAME BINARY ARGS...: runs one command under time -v; appends a row to $D/rows.tsv:
# name, wall s, CPU s, peak RSS MiB, exit code.
run() {
  local name=$1 bin=$2 slug
  shift 2
  slug=$(slug "$name")
  local code=0
  /usr/bin/time -v -o "$D/log/$slug.time" "$bin" --repo "$D/repo" --password-file "$D/password" \
    --cache-dir "$D/cache" --no-key-cache "$@" >"$D/log/$slug.out" 2>"$D/log/$slug.err" || code=$?
  awk -F': ' -v name="$name" -v code="$code" '
    /Elapsed \(wall clock\)/ { n = split($2, t, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + t[i] }
    /User time/ { cpu += $2 } /System time/ { cpu += $2 }
    /Maximum resident set size/ { rss = $2 / 1024 }
    END { printf "%s\t%.1f\t%.1f\t%.0f\t%d\n", name, wall, cpu, rss, code }' "$D/log/$slug.time" >>"$D/rows.tsv"
  echo "  $name: $(tail -1 "$D/rows.tsv" | cut -f2-5 | tr '\t' ' ') (wall s, CPU s, RSS MiB, exit)" >&2
}

: >"$RESULTS"
SUMMARY=$WORK/summary.tsv
printf 'N\tdata blobs\tindex MiB\tcache MiB\treached\n' >"$SUMMARY"
for N in $SIZES; do
  D=$WORK/$N
  rm -rf "$D"
  mkdir -p "$D/log"
  echo "== $N chunks" >&2
  (cd "$ROOT" && cargo bench --bench prune_repo -- "$N" "$D") >"$D/log/generate.out" 2>"$D/log/generate.err"
  GENERATED=$(tail -1 "$D/log/generate.out")
  echo "  $GENERATED" >&2
  DATA_BLOBS=$(sed -n 's/.*data blobs \([0-9]*\).*/\1/p' <<<"$GENERATED")
  INDEX_BEFORE=$(bytes "$D/repo/index") REPO_BEFORE=$(bytes "$D/repo")
  : >"$D/rows.tsv"

  rm -rf "$D/cache"
  run "snapshots (cold cache)" "$BIN" snapshots
  CACHE_SYNCED=$(cache_bytes "$D/cache")
  run "snapshots (warm cache)" "$BIN" snapshots
  run "prune --dry-run" "$BIN" prune --keep-last 5 --dry-run --json
  REACHED=$(jq -r '.reached_blobs' "$D/log/$(slug "prune --dry-run").out" 2>/dev/null || echo "?")
  PLAN=$(jq -r '.packs | "\(.condemn | length) to condemn, \(.repack | length) to repack, \(.kept) kept"' \
    "$D/log/$(slug "prune --dry-run").out" 2>/dev/null || echo "?")
  run "prune (condemn, repack)" "$BIN" prune --keep-last 5 --unsafe-no-grace --json
  REPO_MID=$(bytes "$D/repo")
  run "prune again (delete)" "$BIN" prune --keep-last 5 --unsafe-no-grace --json
  DONE=$(jq -r '.done | "\(.packs_deleted) packs deleted, \(.index_files_written) index files written"' \
    "$D/log/$(slug "prune again (delete)").out" 2>/dev/null || echo "?")
  COPIED=$(jq -r '.done | "\(.copied_blobs) blobs copied into \(.new_packs) packs"' \
    "$D/log/$(slug "prune (condemn, repack)").out" 2>/dev/null || echo "?")
  if [ "$HAVE_VERIFY" = 1 ]; then
    run "verify" "$VBIN" verify
    run "verify --read-data" "$VBIN" verify --read-data
  fi
  INDEX_AFTER=$(bytes "$D/repo/index") REPO_AFTER=$(bytes "$D/repo") CACHE_AFTER=$(cache_bytes "$D/cache")
  printf '%s\t%s\t%s\t%s\t%s\n' "$N" "$DATA_BLOBS" "$(mib "$INDEX_BEFORE")" "$(mib "$CACHE_SYNCED")" "$REACHED" >>"$SUMMARY"
  cp "$D/rows.tsv" "$WORK/rows-$N.tsv"

  {
    echo "### $N chunks"
    echo
    echo "Generated: $GENERATED"
    echo
    echo "Index $(mib "$INDEX_BEFORE") MiB before, $(mib "$INDEX_AFTER") MiB after; cache file" \
      "$(mib "$CACHE_SYNCED") MiB after the first sync, $(mib "$CACHE_AFTER") MiB at the end;" \
      "repository $(mib "$REPO_BEFORE") MiB, $(mib "$REPO_MID") MiB after the first prune," \
      "$(mib "$REPO_AFTER") MiB after the second. Reached blobs: $REACHED. Plan: $PLAN; first" \
      "prune: $COPIED; second: $DONE."
    [ "$HAVE_VERIFY" = 1 ] || echo "(verify skipped: the binary has no verify command.)"
    echo
    echo "| command | wall s | CPU s | peak RSS MiB | exit |"
    echo "|---|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$D/rows.tsv"
    echo
  } | tee -a "$RESULTS"
  [ "$KEEP" = 1 ] || rm -rf "$D/repo" "$D/cache"
done

# Peak RSS, wall time and CPU time of each command against N.
{
  for what in "peak RSS MiB:4" "wall s:2" "CPU s:3"; do
    label=${what%%:*} col=${what##*:}
    echo "### $label against the number of chunks"
    echo
    awk -F'\t' -v col="$col" -v label="$label" -v sizes="$SIZES" -v work="$WORK" -v summary="$SUMMARY" '
      BEGIN {
        while ((getline line < summary) > 0) {
          split(line, f, "\t"); if (f[1] == "N") continue
          blobs[f[1]] = f[2]; index_mib[f[1]] = f[3]; cache_mib[f[1]] = f[4]
        }
        n = split(sizes, size, " ")
        for (i = 1; i <= n; i++) {
          file = work "/rows-" size[i] ".tsv"
          while ((getline line < file) > 0) {
            split(line, f, "\t")
            if (!(f[1] in seen)) { seen[f[1]] = 1; names[++m] = f[1] }
            v[size[i], f[1]] = f[col]
          }
        }
        printf "| N | data blobs | index MiB | cache MiB |"
        for (j = 1; j <= m; j++) printf " %s |", names[j]
        printf "\n|---|---|---|---|"
        for (j = 1; j <= m; j++) printf "---|"
        printf "\n"
        for (i = 1; i <= n; i++) {
          s = size[i]
          printf "| %s | %s | %s | %s |", s, blobs[s], index_mib[s], cache_mib[s]
          for (j = 1; j <= m; j++) printf " %s |", ((s, names[j]) in v) ? v[s, names[j]] : ""
          printf "\n"
        }
      }'
    echo
  done
} | tee -a "$RESULTS"
