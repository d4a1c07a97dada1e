//! The response body of [`RateLimit`](super::RateLimit): the service's own,
//! holding its share of the request's admission until it ends, or a
//! refusal's JSON.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use std::sync::Arc;

use super::permits::Shared;

pin_project! {
    /// The body of a response that went through [`RateLimit`](super::RateLimit).
    ///
    /// For an admitted request it is the service's body, and it holds the
    /// request's concurrency permits until the body has sent its last frame,
    /// failed, or been dropped (a client that disconnects from an SSE stream
    /// frees its slot as soon as the server notices) — or, when the handler
    /// kept them for a background job ([`Permits::keep`](super::Permits::keep)),
    /// until that job drops its guard, whichever is later. For a refusal
    /// made by the layer (429, 401, 403) it is the JSON answer.
    ///
    /// ```
    /// use http_body::Body as _;
    /// use tollgate::tower::RateLimitBody;
    ///
    /// let body = RateLimitBody::new(String::from("hello"));
    /// assert_eq!(body.size_hint().exact(), Some(5));
    /// ```
    pub struct RateLimitBody<B> {
        #[pin]
        inner: Option<B>,
        refusal: Option<Bytes>,
        hold: Option<Arc<Shared>>,
    }
}

impl<B> RateLimitBody<B> {
    /// A body that only passes `inner` through (holds nothing).
    pub fn new(inner: B) -> RateLimitBody<B> {
        RateLimitBody {
            inner: Some(inner),
            refusal: None,
            hold: None,
        }
    }

    /// `inner`, holding its share of `hold` until it ends.
    pub(crate) fn holding(inner: B, hold: Arc<Shared>) -> RateLimitBody<B> {
        RateLimitBody {
            inner: Some(inner),
            refusal: None,
            hold: Some(hold),
        }
    }

    /// The layer's own answer.
    pub(crate) fn refusal(bytes: Bytes) -> RateLimitBody<B> {
        RateLimitBody {
            inner: None,
            refusal: Some(bytes),
            hold: None,
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for RateLimitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitBody")
            .field("inner", &self.inner)
            .field("refusal", &self.refusal)
            .field("holding", &self.hold.is_some())
            .finish()
    }
}

impl<B: Body<Data = Bytes>> Body for RateLimitBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(this.refusal.take().map(|b| Ok(Frame::data(b))));
        };
        let frame = ready!(inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // Ended or failed: the response is over, let go of the permits
            // (released now unless a handler's guard still keeps them).
            this.hold.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.refusal.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.refusal) {
            (Some(inner), _) => inner.size_hint(),
            (None, Some(b)) => SizeHint::with_exact(b.len() as u64),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}
