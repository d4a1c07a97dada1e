//! Benchmarks for tollgate, side by side with `governor`.
//!
//! * `benches/*.rs` — criterion groups, one per case, with a `tollgate`
//!   function and its peer's in each (`governor`, or `tokio` for the
//!   semaphore; algorithms governor lacks run alone): `gcra.rs`,
//!   `algorithms.rs` (every core algorithm and the 3-limit composite),
//!   `keyed.rs` (1K/1M/10M keys, uniform and Zipf hits, inserts), `clock.rs`,
//!   `headers.rs`. `cargo bench -p tollgate-benches -- --quick` runs them all.
//! * `src/bin/compare.rs` — the `compare` binary: every case in one process,
//!   the two sides interleaved repetition by repetition, one JSON line per case.
//!
//! This library holds the measurement harness the binary uses.

/// Zipf-distributed indices: skewed key popularity for the keyed benches.
pub mod zipf;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use tollgate::Quota;

/// `NonZeroU32` from a literal known to be non-zero.
pub fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// A quota under which every check in a benchmark is allowed without moving
/// time: 10^9 per second with a burst of `u32::MAX` (4.3 s of capacity), on
/// both sides.
pub fn allowed() -> (Quota, governor::Quota) {
    (
        Quota::per_second(nz(1_000_000_000)).with_burst(NonZeroU32::MAX),
        governor::Quota::per_second(nz(1_000_000_000)).allow_burst(NonZeroU32::MAX),
    )
}

/// governor's manual clock, one second past its epoch (the `now` the
/// tollgate side uses).
pub fn fake_clock() -> FakeRelativeClock {
    let c = FakeRelativeClock::default();
    c.advance(Duration::from_secs(1));
    c
}

/// Runs `f` `iters` times and returns nanoseconds per call.
pub fn time_per_op(iters: u64, mut f: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut sink = 0u64;
    for _ in 0..iters {
        sink = sink.wrapping_add(f());
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The median of `xs` (sorted in place).
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Measures two sides with `reps` interleaved repetitions (A, B, A, B, ...)
/// after one warm-up of each, so machine noise hits both alike. Returns the
/// median ns/op of each side.
pub fn side_by_side(
    reps: usize,
    iters: u64,
    mut a: impl FnMut() -> u64,
    mut b: impl FnMut() -> u64,
) -> (f64, f64) {
    time_per_op(iters / 4 + 1, &mut a);
    time_per_op(iters / 4 + 1, &mut b);
    let (mut ta, mut tb) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        ta.push(time_per_op(iters, &mut a));
        tb.push(time_per_op(iters, &mut b));
    }
    (median(&mut ta), median(&mut tb))
}

/// The machine's CPU time so far, from the aggregate `cpu` line of
/// `/proc/stat`, in clock ticks: all of it, and the part the hypervisor gave
/// to other guests while this one had work (*steal*). `None` where there is
/// no `/proc/stat` (not Linux) or the line cannot be read.
///
/// On a virtual machine the scaling figures depend on whether the guest's
/// vCPUs actually ran at the same time; steal is the part of that the guest
/// can see, so `compare` reports it next to every scaling line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    /// Every state's ticks added up (user, nice, system, idle, iowait, irq,
    /// softirq, steal).
    pub total: u64,
    /// Ticks stolen by the hypervisor.
    pub steal: u64,
}

impl CpuTicks {
    /// Reads `/proc/stat` now.
    pub fn now() -> Option<CpuTicks> {
        CpuTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the text of `/proc/stat`: its first line,
    /// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`
    /// (guest time is already counted in user and nice, so it is left out).
    pub fn parse(stat: &str) -> Option<CpuTicks> {
        let line = stat.lines().next()?;
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if v.len() < 8 {
            return None;
        }
        Some(CpuTicks {
            total: v.iter().sum(),
            steal: v[7],
        })
    }

    /// Stolen share of the machine's time between `self` and `later`, in
    /// percent (`None` if no time passed or the counters went backwards).
    pub fn steal_percent_until(self, later: CpuTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)?;
        let steal = later.steal.checked_sub(self.steal)?;
        Some(steal as f64 * 100.0 / total as f64)
    }
}

/// One JSON object (a line of `compare`'s output).
#[derive(Debug, Default)]
pub struct Line {
    fields: Vec<(String, String)>,
}

impl Line {
    /// A line for benchmark `bench`.
    pub fn new(bench: &str) -> Line {
        Line::default().str("bench", bench)
    }

    /// Adds a string field.
    pub fn str(mut self, k: &str, v: &str) -> Line {
        self.fields
            .push((k.into(), format!("\"{}\"", v.replace('"', "\\\""))));
        self
    }

    /// Adds a number field (NaN and infinities as null).
    pub fn num(mut self, k: &str, v: f64) -> Line {
        let s = if v.is_finite() {
            format!("{}", (v * 1000.0).round() / 1000.0)
        } else {
            "null".into()
        };
        self.fields.push((k.into(), s));
        self
    }

    /// The tollgate/peer pair and their ratio.
    pub fn pair(self, tollgate_ns: f64, peer_ns: f64) -> Line {
        self.num("tollgate_ns", tollgate_ns)
            .num("peer_ns", peer_ns)
            .num("ratio", tollgate_ns / peer_ns)
    }

    /// The JSON text.
    pub fn render(&self) -> String {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_and_medians() {
        let l = Line::new("x").pair(1.0, 4.0).num("threads", 2.0);
        assert_eq!(
            l.render(),
            r#"{"bench":"x","tollgate_ns":1,"peer_ns":4,"ratio":0.25,"threads":2}"#
        );
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn steal_from_proc_stat() {
        let a = CpuTicks::parse("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            a,
            CpuTicks {
                total: 1000,
                steal: 35
            }
        );
        let b = CpuTicks::parse("cpu  150 0 60 930 10 0 5 45 7 0\n").unwrap();
        // 200 ticks passed, 10 of them stolen.
        assert_eq!(a.steal_percent_until(b), Some(5.0));
        assert_eq!(b.steal_percent_until(a), None);
        assert_eq!(a.steal_percent_until(a), None);
        // Kernels older than 2.6.11 have no steal column: not guessed.
        assert_eq!(CpuTicks::parse("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(CpuTicks::parse("intr 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(CpuTicks::parse(""), None);
    }
}
