//! Where a gRPC call's status goes out, for the layers that act on it ([`crate::grpc_metrics`],
//! [`crate::grpc_tracing`]): in the headers of a trailers-only answer (an error before any
//! message), else in the trailers at the end of the response body, unary and streaming
//! alike. [`on_status`] watches a response and tells an [`OnStatus`] once.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use tonic::Code;

/// What a layer does with its call's status.
pub(crate) trait OnStatus: Unpin + Send + 'static {
    /// The status went out (trailers without a `grpc-status`: `UNKNOWN`).
    fn status(&mut self, code: Code);

    /// The body ended without trailers.
    fn ended_without_status(&mut self) {}
}

/// The gRPC status code in `headers` (`grpc-status`), if there is one; a value that is
/// not a number counts as `UNKNOWN`, as gRPC clients read it.
pub(crate) fn status_code(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// `response`, with `watcher` told its status once when it goes out: now for a
/// trailers-only answer, else when the body's trailers go by. The watcher lives as long as
/// the response body (it is dropped with it).
pub(crate) fn on_status<W: OnStatus>(response: Response, mut watcher: W) -> Response {
    match status_code(response.headers()) {
        Some(code) => {
            watcher.status(code);
            response
        }
        None => response.map(|body| {
            Body::new(Watched {
                body,
                watcher,
                told: false,
            })
        }),
    }
}

/// A response body that tells its watcher the status in its trailers, or that it ended
/// without any.
struct Watched<W> {
    body: Body,
    watcher: W,
    told: bool,
}

impl<W: OnStatus> http_body::Body for Watched<W> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if !this.told {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        this.told = true;
                        this.watcher
                            .status(status_code(trailers).unwrap_or(Code::Unknown));
                    }
                }
                Poll::Ready(None) => {
                    this.told = true;
                    this.watcher.ended_without_status();
                }
                Poll::Ready(Some(Err(_))) | Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
