//! The policy simulation demo (the README's first command).
//!
//! ```text
//! cargo run --release --example simulate              # the five seed policies
//! cargo run --release --example simulate -- my.toml   # one policy file
//! ```
//!
//! Runs synthetic traffic (many clients across plans: steady, heavy and
//! bursty callers, scans, SSE streams, 304s, anonymous callers) through each
//! policy on a simulated clock, then prints per plan how many requests were
//! admitted, denied and exempt, and one allowed response's headers and one
//! 429 (headers and body).

// Synthetic-traffic arithmetic: float-to-integer `as` casts saturate, which
// is what the generator wants for its small positive values.
#![allow(clippy::cast_possible_truncation)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use tollgate::Nanos;
use tollgate::policy::{Admission, Engine, Outcome, Polled, Request, Ticket};

/// Unix time of the simulated clock's zero: 2024-04-28T12:00:00Z.
const UNIX_AT_ZERO: u64 = 1_714_305_600;
/// Simulated time per policy.
const SIM_SECS: u64 = 600;

const POLICIES: [(&str, &str); 5] = [
    ("s4e", include_str!("../../policies/s4e.toml")),
    ("cybervault", include_str!("../../policies/cybervault.toml")),
    (
        "scanner-api",
        include_str!("../../policies/scanner-api.toml"),
    ),
    (
        "blocksecops",
        include_str!("../../policies/blocksecops.toml"),
    ),
    ("slim-io", include_str!("../../policies/slim-io.toml")),
];

/// What a client sends: (method, path, weight, how long it stays open in
/// ms, response status).
type Mix = &'static [(&'static str, &'static str, u32, u64, u16)];

fn mix(policy: &str) -> Mix {
    match policy {
        "s4e" => &[
            ("GET", "/api/findings", 60, 50, 200),
            ("GET", "/api/assets", 20, 50, 304),
            ("POST", "/api/scan/create", 5, 200, 200),
            ("POST", "/api/findings/export", 2, 500, 200),
            ("GET", "/api/events/stream", 3, 90_000, 200),
            ("GET", "/api/health", 10, 5, 200),
        ],
        "cybervault" => &[
            ("GET", "/api/v1/threats", 70, 50, 200),
            ("POST", "/api/v1/threats/scan", 8, 300, 200),
            ("POST", "/api/v1/reports/generate", 2, 2_000, 200),
            ("GET", "/api/v1/webhooks", 15, 20, 200),
            ("GET", "/api/v1/compliance/audit", 5, 400, 200),
        ],
        "scanner-api" => &[
            ("GET", "/api/servers", 90, 40, 200),
            ("POST", "/api/scans", 10, 5_000, 200),
        ],
        "blocksecops" => &[
            ("GET", "/api/v1/contracts", 60, 40, 200),
            ("POST", "/api/v1/contracts/upload", 10, 300, 200),
            ("POST", "/api/v1/scans", 10, 120_000, 200),
            ("GET", "/api/v1/scans/42/results", 15, 60, 200),
            ("POST", "/api/v1/webhooks", 5, 30, 200),
        ],
        "slim-io" => &[
            ("GET", "/datasets", 60, 400, 200),
            ("POST", "/scans", 15, 1_500, 200),
            ("GET", "/workers/status", 15, 50, 200),
            ("POST", "/scans/parallel", 3, 3_000, 200),
            ("POST", "/classifiers/validate", 7, 200, 200),
        ],
        _ => &[("GET", "/", 1, 50, 200)],
    }
}

type Headers = Vec<(&'static str, String)>;

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One simulated caller.
struct Client {
    key: Option<String>,
    org: String,
    plan: String,
    ip: IpAddr,
    /// Mean requests per second.
    rate: f64,
    /// Sends this many back to back every minute (bursty callers).
    burst: u32,
}

#[derive(Default)]
struct Counts {
    admitted: u64,
    denied: u64,
    exempt: u64,
    refunded: u64,
    /// Requests that waited in a queue (then admitted or denied).
    queued: u64,
    /// Queue waits of the requests served from a queue, ns.
    waits: Vec<u64>,
}

/// How often queued tickets are polled (simulated milliseconds).
const POLL_MS: u64 = 10;

/// A waiting request: its ticket, client, enqueue time, hold and status.
type Waiting<'e> = (Ticket<'e>, usize, u64, u64, u16, String);

/// The simulation's bookkeeping.
struct Sim<'e> {
    /// (end time, id) of requests in flight.
    open: BinaryHeap<Reverse<(u64, u64)>>,
    held: BTreeMap<u64, (Admission<'e>, u16, usize)>,
    next_id: u64,
    counts: BTreeMap<String, Counts>,
    sample_ok: Option<(String, Headers)>,
    sample_429: Option<(String, Headers, String)>,
    /// Queued requests per (client, route), in the order they joined.
    pending: BTreeMap<(usize, String), VecDeque<Waiting<'e>>>,
}

