//! Keeping an [`Admission`] alive past the response future.
//!
//! An [`Admission`] borrows its [`Engine`], and the layer needs it after the
//! service's future has returned: its concurrency permits must last as long
//! as the response body (an SSE stream), and a refunding status is known
//! only once the response exists. Without `unsafe`, the one place that can
//! own an `Arc<Engine>` *and* hold a borrow of it is an `async` block: the
//! [`Hold`] is such a block, boxed. It checks the request (waiting in the
//! policy's queue if it says so), hands the verdict out through a shared
//! slot, then parks holding the admission. Dropping the `Hold` drops the
//! admission (the permits are released); [`Hold::refund`] wakes it once
//! more to call [`Engine::refund`] with the response status (the units go
//! back at once), after which it parks again: the permits stay until the
//! `Hold` is dropped. The layer shares an admitted request's `Hold` (see
//! [`permits`](super::permits)) between the response body and any
//! [`PermitGuard`](super::PermitGuard) a handler keeps for a job that runs
//! on after the response; the last of them drops it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tollgate_core::Clock;

use super::RateLimitLayer;
use crate::policy::{Admission, Denial, Engine, Outcome, Polled, Request, RequestError};

/// The longest a queued request sleeps before it polls its ticket again
/// (its hints are in the engine's clock, which a test may move).
const MAX_NAP: Duration = Duration::from_millis(100);

/// The request as the engine needs it, owned (it outlives the HTTP request).
#[derive(Debug)]
pub(crate) struct Subject {
    pub(crate) method: http::Method,
    pub(crate) path: String,
    pub(crate) key: Option<String>,
    pub(crate) plan: Option<String>,
    pub(crate) org: Option<String>,
    pub(crate) ip: Option<IpAddr>,
}

impl Subject {
    fn request(&self) -> Request<'_> {
        Request {
            method: self.method.as_str(),
            path: &self.path,
            api_key: self.key.as_deref(),
            org: self.org.as_deref(),
            plan: self.plan.as_deref(),
            client_ip: self.ip,
        }
    }
}

