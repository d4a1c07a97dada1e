//! The one switch for atomics.
//!
//! Every other module imports its atomic types from here and nowhere else.
//! Under `--cfg tollgate_loom` they come from [`loom`](https://docs.rs/loom) so
//! the model checker can explore every interleaving of the CAS paths; otherwise
//! they come from [`portable-atomic`](https://docs.rs/portable-atomic), which
//! gives a 64-bit atomic on every target, including ones without native 64-bit
//! (thumbv7em) or without any CAS (thumbv6m, riscv32imc — there the final
//! binary picks `critical-section` or `unsafe-assume-single-core`).
//!
//! The cfg name is prefixed (`tollgate_loom`, not `loom`) so that a dependant's
//! own loom build does not switch ours.

#[cfg(tollgate_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[cfg(not(tollgate_loom))]
pub(crate) use portable_atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// One step of a bounded wait for another thread: a spin-loop hint, or under
/// loom a yield (so that the model lets the awaited thread run).
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(tollgate_loom)]
    loom::thread::yield_now();
    #[cfg(not(tollgate_loom))]
    core::hint::spin_loop();
}
