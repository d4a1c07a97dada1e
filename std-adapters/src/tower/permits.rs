//! Keeping a request's concurrency permits past its response, for a job
//! that runs on after it (an asynchronous scan answered 202).
//!
//! The layer puts an admitted request's [`Hold`] in an `Arc` ([`Shared`]):
//! the layer's future owns one reference while the service runs, the
//! response body ([`RateLimitBody`](super::RateLimitBody)) the same one
//! after it. The request's extensions carry only a *weak* reference
//! ([`Permits`]); [`Permits::keep`] turns it into a strong one
//! ([`PermitGuard`]). The `Hold` — and with it the admission's permits — is
//! dropped by whichever owner lets go last.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::hold::Hold;

/// An admitted request's [`Hold`], shared by the layer (then the response
/// body) and any [`PermitGuard`]s a handler keeps.
pub(crate) struct Shared(Mutex<Hold>);

impl Shared {
    pub(crate) fn new(hold: Hold) -> Arc<Shared> {
        Arc::new(Shared(Mutex::new(hold)))
    }

    /// The hold, to refund (locked once per refunded response; guards never
    /// lock it).
    pub(crate) fn hold(&self) -> MutexGuard<'_, Hold> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared(..)")
    }
}

/// The concurrency permits of a request admitted by
/// [`RateLimitLayer`](super::RateLimitLayer), in the request's extensions:
/// [`keep`](Self::keep) them for a job that outlives the response.
///
/// By default the permits (e.g. BlockSecOps' concurrent scans per plan) are
/// released when the response body ends. A handler that answers at once and
/// goes on working in the background (`202 Accepted`, results later by
/// webhook or polling) calls [`keep`](Self::keep) *before it returns* and
/// moves the [`PermitGuard`] into its job: the permits are then released
/// when the body has ended **and** every guard has been dropped. Refunds are
/// unaffected: a refunded status still gives the request's units back at
/// once.
///
/// Only admitted requests get the extension: exempt requests, and requests
/// the layer answers itself (429, 401, 403), have none (the
/// [`PermitGuard`] axum extractor, feature `axum`, then gives a guard that
/// holds nothing). The extension itself holds nothing (a weak reference):
/// a clone of the request's extensions left lying around never keeps a
/// slot; only a [`PermitGuard`] does.
///
/// Cost: one `Arc` allocation per admitted request, plus the extension's
/// entry in the request's [`Extensions`](http::Extensions), whether or not
/// the handler keeps the permits.
///
/// With axum, see the [module docs](super#asynchronous-jobs-blocksecops-scans)
/// (or the [`PermitGuard`] extractor). Without it (hyper, tonic, any tower
/// service), take it from the request's extensions:
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response, StatusCode};
/// use tollgate::tower::{Caller, PermitGuard, Permits, RateLimitLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// const POLICY: &str = r#"
///     name = "jobs"
///     [response]
///     headers = "none"
///     body = "blocksecops"
///     [plans.free]
///     concurrency = 1
/// "#;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let layer = RateLimitLayer::from_toml(POLICY).unwrap().plans(|_: &str| Some(Caller::new("free")));
/// // Starts a 50 ms job and answers 202 at once.
/// let svc = layer.layer(service_fn(|req: Request<String>| async move {
///     let slot: PermitGuard = req.extensions().get::<Permits>().map(Permits::keep).unwrap_or_default();
///     tokio::spawn(async move {
///         tokio::time::sleep(Duration::from_millis(50)).await;
///         drop(slot);
///     });
///     Ok::<_, Infallible>(Response::builder().status(StatusCode::ACCEPTED).body(String::new()).unwrap())
/// }));
/// let job = || Request::post("/jobs").header("x-api-key", "k1").body(String::new()).unwrap();
///
/// let accepted = svc.clone().oneshot(job()).await.unwrap();
/// assert_eq!(accepted.status(), 202);
/// drop(accepted); // the response is over, the job is not
/// assert_eq!(svc.clone().oneshot(job()).await.unwrap().status(), 429);
/// tokio::time::sleep(Duration::from_millis(200)).await; // the job has ended
/// assert_eq!(svc.oneshot(job()).await.unwrap().status(), 202);
/// # });
/// ```
#[derive(Clone)]
pub struct Permits {
    shared: Weak<Shared>,
}

impl Permits {
    pub(crate) fn new(shared: &Arc<Shared>) -> Permits {
        Permits {
            shared: Arc::downgrade(shared),
        }
    }

    /// A guard that keeps the request's permits until it (and every clone)
    /// is dropped, even after the response has been sent. Call it while the
    /// request is being handled (before the handler returns): once the
    /// response body has ended and no other guard remains, the permits are
    /// gone and the guard returned holds nothing
    /// ([`is_holding`](PermitGuard::is_holding) says which).
    pub fn keep(&self) -> PermitGuard {
        PermitGuard {
            shared: self.shared.upgrade(),
        }
    }
}

impl fmt::Debug for Permits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permits")
            .field("live", &(self.shared.strong_count() > 0))
            .finish()
    }
}

/// Keeps a request's concurrency permits (see [`Permits`]) until it and
/// its clones are dropped. `Send + Sync + 'static`: move it into the task
/// that runs the job, and drop it when the job ends. Dropping it never
/// blocks (the last owner drops the admission, which releases the permits
/// in the engine's store).
///
/// A guard from [`Default`] (or one kept too late) holds nothing.
///
/// ```
/// use tollgate::tower::PermitGuard;
/// let none = PermitGuard::default();
/// assert!(!none.is_holding());
/// ```
#[derive(Clone, Default)]
#[must_use = "the permits are released as soon as the guard is dropped"]
pub struct PermitGuard {
    shared: Option<Arc<Shared>>,
}

impl PermitGuard {
    /// Whether this guard keeps an admission alive (false on an exempt
    /// route, or when kept after the permits were released).
    pub fn is_holding(&self) -> bool {
        self.shared.is_some()
    }
}

impl fmt::Debug for PermitGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitGuard")
            .field("holding", &self.is_holding())
            .finish()
    }
}

/// Extracts the request's [`PermitGuard`] (feature `axum`): the handler
/// keeps the permits as long as it keeps the guard. Never fails: a request
/// without [`Permits`] (an exempt route) gets a guard that holds nothing.
///
/// ```
/// use axum::{Router, http::StatusCode, routing::post};
/// use tollgate::tower::PermitGuard;
///
/// async fn create_scan(slot: PermitGuard) -> StatusCode {
///     tokio::spawn(async move {
///         // ... run the scan, post the results to the webhook ...
///         drop(slot); // the plan's concurrent-scan slot is free again
///     });
///     StatusCode::ACCEPTED
/// }
/// let _app: Router = Router::new().route("/api/v1/scans", post(create_scan));
/// ```
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PermitGuard {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<PermitGuard, std::convert::Infallible> {
        Ok(parts
            .extensions
            .get::<Permits>()
            .map(Permits::keep)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn the_handles_can_move_into_a_task() {
        assert_send_sync::<Permits>();
        assert_send_sync::<PermitGuard>();
        assert_send_sync::<Arc<Shared>>();
    }
}
