#!/usr/bin/env bash
# Loom models of every CAS path, bounded: LOOM_MAX_PREEMPTIONS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/loom.sh: loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2})"
export RUSTFLAGS="--cfg tollgate_loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR=target/loom
cargo test -p tollgate-core --release --test 'loom*'
# The same core models on the single-compare-exchange check (the path of
# targets without a native 64-bit CAS; see ONE_RMW in core/src/gcra.rs).
RUSTFLAGS="--cfg tollgate_loom --cfg tollgate_one_rmw" CARGO_TARGET_DIR=target/loom-one-rmw \
    cargo test -p tollgate-core --release --test 'loom*'
cargo test -p tollgate --release --test 'loom*'
