//! Keep-alive connections to one upstream target.
//!
//! Each connection is hyper's `client::conn::http1` pair: the `SendRequest`
//! lives here, and the connection future runs as a task of its own, as in
//! hyper-util's pooled client. (Polling it from the request's task instead
//! was measured and lost 9 % of throughput: BENCHMARKS.md.) What this pool
//! drops from hyper-util's is the generality the gateway does not use: a
//! hashed pool key per request, the checkout/connect race, the waiter lists.
//! It is a stack per target, most recently used first, at most
//! [`POOL_MAX_IDLE`] deep. A connection goes back when its response body has
//! been read to the end ([`UpstreamBody`]); a reaper drops those idle past
//! `idle_timeout`, which ends their tasks and closes their sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};

use super::client::ReplayBody;
use crate::pipeline::BodyError;
use crate::stall::Stall;

/// Idle keep-alive connections kept per upstream URL. A burst opens as
/// many connections as it has requests in flight; past the burst, more than
/// this many idle ones only hold memory (about 20 KiB each: hyper's buffers
/// and the connection's task), since the gateway's own keep-alive clients
/// rarely have that many requests in flight at once. Like nginx's upstream
/// `keepalive N`.
pub const POOL_MAX_IDLE: usize = 128;

/// One HTTP/1.1 connection to an upstream target; its I/O runs in its own task.
pub struct Conn {
    sender: http1::SendRequest<ReplayBody>,
    /// Times the waits for its response heads (the upstream `timeout`), and
    /// `stall` those of its response bodies. Both are kept across exchanges,
    /// so neither sets a timer per request (the `stall` module).
    head: Stall,
    stall: Stall,
}

impl Conn {
    /// Spawns the connection's task (`with_upgrades`, so a 101 hands its
    /// socket to the upgrade) and keeps the sending half.
    pub fn spawn<T>(sender: http1::SendRequest<ReplayBody>, conn: http1::Connection<T, ReplayBody>) -> Conn
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended");
            }
        });
        Conn { sender, head: Stall::default(), stall: Stall::default() }
    }

    /// Waiting for its next request. A closed connection never is: its task
    /// has dropped the receiving end, so it no longer asks for one.
    fn ready(&self) -> bool {
        self.sender.is_ready()
    }
}

/// The idle connections of one target.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
    reaper: std::sync::Once,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle_count()).finish()
    }
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Pool {
        Pool { idle: Mutex::new(Vec::new()), idle_timeout, reaper: std::sync::Once::new() }
    }

    /// The most recently used idle connection that is still open, `now`
    /// being the request's send instant (one clock read serves both).
    pub fn checkout(&self, now: Instant) -> Option<Conn> {
        loop {
            let Idle { conn, since } = self.lock().pop()?;
            if now.saturating_duration_since(since) < self.idle_timeout && conn.ready() {
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose exchange is over. One whose task has not
    /// yet turned to the next request (another thread may still be finishing
    /// the body) waits for that in a small task of its own, as hyper-util's
    /// pool does; one that closed is dropped.
    fn checkin(self: &Arc<Pool>, mut conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        if !conn.sender.is_ready() {
            let pool = self.clone();
            tokio::spawn(async move {
                if conn.sender.ready().await.is_ok() {
                    pool.keep(conn);
                }
            });
            return;
        }
        self.keep(conn);
    }

    fn keep(self: &Arc<Pool>, conn: Conn) {
        let mut idle = self.lock();
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle { conn, since: Instant::now() });
        }
        drop(idle);
        self.reaper.call_once(|| self.spawn_reaper());
    }

    /// Every `idle_timeout` (at least each second), drops the idle connections
    /// that expired or were closed by the upstream. Ends with the pool.
    fn spawn_reaper(self: &Arc<Pool>) {
        let pool: Weak<Pool> = Arc::downgrade(self);
        let period = self.idle_timeout.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.reap(Instant::now());
            }
        });
    }

    fn reap(&self, now: Instant) {
        let timeout = self.idle_timeout;
        self.lock().retain(|i| now.saturating_duration_since(i.since) < timeout && i.conn.ready());
    }

    /// How many idle connections are kept.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When a request body last moved toward the upstream, shared between the
/// body as hyper sends it and the wait for the response head: nanoseconds
/// after `sent`, with the upstream's `timeout` that runs from it. One
/// pointer, so a bodiless request's exchange carries little more for it.
#[derive(Debug, Clone)]
pub struct BodyProgress(Arc<Progress>);

#[derive(Debug)]
struct Progress {
    sent: tokio::time::Instant,
    /// Nanoseconds after `sent` at which hyper last took a piece of the body.
    moved: AtomicU64,
    /// hyper asked for more and the client has not sent it: the wait is the
    /// client's, which the body's stall timer bounds (408), not the upstream's.
    waiting_on_client: AtomicBool,
    timeout: Duration,
}

