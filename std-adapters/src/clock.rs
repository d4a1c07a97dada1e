//! Real clocks for the std world.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use tollgate_core::{Clock, Nanos};

/// A monotonic clock: nanoseconds since the clock was created.
///
/// Reads the CPU's time-stamp counter through
/// [`quanta`](https://docs.rs/quanta) where the CPU reports it invariant
/// (quanta checks that, and falls back to the OS monotonic clock otherwise):
/// about 10–14 ns per read on the x86-64 machines this is measured on,
/// against 28 ns for `Instant::elapsed` — and the same clock source
/// `governor` uses by default, so side-by-side figures compare like with
/// like. Unaffected by wall-clock changes.
///
/// quanta does not check that the cores' counters are synchronised (they
/// are on current x86-64 hardware and VMs with an invariant TSC). Were they
/// not, reads on different cores could differ by the skew, and a thread
/// moved between cores could read an earlier time: every limiter takes an
/// earlier `now` as a clock stepped back, which is never looser (GCRA) or
/// stricter within the windows' `MAX_BACK` tolerance. [`CoarseClock`]
/// never goes back in any case (its thread keeps the largest read).
///
/// It also remembers the wall-clock time at its epoch so adapters can turn a
/// `reset_after` into a Unix timestamp (`X-RateLimit-Reset` epochs).
///
/// ```
/// use tollgate::{Clock, MonotonicClock, Nanos};
///
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// // Unix time (seconds) at which something 30 s from now happens.
/// let at = clock.unix_secs_at(clock.now() + Nanos::from_secs(30));
/// assert!(at > 1_600_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    epoch: u64,
    epoch_unix: Nanos,
}

impl MonotonicClock {
    /// A clock whose epoch is now. Cheap to clone; build one per process
    /// (the first one calibrates the counter, which takes a few ms).
    pub fn new() -> MonotonicClock {
        let clock = quanta::Clock::new();
        let epoch = clock.raw();
        let epoch_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(Nanos::from_duration)
            .unwrap_or(Nanos::ZERO);
        MonotonicClock {
            clock,
            epoch,
            epoch_unix,
        }
    }

    /// The Unix time, in nanoseconds, of a point `at` on this clock.
    pub fn unix_nanos_at(&self, at: Nanos) -> Nanos {
        self.epoch_unix + at
    }

    /// The Unix time, in whole seconds rounded up, of a point `at` on this
    /// clock (rounded up so a reset time is never announced early).
    pub fn unix_secs_at(&self, at: Nanos) -> u64 {
        crate::time_fmt::unix_secs_after(self.epoch_unix, at)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::new(self.clock.delta_as_nanos(self.epoch, self.clock.raw()))
    }
}

/// A coarse monotonic clock: a background thread stores the time every
/// `interval`, and [`CoarseClock::now`] is one relaxed load of that word —
/// about 1 ns instead of the ~11 ns of a [`MonotonicClock`] read on the
/// machines this is measured on (`compare`, line
/// `gcra_check_denied_coarse_clock`).
///
/// For services where the clock read is most of a check's cost (a denied
/// check is one load and no write, so a precise clock is ~90 % of it).
/// The price is resolution: `now()` lags the real time by up to `interval`
/// plus however long the thread waits to be scheduled. A lagging clock only
/// makes a limiter *stricter*: capacity returns late, never early. The lag
/// differs from read to read, though, so a `retry_after` computed at one
/// read can be too short by up to the lag at the next: a client that waits
/// exactly that long may be refused once more. `Retry-After` in whole
/// seconds rounded up covers the lag unless the exact wait ends within the
/// lag before a whole second; to rule that out, add `interval` (plus a
/// scheduling margin) to the wait before rounding.
/// Pick an interval well below the quota's emission interval (1 ms suits
/// quotas up to a few hundred per second per key; use [`MonotonicClock`]
/// for finer ones).
///
/// Every clone shares one thread; it stops (and is joined) when the last
/// clone is dropped. Time never goes backwards: the thread stores the
/// largest read so far of one [`MonotonicClock`], and loads of one word
/// never go backwards in a thread.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{Clock, CoarseClock, Nanos};
///
/// let clock = CoarseClock::new(Duration::from_millis(1)).unwrap();
/// let a = clock.now();
/// std::thread::sleep(Duration::from_millis(20));
/// let b = clock.now();
/// assert!(b >= a + Nanos::from_millis(10));
/// // Wall-clock conversions come from the precise clock it samples.
/// assert!(clock.precise().unix_secs_at(b) > 1_600_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct CoarseClock {
    shared: Arc<CoarseShared>,
    // Dropped with the last clone: stops and joins the thread.
    _stop: Arc<CoarseStop>,
    precise: MonotonicClock,
    interval: Duration,
}

