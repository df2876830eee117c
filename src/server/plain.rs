//! Plaintext connections: the HTTP/2 sniff, then HTTP/1.1 that holds no HTTP
//! buffers while a keep-alive connection is idle.
//!
//! hyper keeps a connection's 8 KiB write buffer and its read buffer for as
//! long as the connection lives: 10 000 idle keep-alive clients would hold
//! about 100 MiB of buffers doing nothing. So once an exchange is over and
//! hyper waits for the next request head, the socket is taken back
//! (`graceful_shutdown` closes an idle hyper connection at once, and
//! [`Socket`] skips the `shutdown`), the task waits for the client's next bytes
//! holding only the socket, and a new hyper connection serves them.
//!
//! Taking the socket back is safe only while hyper is truly idle, so it is
//! tried only when all of these hold, and kept only if hyper then closes at
//! once (it does only when idle; a busy connection would finish its exchange
//! with `Connection: close`, and then really closes):
//! - the last request had no body and asked for no upgrade. A body the
//!   service did not read would otherwise be parsed as the next request
//!   (request smuggling); after a request with a body hyper keeps the
//!   connection exactly as it would without this module;
//! - no response is in flight, and every byte of the last one was written and
//!   flushed (hyper's write buffer is dropped with it).
//!
//! Bytes hyper read but had not parsed yet (a pipelined or partial head) come
//! back in `Parts::read_buf` and are replayed first into the next connection,
//! and a connection is only taken back after it served a request, so
//! trickling a head byte by byte cannot restart `header_read_timeout`.
//! Upgrades (WebSocket) go through hyper's own upgrade path and end the loop.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::UPGRADE;
use http::{Method, Request};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{BoxError, ConnCtx};
use crate::metrics::GaugeGuard;
use crate::pipeline::{self, ConnInfo};
use crate::stall::WriteStall;

/// Serves one plaintext connection: HTTP/2 if it opens with the preface
/// (sniffed within `header_read_timeout`), else HTTP/1.1 until the client
/// closes it, it idles past min(`idle_timeout`, `header_read_timeout`), or
/// `stop` is set.
pub(super) async fn serve(mut stream: TcpStream, peer: SocketAddr, mut ctx: ConnCtx) -> Result<(), BoxError> {
    let conn = ConnInfo { peer, tls: false };
    if super::sniff_h2(&stream, ctx.limits.header_read_timeout).await? {
        // Boxed: HTTP/2's larger state is not carried by every HTTP/1.1 task.
        let stream = WriteStall::new(stream, ctx.limits.idle_timeout);
        return Box::pin(super::http2::serve(stream, conn, &mut ctx)).await;
    }
    let state = Arc::new(ConnState::default());
    let idle_limit = ctx.limits.header_read_timeout.min(ctx.limits.idle_timeout);
    let mut unread = Bytes::new();
    // Before the first request the whole limit; once parked, the connection
    // has already been idle for at least one LINGER, which counts.
    let mut wait_limit = idle_limit;
    loop {
        if unread.is_empty() && !next_bytes(&stream, wait_limit, &mut ctx).await? {
            return Ok(());
        }
        // Boxed: the task's own future, alive while idle, stays small.
        let Some(back) = Box::pin(exchange(stream, unread, conn, &mut ctx, &state)).await? else {
            // An upgraded socket is the tunnel's now; this task keeps the
            // connection's permit and gauge (`ctx`) until the tunnel ends.
            state.tunnel.closed().await;
            return Ok(());
        };
        (stream, unread) = back;
        wait_limit = idle_limit.saturating_sub(LINGER);
    }
}

/// Waits, holding nothing but the socket, for the client's next bytes.
/// `false`: idle past `limit`, or `stop` was set.
async fn next_bytes(stream: &TcpStream, limit: Duration, ctx: &mut ConnCtx) -> io::Result<bool> {
    let _parked = GaugeGuard::new(&ctx.gw.metrics.connections_parked);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let stopped = ctx.stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    poll_fn(|cx| {
        if stopped.as_mut().poll(cx).is_ready() || deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(false));
        }
        stream.poll_read_ready(cx).map_ok(|()| true)
    })
    .await
}

