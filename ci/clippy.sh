#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/clippy.sh: cargo clippy --all-targets -D warnings"
rustup component add clippy >/dev/null 2>&1 || true
cargo clippy --workspace --all-targets -- -D warnings
# tollgate-core's features pick mutually exclusive portable-atomic backends:
# only the std crate is linted with every feature.
cargo clippy -p tollgate --all-targets --all-features -- -D warnings
# The loom build compiles different code (cfg tollgate_loom): lint it too.
RUSTFLAGS="--cfg tollgate_loom" CARGO_TARGET_DIR=target/loom \
    cargo clippy -p tollgate-core -p tollgate --all-targets -- -D warnings