impl<'e> Sim<'e> {
    /// Ends the earliest request in flight.
    fn finish(&mut self, engine: &Engine, clients: &[Client]) {
        let Some(Reverse((done, id))) = self.open.pop() else {
            return;
        };
        if let Some((adm, status, who)) = self.held.remove(&id) {
            if engine.refunds(status) {
                if let Some(c) = self.counts.get_mut(&clients[who].plan) {
                    c.refunded += 1;
                }
            }
            engine.complete(adm, status, Nanos::new(done));
        }
    }

    /// Polls the queued tickets at `now`: the first of each (client, route)
    /// line (unless a rate limit holds it past `now`), again while it is
    /// served, and any behind it whose deadline passed (the rest wait behind
    /// the first in the engine's queue anyway).
    fn poll_queue(&mut self, clients: &[Client], now: u64) {
        let mut ready = Vec::new();
        for line in self.pending.values_mut() {
            // A head held by a rate limit waits for its hinted time.
            let hinted = |l: &VecDeque<Waiting<'_>>| {
                l.front()
                    .and_then(|w| w.0.retry_at())
                    .is_some_and(|at| at > Nanos::new(now))
            };
            while !hinted(line) {
                let Some(w) = line.pop_front() else { break };
                let (ticket, client, since, hold_ms, status, what) = w;
                match ticket.poll(Nanos::new(now)) {
                    Polled::Ready(o) => ready.push((o, client, since, hold_ms, status, what)),
                    Polled::Pending(t) => {
                        line.push_front((t, client, since, hold_ms, status, what));
                        break;
                    }
                }
            }
            while line
                .get(1)
                .is_some_and(|w| w.0.deadline() <= Nanos::new(now))
            {
                if let Some((ticket, client, since, hold_ms, status, what)) = line.remove(1) {
                    if let Polled::Ready(o) = ticket.poll(Nanos::new(now)) {
                        ready.push((o, client, since, hold_ms, status, what));
                    }
                }
            }
        }
        self.pending.retain(|_, line| !line.is_empty());
        for (outcome, client, since, hold_ms, status, what) in ready {
            let c = self.counts.entry(clients[client].plan.clone()).or_default();
            c.queued += 1;
            if outcome.is_allowed() {
                c.waits.push(now - since);
            }
            self.outcome(outcome, clients, client, since, now, hold_ms, status, &what);
        }
    }

    /// Books one outcome.
    #[allow(clippy::too_many_arguments)]
    fn outcome(
        &mut self,
        outcome: Outcome<'e>,
        clients: &[Client],
        client: usize,
        since: u64,
        now: u64,
        hold_ms: u64,
        status: u16,
        what: &str,
    ) {
        let entry = self.counts.entry(clients[client].plan.clone()).or_default();
        match outcome {
            Outcome::Allowed(adm) => {
                entry.admitted += 1;
                if self.sample_ok.is_none() && !adm.headers.is_empty() {
                    self.sample_ok = Some((what.to_owned(), adm.headers.clone()));
                }
                self.next_id += 1;
                self.held.insert(self.next_id, (adm, status, client));
                self.open
                    .push(Reverse((now + hold_ms * 1_000_000, self.next_id)));
            }
            Outcome::Exempt => entry.exempt += 1,
            Outcome::Denied(d) => {
                entry.denied += 1;
                if self.sample_429.is_none() {
                    self.sample_429 =
                        Some((what.to_owned(), d.headers.clone(), d.body.to_string()));
                }
            }
            Outcome::Queued(t) => {
                self.pending
                    .entry((client, what.to_owned()))
                    .or_default()
                    .push_back((t, client, since, hold_ms, status, what.to_owned()));
            }
        }
    }
}