/// One hyper connection on the socket, from its first byte to the moment it
/// is idle again. `Some`: the socket and any bytes hyper read but did not
/// parse, to serve later; `None`: the connection is over.
async fn exchange(
    stream: TcpStream,
    unread: Bytes,
    conn: ConnInfo,
    ctx: &mut ConnCtx,
    state: &Arc<ConnState>,
) -> Result<Option<(TcpStream, Bytes)>, BoxError> {
    state.start();
    let service = {
        let (gw, state) = (ctx.gw.clone(), state.clone());
        service_fn(move |mut req: Request<Incoming>| {
            let busy = Busy::begin(&state, &mut req);
            let gw = gw.clone();
            // A map, not an `async` block around it: the block would hold the
            // request a second time and copy the pipeline's whole future as it
            // starts (BENCHMARKS.md, future sizes).
            Box::pin(
                pipeline::handle(gw, conn, req)
                    .map(|resp| Ok::<_, Infallible>(resp?.map(|body| Tracked { body, _busy: busy }))),
            )
        })
    };
    let stream = WriteStall::new(stream, ctx.limits.idle_timeout);
    let io = TokioIo::new(Socket { stream, unread, state: state.clone() });
    // `drive` times the wait for a head itself (see there), so hyper arms no
    // timer per request.
    let mut builder = super::h1_builder(&ctx.limits);
    builder.header_read_timeout(None);
    let mut http = builder.serve_connection(io, service).with_upgrades();
    let head_limit = ctx.limits.header_read_timeout.min(ctx.limits.idle_timeout);
    if !drive(&mut http, state, head_limit, &mut ctx.stop).await? {
        return Ok(None);
    }
    // `None`: upgraded, and the tunnel owns the socket now.
    let Some(parts) = http.into_parts() else { return Ok(None) };
    let socket = parts.io.into_inner();
    Ok(Some((socket.stream.into_inner(), unparsed(parts.read_buf, socket.unread))))
}

/// How long a connection must stay idle before its socket is taken back. A
/// busy connection never pays for a new hyper connection per request (that
/// costs about 9 % of throughput); an idle one lets go of its buffers
/// between one and two `LINGER`s after its last request.
const LINGER: Duration = Duration::from_millis(500);

