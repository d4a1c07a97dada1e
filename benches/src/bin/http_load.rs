//! The tower layer's overhead, measured over real HTTP on loopback.
//!
//! ```sh
//! cargo run --release -p tollgate-benches --bin http_load              # 3 reps × 40 000 requests per side
//! cargo run --release -p tollgate-benches --bin http_load -- --requests 10000 --connections 16 --reps 5
//! ```
//!
//! Two axum servers in this process on 127.0.0.1, identical but for
//! `tollgate::tower::RateLimitLayer` (the S4E policy, enterprise keys, 1024
//! keys round robin so nothing is refused): `bare` and `layer`. A hyper
//! client drives each with the same requests over `--connections`
//! keep-alive connections, the sides alternating rep by rep; every response
//! must be a 200. Reported: requests/s (median of the reps), p50 and p99
//! latency (all reps), and the layer/bare ratios. A second table measures the
//! same routers in process (`oneshot`, no network), next to the cheapest
//! tower middleware (an identity `map_response`) and the policy check alone
//! (`Engine::check`): the layer's own cost per request.
//!
//! Bounded: a fixed number of requests, and the whole run gives up after
//! `--max-secs` (default 300). Loopback only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tollgate::policy::{Engine, Request as PolicyRequest};
use tollgate::tower::{Caller, RateLimitLayer};
use tollgate::{Clock, MonotonicClock, Nanos};
use tower::ServiceExt;

/// What one run does.
#[derive(Clone, Copy, Debug)]
struct Config {
    /// Requests per side per rep (over the network).
    requests: usize,
    /// Keep-alive connections per side, each sending in turn.
    connections: usize,
    reps: usize,
    /// In-process requests per side per rep.
    inproc: usize,
    /// The whole run's limit.
    max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            requests: 40_000,
            connections: 32,
            reps: 3,
            inproc: 200_000,
            max: Duration::from_secs(300),
        }
    }
}

/// Distinct API keys, sent round robin.
const KEYS: usize = 1024;

const POLICY: &str = include_str!("../../../policies/s4e.toml");

/// One side's figures over all reps.
#[derive(Debug, Default)]
struct Side {
    /// Requests per second of each rep.
    rates: Vec<f64>,
    /// Every request's latency.
    latencies: Vec<Duration>,
    /// Responses other than 200.
    failures: usize,
}

impl Side {
    fn rate(&self) -> f64 {
        median(&self.rates)
    }

