//! The one atomics switch of the std layer: `portable-atomic` normally, loom
//! under `--cfg tollgate_loom`.
//!
//! Loom has no 128-bit atomic, so under loom `AtomicU128` is a mutex-guarded
//! stand-in with the same linearizable `load` / `compare_exchange` contract
//! (loom explores every interleaving of the operations around it).

#[cfg(not(tollgate_loom))]
pub(crate) use portable_atomic::{AtomicU8, AtomicU128, Ordering};

/// Waits a little before retrying a contended lock.
#[cfg(not(tollgate_loom))]
pub(crate) fn backoff(b: &crossbeam_utils::Backoff) {
    b.snooze();
}

#[cfg(tollgate_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, Ordering};

#[cfg(tollgate_loom)]
pub(crate) fn backoff(_: &crossbeam_utils::Backoff) {
    loom::thread::yield_now();
}

#[cfg(tollgate_loom)]
#[derive(Debug)]
pub(crate) struct AtomicU128(loom::sync::Mutex<u128>);

#[cfg(tollgate_loom)]
impl AtomicU128 {
    pub(crate) fn new(v: u128) -> Self {
        AtomicU128(loom::sync::Mutex::new(v))
    }

    pub(crate) fn load(&self, _: Ordering) -> u128 {
        *self.0.lock().unwrap()
    }

    pub(crate) fn compare_exchange(
        &self,
        current: u128,
        new: u128,
        _: Ordering,
        _: Ordering,
    ) -> Result<u128, u128> {
        let mut v = self.0.lock().unwrap();
        if *v == current {
            *v = new;
            Ok(current)
        } else {
            Err(*v)
        }
    }
}
