//! Transfers that stop moving: a client that does not read what it is sent,
//! an upstream that stops in the middle of a response body.
//!
//! `header_read_timeout` bounds the wait for a request head, and the upstream
//! `timeout` the wait for a response head, but once a response is on its way
//! nothing else would: a client that never reads would hold its connection
//! (and the upstream connection behind it) for as long as it liked, and so
//! would an upstream that sends half a body. Like nginx's `send_timeout` and
//! `proxy_read_timeout` (timed between two operations, not over the whole
//! transfer), a transfer that makes no progress for the server's
//! `idle_timeout` is cut: the same bound as an idle connection, as Envoy's
//! `stream_idle_timeout` does. A slow transfer that keeps moving is never cut.
//! For a write, moving means the socket took more bytes, as for nginx: Linux
//! reports room only once about a third of the send buffer has drained, so a
//! client reading slower than that per `idle_timeout` is cut too (README).
//!
//! Nothing is timed while transfers move: no timer exists until a transfer
//! first has to wait, and each wait costs a clock read (see [`Stall`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Times one direction of a transfer from the moment it had to wait.
///
/// A transfer that waits often (each chunk of a streamed body waits for the
/// next) costs a clock read per wait, not a timer per wait: the timer is
/// allocated once, and a timer still running from an earlier wait is left to
/// fire and only then moved to the current wait's deadline. So it is set at
/// most once per `limit`, and one `Stall` serves every response of an
/// upstream connection.
#[derive(Debug, Default)]
pub(crate) struct Stall {
    timer: Option<Pin<Box<Sleep>>>,
    /// When the current wait began; `None` while the transfer moves.
    since: Option<Instant>,
}

