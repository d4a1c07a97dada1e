#!/usr/bin/env bash
# The README's test command, then the doc tests on their own line.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/test.sh: cargo test --workspace"
cargo test --workspace
echo "== ci/test.sh: tollgate with every feature (http, serde)"
cargo test -p tollgate --all-features
echo "== ci/test.sh: cargo test --workspace --doc"
cargo test --workspace --doc
