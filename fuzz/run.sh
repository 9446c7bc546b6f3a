#!/usr/bin/env bash
# Builds every fuzz target once and runs each for a bounded time on a copy of its seed corpus (the
# committed corpus never grows here). Exits non-zero on the first target that crashes, panics, hangs
# (libFuzzer's -timeout) or runs out of memory, and prints the input that did it.
#
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated targets to run (default: all)
#   FUZZ_WORK      where the corpus copies and crash inputs go (default: a temporary directory, removed at
#                  the end unless something crashed)
#
# Nightly Rust and cargo-fuzz are installed only where missing. Builds go to CARGO_TARGET_DIR_FUZZ
# (default ~/.cache/jeton-fuzz-target, kept between runs; never the main workspace's CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$HOME/.cache/jeton-fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# As `cargo fuzz run` sets it (Rust's globals trip ASan's ODR check).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

# cargo-fuzz needs nightly's -Z flags. Where no nightly toolchain is installed and none can be fetched,
# the stable toolchain takes them with RUSTC_BOOTSTRAP=1 (it ships the sanitizer runtimes too).
if rustup run nightly rustc --version >/dev/null 2>&1 \
    || timeout 120 rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "-- no nightly toolchain: using the stable one with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "-- installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version '^0.13'
fi

mapfile -t all < <("${fuzz[@]}" list)
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    targets=("${all[@]}")
fi

echo "-- building ${#all[@]} fuzz targets (nightly, address sanitizer, debug assertions)"
"${fuzz[@]}" build -O -a

work="${FUZZ_WORK:-$(mktemp -d)}"
keep=
cleanup() { if [ -z "$keep" ] && [ -z "${FUZZ_WORK:-}" ]; then rm -rf "$work"; fi; }
trap cleanup EXIT

bin_dir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
failed=()
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t/"
    rm -rf "$corpus" "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "corpus/$t" ]; then cp -r "corpus/$t/." "$corpus/"; fi
    echo "-- $t: ${seconds}s on $(find "$corpus" -type f | wc -l) seeds"
    log="$work/$t.log"
    # -timeout: one input may take at most 10 s (a hang is a finding); -rss_limit_mb: 2 GiB.
    if "$bin_dir/$t" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
        # Executions, their rate, and the coverage reached (libFuzzer's last line: cov, ft, corpus).
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" | tr -s ' \n' '  '
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || echo

    else
        keep=1
        failed+=("$t")
        # What went wrong, without the stack traces (they stay in the log).
        grep -E -A4 "panicked at|^==[0-9]+==ERROR|^SUMMARY|ALARM: working on the last Unit|out-of-memory" "$log" | head -n 40 || true
        crash="$(find "$artifacts" -type f | head -n 1)"
        echo "!! $t failed; the input: ${crash:-none written (see $log)}"
        echo "!! reproduce: cd fuzz && cargo +nightly fuzz run -O -a $t ${crash:-}"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs and logs kept in $work)"
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets ran ${seconds}s each without a finding"
