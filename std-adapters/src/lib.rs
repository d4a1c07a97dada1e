//! # tollgate
//!
//! Rate limiting for Rust services, built on the lock-free, `no_std`
//! [`tollgate-core`](tollgate_core). This crate re-exports the core and adds
//! what needs `std`: a real [`MonotonicClock`]. Keyed stores, headers, 429
//! bodies and the policy engine are being built (see the README's feature
//! table).
//!
//! ```
//! use std::num::NonZeroU32;
//! use tollgate::{Clock, Gcra, MonotonicClock, Quota};
//!
//! let clock = MonotonicClock::new();
//! let limiter = Gcra::new(Quota::per_second(NonZeroU32::new(10).unwrap()));
//! assert!(limiter.check(clock.now()).is_allowed());
//! ```
#![forbid(unsafe_code)]

#[cfg(feature = "serde")]
pub mod body;
pub mod clock;
pub mod headers;
pub mod keyed;
#[cfg(feature = "policy")]
pub mod policy;
#[cfg(feature = "redis")]
pub mod redis;
mod sync;
pub mod time_fmt;
#[cfg(feature = "tower")]
pub mod tower;

pub use clock::{CoarseClock, MonotonicClock};
// Everything of the core, so users depend on this crate alone.
pub use tollgate_core::*;

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
