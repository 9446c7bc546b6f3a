#!/usr/bin/env bash
# Rewrites the seed corpora (corpus/<target>/) with examples/seeds.rs. It is built with the flags
# `cargo fuzz build -O -a` uses (cargo-fuzz 0.13), into the same target directory, so it reuses the fuzz
# build's dependencies instead of building them all again.
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$HOME/.cache/jeton-fuzz-target}"
toolchain=(+nightly)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    export RUSTC_BOOTSTRAP=1
    toolchain=()
fi
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    -Zsanitizer=address
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cdebug-assertions
    -Ccodegen-units=1
)
RUSTFLAGS=" ${flags[*]}" cargo "${toolchain[@]}" build --release --config 'profile.release.debug="line-tables-only"' \
    --target x86_64-unknown-linux-gnu --example seeds
# Leaks: the node of the fixture is never torn down.
ASAN_OPTIONS=detect_odr_violation=0:detect_leaks=0 "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/examples/seeds"
