//! Limits shared by a fleet through Redis (feature `redis`).
//!
//! Every process of a service asks one Redis; a Lua script (`check.lua`,
//! loaded once per server: `EVALSHA`, `EVAL` on `NOSCRIPT`) decides
//! atomically on the server, reading the server's clock (`TIME`), so every
//! process shares one clock and one state. The arithmetic is the core's:
//! GCRA ([`Quota`]), fixed windows ([`FixedRule`]) and sliding windows
//! ([`SlidingRule`]); the client rebuilds each exact [`Decision`] with the
//! core's own functions from the state the script saw.
//!
//! * **All or nothing**: [`RedisLimiter::check_all`] checks several members
//!   (per-minute AND per-hour, key AND org pool) in one script call; a
//!   refusal writes nothing.
//! * **Redis Cluster**: all keys of one call share a hash tag, the `tag`
//!   argument (`{tag}` in every key), so one call touches one slot.
//! * **Expiry**: a written key gets `PX` = the time until its state is
//!   fresh (equal to a missing key), so idle keys vanish by themselves.
//! * **Refunds** give back only what a charge still weighs when they come
//!   (as the in-process [`KeyedLimiter::refund_since`]): a GCRA member gets
//!   `cost × T` less the time since the charge (nothing once the bucket has
//!   regenerated it by itself), a fixed or sliding window member its units
//!   only while the refund falls in the window the charge counted in
//!   (fixed: `(t + offset) / W`, sliding: `t / W`), else nothing. So a slow
//!   `304` never takes a unit off a later window or lets a refilled bucket
//!   admit more than its burst. The `_since` methods and
//!   [`complete`](RedisLimiter::complete) pass the admission's time; the
//!   others refund units charged at the refund's own time.
//! * **Failures**: each command has a timeout; when Redis is unreachable or
//!   slow the limiter answers in its [`FailMode`] (open, closed, or a local
//!   in-process limiter at a share of the limit), reports the change through
//!   [`RedisLimiter::on_health`], stays degraded for
//!   [`RedisConfig::retry_interval`] without waiting on Redis, then tries
//!   again. It never panics on a Redis error.
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use tollgate::redis::{FailMode, Member, RedisConfig, RedisLimiter, RedisRule};
//! use tollgate::Quota;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisLimiter::new(
//!     "redis://127.0.0.1:6379/",
//!     RedisConfig { fail_mode: FailMode::Local { share: 0.25 }, ..RedisConfig::default() },
//! )?;
//! let per_minute = RedisRule::gcra(Quota::per_minute(NonZeroU32::new(100).unwrap()));
//! let pool = RedisRule::gcra(Quota::per_minute(NonZeroU32::new(1_000).unwrap()));
//! // Key "k1" and its organisation's pool, all or nothing, in slot {acme}.
//! let d = limiter
//!     .check_all("acme", &[Member::new("key:k1", per_minute, 1), Member::new("pool", pool, 1)])
//!     .await;
//! if !d.decision.is_allowed() {
//!     // 429 with Retry-After: d.decision.retry_after()
//! }
//! # Ok(()) }
//! ```

mod call;
#[cfg(feature = "policy")]
mod engine;
mod fallback;
mod script;

#[cfg(feature = "policy")]
pub use engine::{PolicyOutcome, RedisAdmission};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use tollgate_core::window::{FixedRule, SlidingRule};
use tollgate_core::{Decision, Nanos, Quota, Snapshot};

use crate::clock::MonotonicClock;
use crate::keyed::{KeyedGcra, KeyedLimiter};
use fallback::{combine, unreadable};
use script::{NANOS_PER_SEC, Op, Reply};

