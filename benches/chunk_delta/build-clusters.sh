#!/usr/bin/env bash
# Builds S0 (after load) and S1 (after one "day") with the shared bench harness settings.
# Run as root from anywhere: ./benches/chunk_delta/build-clusters.sh; then
#   cargo run --release --example chunk_delta -- $DATA_ROOT/S0 $DATA_ROOT/S1 [MIN,AVG,MAX]...
set -euo pipefail
B=$(cd "$(dirname "$0")/../../../shared/bench" && pwd)
export DATA_ROOT=${DATA_ROOT:-/tmp/chunkdelta} SCALE=${SCALE:-100} PORT=55499 FILLER=hash
. $B/lib.sh
D=$DATA_ROOT/pg
install -d -o postgres -g postgres -m 755 $DATA_ROOT $DATA_ROOT/log $DATA_ROOT/tmp
t0=$SECONDS
# Stops the cluster cleanly and copies its data directory to $DATA_ROOT/$1.
stop_and_copy() {
    $B/pg-cluster.sh stop $D $PORT
    local t=$SECONDS
    cp -a $D "$DATA_ROOT/$1"
    echo "TIMING copy $1: $((SECONDS - t)) s"
}
$B/pg-cluster.sh init $D $PORT
echo "archive_mode = off   # chunkdelta: no archiving" >> $D/postgresql.conf
$B/pg-cluster.sh start $D $PORT
head -1 $D/postmaster.pid | sed 's/^/postmaster pid: /'
t1=$SECONDS
$B/workload.sh load
psql_src -c "CHECKPOINT"
echo "TIMING load: $((SECONDS - t1)) s"
stop_and_copy S0
$B/pg-cluster.sh start $D $PORT
head -1 $D/postmaster.pid | sed 's/^/postmaster pid: /'
t3=$SECONDS
$B/workload.sh day
psql_src -c "CHECKPOINT"
psql_src -c "SELECT 'accounts: '||count(*)||' sum(abalance)='||sum(abalance) FROM pgbench_accounts"
echo "TIMING day: $((SECONDS - t3)) s"
stop_and_copy S1
echo "TIMING total: $((SECONDS - t0)) s"
du -sh $DATA_ROOT/S0 $DATA_ROOT/S1 $D
