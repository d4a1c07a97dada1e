#!/usr/bin/env bash
# Bounded fuzz smoke: every cargo-fuzz target for FUZZ_SECONDS (default 45 s),
# starting from the committed seed corpus; any crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-45}"
echo "== ci/fuzz.sh: ${secs}s per target"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
cd fuzz
# Listed first so that a failure here fails the script.
targets="$(cargo +nightly fuzz list)"
for target in $targets; do
    echo "-- fuzz target $target"
    # New inputs go to a scratch corpus under target/, never into the
    # committed seeds.
    work="target/corpus-work/$target"
    mkdir -p "$work"
    cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=4096 -print_final_stats=1
done
