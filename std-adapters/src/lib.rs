//! # tollgate
//!
//! Rate limiting for Rust services, built on the lock-free, `no_std`
//! [`tollgate-core`](tollgate_core). This crate re-exports the core and adds
//! what needs `std`:
//!
//! - clocks: [`MonotonicClock`] and [`CoarseClock`], with a wall-clock
//!   anchor for reset times ([`clock`], [`time_fmt`]);
//! - [`keyed`]: fixed-capacity, lock-free keyed stores for millions of
//!   clients (GCRA, window counters, per-key concurrency);
//! - [`headers`]: `Retry-After`, `X-RateLimit-*` and the IETF `RateLimit`
//!   fields (into `http::HeaderMap` with feature `http`);
//! - `body` (feature `serde`): the 429 bodies of the seed APIs;
//! - `policy` (feature `policy`, on by default): the declarative TOML policy
//!   engine;
//! - `redis` (feature `redis`): the same policies shared by a fleet;
//! - `tower` (feature `tower`): a policy as tower middleware.
//!
//! The README's feature table says what each covers and how it is verified.
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