/// What the check decided.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Admitted: the rate-limit headers for the response.
    Allowed(Vec<(&'static str, String)>),
    /// An exempt route.
    Exempt,
    /// Refused (429), after any queueing.
    Denied(Denial),
    /// The request cannot be judged (no key, unknown plan).
    Invalid(RequestError),
    /// The check ended without a verdict (cannot happen; answered 500
    /// rather than admitting uncounted).
    Lost,
}

/// Shared between the parked block and its owner.
#[derive(Default)]
struct Slot {
    verdict: Mutex<Option<Verdict>>,
    /// The refunding response status; 0 until there is one.
    status: AtomicU16,
}

impl Slot {
    fn put(&self, v: Verdict) {
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    fn take(&self) -> Option<Verdict> {
        self.verdict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The check's block: a verdict when it ends without an admission to hold.
type Parked = Pin<Box<dyn Future<Output = Option<Verdict>> + Send>>;

/// One request's check and, once admitted, its [`Admission`].
pub(crate) struct Hold {
    /// `None` once the block has finished (it must not be polled again).
    block: Option<Parked>,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("holding", &self.block.is_some())
            .finish()
    }
}

impl Hold {
    /// Starts checking `subject` (nothing runs until the first poll).
    pub(crate) fn check(config: Arc<RateLimitLayer>, subject: Subject) -> Hold {
        let slot = Arc::new(Slot::default());
        let shared = Arc::clone(&slot);
        let block = async move {
            let (engine, clock) = (&*config.engine, &*config.clock);
            let request = subject.request();
            let mut admission = match admit(engine, &request, clock).await {
                Ok(a) => a,
                Err(verdict) => return Some(verdict),
            };
            shared.put(Verdict::Allowed(std::mem::take(&mut admission.headers)));
            // Park until the owner knows a refunding response status (the
            // owner never wakes it when there is nothing to refund).
            let status = std::future::poll_fn(|_| {
                // Relaxed: the owner stores and then polls on its own thread.
                match shared.status.load(Ordering::Relaxed) {
                    0 => Poll::Pending,
                    s => Poll::Ready(s),
                }
            })
            .await;
            // `refund` renders `admission.headers` anew when the request has
            // a window of its own; otherwise it leaves them as they are —
            // empty here, since they were handed out above — and the
            // response keeps the ones it has (`Hold::refund` gives `None`).
            // The same style renders both, so new headers are never empty
            // where the first ones were not.
            if engine.refund(&mut admission, status, clock.now()) && !admission.headers.is_empty() {
                // The headers as the window stands after the refund.
                shared.put(Verdict::Allowed(std::mem::take(&mut admission.headers)));
            }
            // The request still runs (its body may stream on): keep the
            // permits until the owner drops this block.
            std::future::pending::<()>().await;
            drop(admission);
            None
        };
        Hold {
            block: Some(Box::pin(block)),
            slot,
        }
    }

    /// Drives the check (and any wait in the queue) until the verdict is in.
    pub(crate) fn poll_verdict(&mut self, cx: &mut Context<'_>) -> Poll<Verdict> {
        let Some(block) = &mut self.block else {
            return Poll::Ready(Verdict::Lost);
        };
        match block.as_mut().poll(cx) {
            Poll::Ready(done) => {
                self.block = None;
                // Never `None`: after a refund the block parks for good.
                Poll::Ready(done.unwrap_or(Verdict::Lost))
            }
            Poll::Pending => match self.slot.take() {
                Some(v) => Poll::Ready(v),
                None => Poll::Pending,
            },
        }
    }

    /// Refunds the admission's units for the response `status` when the
    /// policy says so, keeping its permits: they are released when the
    /// `Hold` is dropped (with the response body, or later with the last
    /// guard a handler kept). Returns the rate-limit
    /// headers as they stand after the refund, if units went back and the
    /// request has a window of its own to report (otherwise the response
    /// keeps the headers it has). Call it once, after the verdict.
    pub(crate) fn refund(&mut self, status: u16) -> Option<Vec<(&'static str, String)>> {
        // A status of 0 is no HTTP status (and would not wake the block).
        if status == 0 {
            return None;
        }
        self.slot.status.store(status, Ordering::Relaxed);
        if let Some(block) = &mut self.block {
            // Refunds at once (the block only waits for `status`), then
            // parks again holding the permits: it never finishes.
            if block
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
            {
                self.block = None;
            }
        }
        match self.slot.take() {
            Some(Verdict::Allowed(headers)) => Some(headers),
            _ => None,
        }
    }
}

/// Checks `request`, waiting in the policy's queue when it says so, until
/// admitted or settled otherwise. Cancel-safe: when the request goes away,
/// dropping the ticket leaves the line (a queued request is charged
/// nothing).
async fn admit<'e>(
    engine: &'e Engine,
    request: &Request<'_>,
    clock: &(dyn Clock + Send + Sync),
) -> Result<Admission<'e>, Verdict> {
    let mut outcome = engine
        .check(request, clock.now())
        .map_err(Verdict::Invalid)?;
    // Woken when the ticket becomes first in line: until then it sleeps
    // (up to `MAX_NAP` at a time) instead of polling.
    let first = Arc::new(FirstInLine(tokio::sync::Notify::new()));
    let waker = Waker::from(Arc::clone(&first));
    let mut registered = false;
    loop {
        let ticket = match outcome {
            Outcome::Allowed(a) => return Ok(a),
            Outcome::Exempt => return Err(Verdict::Exempt),
            Outcome::Denied(d) => return Err(Verdict::Denied(d)),
            Outcome::Queued(ticket) => ticket,
        };
        let now = clock.now();
        if !std::mem::replace(&mut registered, true) && !ticket.is_first() {
            // Just queued behind others: poll once at once to register the
            // waker (the line may also have moved meanwhile).
            outcome = settled(ticket.poll_waking(now, &waker));
            continue;
        }
        let nap = ticket
            .nap_until(now)
            .saturating_sub(now)
            .as_duration()
            .clamp(Duration::from_micros(50), MAX_NAP);
        // `notify_one` keeps a permit when no one waits: a wake between the
        // poll and this wait is not lost.
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = first.0.notified() => {}
        }
        // The waker stays registered until the ticket is first (registered
        // once above): a plain poll, which finds no waker to store.
        outcome = settled(ticket.poll(clock.now()));
    }
}

/// A poll's answer as an [`Outcome`]: still waiting is `Queued` again.
fn settled(polled: Polled<'_>) -> Outcome<'_> {
    match polled {
        Polled::Ready(o) => o,
        Polled::Pending(t) => Outcome::Queued(t),
    }
}

/// The waker a queued request registers with its ticket.
struct FirstInLine(tokio::sync::Notify);

impl std::task::Wake for FirstInLine {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}