    /// The latency below which `per_mille` / 1000 of the requests finished.
    fn percentile(&mut self, per_mille: usize) -> Duration {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let i = (n * per_mille).div_ceil(1000).clamp(1, n) - 1;
        self.latencies[i]
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The three routers: the same route bare, behind the cheapest tower
/// middleware (an identity `map_response`: what any layer costs in axum),
/// and behind the rate-limit layer.
fn routers() -> (Router, Router, Router) {
    let bare = Router::new().route(
        "/api/assets",
        get(|| async { r#"[{"id":1,"host":"example.com"}]"# }),
    );
    let layer = RateLimitLayer::from_toml(POLICY)
        .expect("policies/s4e.toml")
        .plans(|key: &str| {
            key.starts_with("enterprise-")
                .then(|| Caller::new("enterprise"))
        });
    let noop = bare
        .clone()
        .layer(tower::util::MapResponseLayer::new(|r: Response| r));
    (bare.clone(), noop, bare.layer(layer))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    addr
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("enterprise-{i}")).collect()
}

/// `requests` GETs over `connections` keep-alive connections.
async fn drive(addr: SocketAddr, cfg: Config, deadline: Instant, side: &mut Side) {
    let per = cfg.requests.div_ceil(cfg.connections);
    let started = Instant::now();
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|c| {
            tokio::spawn(async move {
                let keys = keys();
                let tcp = TcpStream::connect(addr).await.expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .expect("handshake");
                let conn = tokio::spawn(conn);
                let mut latencies = Vec::with_capacity(per);
                let mut failures = 0;
                for i in 0..per {
                    if Instant::now() > deadline {
                        break;
                    }
                    let req = Request::get("/api/assets")
                        .header("host", "127.0.0.1")
                        .header("x-api-key", &keys[(c * per + i) % KEYS])
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    sender.ready().await.expect("connection ready");
                    let t = Instant::now();
                    let res = sender.send_request(req).await.expect("response");
                    let ok = res.status() == 200;
                    res.into_body().collect().await.expect("body");
                    latencies.push(t.elapsed());
                    failures += usize::from(!ok);
                }
                drop(sender);
                let _ = conn.await;
                (latencies, failures)
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        let (lat, failures) = t.await.expect("client task");
        done += lat.len();
        side.latencies.extend(lat);
        side.failures += failures;
    }
    side.rates
        .push(done as f64 / started.elapsed().as_secs_f64());
    assert!(
        Instant::now() <= deadline,
        "load test passed its time limit"
    );
}

/// The same requests through the router in process (no network).
async fn inproc(router: &Router, n: usize, side: &mut Side) {
    let keys = keys();
    let started = Instant::now();
    for i in 0..n {
        let req = Request::get("/api/assets")
            .header("x-api-key", &keys[i % KEYS])
            .body(Body::empty())
            .expect("request");
        let res = router.clone().oneshot(req).await.expect("infallible");
        side.failures += usize::from(res.status() != 200);
        res.into_body().collect().await.expect("body");
    }
    side.rates.push(n as f64 / started.elapsed().as_secs_f64());
}

/// The policy check alone, on an engine of its own: what the layer spends
/// in `Engine::check` for the same requests.
fn engine_only(n: usize, side: &mut Side) {
    let clock = MonotonicClock::new();
    let engine = Engine::from_toml(POLICY, clock.unix_nanos_at(Nanos::ZERO)).expect("policy");
    let keys = keys();
    let started = Instant::now();
    for i in 0..n {
        let req = PolicyRequest::new("GET", "/api/assets")
            .key(&keys[i % KEYS])
            .plan("enterprise");
        let outcome = engine.check(&req, clock.now()).expect("a valid request");
        side.failures += usize::from(!outcome.is_allowed());
    }
    side.rates.push(n as f64 / started.elapsed().as_secs_f64());
}

/// Runs every rep; returns (network bare, network layer, in-process bare,
/// in-process no-op layer, in-process layer, the policy check alone).
async fn measure(cfg: Config) -> [Side; 6] {
    let deadline = Instant::now() + cfg.max;
    let (bare, noop, layered) = routers();
    let bare_addr = serve(bare.clone()).await;
    let layer_addr = serve(layered.clone()).await;
    let mut sides: [Side; 6] = Default::default();
    // Warm-up: connections, the layer's key slots, the allocator.
    let warm = Config {
        requests: cfg.requests.min(2_000),
        ..cfg
    };
    drive(bare_addr, warm, deadline, &mut Side::default()).await;
    drive(layer_addr, warm, deadline, &mut Side::default()).await;
    for rep in 0..cfg.reps {
        // Alternate which side goes first.
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let addr = [bare_addr, layer_addr][s];
            drive(addr, cfg, deadline, &mut sides[s]).await;
        }
        let order = if rep % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for s in order {
            let router = [&bare, &noop, &layered][s];
            inproc(router, cfg.inproc, &mut sides[2 + s]).await;
        }
        engine_only(cfg.inproc, &mut sides[5]);
    }
    sides
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(cfg: Config, sides: &mut [Side; 6]) -> String {
    let mut out = String::new();
    let [bare, layer, ibare, inoop, ilayer, check] = sides;
    out.push_str(&format!(
        "loopback HTTP/1.1: {} requests × {} reps per side, {} keep-alive connections, {KEYS} keys\n\n",
        cfg.requests, cfg.reps, cfg.connections
    ));
    out.push_str("| side | requests/s | p50 µs | p99 µs | non-200 |\n|---|---:|---:|---:|---:|\n");
    let (b50, b99, l50, l99) = (
        bare.percentile(500),
        bare.percentile(990),
        layer.percentile(500),
        layer.percentile(990),
    );
    for (name, s, p50, p99) in [("bare", &bare, b50, b99), ("layer", &layer, l50, l99)] {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.1} | {:.1} | {} |\n",
            s.rate(),
            us(p50),
            us(p99),
            s.failures
        ));
    }
    out.push_str(&format!(
        "| layer / bare | **{:.3}** | **{:.3}** | **{:.3}** | |\n\n",
        layer.rate() / bare.rate(),
        us(l50) / us(b50),
        us(l99) / us(b99),
    ));
    out.push_str(&format!(
        "in process (`Router::oneshot`, no network): {} requests × {} reps per side\n\n",
        cfg.inproc, cfg.reps
    ));
    out.push_str("| side | requests/s | µs per request | non-200 |\n|---|---:|---:|---:|\n");
    for (name, s) in [
        ("bare", &ibare),
        ("no-op layer", &inoop),
        ("layer", &ilayer),
        ("(the policy check alone: `Engine::check`)", &check),
    ] {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.2} | {} |\n",
            s.rate(),
            1e6 / s.rate(),
            s.failures
        ));
    }
    out.push_str(&format!(
        "| layer − bare | | **{:.2}** | |\n| layer − no-op layer | | **{:.2}** | |\n",
        1e6 / ilayer.rate() - 1e6 / ibare.rate(),
        1e6 / ilayer.rate() - 1e6 / inoop.rate(),
    ));
    out
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .ok_or(format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match a.as_str() {
            "--requests" => cfg.requests = value("--requests")?.max(1),
            "--connections" => cfg.connections = value("--connections")?.max(1),
            "--reps" => cfg.reps = value("--reps")?.max(1),
            "--inproc" => cfg.inproc = value("--inproc")?,
            "--max-secs" => cfg.max = Duration::from_secs(value("--max-secs")? as u64),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(cfg)
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("http_load: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut sides = rt.block_on(measure(cfg));
    print!("{}", report(cfg, &mut sides));
    let failures: usize = sides.iter().map(|s| s.failures).sum();
    if failures > 0 {
        eprintln!("http_load: {failures} responses were not 200: the sides did different work");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small bounded run: both sides answer every request with a 200.
    #[test]
    fn small_run_has_no_failures() {
        let cfg = Config {
            requests: 400,
            connections: 4,
            reps: 1,
            inproc: 400,
            max: Duration::from_secs(60),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut sides = rt.block_on(measure(cfg));
        let table = report(cfg, &mut sides);
        for s in &sides {
            assert_eq!(s.failures, 0, "{table}");
            assert_eq!(s.rates.len(), 1);
        }
        assert_eq!(sides[0].latencies.len(), 400);
        assert_eq!(sides[1].latencies.len(), 400);
        assert!(table.contains("| layer / bare |"), "{table}");
    }
}
