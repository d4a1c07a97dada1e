#!/usr/bin/env bash
# The core for three embedded targets, then the firmware-shaped smoke crate.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf)
echo "== ci/embedded.sh: ${targets[*]}"
rustup target add "${targets[@]}"
# thumbv7em has 32-bit CAS (portable-atomic provides the 64-bit word);
# thumbv6m and riscv32imc have no CAS at all: the final binary picks a
# critical-section implementation, so build the core with that feature.
cargo build -p tollgate-core --target thumbv7em-none-eabihf
cargo build -p tollgate-core --target thumbv6m-none-eabi --features critical-section
cargo build -p tollgate-core --target riscv32imc-unknown-none-elf --features critical-section
cd tests/no_std-smoke
for t in "${targets[@]}"; do
    echo "-- smoke crate for $t"
    cargo build --release --target "$t"
done
# thumbv7em with interrupts disabled around the 64-bit word instead of
# portable-atomic's spinlocks (the configuration ci/size.sh also measures).
echo "-- smoke crate for thumbv7em-none-eabihf, feature single-core"
cargo build --release --target thumbv7em-none-eabihf --features single-core
