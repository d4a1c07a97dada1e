#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/fmt.sh: cargo fmt --check"
rustup component add rustfmt >/dev/null 2>&1 || true
cargo fmt --all -- --check
