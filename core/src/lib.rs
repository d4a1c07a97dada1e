//! # tollgate-core
//!
//! The `no_std`, allocation-free, lock-free core of
//! [tollgate](https://docs.rs/tollgate): rate-limiting algorithms on atomics,
//! with **time as an argument**.
//!
//! * [`Gcra`] — GCRA (a token bucket in one `AtomicU64`), `const fn new` so it
//!   can live in a `static`.
//! * [`Quota`] — rate, period and burst, validated once.
//! * [`Decision`] — allowed (remaining, reset), denied (exact retry-after), or
//!   cost exceeds capacity (retrying cannot help).
//! * [`Nanos`], [`Clock`], [`ManualClock`] — time as a value; the core never
//!   reads a clock.
//!
//! The arithmetic of each algorithm is a pure function ([`gcra::decide`]);
//! the limiter type wraps it in a compare-and-swap loop.
//!
//! ```
//! use core::num::NonZeroU32;
//! use tollgate_core::{Gcra, Nanos, Quota};
//!
//! let limiter = Gcra::new(Quota::per_minute(NonZeroU32::new(100).unwrap()));
//! let now = Nanos::from_secs(12); // from whatever clock you have
//! let d = limiter.check(now);
//! assert!(d.is_allowed());
//! assert_eq!(d.remaining(), 99);
//! ```
//!
//! ## Targets
//!
//! Builds for any target `portable-atomic` supports. On targets without atomic
//! compare-and-swap (thumbv6m, riscv32imc) enable this crate's
//! `critical-section` feature and provide a `critical-section` implementation,
//! or `unsafe-assume-single-core` on single-core chips; tollgate never enables
//! either on its own.
#![no_std]
#![forbid(unsafe_code)]

mod all;
mod decision;
pub mod gcra;
mod lease;
mod limiter;
mod quota;
mod semaphore;
mod sliding_log;
mod slots;
mod sync;
mod time;
pub mod token_bucket;
pub mod window;

pub use all::{All, AllDecision, Members};
pub use decision::{Decision, Snapshot};
pub use gcra::Gcra;
pub use lease::{Lease, LeaseError, LeaseSemaphore};
pub use limiter::Limiter;
pub use quota::{MAX_CAPACITY, Quota, QuotaError};
pub use semaphore::{AcquireError, Permit, ReleaseError, Semaphore};
pub use sliding_log::{LogError, LogState, SlidingLog};
pub use time::{Clock, ManualClock, Nanos};
pub use token_bucket::TokenBucket;
pub use window::{FixedRule, FixedWindow, SlidingRule, SlidingWindow, WindowError};
