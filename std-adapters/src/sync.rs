//! The one atomics switch of the std layer: `portable-atomic` normally, loom
//! under `--cfg tollgate_loom` (loom then explores every interleaving of the
//! keyed store's atomic operations, with their exact memory orderings).

#[cfg(not(tollgate_loom))]
pub(crate) use portable_atomic::{AtomicU64, Ordering};

/// Waits a little before retrying a contended lock.
#[cfg(not(tollgate_loom))]
pub(crate) fn backoff(b: &crossbeam_utils::Backoff) {
    b.snooze();
}

#[cfg(tollgate_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(tollgate_loom)]
pub(crate) fn backoff(_: &crossbeam_utils::Backoff) {
    loom::thread::yield_now();
}