fn simulate(name: &str, src: &str, show_progress: bool) -> Result<(), String> {
    let engine = Engine::from_toml(src, Nanos::from_secs(UNIX_AT_ZERO))
        .map_err(|e| format!("{name}: {e}"))?;
    let mix = mix(engine.name());
    let total_weight: u32 = mix.iter().map(|m| m.2).sum();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);

    // Clients: per plan, steady (half the plan's rate), heavy (twice it) and
    // bursty callers; four keys per organisation; anonymous callers for a
    // policy with an anonymous plan.
    let mut clients = Vec::new();
    for (p, plan) in engine.plans().iter().enumerate() {
        for c in 0..12u32 {
            let anonymous = *plan == "anonymous";
            let [_, _, hi, lo] = u32::try_from(clients.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes();
            clients.push(Client {
                key: (!anonymous).then(|| format!("key-{plan}-{c}")),
                org: format!("org-{plan}-{}", c / 4),
                plan: (*plan).to_owned(),
                ip: IpAddr::V4(Ipv4Addr::new(
                    10,
                    u8::try_from(p).unwrap_or(u8::MAX),
                    hi,
                    lo,
                )),
                rate: match c % 3 {
                    0 => 0.5,
                    1 => 3.0,
                    _ => 1.0,
                } * [1.0, 4.0, 15.0, 40.0][p.min(3)],
                burst: if c % 3 == 2 { 30 } else { 0 },
            });
        }
    }

    // Events: (time, client) arrivals, min-heap.
    let mut arrivals: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    for (i, c) in clients.iter().enumerate() {
        let first = (rng.unit() * 1e9 / c.rate) as u64;
        arrivals.push(Reverse((first, i)));
    }
    let mut sim = Sim {
        open: BinaryHeap::new(),
        held: BTreeMap::new(),
        next_id: 0,
        counts: BTreeMap::new(),
        sample_ok: None,
        sample_429: None,
        pending: BTreeMap::new(),
    };
    let end = SIM_SECS * 1_000_000_000;
    let mut next_tick = 0u64;
    let mut last_progress = 0;
    let started = Instant::now();

    while let Some(Reverse((t, i))) = arrivals.pop() {
        if t >= end {
            break;
        }
        // Everything before `t`: finished requests, then queue polls every
        // POLL_MS, in time order.
        loop {
            let done = sim.open.peek().map(|&Reverse((d, _))| d);
            match done {
                Some(d) if d <= t && (sim.pending.is_empty() || d <= next_tick) => {
                    sim.finish(&engine, &clients);
                }
                _ if !sim.pending.is_empty() && next_tick <= t => {
                    sim.poll_queue(&clients, next_tick);
                    next_tick += POLL_MS * 1_000_000;
                }
                _ => break,
            }
        }
        if sim.pending.is_empty() {
            next_tick = t;
        }
        if show_progress && t / 60_000_000_000 > last_progress {
            last_progress = t / 60_000_000_000;
            eprint!(".");
            let _ = std::io::stderr().flush();
        }
        let c = &clients[i];
        let n = if c.burst > 0 && (t / 1_000_000) % 60_000 < 1_000 / c.rate.max(1.0) as u64 {
            c.burst
        } else {
            1
        };
        for _ in 0..n {
            let mut pick = (rng.next() % u64::from(total_weight)) as u32;
            let &(method, path, _, hold_ms, status) = mix
                .iter()
                .find(|m| {
                    if pick < m.2 {
                        true
                    } else {
                        pick -= m.2;
                        false
                    }
                })
                .expect("weights cover the range");
            let mut req = Request::new(method, path)
                .org(&c.org)
                .ip(c.ip)
                .plan(&c.plan);
            if let Some(k) = &c.key {
                req = req.key(k);
            }
            let what = format!("{method} {path} ({})", c.plan);
            match engine.check(&req, Nanos::new(t)) {
                Ok(outcome) => sim.outcome(outcome, &clients, i, t, t, hold_ms, status, &what),
                Err(e) => return Err(format!("{name}: {e}")),
            }
        }
        let gap = (-(1.0 - rng.unit()).ln() / c.rate * 1e9) as u64;
        arrivals.push(Reverse((t + gap.max(1), i)));
    }
    let Sim {
        held,
        pending,
        counts,
        sample_ok,
        sample_429,
        ..
    } = sim;
    drop(pending);
    drop(held);
    if show_progress {
        eprintln!();
    }

    println!(
        "== policy {} ({} s simulated in {:.2} s)",
        engine.name(),
        SIM_SECS,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<14} {:>9} {:>9} {:>7} {:>8} {:>8} {:>9} {:>9}",
        "plan", "admitted", "denied", "exempt", "refunded", "queued", "wait p50", "wait p99"
    );
    for (plan, c) in &counts {
        let (p50, p99) = if c.waits.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let mut w = c.waits.clone();
            w.sort_unstable();
            let at = |q: f64| {
                let i = ((w.len() - 1) as f64 * q).round() as usize;
                format!("{:.2} s", w[i] as f64 / 1e9)
            };
            (at(0.5), at(0.99))
        };
        println!(
            "{:<14} {:>9} {:>9} {:>7} {:>8} {:>8} {:>9} {:>9}",
            plan, c.admitted, c.denied, c.exempt, c.refunded, c.queued, p50, p99
        );
    }
    match &sample_ok {
        Some((what, h)) => {
            println!("-- sample allowed response: {what}");
            for (k, v) in h {
                println!("   {k}: {v}");
            }
        }
        None => println!("-- allowed responses carry no rate-limit headers in this policy"),
    }
    if let Some((what, h, body)) = &sample_429 {
        println!("-- sample 429: {what}");
        for (k, v) in h {
            println!("   {k}: {v}");
        }
        println!("   {body}");
    }
    println!();
    Ok(())
}

fn main() {
    let arg = std::env::args().nth(1);
    let show_progress = true;
    let result = match arg {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| format!("{path}: {e}"))
            .and_then(|src| simulate(&path, &src, show_progress)),
        None => {
            println!(
                "tollgate policy simulation: {SIM_SECS} s of synthetic traffic per policy on a \
                 simulated clock (queued requests polled every {POLL_MS} ms)\n"
            );
            POLICIES
                .iter()
                .try_for_each(|(name, src)| simulate(name, src, show_progress))
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
