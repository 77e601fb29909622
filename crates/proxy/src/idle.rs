//! Idle timeout for client connections and tunnels: an I/O wrapper that
//! fails once nothing moved for a while and no request is in flight.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How many requests of one client connection are in flight. While any
/// is, the connection is never idle (an upstream may think for minutes).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
}

/// Marks one request in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Arc<Activity>,
}

impl Activity {
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            activity: self.clone(),
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Wraps a stream; reads and writes fail with `TimedOut` once the stream
/// was idle for between one and two `timeout`s.
///
/// The hot path only sets a flag: the timer fires every `timeout`, and a
/// period with any I/O (or a request in flight) re-arms it.
#[derive(Debug)]
pub(crate) struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    moved: bool,
    activity: Arc<Activity>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, timeout: Duration, activity: Arc<Activity>) -> IdleIo<T> {
        IdleIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            moved: false,
            activity,
        }
    }

    /// Notes that bytes moved in this period.
    fn touch(&mut self) {
        self.moved = true;
    }

    /// Passes on the inner stream's answer: a ready one counts as activity,
    /// a pending one becomes a `TimedOut` error once idle too long.
    fn observe<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.touch();
                Poll::Ready(result)
            }
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(err) => Poll::Ready(Err(err)),
            },
        }
    }

    /// Called when the inner stream is pending: errors once idle too long.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            if !self.moved && !self.activity.busy() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                ));
            }
            self.moved = false;
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.observe(cx, poll)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.observe(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.observe(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_stream_times_out_unless_a_request_is_in_flight() {
        let activity = Arc::new(Activity::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, Duration::from_secs(10), activity.clone());

        b.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);

        // In flight: the paused clock runs far past the timeout, the read
        // still completes when data comes.
        let guard = activity.begin();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = io.read(&mut buf).await;
            (io, n.map_err(|e| e.kind()))
        });
        tokio::time::advance(Duration::from_secs(60)).await;
        b.write_all(b"y").await.unwrap();
        let (mut io, n) = reader.await.unwrap();
        assert_eq!(n, Ok(1));
        drop(guard);

        // Idle and nothing in flight: the read fails after the timeout.
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_keeps_moving_is_never_idle() {
        let activity = Arc::new(Activity::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, Duration::from_secs(10), activity);
        // The reader waits in a pending read between bytes, so the idle
        // timer is checked while it waits.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            for _ in 0..10 {
                io.read_exact(&mut buf).await.map_err(|e| e.kind())?;
            }
            Ok::<_, io::ErrorKind>(())
        });
        // A byte every 6 s for a minute: six timeouts' worth of time.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"z").await.unwrap();
        }
        assert_eq!(reader.await.unwrap(), Ok(()));
    }
}