/// What a Redis-backed check answers while Redis is unreachable or slow.
///
/// ```
/// use tollgate::redis::FailMode;
/// assert_eq!(FailMode::default(), FailMode::Closed);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum FailMode {
    /// Admit everything a rule could ever admit (availability first;
    /// nothing is counted); a cost above a rule's capacity is still
    /// `ExceedsCapacity`.
    Open,
    /// Refuse everything, with `retry_after` = the retry interval (the
    /// default: never looser than the limit).
    #[default]
    Closed,
    /// Decide with an in-process GCRA per key that admits at most `share`
    /// (0 < share <= 1) of each member's rule — e.g. `1 / processes`, so the
    /// fleet together admits within the limit *during the outage*. Each
    /// process counts alone, from a fresh store: what Redis counted before
    /// the outage is not known locally, so a window Redis had already
    /// filled can admit up to about one more limit across the fleet while
    /// Redis is away (and a Redis restarted without persistence starts its
    /// counts fresh too). Use [`Closed`](Self::Closed) where no window may
    /// ever exceed its limit.
    ///
    /// * A **GCRA** rule (`limit` per `period`, burst `B`) runs locally at
    ///   one unit per `T / share` (`T` the rule's emission interval, rounded
    ///   up), burst `max(1, floor(B × share))`. A burst cannot be below 1:
    ///   with a burst (or limit) below `1 / share` each process may still
    ///   admit 1 at once, but its rate stays `share` of the rule's (`share`
    ///   0.1 of 1 per minute: 1 per 10 minutes per process).
    /// * A **fixed or sliding window** (`L` per window `W`) runs locally as a
    ///   GCRA that never admits more than `n = floor(L × share)` in any span
    ///   of `W` — no calendar window, no sliding window — with a burst of
    ///   `ceil(n / 2)` and `floor(n / 2) + 1` per `W` sustained: **about half
    ///   the share** over time (a GCRA with a full-window burst would admit
    ///   nearly `2n` in one window). With `n == 0`, one unit per
    ///   `W / (L × share)`.
    /// * A rule whose local share cannot be represented (one unit per more
    ///   than about 292 years) is refused locally, as in [`Closed`](Self::Closed).
    /// * A cost the rule would hold but the local burst cannot is refused
    ///   until the next retry, not answered `ExceedsCapacity`.
    ///
    /// Products `x × share` are rounded as f64 arithmetic rounds them
    /// (`30 × (1.0 / 3.0)` is 10); times divided by `share` are rounded up.
    Local {
        /// Fraction of each limit this process may admit on its own.
        share: f64,
    },
}

/// Settings of a [`RedisLimiter`].
///
/// ```
/// use std::time::Duration;
/// use tollgate::redis::{FailMode, RedisConfig};
///
/// let c = RedisConfig { timeout: Duration::from_millis(20), fail_mode: FailMode::Open, ..RedisConfig::default() };
/// assert_eq!(c.prefix, "tollgate:");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// Prepended to every key (must not contain `{` or `}`).
    pub prefix: String,
    /// Longest wait for one script call before the fail mode answers.
    pub timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// What to answer while Redis fails.
    pub fail_mode: FailMode,
    /// After a failure, how long to answer in the fail mode without trying
    /// Redis (one caller then tries again).
    pub retry_interval: Duration,
    /// Keys the local fallback store holds ([`FailMode::Local`]).
    pub local_capacity: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            prefix: "tollgate:".to_owned(),
            timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(500),
            fail_mode: FailMode::Closed,
            retry_interval: Duration::from_secs(1),
            local_capacity: 1 << 16,
        }
    }
}

/// Why a [`RedisLimiter`] could not be built: what to change.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL was not a Redis URL.
    Url(redis::RedisError),
    /// A setting is out of range.
    Config(&'static str),
}

impl fmt::Display for RedisSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisSetupError::Url(e) => {
                write!(f, "not a Redis URL ({e}); use e.g. redis://127.0.0.1:6379/")
            }
            RedisSetupError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RedisSetupError {}

/// Why a window rule cannot run on Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedWindow {
    /// The window asked for.
    pub window: Nanos,
}