impl BodyProgress {
    pub fn new(sent: tokio::time::Instant, timeout: Duration) -> BodyProgress {
        let progress =
            Progress { sent, moved: AtomicU64::new(0), waiting_on_client: AtomicBool::new(false), timeout };
        BodyProgress(Arc::new(progress))
    }

    /// hyper took a piece of the body (or its end): now is its last progress.
    pub fn moved(&self) {
        let nanos = u64::try_from(self.0.sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.moved.store(nanos, Ordering::Relaxed);
        self.0.waiting_on_client.store(false, Ordering::Relaxed);
    }

    /// hyper asked for more of the body and the client has not sent it yet.
    pub fn waiting_on_client(&self) {
        self.0.waiting_on_client.store(true, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.0.sent + Duration::from_nanos(self.0.moved.load(Ordering::Relaxed))
    }
}

/// When a response head is due: the upstream's `timeout` after the request
/// was sent or, for one with a body, after the body last moved toward the
/// upstream, which after its end is the end: nginx's `proxy_send_timeout`
/// and `proxy_read_timeout` at once. A long upload that keeps moving is
/// never cut by `timeout`; one the client stops sending is cut by the
/// body's own stall timer (`idle_timeout`, 408), and one the upstream stops
/// taking (or a connect, a TLS handshake that never ends) by this (504).
#[derive(Debug, Clone)]
pub struct Deadline {
    pub due: tokio::time::Instant,
    /// A request with a body: how far it has got.
    pub upload: Option<BodyProgress>,
}

impl Deadline {
    /// `due` has passed at `now`: whether the wait goes on, with `due` moved,
    /// because the body moved less than `timeout` ago or waits on the client.
    pub fn extend(&mut self, now: tokio::time::Instant) -> bool {
        let Some(progress) = &self.upload else { return false };
        let due = if progress.0.waiting_on_client.load(Ordering::Relaxed) {
            now + progress.0.timeout
        } else {
            progress.last() + progress.0.timeout
        };
        if due <= now {
            return false;
        }
        self.due = due;
        true
    }
}

/// Sends `req` on `conn`: the request is handed to the connection's task
/// now, and the future resolves to the response head, or fails once the
/// deadline has passed without it.
///
/// Not an `async fn`: the returned future holds only hyper's response future and
/// the connection, not a second copy of the request (BENCHMARKS.md, future sizes).
///
/// A connection that answered a HEAD is closed, not pooled. hyper reads a
/// HEAD response as bodiless, so its exchange ends with the head; an app
/// that sends the body anyway (a hand-written HEAD handler, a server that
/// runs the GET view and does not drop it) would have that body, which may
/// be a file a user uploaded, read as the response to the next request on
/// the connection, someone else's. hyper drops an idle connection that
/// becomes readable, but bytes that come after the next request left are
/// that request's answer. HEAD is rare, so the cost is one connect each.
pub fn exchange(
    mut conn: Conn,
    pool: &Arc<Pool>,
    req: Request<ReplayBody>,
    deadline: Deadline,
) -> impl Future<Output = Result<Response<UpstreamBody>, ExchangeError>> + Send + 'static {
    let reuse = req.method() != http::Method::HEAD;
    let response = conn.sender.try_send_request(req);
    Exchange { response, conn: Some((conn, pool.clone())), reuse, deadline }
}

/// Why an [`exchange`] gave no response.
#[derive(Debug)]
pub enum ExchangeError {
    /// The exchange failed. If the connection had closed before the request
    /// left, `unsent` holds it back, its body unread, for another connection.
    Failed { error: hyper::Error, unsent: Option<Box<Request<ReplayBody>>> },
    /// No response head by the deadline.
    TimedOut,
}

pin_project_lite::pin_project! {
    /// [`exchange`]'s future. The deadline is timed by the connection's own
    /// `head` timer, so a request costs a comparison, not a timer of its own.
    struct Exchange<F> {
        #[pin]
        response: F,
        conn: Option<(Conn, Arc<Pool>)>,
        // The connection may go back to the pool after this exchange.
        reuse: bool,
        deadline: Deadline,
    }
}

impl<F> Future for Exchange<F>
where
    F: Future<Output = Result<Response<Incoming>, TrySendError<Request<ReplayBody>>>>,
{
    type Output = Result<Response<UpstreamBody>, ExchangeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // `None`: it already finished, and a finished future may stay pending.
        let Some((conn, _)) = this.conn.as_mut() else { return Poll::Pending };
        let mut polled = this.response.poll(cx);
        let result = loop {
            match ready!(conn.head.watch_until(polled, this.deadline.due, cx)) {
                Some(result) => break result,
                None if this.deadline.extend(tokio::time::Instant::now()) => polled = Poll::Pending,
                None => {
                    // Dropping the connection with its request in flight closes it.
                    *this.conn = None;
                    return Poll::Ready(Err(ExchangeError::TimedOut));
                }
            }
        };
        let Some((conn, pool)) = this.conn.take() else { return Poll::Pending };
        Poll::Ready(match result {
            Ok(resp) => Ok(resp.map(|inner| {
                let conn = (*this.reuse).then_some((conn, pool));
                let mut body = UpstreamBody { inner, conn };
                body.release_if_done();
                body
            })),
            Err(mut err) => {
                let unsent = err.take_message().map(Box::new);
                Err(ExchangeError::Failed { error: err.into_error(), unsent })
            }
        })
    }
}