/// Polls the hyper connection to its end. `Ok(true)`: it ended because the
/// socket is being taken back; `Ok(false)`: it is over (closed, upgraded,
/// shut down for `stop`, or cut after `head_limit` waiting for a head).
///
/// One timer per connection, re-armed once per `LINGER` rather than per
/// request, does two jobs when it fires with no request served since it last
/// fired and nothing in flight or unflushed:
/// - if the last exchange left hyper idle, the socket goes back (parked);
/// - otherwise hyper is waiting for a head that does not come (the first
///   one, one after a request with a body, or any while `stop` is set or
///   the socket could not go back), and `head_limit` after the connection
///   was first seen quiet, it is cut. That is `header_read_timeout`, which
///   hyper would otherwise arm, allocate and cancel for every request (about
///   2 % of the instructions per request, BENCHMARKS.md). It never cuts
///   sooner than hyper's timer would, which starts when hyper goes idle: a
///   connection is first seen quiet at a tick after its last activity ended
///   (or, for the first head, when this connection starts, as hyper's does),
///   so the cut comes at most one tick after hyper's would have.
///
/// The timer and the `stop` watch keep the task's waker between polls, so
/// the many wakes of a busy connection poll only hyper: the other two are
/// polled again when the waker changes, the timer has fired or was reset,
/// or the watch changed. Polling all three on every wake cost about 500
/// instructions per request (BENCHMARKS.md).
async fn drive<C>(
    http: &mut C,
    state: &ConnState,
    head_limit: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, BoxError>
where
    C: Future<Output = hyper::Result<()>> + Unpin + GracefulShutdown,
{
    // Tells, without a poll, whether `stop` was sent since `stopped` last looked.
    let mut stop_sent = stop.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let mut stopping = false;
    let tick = LINGER.min(head_limit);
    let started = tokio::time::Instant::now();
    // When a tick first found the connection quiet; `None` while it is busy.
    let mut quiet_since = Some(started);
    let linger = tokio::time::sleep_until(started + tick);
    tokio::pin!(linger);
    // The waker the timer and the watch hold; the timer holds it only from
    // a pending poll until it fires or is reset.
    let mut registered: Option<Waker> = None;
    let mut linger_holds_waker = false;
    let mut served_then = state.served.load(Relaxed);
    let mut closing = false;
    poll_fn(|cx| {
        let same_waker = registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if !same_waker {
            registered = Some(cx.waker().clone());
            linger_holds_waker = false;
        }
        // Sent (or the sender gone) since the last look: look again.
        if !stopping && (!same_waker || stop_sent.has_changed().unwrap_or(true)) {
            stop_sent.mark_unchanged();
            if stopped.as_mut().poll(cx).is_ready() {
                stopping = true;
                Pin::new(&mut *http).shut_down();
            }
        }
        loop {
            if let Poll::Ready(res) = Pin::new(&mut *http).poll(cx) {
                return Poll::Ready(res.map(|()| false).map_err(Into::into));
            }
            if linger_holds_waker && !linger.is_elapsed() {
                return Poll::Pending;
            }
            if linger.as_mut().poll(cx).is_pending() {
                linger_holds_waker = true;
                return Poll::Pending;
            }
            // Fired: every way on from here resets it or returns.
            linger_holds_waker = false;
            let now = tokio::time::Instant::now();
            if state.busy() {
                // The exchange may end any moment after this tick: the quiet
                // time starts at a later one, never before it ended.
                quiet_since = None;
                linger.as_mut().reset(now + tick);
                continue;
            }
            let served = state.served.load(Relaxed);
            if served != served_then {
                // Served and done since the last tick: quiet from now, and
                // parked no sooner than the next tick.
                served_then = served;
                quiet_since = Some(now);
                linger.as_mut().reset(now + tick);
                continue;
            }
            let cut_at = *quiet_since.get_or_insert(now) + head_limit;
            if now >= cut_at {
                tracing::debug!("no request head within header_read_timeout: connection closed");
                return Poll::Ready(Ok(false));
            }
            if stopping || closing || !state.reusable.load(Relaxed) {
                // Keep ticking: a bodiless request served meanwhile makes
                // the connection parkable again.
                linger.as_mut().reset((now + tick).min(cut_at));
                continue;
            }
            // hyper closes an idle connection within this very poll, and
            // [`Socket`] skips the `shutdown`: the socket is ours again.
            state.handing_back.store(true, Relaxed);
            Pin::new(&mut *http).shut_down();
            if let Poll::Ready(res) = Pin::new(&mut *http).poll(cx) {
                return Poll::Ready(res.map(|()| true).map_err(Into::into));
            }
            // Not idle after all (hyper is mid-exchange): it now finishes that
            // exchange with `Connection: close`, and then the connection must
            // really close. Never a socket taken back mid-exchange.
            state.handing_back.store(false, Relaxed);
            closing = true;
        }
    })
    .await
}

/// hyper's `graceful_shutdown`, behind a trait so [`drive`] can name it.
trait GracefulShutdown {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulShutdown for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The bytes read but not parsed, in order, in a buffer of their own size:
/// `hyper_buf` shares hyper's whole read buffer even when it is empty, and
/// keeping it would keep the very memory this module exists to release.
fn unparsed(hyper_buf: Bytes, replay_rest: Bytes) -> Bytes {
    if hyper_buf.is_empty() && replay_rest.is_empty() {
        return Bytes::new();
    }
    let mut joined = BytesMut::with_capacity(hyper_buf.len() + replay_rest.len());
    joined.extend_from_slice(&hyper_buf);
    joined.extend_from_slice(&replay_rest);
    joined.freeze()
}

/// What one connection's hyper, its socket and its responses tell each other.
/// Only the connection's own task touches it, so `Relaxed` is enough.
#[derive(Debug, Default)]
struct ConnState {
    /// Requests whose response has not been written yet.
    in_flight: AtomicUsize,
    /// Requests seen on this connection.
    served: AtomicUsize,
    /// The last request had no body, and no request on this hyper
    /// connection asked for an upgrade.
    reusable: AtomicBool,
    /// A request on this hyper connection asked for an upgrade (`Upgrade`, or
    /// CONNECT). hyper keeps its pending upgrade until the connection ends,
    /// even when the answer was no 101, and then hands back no socket: a
    /// connection taken back would be closed instead of parked.
    upgrade_asked: AtomicBool,
    /// Bytes were handed to the socket (or are waiting to be) and not
    /// flushed since.
    unflushed: AtomicBool,
    /// The socket is being taken back: skip the `shutdown`.
    handing_back: AtomicBool,
    /// The last WebSocket handshake, whose tunnel outlives this hyper
    /// connection.
    tunnel: pipeline::upgrade::LastTunnel,
}

impl ConnState {
    /// A new hyper connection starts. Nothing may be taken back until it
    /// has served a request: hyper counts a connection busy until its first
    /// exchange ends, and a head replayed into it must not get a fresh
    /// `header_read_timeout` every `LINGER`.
    fn start(&self) {
        self.reusable.store(false, Relaxed);
        self.upgrade_asked.store(false, Relaxed);
        self.unflushed.store(false, Relaxed);
        self.handing_back.store(false, Relaxed);
    }

    /// A response is in flight or not yet flushed: hyper is not waiting for
    /// a head. (When it is not busy and the last request was `reusable`,
    /// hyper should be idle; [`drive`] still checks that hyper agrees before
    /// it takes the socket.)
    fn busy(&self) -> bool {
        self.in_flight.load(Relaxed) > 0 || self.unflushed.load(Relaxed)
    }
}

/// One request in flight, until its response body is dropped (hyper drops
/// it once the last frame is written, or when the request is abandoned).
struct Busy(Arc<ConnState>);

impl Busy {
    fn begin(state: &Arc<ConnState>, req: &mut Request<Incoming>) -> Busy {
        if req.headers().contains_key(UPGRADE) || req.method() == Method::CONNECT {
            state.upgrade_asked.store(true, Relaxed);
            state.tunnel.watch(req);
        }
        let reusable = req.body().is_end_stream() && !state.upgrade_asked.load(Relaxed);
        state.reusable.store(reusable, Relaxed);
        state.in_flight.fetch_add(1, Relaxed);
        state.served.fetch_add(1, Relaxed);
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    body: pipeline::Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = pipeline::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, pipeline::BodyError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream as hyper sees it: replays `unread` first, reports writes
/// and flushes to [`ConnState`], and fails a write the client has not drained
/// for `idle_timeout` ([`WriteStall`]).
struct Socket {
    stream: WriteStall<TcpStream>,
    unread: Bytes,
    state: Arc<ConnState>,
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    // Bytes count as unflushed from the moment hyper tries to write them, not
    // once the socket took them: a write still pending holds part of a
    // response in hyper's buffer, which a socket taken back would lose.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !buf.is_empty() {
            this.state.unflushed.store(true, Relaxed);
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().any(|b| !b.is_empty()) {
            this.state.unflushed.store(true, Relaxed);
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(res, Poll::Ready(Ok(()))) {
            this.state.unflushed.store(false, Relaxed);
        }
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.handing_back.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsed_bytes_keep_their_order() {
        assert_eq!(
            unparsed(Bytes::from_static(b"GET / H"), Bytes::from_static(b"TTP/1.1")),
            "GET / HTTP/1.1"
        );
        assert_eq!(unparsed(Bytes::new(), Bytes::from_static(b"x")), "x");
        assert_eq!(unparsed(Bytes::from_static(b"x"), Bytes::new()), "x");
    }

    #[test]
    fn unparsed_bytes_do_not_keep_hypers_buffer() {
        let mut hyper_buf = BytesMut::with_capacity(8192);
        hyper_buf.extend_from_slice(b"GET /");
        let kept = unparsed(hyper_buf.freeze(), Bytes::new());
        assert_eq!(kept, "GET /");
        assert!(BytesMut::from(kept).capacity() < 8192, "still holds the 8 KiB buffer");
        let mut empty = BytesMut::with_capacity(8192);
        empty.extend_from_slice(b"x");
        let _ = empty.split_to(1);
        assert!(unparsed(empty.freeze(), Bytes::new()).is_empty());
    }

    /// A write the client's full socket cannot take yet leaves part of a
    /// response in hyper's buffer: the connection must stay busy (never
    /// parked) even when the last flush had succeeded.
    #[tokio::test]
    async fn a_pending_write_keeps_the_connection_busy() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let state = Arc::new(ConnState::default());
        let stream = WriteStall::new(stream, Duration::from_secs(60));
        let mut socket = Socket { stream, unread: Bytes::new(), state: state.clone() };
        let chunk = vec![0u8; 64 * 1024];
        // Fill the socket (the client never reads), flushing as hyper does.
        loop {
            let wrote = poll_fn(|cx| Poll::Ready(Pin::new(&mut socket).poll_write(cx, &chunk))).await;
            if wrote.is_pending() {
                break;
            }
            socket.flush().await.expect("flush");
            assert!(!state.busy(), "flushed: not busy");
        }
        assert!(state.busy(), "a write still pending must keep the connection busy");
    }

    #[test]
    fn a_response_in_flight_or_unflushed_keeps_the_connection_busy() {
        let state = ConnState::default();
        state.start();
        assert!(!state.busy(), "nothing in flight");
        state.unflushed.store(true, Relaxed);
        assert!(state.busy(), "response not flushed");
        state.unflushed.store(false, Relaxed);
        state.in_flight.store(1, Relaxed);
        assert!(state.busy(), "a request in flight");
    }
}