impl fmt::Display for UnsupportedWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a Redis window must be a whole number of seconds between 1 s and {MAX_WINDOW_SECS} s \
             (104 days), not {} ns; use a GCRA quota for other periods",
            self.window.as_u64()
        )
    }
}

impl std::error::Error for UnsupportedWindow {}

/// Longest window the script handles exactly (`W` in ns below 2^53).
pub const MAX_WINDOW_SECS: u64 = (1 << 53) / NANOS_PER_SEC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gcra(Quota),
    Fixed(FixedRule),
    Sliding(SlidingRule),
}

/// A limit the Redis script can enforce: a GCRA quota, or a fixed or
/// sliding window of whole seconds.
///
/// ```
/// use std::num::NonZeroU32;
/// use tollgate::redis::RedisRule;
/// use tollgate::window::FixedRule;
/// use tollgate::{Nanos, Quota};
///
/// let _ = RedisRule::gcra(Quota::per_second(NonZeroU32::new(5).unwrap()));
/// let hour = FixedRule::new(NonZeroU32::new(100).unwrap(), Nanos::from_secs(3_600), Nanos::ZERO).unwrap();
/// assert!(RedisRule::fixed(hour).is_ok());
/// let odd = FixedRule::new(NonZeroU32::new(1).unwrap(), Nanos::from_millis(1_500), Nanos::ZERO).unwrap();
/// assert!(RedisRule::fixed(odd).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisRule {
    kind: Kind,
}

fn whole_seconds(window: Nanos) -> Result<(), UnsupportedWindow> {
    let w = window.as_u64();
    if w == 0 || w % NANOS_PER_SEC != 0 || w / NANOS_PER_SEC > MAX_WINDOW_SECS {
        return Err(UnsupportedWindow { window });
    }
    Ok(())
}

impl RedisRule {
    /// GCRA: any quota.
    pub const fn gcra(quota: Quota) -> RedisRule {
        RedisRule {
            kind: Kind::Gcra(quota),
        }
    }

    /// A fixed window; its offset applies to the server's Unix time, so
    /// `Nanos::ZERO` gives calendar (UTC) windows.
    pub fn fixed(rule: FixedRule) -> Result<RedisRule, UnsupportedWindow> {
        whole_seconds(rule.window())?;
        Ok(RedisRule {
            kind: Kind::Fixed(rule),
        })
    }

    /// A sliding window (windows aligned to multiples of `W` in Unix time).
    pub fn sliding(rule: SlidingRule) -> Result<RedisRule, UnsupportedWindow> {
        whole_seconds(rule.window())?;
        Ok(RedisRule {
            kind: Kind::Sliding(rule),
        })
    }

    /// The most cost this rule admits at once.
    fn capacity(&self) -> u32 {
        match self.kind {
            Kind::Gcra(q) => q.burst().get(),
            Kind::Fixed(r) => r.limit(),
            Kind::Sliding(r) => r.limit(),
        }
    }
}

/// One member of a check: a key (under the call's hash tag), its rule and
/// the cost to charge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key, unique per rule (e.g. `"key:k1:minute"`).
    pub key: &'a str,
    /// The limit.
    pub rule: RedisRule,
    /// Units to charge (or refund).
    pub cost: u32,
}

