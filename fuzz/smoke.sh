#!/usr/bin/env bash
# Smoke-fuzzes every pgcairn decoder for FUZZ_SECONDS seconds each (default 20).
# Exits non-zero if any target crashes, leaks past the RSS limit, or times out on one input.
# Usage: [FUZZ_SECONDS=N] [FUZZ_TARGETS="tree config"] fuzz/smoke.sh   (from any directory)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
# Longest time one input may take before libFuzzer reports it as a hang.
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
ALL_TARGETS=(blob_envelope pack_header index_file snapshot tree key_file config wal_entry
    wal_file_name timeline_history wal_page_header wal_segment_scan backup_label
    tablespace_map pg_control recovery_target archive_command)
read -r -a TARGETS <<< "${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"

# Golden vectors in format-spec/vectors/ that seed each target.
vectors_for() {
    case "$1" in
        blob_envelope) echo blob.bin ;;
        pack_header) echo pack.bin ;;
        index_file) echo index.bin ;;
        snapshot) echo snapshot.bin ;;
        tree) echo tree.bin chunklist.bin ;;
        key_file) echo key.bin ;;
        config) echo config.bin ;;
        wal_entry) echo walentry.bin ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Nightly gives AddressSanitizer; stable builds with coverage instrumentation only.
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q nightly; then
    TOOLCHAIN=(+nightly)
    SANITIZER=()
    mode="nightly, AddressSanitizer"
else
    TOOLCHAIN=()
    SANITIZER=(-s none)
    mode="stable, no sanitizer"
fi

echo "smoke.sh: building ${#TARGETS[@]} targets ($mode)" >&2
build_start=$SECONDS
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    for target in "${TARGETS[@]}"; do
        cargo "${TOOLCHAIN[@]}" fuzz build "${SANITIZER[@]}" "$target"
    done
else
    cargo "${TOOLCHAIN[@]}" fuzz build "${SANITIZER[@]}"
fi
echo "smoke.sh: build took $((SECONDS - build_start)) s" >&2

mkdir -p logs
summary=()
failed=0
for target in "${TARGETS[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    # Seeds are copied under their SHA-1, as libFuzzer names corpus files (and as the top-level
    # .gitignore expects of generated corpus files).
    seeds=()
    if [[ -d "seeds/$target" ]]; then
        for f in "seeds/$target"/*; do
            [[ -f "$f" ]] && seeds+=("$f")
        done
    fi
    for v in $(vectors_for "$target"); do
        [[ -f "../format-spec/vectors/$v" ]] && seeds+=("../format-spec/vectors/$v")
    done
    for f in "${seeds[@]}"; do
        cp "$f" "$corpus/$(sha1sum "$f" | cut -d' ' -f1)"
    done

    log="logs/$target.log"
    echo "smoke.sh: fuzzing $target for ${FUZZ_SECONDS} s (${#seeds[@]} seeds)" >&2
    status=0
    cargo "${TOOLCHAIN[@]}" fuzz run "${SANITIZER[@]}" "$target" "$corpus" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=1024 -max_len=65536 \
        -timeout="$FUZZ_TIMEOUT" -print_final_stats=1 >"$log" 2>&1 || status=$?

    # Last status line libFuzzer printed, e.g. "#123 REDUCE cov: 812 ft: 2040 corp: 90/5Kb ... exec/s: 4100".
    stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<< "$stats")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<< "$stats")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<< "$stats")
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
    eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -n 1)
    if [[ $status -eq 0 ]]; then
        verdict=ok
    else
        verdict="FAILED (exit $status, log fuzz/$log"
        artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        [[ -n "$artifact" ]] && verdict+=", input $artifact"
        verdict+=")"
        failed=1
        tail -n 40 "$log" >&2
    fi
    summary+=("$(printf '%-14s %s runs=%s exec/s=%s cov=%s ft=%s corpus=%s' \
        "$target" "$verdict" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done

echo "smoke.sh: summary (${FUZZ_SECONDS} s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