impl Stall {
    /// Passes `res` on; `Pending` for `limit` since the wait began becomes
    /// `Ready(None)`, and anything `Ready` ends the wait.
    pub(crate) fn watch<T>(
        &mut self,
        res: Poll<T>,
        limit: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        match res {
            Poll::Ready(v) => {
                self.since = None;
                Poll::Ready(Some(v))
            }
            Poll::Pending if self.expired(limit, cx) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Passes `res` on; `Pending` at or after `due` becomes `Ready(None)`. For
    /// a wait whose start is known (a request sent at a recorded instant).
    pub(crate) fn watch_until<T>(
        &mut self,
        res: Poll<T>,
        due: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        match res {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if self.passed(due, cx) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Called while nothing moves: whether this wait has lasted `limit`; if
    /// not, `cx` is woken when the timer next fires.
    fn expired(&mut self, limit: Duration, cx: &mut Context<'_>) -> bool {
        let due = *self.since.get_or_insert_with(Instant::now) + limit;
        self.passed(due, cx)
    }

    /// Whether `due` has passed; if not, `cx` is woken when the timer next
    /// fires. A timer set for an earlier wait's later deadline is brought
    /// forward (only when waits of different lengths share this `Stall`).
    fn passed(&mut self, due: Instant, cx: &mut Context<'_>) -> bool {
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // Fired: for this wait, or for an earlier one that ended sooner.
            if timer.deadline() >= due {
                return true;
            }
            timer.as_mut().reset(due);
        }
    }
}

/// An accepted socket whose writes fail with `TimedOut` once the peer has
/// read nothing for `limit`; reads pass through (waiting for a request is
/// `header_read_timeout`'s and `idle_timeout`'s).
#[derive(Debug)]
pub(crate) struct WriteStall<IO> {
    io: IO,
    limit: Duration,
    stall: Stall,
}

impl<IO> WriteStall<IO> {
    pub(crate) fn new(io: IO, limit: Duration) -> WriteStall<IO> {
        WriteStall { io, limit, stall: Stall::default() }
    }

    pub(crate) fn into_inner(self) -> IO {
        self.io
    }
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client read nothing for idle_timeout")
}

impl<IO> WriteStall<IO> {
    /// `res` of a write or flush, or `TimedOut` once it has been pending for `limit`.
    fn watch<T>(&mut self, res: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        self.stall.watch(res, self.limit, cx).map(|r| r.unwrap_or_else(|| Err(stalled())))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteStall<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteStall<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(res, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(res, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(res, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(res, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_millis(300);

    /// A peer that does not read: writes succeed until the pipe is full.
    async fn full_pipe() -> (WriteStall<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(16);
        let mut ours = WriteStall::new(ours, LIMIT);
        ours.write_all(&[0; 16]).await.expect("room for 16 bytes");
        (ours, theirs)
    }

    #[tokio::test]
    async fn a_write_the_peer_never_drains_fails_after_the_limit_not_before() {
        let (mut ours, _theirs) = full_pipe().await;
        let started = std::time::Instant::now();
        let err = ours.write_all(b"more").await.expect_err("the write must be cut");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= LIMIT, "cut after {waited:?}, before the limit");
        assert!(waited < LIMIT * 4, "cut only after {waited:?}");
    }

    #[tokio::test]
    async fn a_peer_that_keeps_reading_slowly_is_never_cut() {
        let (mut ours, mut theirs) = full_pipe().await;
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            let mut total = 0;
            while total < 16 + 40 {
                // Each read comes two thirds of a limit after the last.
                tokio::time::sleep(LIMIT * 2 / 3).await;
                total += theirs.read(&mut buf).await.expect("read");
            }
        });
        let started = std::time::Instant::now();
        ours.write_all(&[1; 40]).await.expect("a write that moves is not cut");
        assert!(started.elapsed() > LIMIT * 3, "the transfer took several limits in all");
        reader.await.expect("reader");
    }

    #[test]
    fn a_result_ends_the_wait() {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let _guard = rt.enter();
        let mut stall = Stall::default();
        assert!(stall.watch(Poll::<()>::Pending, LIMIT, &mut cx).is_pending());
        let since = stall.since.expect("waiting");
        assert!(stall.watch(Poll::<()>::Pending, LIMIT, &mut cx).is_pending());
        assert_eq!(stall.since, Some(since), "one wait, timed from its start");
        assert_eq!(stall.watch(Poll::Ready(7), LIMIT, &mut cx), Poll::Ready(Some(7)));
        assert!(stall.since.is_none(), "progress starts the next wait afresh");
    }

    #[tokio::test]
    async fn a_timer_left_from_an_earlier_wait_does_not_cut_a_later_one() {
        let mut stall = Stall::default();
        // A first wait, which ends after half a limit...
        std::future::poll_fn(|cx| {
            assert!(stall.watch(Poll::<()>::Pending, LIMIT, cx).is_pending());
            Poll::Ready(())
        })
        .await;
        tokio::time::sleep(LIMIT / 2).await;
        std::future::poll_fn(|cx| stall.watch(Poll::Ready(()), LIMIT, cx)).await;
        // ...then a second that never ends: cut a whole limit after it began.
        let second = std::time::Instant::now();
        let cut = std::future::poll_fn(|cx| stall.watch(Poll::<()>::Pending, LIMIT, cx)).await;
        assert_eq!(cut, None, "the second wait ends in a cut");
        let waited = second.elapsed();
        assert!(waited >= LIMIT, "the second wait was cut after {waited:?}, by the first wait's timer");
        assert!(waited < LIMIT * 3, "cut only after {waited:?}");
    }

    #[tokio::test]
    async fn a_deadline_sooner_than_the_running_timer_is_kept() {
        let mut stall = Stall::default();
        // A long wait sets the timer far ahead, then ends...
        std::future::poll_fn(|cx| {
            assert!(stall.watch(Poll::<()>::Pending, LIMIT * 20, cx).is_pending());
            Poll::Ready(())
        })
        .await;
        std::future::poll_fn(|cx| stall.watch(Poll::Ready(()), LIMIT * 20, cx)).await;
        // ...and a wait with an earlier deadline is cut at that deadline.
        let started = Instant::now();
        let due = started + LIMIT;
        let cut = std::future::poll_fn(|cx| stall.watch_until(Poll::<()>::Pending, due, cx)).await;
        assert_eq!(cut, None);
        let waited = started.elapsed();
        assert!(waited >= LIMIT, "cut after {waited:?}, before its deadline");
        assert!(waited < LIMIT * 3, "cut only after {waited:?}, by the long wait's timer");
        // A result passes through, and a deadline already past cuts at once.
        assert_eq!(std::future::poll_fn(|cx| stall.watch_until(Poll::Ready(3), due, cx)).await, Some(3));
        let past = std::future::poll_fn(|cx| stall.watch_until(Poll::<()>::Pending, started, cx)).await;
        assert_eq!(past, None);
    }
}
