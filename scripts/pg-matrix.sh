#!/usr/bin/env bash
# The PostgreSQL matrix: tests/pg_matrix.rs's round trip and point-in-time recovery on every
# major pgcairn supports, each from the npm build scripts/fetch-postgres.sh pins (15 too, not
# Debian's, which the default test run uses), then a table of the results.
#
#   scripts/pg-matrix.sh           # 13 to 18
#   scripts/pg-matrix.sh 14 17     # some majors
#
# Installs what it needs through the existing scripts: Debian's PostgreSQL 15 (pgbench and
# pg_checksums, which the tests use against every major), npm, and the majors themselves.
# Idempotent: what is there already is kept. The tests run one at a time, so their times are
# comparable; each one's output is in target/pg-matrix/TEST.log. Exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

majors=("$@")
if [ ${#majors[@]} -eq 0 ]; then
    majors=(13 14 15 16 17 18)
fi
for major in "${majors[@]}"; do
    case "$major" in
        13 | 14 | 15 | 16 | 17 | 18) ;;
        *)
            echo "usage: $0 [MAJOR...] (13 to 18)" >&2
            exit 2
            ;;
    esac
done

scripts/install-postgres.sh
command -v npm >/dev/null || scripts/apt-install.sh npm
scripts/fetch-postgres.sh "${majors[@]}"

export PGCAIRN_TEST_PG_ROOT=${PGCAIRN_TEST_PG_ROOT:-$PWD/target/postgres}
export PGCAIRN_TEST_PG_PREFER_FETCHED=1
# A missing major must fail here, not pass as skipped.
unset PGCAIRN_TEST_SKIP_MISSING_PG
# The features scripts/test.sh builds with, so that the two share one build.
cargo_test=(cargo test --locked --features fault-injection --test pg_matrix)
"${cargo_test[@]}" --no-run

logs=target/pg-matrix
mkdir -p "$logs"
failed=0
rows=()
for major in "${majors[@]}"; do
    version=$("$PGCAIRN_TEST_PG_ROOT/$major/bin/postgres" --version | awk '{print $NF}')
    row=$(printf '%-6s %-8s' "$major" "$version")
    for test in round_trip point_in_time; do
        name=${test}_pg$major
        echo "== $name"
        began=$(date +%s%N)
        # --include-ignored: 14, 16 and 17 are ignored in the default run.
        if "${cargo_test[@]}" -- --exact "$name" --include-ignored --nocapture \
            >"$logs/$name.log" 2>&1 &&
            grep -q '^test result: ok\. 1 passed' "$logs/$name.log"; then
            result=pass
        else
            result=FAIL
            failed=1
            tail -n 40 "$logs/$name.log"
        fi
        tenths=$((($(date +%s%N) - began) / 100000000))
        row+=$(printf '  %-4s %6s s' "$result" "$((tenths / 10)).$((tenths % 10))")
    done
    rows+=("$row")
done

echo
printf '%-6s %-8s  %-13s  %s\n' major version "round trip" "PITR"
for row in "${rows[@]}"; do
    echo "$row"
done
if [ "$failed" != 0 ]; then
    echo "failures: the output of each test is in $logs/" >&2
fi
exit "$failed"
