//! Write coalescing for a member connection: small writes are held back for one scheduler turn
//! before they reach the socket, so the frames of many concurrent callers share one syscall.
//!
//! This is what Go's gRPC transport does in its writer loop (it yields once before flushing when
//! less than about 1 kB is buffered). Without it, every request of a busy connection costs a
//! `writev` of its own, and on loopback each write also pays for the receiver's network stack:
//! `make bench-client` measured about one write per request without it and one per 2–3
//! requests with it, at a third less client CPU per call.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Below this many buffered bytes a flush first yields once, to let other callers add frames.
const MIN_BATCH: usize = 1024;
/// Above this many buffered bytes writes go to the socket before more is taken.
const MAX_BUFFER: usize = 64 << 10;

/// An IO that buffers writes until flushed, yielding once before flushing a small batch.
#[derive(Debug)]
pub(crate) struct Coalescing<T> {
    io: T,
    buf: Vec<u8>,
    yielded: bool,
}

impl<T> Coalescing<T> {
    /// Wraps `io`.
    pub(crate) fn new(io: T) -> Self {
        Coalescing {
            io,
            buf: Vec::with_capacity(MIN_BATCH * 8),
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalescing<T> {
    /// Writes the whole buffer to the socket.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        while written < self.buf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.buf[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.buf.drain(..written);
                    return Poll::Pending;
                }
            }
        }
        self.buf.clear();
        if self.buf.capacity() > 4 * MAX_BUFFER {
            // A big message went through the buffer: do not keep its memory for the
            // connection's lifetime.
            self.buf = Vec::with_capacity(MIN_BATCH * 8);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() >= MAX_BUFFER {
            ready!(self.drain(cx))?;
        }
        if self.buf.is_empty() && data.len() >= MAX_BUFFER {
            // A large write (a big value) goes straight through rather than being copied.
            return Pin::new(&mut self.io).poll_write(cx, data);
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() >= MAX_BUFFER {
            ready!(self.drain(cx))?;
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buf.is_empty() && total >= MAX_BUFFER {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buf.is_empty() {
            if !self.yielded && self.buf.len() < MIN_BATCH {
                // One turn for the other callers: the task is woken at once and polled again
                // after the tasks already queued (tokio treats a self-wake as a yield).
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(self.drain(cx))?;
        }
        self.yielded = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes stay in the buffer until a flush, and a flush delivers all of them in order
    /// (including a large write that bypasses the buffer).
    #[tokio::test]
    async fn writes_reach_the_peer_only_on_flush_and_in_order() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalescing::new(a);
        w.write_all(b"one,").await.unwrap();
        w.write_all(b"two,").await.unwrap();
        let mut probe = [0u8; 8];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut probe)).await;
        assert!(early.is_err(), "nothing may reach the peer before a flush");
        w.flush().await.unwrap();
        let big = vec![7u8; MAX_BUFFER + 10];
        w.write_all(&big).await.unwrap();
        w.write_all(b"end").await.unwrap();
        w.flush().await.unwrap();
        let mut got = vec![0u8; 8 + big.len() + 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..8], b"one,two,");
        assert_eq!(&got[8..8 + big.len()], &big[..]);
        assert_eq!(&got[8 + big.len()..], b"end");
    }
}