#[derive(Debug)]
struct CoarseShared {
    now: CachePadded<AtomicU64>,
    stop: AtomicBool,
}

#[derive(Debug)]
struct CoarseStop {
    shared: Arc<CoarseShared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for CoarseStop {
    fn drop(&mut self) {
        // Relaxed: the flag publishes nothing; `unpark` wakes the thread
        // and `join` waits for it.
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl CoarseClock {
    /// Starts the thread that refreshes the time every `interval`.
    ///
    /// Errors: an `interval` of zero (it would spin a core) or below 10 µs
    /// is `InvalidInput`; a failure to spawn the thread is returned as is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::CoarseClock;
    ///
    /// assert!(CoarseClock::new(Duration::ZERO).is_err());
    /// let clock = CoarseClock::new(Duration::from_micros(500)).unwrap();
    /// assert_eq!(clock.interval(), Duration::from_micros(500));
    /// ```
    pub fn new(interval: Duration) -> io::Result<CoarseClock> {
        if interval < Duration::from_micros(10) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CoarseClock interval {interval:?} is below the 10 µs minimum"),
            ));
        }
        let precise = MonotonicClock::new();
        let start = precise.now().as_u64();
        let shared = Arc::new(CoarseShared {
            now: CachePadded::new(AtomicU64::new(start)),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let (shared, precise) = (shared.clone(), precise.clone());
            thread::Builder::new()
                .name("tollgate-coarse-clock".into())
                .spawn(move || {
                    let mut last = start;
                    while !shared.stop.load(Ordering::Relaxed) {
                        // The largest read so far: a read behind the last
                        // one (this thread moved to a core whose counter
                        // lags) is not stored. Relaxed: the word is a
                        // number and publishes no other memory; one
                        // writer, so stores only grow.
                        last = precise.now().as_u64().max(last);
                        shared.now.store(last, Ordering::Relaxed);
                        thread::park_timeout(interval);
                    }
                })?
        };
        Ok(CoarseClock {
            _stop: Arc::new(CoarseStop {
                shared: shared.clone(),
                thread: Some(thread),
            }),
            shared,
            precise,
            interval,
        })
    }

    /// The refresh interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The precise clock this one samples (same epoch): for Unix-time
    /// conversions of reset times, and for a precise read where needed.
    pub fn precise(&self) -> &MonotonicClock {
        &self.precise
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> Nanos {
        // Relaxed: see the store in `new`.
        Nanos::new(self.shared.now.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_real_time_and_never_goes_back() {
        let c = MonotonicClock::new();
        let wall = std::time::Instant::now();
        let mut last = c.now();
        for _ in 0..10_000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed = wall.elapsed().as_nanos() as f64;
        let seen = c.now().as_u64() as f64;
        assert!(
            (seen - elapsed).abs() < 0.2 * elapsed + 5e6,
            "{seen} vs {elapsed}"
        );
    }

    #[test]
    fn coarse_clock_follows_the_precise_one_within_its_interval() {
        let c = CoarseClock::new(Duration::from_millis(1)).unwrap();
        let mut last = c.now();
        let start = std::time::Instant::now();
        let mut lags = Vec::new();
        while start.elapsed() < Duration::from_millis(200) {
            let t = c.now();
            assert!(t >= last, "went back: {t:?} after {last:?}");
            last = t;
            lags.push(c.precise().now().as_u64().saturating_sub(t.as_u64()));
            std::thread::sleep(Duration::from_micros(300));
        }
        // It moved, and most reads lag by about one interval (a busy CI
        // machine may delay the thread now and then: judge the median).
        assert!(last.as_u64() >= 150_000_000, "only {last:?} in 200 ms");
        lags.sort_unstable();
        let median = lags[lags.len() / 2];
        assert!(median < 5_000_000, "median lag {median} ns");
    }

    #[test]
    fn coarse_clock_thread_stops_with_the_last_clone() {
        let c = CoarseClock::new(Duration::from_secs(3600)).unwrap();
        let shared = Arc::downgrade(&c.shared);
        let c2 = c.clone();
        drop(c);
        assert!(shared.upgrade().is_some(), "a clone still runs it");
        // Woken by unpark, not after its hour-long park: joined at once, and
        // its reference to the shared word is gone. (Dropped on another
        // thread so that a drop that blocks fails the test instead of
        // hanging it.)
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(c2);
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "dropping the last clone did not stop the thread"
        );
        assert!(shared.upgrade().is_none());
    }

    #[test]
    fn coarse_clock_rejects_tiny_intervals() {
        let e = CoarseClock::new(Duration::from_nanos(500)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("10 µs"), "{e}");
    }
}
