#!/usr/bin/env bash
# Miri on the core's unit tests and property tests (few cases: miri is slow).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/miri.sh: cargo +nightly miri test -p tollgate-core"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
rustup +nightly component add miri rust-src
export CARGO_TARGET_DIR=target/miri
export PROPTEST_CASES="${PROPTEST_CASES:-4}"
# Proptest forks nothing and persists nothing here; miri needs no isolation
# escape except the environment variable above.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-env-forward=PROPTEST_CASES}"
cargo +nightly miri setup
timeout "${MIRI_TIMEOUT:-1200}" cargo +nightly miri test -p tollgate-core --lib --tests
