//! The response side of a call: an HTTP/2 receive stream as an `http_body::Body`, and the
//! mapping of HTTP/2 failures to gRPC statuses.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::oneshot;

/// Why a request failed in the transport, attached as the source of the `Status` it becomes, so
/// the retry logic can tell a request that never left the client from one that may have.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// No connection could be made (refused, unreachable, timed out, TLS handshake failed).
    #[error("connect to {endpoint}: {reason}")]
    Connect {
        /// The member's URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection refused a new stream before the request was written (it was closing).
    #[error("connection to {endpoint} closed before the request was sent: {reason}")]
    NotSent {
        /// The member's URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the stream (`REFUSED_STREAM`): it did not process the request.
    #[error("stream refused by the server: {0}")]
    Refused(String),
    /// The connection or the stream failed after the request may have been written.
    #[error("{0}")]
    Broken(String),
}

impl TransportError {
    /// Whether the request provably never left the client.
    pub(crate) fn never_sent(&self) -> bool {
        matches!(
            self,
            TransportError::Connect { .. }
                | TransportError::NotSent { .. }
                | TransportError::Refused(_)
        )
    }

    /// The status a call reports for this failure.
    pub(crate) fn into_status(self) -> tonic::Status {
        let mut st = tonic::Status::unavailable(self.to_string());
        st.set_source(Arc::new(self));
        st
    }
}

/// The status of an HTTP/2 failure on an open stream, following gRPC's mapping of HTTP/2 error
/// codes; a lost connection is UNAVAILABLE.
pub(crate) fn status_from_h2(e: h2::Error) -> tonic::Status {
    let code = grpc_code(e.reason(), e.is_io(), e.is_go_away());
    let mut st = tonic::Status::new(code, format!("h2 protocol error: {e}"));
    let detail = if e.reason() == Some(h2::Reason::REFUSED_STREAM) && !e.is_io() {
        TransportError::Refused(e.to_string())
    } else {
        TransportError::Broken(e.to_string())
    };
    st.set_source(Arc::new(detail));
    st
}

/// The gRPC code of an HTTP/2 failure (gRPC's HTTP/2 error mapping; a lost connection and a
/// GOAWAY are UNAVAILABLE, so the call may be retried elsewhere).
fn grpc_code(reason: Option<h2::Reason>, io: bool, go_away: bool) -> tonic::Code {
    match reason {
        _ if io => tonic::Code::Unavailable,
        Some(h2::Reason::REFUSED_STREAM) => tonic::Code::Unavailable,
        Some(h2::Reason::CANCEL) => tonic::Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => tonic::Code::PermissionDenied,
        Some(_) if go_away => tonic::Code::Unavailable,
        Some(_) => tonic::Code::Internal,
        None => tonic::Code::Unavailable,
    }
}

/// A response body: the data frames of a receive stream, then its trailers.
///
/// Holding it keeps the stream open; dropping it before the end cancels the stream (and stops
/// the task sending a streaming request, if there is one).
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// Dropped with the body: tells the request-sending task the caller has gone.
    _cancel: Option<oneshot::Sender<()>>,
    /// Counts the stream as open for the connection's keepalive.
    _active: super::ActiveStream,
}

impl RecvBody {
    pub(crate) fn new(
        recv: h2::RecvStream,
        cancel: Option<oneshot::Sender<()>>,
        active: super::ActiveStream,
    ) -> Self {
        RecvBody {
            recv,
            data_done: false,
            _cancel: cancel,
            _active: active,
        }
    }
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("stream", &self.recv.stream_id())
            .finish_non_exhaustive()
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    // Hand the window back at once: the decoder takes the bytes from here.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(status_from_h2(e)))),
                Poll::Ready(None) => self.data_done = true,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(status_from_h2(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_not_sent_failures_are_never_sent_and_unavailable() {
        let connect = TransportError::Connect {
            endpoint: "http://127.0.0.1:1".into(),
            reason: "Connection refused".into(),
        };
        assert!(connect.never_sent());
        let st = connect.into_status();
        assert_eq!(st.code(), tonic::Code::Unavailable);
        assert!(st.message().contains("connect to http://127.0.0.1:1"));
        let not_sent = TransportError::NotSent {
            endpoint: "e".into(),
            reason: "going away".into(),
        };
        assert!(not_sent.never_sent());
        assert!(!TransportError::Broken("reset".into()).never_sent());
    }

    #[test]
    fn h2_reasons_map_to_grpc_codes() {
        let code = |r| grpc_code(Some(r), false, false);
        assert_eq!(code(h2::Reason::REFUSED_STREAM), tonic::Code::Unavailable);
        assert_eq!(code(h2::Reason::CANCEL), tonic::Code::Cancelled);
        assert_eq!(
            code(h2::Reason::ENHANCE_YOUR_CALM),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(code(h2::Reason::PROTOCOL_ERROR), tonic::Code::Internal);
        assert_eq!(
            grpc_code(Some(h2::Reason::NO_ERROR), false, true),
            tonic::Code::Unavailable
        );
        assert_eq!(grpc_code(None, true, false), tonic::Code::Unavailable);
    }
}