/// The upstream's response body; its end returns the connection to the pool.
/// Dropped before its end, the connection is dropped too (its task closes it:
/// what is left of the body is unread). An upstream that sends nothing more
/// for `idle_timeout` before the end fails it (the `stall` module), which cuts
/// the client's response short rather than let both connections hang.
pub struct UpstreamBody {
    inner: Incoming,
    conn: Option<(Conn, Arc<Pool>)>,
}

impl UpstreamBody {
    /// A body with a known length is done once it is all read, which
    /// `is_end_stream` tells before the end is polled (so a body that was
    /// empty, or whose last chunk the client took, frees its connection at
    /// once, even if nobody polls it again).
    fn release_if_done(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }

    /// The exchange is over: the connection goes back to the pool.
    fn release(&mut self) {
        if let Some((conn, pool)) = self.conn.take() {
            pool.checkin(conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        // No connection: its body already ended (or failed), nothing to time.
        let Some((conn, pool)) = this.conn.as_mut() else {
            return frame.map(|f| f.map(|r| r.map_err(std::io::Error::other)));
        };
        let Some(frame) = ready!(conn.stall.watch(frame, pool.idle_timeout, cx)) else {
            this.conn = None;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                UpstreamStalled,
            ))));
        };
        match &frame {
            Some(Ok(_)) => this.release_if_done(),
            // The end. A chunked (or close-delimited) body's `is_end_stream`
            // never turns true, so only this tells its end: without it every
            // chunked response cost a new upstream connection.
            None => this.release(),
            Some(Err(_)) => this.conn = None,
        }
        Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.release_if_done();
    }
}

/// The upstream sent nothing for `idle_timeout` in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for idle_timeout before the end of its response body")]
pub struct UpstreamStalled;

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").field("pooled", &self.conn.is_some()).finish()
    }
}

/// An idle connection over `io`, ready and parked in `pool`, as if it had
/// served a request (tests of the client's use of the pool).
#[cfg(test)]
pub(super) async fn park_idle<T>(pool: &Arc<Pool>, io: T)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.expect("handshake");
    let mut conn = Conn::spawn(sender, conn);
    conn.sender.ready().await.expect("ready");
    pool.checkin(conn);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A connection to an in-memory peer that never answers; `peers` keeps
    /// the peer ends open.
    async fn conn(peers: &mut Vec<tokio::io::DuplexStream>) -> Conn {
        let (ours, theirs) = tokio::io::duplex(1024);
        peers.push(theirs);
        let (sender, conn) = http1::handshake(TokioIo::new(ours)).await.unwrap();
        let mut conn = Conn::spawn(sender, conn);
        conn.sender.ready().await.unwrap();
        conn
    }

    #[tokio::test]
    async fn keeps_at_most_the_cap() {
        let pool = Arc::new(Pool::new(Duration::from_secs(60)));
        let mut peers = Vec::new();
        for _ in 0..POOL_MAX_IDLE + 2 {
            let c = conn(&mut peers).await;
            pool.checkin(c);
        }
        assert_eq!(pool.idle_count(), POOL_MAX_IDLE, "the two past the cap were closed");
        let taken = pool.checkout(Instant::now()).expect("an idle connection");
        assert_eq!(pool.idle_count(), POOL_MAX_IDLE - 1);
        drop(taken);
        assert_eq!(pool.idle_count(), POOL_MAX_IDLE - 1, "a dropped connection is closed, not returned");
    }

    #[tokio::test]
    async fn expired_or_closed_connections_are_never_handed_out() {
        let pool = Arc::new(Pool::new(Duration::from_secs(60)));
        let mut peers = Vec::new();
        let c = conn(&mut peers).await;
        pool.checkin(c);
        pool.reap(Instant::now() + Duration::from_secs(61));
        assert_eq!(pool.idle_count(), 0, "past idle_timeout: reaped");

        let c = conn(&mut peers).await;
        pool.checkin(c);
        peers.clear(); // the peer goes away
                       // The connection's task sees the close; the pool then refuses it.
        for _ in 0..100 {
            if pool.lock().iter().all(|i| !i.conn.ready()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.checkout(Instant::now()).is_none());
    }
}
