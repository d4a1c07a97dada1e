//! What the `http_*` tests share: the example server (the same router as
//! `cargo run --example server`) on 127.0.0.1 with a free port, behind a
//! layer on a manual clock, and a plain HTTP/1.1 client (hyper), one
//! connection per request so that dropping one is a client disconnect.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tollgate::policy::Engine;
use tollgate::tower::RateLimitLayer;
use tollgate::{ManualClock, Nanos};

#[path = "../../../std-adapters/examples/server.rs"]
pub mod server;

/// The engine's zero: 2024-04-28T12:00:00Z, a whole minute (as in the
/// scenario tests), so calendar minutes start at multiples of 60 s.
pub const T0: u64 = 1_714_305_600;

/// Every test's time limit.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs `test` on a fresh runtime within [`LIMIT`].
pub fn run<F: std::future::Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(LIMIT, test)
                .await
                .expect("test took longer than its limit")
        })
}

/// The text of `policies/NAME.toml`.
pub fn policy(name: &str) -> String {
    let path = format!("{}/../policies/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The example server for one test.
pub struct Server {
    pub addr: SocketAddr,
    /// The layer's clock (starts at `Nanos::ZERO`, i.e. Unix `T0`).
    pub clock: &'static ManualClock,
    pub engine: Arc<Engine>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the example server on `policy_src`, its layer configured by
/// `configure` (the example's key rule `<plan>-<name>` is set already).
pub async fn start(
    policy_src: &str,
    configure: impl FnOnce(RateLimitLayer) -> RateLimitLayer,
) -> Server {
    // One clock per test, for the whole process (the layer wants 'static).
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new(Nanos::ZERO)));
    let engine = Engine::from_toml(policy_src, Nanos::from_secs(T0)).unwrap();
    let layer = configure(RateLimitLayer::new(engine, clock).plans(server::demo_caller));
    let engine = Arc::clone(layer.engine());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        server::serve(listener, server::app(layer)).await.unwrap();
    });
    Server {
        addr,
        clock,
        engine,
        task,
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The header's value (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().expect("ASCII header"))
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    pub fn rate_headers(&self) -> [&str; 3] {
        [
            self.header("x-ratelimit-limit"),
            self.header("x-ratelimit-remaining"),
            self.header("x-ratelimit-reset"),
        ]
    }
}

/// A request on a connection of its own. `headers` may hold raw bytes.
async fn open(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> (hyper::Response<Incoming>, JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, HeaderValue::from_bytes(v).unwrap());
    }
    let res = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    (res, conn)
}

/// Sends one request and reads the whole response.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    send_raw(addr, method, path, &raw).await
}

/// [`send`] with header values as bytes (not necessarily text).
pub async fn send_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Reply {
    let (res, conn) = open(addr, method, path, headers).await;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    conn.abort();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// A response whose body is read as it comes (an SSE stream). Dropping it
/// closes the connection: the client goes away.
pub struct Streaming {
    pub status: u16,
    pub headers: HeaderMap,
    body: Option<Incoming>,
    buffered: String,
    conn: JoinHandle<()>,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Streaming {
    /// The header's value (`""` when absent).
    pub fn header_value(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().expect("ASCII header"))
    }

    /// The next SSE event's `data` (skipping comments such as keep-alives),
    /// or `None` when the stream ended.
    pub async fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffered.find("\n\n") {
                let event: String = self.buffered.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Some(data.trim().to_owned());
                }
                continue;
            }
            let frame = self.body.as_mut()?.frame().await?.expect("body frame");
            if let Ok(data) = frame.into_data() {
                self.buffered.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The rest of the body (for a refusal).
    pub async fn rest(mut self) -> Bytes {
        let body = self.body.take().expect("body not read yet");
        body.collect().await.unwrap().to_bytes()
    }
}

/// Opens a request whose body is read as it comes.
pub async fn stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Streaming {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let (res, conn) = open(addr, "GET", path, &raw).await;
    let (parts, body) = res.into_parts();
    Streaming {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: Some(body),
        buffered: String::new(),
        conn,
    }
}
