//! The tee body: forwards each frame the moment it arrives and feeds a
//! bounded copy to the message scanner, finishing the scan when the message
//! ends, fails or is dropped, so nothing that was scanned is lost (and a
//! body dropped early leaves its mark on the flow record).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use traffic_guardian_core::Direction;

use crate::flow::Flow;
use traffic_guardian_core::MessageScanner;

/// The error type of bodies the proxy passes on.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends, either way.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Runs once when a body reached its end cleanly (used to return an
/// upstream connection to the pool).
pub(crate) type OnEnd = Box<dyn FnOnce() + Send>;

/// A short plain-text body.
pub(crate) fn text(text: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wraps `inner` so its data is scanned as it passes.
pub(crate) struct ScanBody<B: Body> {
    inner: B,
    direction: Direction,
    flow: Arc<Flow>,
    scanner: Option<MessageScanner>,
    fed: u64,
    seen: u64,
    done: bool,
    /// A trailers frame passed: it is always a message's last.
    trailers: bool,
    on_end: Option<OnEnd>,
    _hold: Option<Box<dyn Send>>,
}

impl<B: Body> ScanBody<B> {
    /// `scanner` has already seen the message's head and `begin_body`.
    /// `hold` is kept alive until the body is done (an in-flight marker).
    pub(crate) fn new(
        inner: B,
        direction: Direction,
        flow: Arc<Flow>,
        scanner: MessageScanner,
        on_end: Option<OnEnd>,
        hold: Option<Box<dyn Send>>,
    ) -> ScanBody<B> {
        ScanBody {
            inner,
            direction,
            flow,
            scanner: Some(scanner),
            fed: 0,
            seen: 0,
            done: false,
            trailers: false,
            on_end,
            _hold: hold,
        }
    }

    fn feed(&mut self, data: &Bytes) {
        self.seen += data.len() as u64;
        if let Some(scanner) = self.scanner.as_mut() {
            scanner.feed(data);
            self.fed += data.len() as u64;
            if scanner.budget_spent() {
                // The budget is spent: report now, keep forwarding.
                self.finish_scan();
            }
        }
    }

    fn finish_scan(&mut self) {
        if let Some(scanner) = self.scanner.take() {
            self.flow.finish_scan(scanner, self.fed);
        }
    }

    fn end(&mut self, clean: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.finish_scan();
        self.flow.add_bytes(self.direction, self.seen);
        self.seen = 0;
        if clean && let Some(on_end) = self.on_end.take() {
            on_end();
        }
        self.on_end = None;
    }
}

impl<B> Body for ScanBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.feed(data);
                }
                this.trailers |= frame.is_trailers();
                // The last frame goes out first; the scan finishes on the
                // next poll or when the body is dropped, whichever comes.
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                let err = err.into();
                this.flow
                    .set_body_failed(this.direction, &crate::error::describe(err.as_ref()));
                this.end(false);
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.end(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for ScanBody<B> {
    fn drop(&mut self) {
        // A body dropped before its end (client gone, error): still report
        // what was scanned, and that the flow was cut short. The connection
        // is reused only if the body had really ended (an empty body may
        // never be polled, and nothing follows trailers).
        let clean = self.done || self.trailers || self.inner.is_end_stream();
        if !clean {
            self.flow.set_cut_short(self.direction);
        }
        self.end(clean);
    }
}
