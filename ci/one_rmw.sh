#!/usr/bin/env bash
# The core's tests with `--cfg tollgate_one_rmw`: `Gcra::check_n` then takes
# the single-compare-exchange path that targets without a native 64-bit CAS
# use (thumbv7em), so that path runs on the build machine too. Its loom
# models run in ci/loom.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/one_rmw.sh: tollgate-core tests, --cfg tollgate_one_rmw"
RUSTFLAGS="--cfg tollgate_one_rmw" CARGO_TARGET_DIR=target/one-rmw \
    cargo test -p tollgate-core