impl<'a> Member<'a> {
    /// A member.
    pub const fn new(key: &'a str, rule: RedisRule, cost: u32) -> Member<'a> {
        Member { key, rule, cost }
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Decided by the script on Redis.
    Redis,
    /// Redis failed: admitted uncounted ([`FailMode::Open`]).
    FailOpen,
    /// Redis failed: refused ([`FailMode::Closed`]).
    FailClosed,
    /// Redis failed: decided by the local limiter ([`FailMode::Local`]).
    Local,
}

/// The answer to [`RedisLimiter::check_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct RedisDecision {
    /// The combined decision (as [`All`](crate::All)): allowed with the
    /// smallest `remaining` and largest `reset_after`; denied with the
    /// longest `retry_after` of the refusing members; or the first member
    /// whose capacity the cost exceeds.
    pub decision: Decision,
    /// The refusing member, or on admission the one with the least
    /// remaining (the binding limit, for headers).
    pub member: usize,
    /// Each member's own decision, in order.
    pub members: Vec<Decision>,
    /// Who decided.
    pub source: Source,
    /// When, in Unix ns: Redis' clock (or this machine's when degraded:
    /// for [`check_all`](RedisLimiter::check_all), the limiter's monotonic
    /// clock as Unix time, so that [`refund_to_since`](RedisLimiter::refund_to_since)
    /// can find when the local store charged), or the caller's time for
    /// [`check_all_at`](RedisLimiter::check_all_at). Pass it as the
    /// `charged_at` of a later refund.
    pub now: Nanos,
}

/// The answer to [`RedisLimiter::refund_all`]: each member's state after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisRefund {
    /// Read-outs after the refund, in order (fresh read-outs when degraded
    /// without a local store).
    pub members: Vec<Snapshot>,
    /// Who applied it.
    pub source: Source,
}

/// A change of the limiter's health, passed to the
/// [`on_health`](RedisLimiter::on_health) callback.
#[derive(Clone, Debug, PartialEq)]
pub enum HealthEvent {
    /// Redis failed; answers come from the fail mode until it recovers.
    Degraded {
        /// The mode now answering.
        mode: FailMode,
        /// What failed.
        error: String,
    },
    /// A script call succeeded again.
    Recovered {
        /// How long the limiter was degraded.
        after: Duration,
    },
}

/// Counters since the limiter was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Answers decided by Redis.
    pub redis: u64,
    /// Answers given in the fail mode.
    pub degraded: u64,
    /// Script calls that failed (errors and timeouts).
    pub failures: u64,
    /// Of those, timeouts.
    pub timeouts: u64,
    /// Script answers the core disagreed with (0 unless the script and the
    /// core differ; the script's verdict stands).
    pub mismatches: u64,
}

type Callback = Box<dyn Fn(&HealthEvent) + Send + Sync>;

struct Inner {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    config: RedisConfig,
    sha: String,
    clock: MonotonicClock,
    /// 0 while healthy, else the clock's time (+1) when it degraded.
    down_since: AtomicU64,
    /// While degraded, no call tries Redis before this time.
    retry_at: AtomicU64,
    local: Option<KeyedLimiter<KeyedGcra>>,
    on_health: OnceLock<Callback>,
    redis: AtomicU64,
    degraded: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    mismatches: AtomicU64,
}

/// A rate limiter whose state lives in Redis. Cheap to clone (one shared
/// connection, multiplexed and pipelined by the `redis` crate's
/// `ConnectionManager`, which reconnects by itself). Needs a tokio runtime.
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// A limiter for the Redis at `url` (`redis://host:port/db`). Does not
    /// connect yet: the first check does, so a service starts while Redis
    /// is down (and answers in its fail mode).
    ///
    /// ```
    /// use tollgate::redis::{FailMode, RedisConfig, RedisLimiter};
    /// assert!(RedisLimiter::new("redis://127.0.0.1:6379/", RedisConfig::default()).is_ok());
    /// assert!(RedisLimiter::new("http://x", RedisConfig::default()).is_err());
    /// let bad = RedisConfig { fail_mode: FailMode::Local { share: 0.0 }, ..RedisConfig::default() };
    /// assert!(RedisLimiter::new("redis://127.0.0.1/", bad).is_err());
    /// ```
    pub fn new(url: &str, config: RedisConfig) -> Result<RedisLimiter, RedisSetupError> {
        let client = redis::Client::open(url).map_err(RedisSetupError::Url)?;
        if config.prefix.contains(['{', '}']) {
            return Err(RedisSetupError::Config(
                "the key prefix must not contain '{' or '}' (they delimit the hash tag)",
            ));
        }
        if config.timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(RedisSetupError::Config(
                "timeouts must be greater than zero",
            ));
        }
        let local = match config.fail_mode {
            FailMode::Local { share } => {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(RedisSetupError::Config(
                        "FailMode::Local share must be in (0, 1], e.g. 1 / number of processes",
                    ));
                }
                Some(
                    KeyedLimiter::new(config.local_capacity.max(1)).map_err(|_| {
                        RedisSetupError::Config("local_capacity is too large for the local store")
                    })?,
                )
            }
            _ => None,
        };
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                client,
                conn: tokio::sync::OnceCell::new(),
                sha: redis::Script::new(script::SOURCE).get_hash().to_owned(),
                config,
                clock: MonotonicClock::new(),
                down_since: AtomicU64::new(0),
                retry_at: AtomicU64::new(0),
                local,
                on_health: OnceLock::new(),
                redis: AtomicU64::new(0),
                degraded: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                mismatches: AtomicU64::new(0),
            }),
        })
    }

    /// Sets the callback told of every change of health (a metric, a log
    /// line). Called on the checking task; keep it short. Returns `false`
    /// (and drops `f`) if one was already set.
    pub fn on_health(&self, f: impl Fn(&HealthEvent) + Send + Sync + 'static) -> bool {
        self.inner.on_health.set(Box::new(f)).is_ok()
    }

    /// Whether answers currently come from the fail mode.
    pub fn is_degraded(&self) -> bool {
        // Relaxed: a status read-out; no other memory depends on it.
        self.inner.down_since.load(Ordering::Relaxed) != 0
    }

    /// Counters since the limiter was built.
    pub fn stats(&self) -> RedisStats {
        let i = &self.inner;
        // Relaxed: independent counters, read for reporting only.
        RedisStats {
            redis: i.redis.load(Ordering::Relaxed),
            degraded: i.degraded.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            timeouts: i.timeouts.load(Ordering::Relaxed),
            mismatches: i.mismatches.load(Ordering::Relaxed),
        }
    }

    /// The Redis key of `key` under hash tag `tag`: `prefix{tag}:key`.
    /// `{`, `}` and `%` in the tag are percent-encoded (so the braces always
    /// delimit exactly the tag) and an empty tag is written `%`, so distinct
    /// (tag, key) pairs never share a Redis key and all keys of one tag hash
    /// to one Cluster slot.
    ///
    /// ```
    /// use tollgate::redis::{RedisConfig, RedisLimiter};
    /// let l = RedisLimiter::new("redis://127.0.0.1/", RedisConfig::default()).unwrap();
    /// assert_eq!(l.key("acme", "pool"), "tollgate:{acme}:pool");
    /// assert_eq!(l.key("a}b", "k"), "tollgate:{a%7Db}:k");
    /// assert_eq!(l.key("", "k"), "tollgate:{%}:k");
    /// ```
    pub fn key(&self, tag: &str, key: &str) -> String {
        let mut out =
            String::with_capacity(self.inner.config.prefix.len() + tag.len() + key.len() + 4);
        out.push_str(&self.inner.config.prefix);
        out.push('{');
        if tag.is_empty() {
            out.push('%');
        }
        for c in tag.chars() {
            match c {
                '%' => out.push_str("%25"),
                '{' => out.push_str("%7B"),
                '}' => out.push_str("%7D"),
                c => out.push(c),
            }
        }
        out.push_str("}:");
        out.push_str(key);
        out
    }

    /// Checks one GCRA key: `check_all(key, [Member::new("", quota, cost)])`.
    pub async fn check(&self, key: &str, quota: &Quota, cost: u32) -> RedisDecision {
        self.check_all(key, &[Member::new("", RedisRule::gcra(*quota), cost)])
            .await
    }

    /// Admits `members` all or nothing, in one script call on the keys
    /// `prefix{tag}:member.key`, at the server's time.
    pub async fn check_all(&self, tag: &str, members: &[Member<'_>]) -> RedisDecision {
        self.check_inner(tag, members, None, None).await
    }

    /// [`check_all`](Self::check_all) at a time the caller gives (Unix ns,
    /// or any clock all callers share) instead of the server's `TIME`: for
    /// tests and simulations. Do not mix with server time on the same keys.
    /// The server cannot tell when a caller's time passes, so keys written
    /// this way live a minute longer than their state needs.
    pub async fn check_all_at(
        &self,
        tag: &str,
        members: &[Member<'_>],
        now: Nanos,
    ) -> RedisDecision {
        self.check_inner(tag, members, Some(now), Some(now)).await
    }

    /// Gives back each member's `cost` (a `304` that costs nothing), never
    /// past a fresh state. Independent per member, at the server's time.
    ///
    /// The units count as **charged now**: all of `cost` comes back (as far
    /// as the state holds it). For a refund that comes later than its
    /// admission — a response that took a while — use
    /// [`refund_to_since`](Self::refund_to_since) with the admission's
    /// time: refunded as of now, a late refund would take a unit off a
    /// window that rolled over since, or off a bucket that has refilled,
    /// and admit one more than the limit.
    ///
    /// It refunds wherever the limiter answers *now*: in Redis, or while
    /// Redis fails in the fail mode (the local store in
    /// [`FailMode::Local`], else nowhere). That is only right when the
    /// units were charged there; to refund a [`RedisDecision`] use
    /// [`refund_to_since`](Self::refund_to_since) (or
    /// [`refund_to`](Self::refund_to)) with its `source`, which never gives
    /// Redis units it did not charge (an admission made while Redis was
    /// down) nor the local store units Redis charged.
    pub async fn refund_all(&self, tag: &str, members: &[Member<'_>]) -> RedisRefund {
        self.refund_inner(tag, members, None, None).await
    }

    /// Gives back each member's `cost` where it was charged: `source` is the
    /// [`RedisDecision::source`] of the admission.
    ///
    /// * [`Source::Redis`]: in Redis, at the server's time. If Redis cannot
    ///   be reached now, nothing is given back (`None`): the local store
    ///   never charged these units.
    /// * [`Source::Local`]: in this process' local store (`None` when the
    ///   limiter has none), even if Redis is back.
    /// * [`Source::FailOpen`], [`Source::FailClosed`]: nothing was charged,
    ///   so nothing is given back (`None`).
    ///
    /// The units count as **charged now** (all of `cost` comes back): right
    /// only for a refund made at once. A later one must say when the units
    /// were charged: [`refund_to_since`](Self::refund_to_since).
    pub async fn refund_to(
        &self,
        source: Source,
        tag: &str,
        members: &[Member<'_>],
    ) -> Option<RedisRefund> {
        self.refund_to_inner(source, tag, members, None, None, None)
            .await
    }

    /// [`refund_to`](Self::refund_to) at a time the caller gives (as
    /// [`check_all_at`](Self::check_all_at)); the units count as charged
    /// at `now` (see [`refund_to_since_at`](Self::refund_to_since_at)).
    pub async fn refund_to_at(
        &self,
        source: Source,
        tag: &str,
        members: &[Member<'_>],
        now: Nanos,
    ) -> Option<RedisRefund> {
        self.refund_to_inner(source, tag, members, None, Some(now), Some(now))
            .await
    }

    /// Gives back, where they were charged (as [`refund_to`](Self::refund_to)),
    /// the units of an admission made at `charged_at` — the
    /// [`RedisDecision::now`] of a [`check_all`](Self::check_all) — as far
    /// as that charge still weighs now:
    ///
    /// * a **GCRA** member gets back `cost × T` less the time since
    ///   `charged_at` (nothing once that is `<= 0`: the bucket has
    ///   regenerated the charge by itself), never past a fresh state;
    /// * a **fixed window** member gets its units back only while now is in
    ///   the window of `charged_at` (`(t + offset) / W`), a **sliding
    ///   window** member likewise (`t / W`); after the window rolled over,
    ///   nothing (the new window's count is not the request's).
    ///
    /// So a `304` answered at once costs nothing, and a slow one can never
    /// make a later window or a refilled bucket admit more than its limit.
    /// A `charged_at` after now (a clock stepping back, a failover) counts
    /// as no time elapsed. In Redis, now is the server's time; in the local
    /// store ([`Source::Local`]), this limiter's clock (`charged_at` is
    /// mapped to it, as `check_all` reported it).
    ///
    /// ```no_run
    /// use std::num::NonZeroU32;
    /// use tollgate::redis::{Member, RedisConfig, RedisLimiter, RedisRule};
    /// use tollgate::Quota;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RedisLimiter::new("redis://127.0.0.1:6379/", RedisConfig::default())?;
    /// let rule = RedisRule::gcra(Quota::per_minute(NonZeroU32::new(100).unwrap()));
    /// let members = [Member::new("k1", rule, 1)];
    /// let d = limiter.check_all("k1", &members).await;
    /// if d.decision.is_allowed() {
    ///     // ... the response turns out to be a 304, some time later:
    ///     let _ = limiter.refund_to_since(d.source, "k1", &members, d.now).await;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn refund_to_since(
        &self,
        source: Source,
        tag: &str,
        members: &[Member<'_>],
        charged_at: Nanos,
    ) -> Option<RedisRefund> {
        let charged_at = match source {
            // `check_degraded` reported the local charge's time as
            // `clock.unix_nanos_at(t)`: back to `t`.
            Source::Local => charged_at.saturating_sub(self.inner.clock.unix_nanos_at(Nanos::ZERO)),
            _ => charged_at,
        };
        self.refund_to_inner(source, tag, members, Some(charged_at), None, None)
            .await
    }

    /// [`refund_to_since`](Self::refund_to_since) at a time the caller
    /// gives, for admissions of [`check_all_at`](Self::check_all_at):
    /// `charged_at` is that admission's `now`, and both are on the caller's
    /// clock (in Redis and in the local store alike).
    pub async fn refund_to_since_at(
        &self,
        source: Source,
        tag: &str,
        members: &[Member<'_>],
        charged_at: Nanos,
        now: Nanos,
    ) -> Option<RedisRefund> {
        self.refund_to_inner(source, tag, members, Some(charged_at), Some(now), Some(now))
            .await
    }

    /// [`refund_all`](Self::refund_all) at a time the caller gives; the
    /// units count as charged at `now` (all of `cost` comes back; for a
    /// late refund see [`refund_to_since_at`](Self::refund_to_since_at)).
    pub async fn refund_all_at(
        &self,
        tag: &str,
        members: &[Member<'_>],
        now: Nanos,
    ) -> RedisRefund {
        self.refund_inner(tag, members, Some(now), Some(now)).await
    }

    /// A check at `now` (`None`: the server's time), with the local
    /// fallback at `local` (`None`: this process' monotonic clock).
    pub(crate) async fn check_inner(
        &self,
        tag: &str,
        members: &[Member<'_>],
        now: Option<Nanos>,
        local: Option<Nanos>,
    ) -> RedisDecision {
        let keys: Vec<String> = members.iter().map(|m| self.key(tag, m.key)).collect();
        match self.run(Op::Check, &keys, members, now).await {
            Some(reply) => self.decided(&reply, members),
            None => self.check_degraded(&keys, members, now, local),
        }
    }

    pub(crate) async fn refund_inner(
        &self,
        tag: &str,
        members: &[Member<'_>],
        now: Option<Nanos>,
        local: Option<Nanos>,
    ) -> RedisRefund {
        let keys: Vec<String> = members.iter().map(|m| self.key(tag, m.key)).collect();
        let op = Op::Refund { charged_at: None };
        match self.run(op, &keys, members, now).await {
            Some(reply) => refunded(&reply, members, None),
            None => self.refund_degraded(&keys, members, local),
        }
    }

    /// A refund where the units were charged (see
    /// [`refund_to`](Self::refund_to)): Redis at `now` (`None`: the
    /// server's time), the local store at `local` (`None`: this process'
    /// clock), or nowhere; of units charged at `charged_at`, on the clock
    /// of `source` (`None`: at the refund's time), as far as they still
    /// weigh (see [`refund_to_since`](Self::refund_to_since)).
    pub(crate) async fn refund_to_inner(
        &self,
        source: Source,
        tag: &str,
        members: &[Member<'_>],
        charged_at: Option<Nanos>,
        now: Option<Nanos>,
        local: Option<Nanos>,
    ) -> Option<RedisRefund> {
        match source {
            Source::Redis => {
                let keys: Vec<String> = members.iter().map(|m| self.key(tag, m.key)).collect();
                let op = Op::Refund { charged_at };
                let reply = self.run(op, &keys, members, now).await?;
                Some(refunded(&reply, members, charged_at))
            }
            Source::Local => {
                let keys: Vec<String> = members.iter().map(|m| self.key(tag, m.key)).collect();
                self.refund_local(&keys, members, charged_at, local)
            }
            Source::FailOpen | Source::FailClosed => None,
        }
    }

    /// The script's answer as the core's decisions.
    fn decided(&self, reply: &Reply, members: &[Member<'_>]) -> RedisDecision {
        let mut decisions: Vec<Decision> = members
            .iter()
            .zip(&reply.states)
            .map(|(m, s)| match script::state_word(&m.rule, s) {
                Some(word) => script::decide(&m.rule, word, reply.now, m.cost),
                None => unreadable(),
            })
            .collect();
        let all_allowed = decisions.iter().all(Decision::is_allowed);
        if all_allowed != reply.admitted {
            // The script's verdict is what Redis now holds: report that.
            // Relaxed: a counter.
            self.inner.mismatches.fetch_add(1, Ordering::Relaxed);
            if reply.admitted {
                for d in decisions.iter_mut().filter(|d| !d.is_allowed()) {
                    *d = Decision::Allowed {
                        remaining: 0,
                        reset_after: d.retry_after().unwrap_or(Nanos::ZERO),
                    };
                }
            } else if let Some(d) = decisions.first_mut() {
                *d = unreadable();
            }
        }
        let (decision, member) = combine(&decisions);
        RedisDecision {
            decision,
            member,
            members: decisions,
            source: Source::Redis,
            now: reply.now,
        }
    }
}

/// The script's refund reply as read-outs: of units charged at
/// `charged_at` (`None`: at the reply's time).
fn refunded(reply: &Reply, members: &[Member<'_>], charged_at: Option<Nanos>) -> RedisRefund {
    let charged_at = charged_at.unwrap_or(reply.now);
    RedisRefund {
        members: members
            .iter()
            .zip(&reply.states)
            .map(|(m, s)| match script::state_word(&m.rule, s) {
                Some(word) => script::refunded(&m.rule, word, charged_at, reply.now, m.cost),
                // A state the script cannot read is left as it is and
                // refuses every check (`unreadable`): read it out as that,
                // not as a full limit.
                None => {
                    let wait = unreadable().retry_after().unwrap_or(Nanos::ZERO);
                    Snapshot {
                        remaining: 0,
                        reset_after: wait,
                        ..script::refunded(&m.rule, 0, charged_at, reply.now, 0)
                    }
                }
            })
            .collect(),
        source: Source::Redis,
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn unix_now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Nanos::ZERO, Nanos::from_duration)
}

#[cfg(test)]
mod tests;
