//! HTTP/2 connections (plaintext with the preface, or TLS with ALPN `h2`):
//! hyper's server with `[server]`'s limits, and two closes hyper does not
//! make itself.
//!
//! - Idle for `idle_timeout` (no request in flight; a request is in flight
//!   until hyper drops its response body): hyper's HTTP/2 server
//!   has no idle timer, and its keep-alive pings would keep an idle
//!   connection open for ever. (HTTP/1 idles are closed by
//!   `header_read_timeout`, set to min(idle_timeout, header_read_timeout).)
//! - A stream that has waited on its client for `idle_timeout`: flow control
//!   stops a response before the socket backs up, so [`WriteStall`] never
//!   sees a client that grants a stream no window, and hyper does not poll
//!   the body while it waits for one, so nothing in the body can time it.
//!   Each response body reports when it moves and whose turn it is (in
//!   pieces of at most 16 KiB, so a client that reads steadily moves often);
//!   a tick every quarter of `idle_timeout` sends GOAWAY once one stream has
//!   waited on its client for `idle_timeout` (at most a quarter more). The
//!   other streams may finish, however long they take while they move; the
//!   connection closes once every stream left waits on its client
//!   ([`Streams::stuck`]). hyper offers no way to reset one stream from
//!   outside.
//!
//! [`WriteStall`]: crate::stall::WriteStall

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{BoxError, ConnCtx};
use crate::pipeline::{self, ConnInfo};

/// Serves one HTTP/2 connection until the client closes it, it is idle or
/// stalled for `idle_timeout`, or `stop` is set (then in-flight streams finish).
pub(super) async fn serve<I>(stream: I, conn: ConnInfo, ctx: &mut ConnCtx) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (gw, limits) = (ctx.gw.clone(), ctx.limits);
    let idle = Arc::new(Idle::default());
    let streams = Arc::new(Streams::default());
    let (tracker, watch) = (idle.clone(), streams.clone());
    let service = service_fn(move |req| {
        let (gw, tracker, watch) = (gw.clone(), tracker.clone(), watch.clone());
        async move {
            // In flight until hyper drops the response body, not just until
            // its head: a connection streaming a response is not idle.
            let busy = Idle::begin(&tracker);
            let resp = pipeline::handle(gw, conn, req).await?;
            Ok::<_, Infallible>(resp.map(|body| watch.sending(body, busy)))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(100)
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 2).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stalled = streams.stalled(limits.idle_timeout);
    tokio::pin!(stalled);
    tokio::select! {
        res = conn.as_mut() => return Ok(res?),
        () = stalled => tracing::debug!("a stream waited on its client for idle_timeout: GOAWAY"),
        () = idle.expired(limits.idle_timeout) => {}
        _ = ctx.stop.wait_for(|s| *s) => {}
    }
    // GOAWAY: no new streams, and those in flight may finish, however long
    // they take while they move. The connection closes once nothing left
    // can finish by itself ([`Streams::stuck`]).
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        res = conn => Ok(res?),
        () = streams.stuck(&idle, limits.idle_timeout) => Err(StreamStalled.into()),
    }
}

/// Why an HTTP/2 connection was closed without finishing its drain (logged
/// at debug).
#[derive(Debug, thiserror::Error)]
#[error("a stream waited on its client for idle_timeout: connection closed")]
struct StreamStalled;

/// Idleness of an HTTP/2 connection: no request in flight for `idle_timeout`.
#[derive(Debug)]
struct Idle {
    in_flight: AtomicUsize,
    since: Mutex<tokio::time::Instant>,
}

impl Default for Idle {
    fn default() -> Self {
        Idle { in_flight: 0.into(), since: Mutex::new(tokio::time::Instant::now()) }
    }
}

/// Marks one request in flight until dropped.
struct Busy(Arc<Idle>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(PoisonError::into_inner) = tokio::time::Instant::now();
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Idle {
    fn begin(idle: &Arc<Idle>) -> Busy {
        idle.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy(idle.clone())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the connection has had no request for `timeout`.
    async fn expired(&self, timeout: Duration) {
        loop {
            let since = *self.since.lock().unwrap_or_else(PoisonError::into_inner);
            let busy = self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0;
            if !busy && since.elapsed() >= timeout {
                return;
            }
            let wait = if busy { timeout } else { timeout.saturating_sub(since.elapsed()) };
            tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
        }
    }
}

/// Ticks a stream must wait on its client, in a row, to count as stalled
/// (GOAWAY; and, once every stream left is, the close); the tick is
/// `idle_timeout` divided by this.
const QUIET_TICKS: u32 = 4;

/// The stall checks' clock: a tick every `limit / QUIET_TICKS`. Late ticks
/// are not caught up in a burst, which would count quiet time that did not
/// pass.
fn quarter_ticks(limit: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval((limit / QUIET_TICKS).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The response bodies of one connection that hyper still holds.
#[derive(Debug, Default)]
struct Streams {
    live: Mutex<Vec<Weak<Progress>>>,
}

impl Streams {
    /// Watches `body` for as long as hyper holds it, and keeps its request
    /// counted in flight.
    fn sending(&self, body: pipeline::Body, busy: Busy) -> Watched {
        let progress = Arc::new(Progress::default());
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        // Between ticks, finished streams are swept as the list doubles.
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|p| p.strong_count() > 0);
        }
        live.push(Arc::downgrade(&progress));
        Watched { body, rest: Bytes::new(), progress, _busy: busy }
    }

    /// Resolves once one stream has waited on its client, without moving,
    /// for `limit` (checked every `limit / QUIET_TICKS`, so at most that much
    /// later).
    async fn stalled(&self, limit: Duration) {
        let mut tick = quarter_ticks(limit);
        loop {
            tick.tick().await;
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.retain(|p| p.strong_count() > 0);
            if live.iter().filter_map(Weak::upgrade).any(|p| p.quiet_ticks() >= QUIET_TICKS) {
                return;
            }
        }
    }
}

impl Streams {
    /// During a GOAWAY drain: resolves once nothing left can finish by
    /// itself, checked every `limit / QUIET_TICKS`. Either every request in
    /// flight is a stream that has waited on its client for `limit`, or none
    /// has been in flight for `limit` since the drain began, while h2 still
    /// holds the end of a body (hyper lets go of a body once h2 has queued its
    /// last frame) for a client that grants it no window.
    async fn stuck(&self, idle: &Idle, limit: Duration) {
        let mut tick = quarter_ticks(limit);
        // The first tick is at once: it is not a quarter of waiting.
        tick.tick().await;
        let mut empty_ticks = 0;
        loop {
            tick.tick().await;
            let in_flight = idle.in_flight();
            if in_flight == 0 {
                empty_ticks += 1;
                if empty_ticks >= QUIET_TICKS {
                    return;
                }
                continue;
            }
            empty_ticks = 0;
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.retain(|p| p.strong_count() > 0);
            // Every stream's count moves on: no short-circuit.
            let quiet =
                live.iter().filter_map(Weak::upgrade).filter(|p| p.quiet_ticks() >= QUIET_TICKS).count();
            // A request still waiting for its head has no body yet, so it is
            // in flight without being in `live`: it is not stuck.
            if quiet == in_flight {
                return;
            }
        }
    }
}

/// How one response body is moving. Written by its stream's task, read by
/// the connection's tick.
#[derive(Debug)]
struct Progress {
    /// Frames taken by hyper (the end included).
    moved: AtomicU64,
    /// hyper has not asked for more since it last took a frame (or since the
    /// head): the stream waits on its client's window. `false` while the body
    /// waits on the upstream, which [`crate::forward::pool::UpstreamBody`] times.
    on_client: AtomicBool,
    /// The tick's bookkeeping: `moved` when it last looked, and how many
    /// ticks in a row found the stream waiting on its client without moving.
    seen: AtomicU64,
    quiet: AtomicU32,
}

impl Default for Progress {
    fn default() -> Self {
        // `seen` starts apart from `moved`, so the first tick counts as a
        // move: a stream is never cut less than `limit` after it started.
        Progress { moved: 0.into(), on_client: true.into(), seen: u64::MAX.into(), quiet: 0.into() }
    }
}

impl Progress {
    /// One tick: how many ticks in a row this stream has waited on its client.
    fn quiet_ticks(&self) -> u32 {
        let moved = self.moved.load(Relaxed);
        let unmoved = self.seen.swap(moved, Relaxed) == moved;
        if unmoved && self.on_client.load(Relaxed) {
            self.quiet.fetch_add(1, Relaxed) + 1
        } else {
            self.quiet.store(0, Relaxed);
            0
        }
    }
}

/// The most of a body handed to hyper at once. hyper asks for more only
/// once h2 has sent what it holds, so a large chunk from the upstream would
/// leave a steadily reading client looking still for as long as that chunk
/// takes; h2 frames carry 16 KiB by default anyway.
const PIECE: usize = 16 * 1024;

/// A response body that reports its progress to the connection's tick.
struct Watched {
    body: pipeline::Body,
    /// What is left of a data chunk larger than [`PIECE`].
    rest: Bytes,
    progress: Arc<Progress>,
    _busy: Busy,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = pipeline::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, pipeline::BodyError>>> {
        let this = self.get_mut();
        let res = if this.rest.is_empty() {
            Pin::new(&mut this.body).poll_frame(cx).map(|frame| match frame {
                Some(Ok(frame)) => Some(Ok(match frame.into_data() {
                    Ok(mut data) if data.len() > PIECE => {
                        this.rest = data.split_off(PIECE);
                        Frame::data(data)
                    }
                    Ok(data) => Frame::data(data),
                    Err(frame) => frame,
                })),
                other => other,
            })
        } else {
            let piece = this.rest.split_to(this.rest.len().min(PIECE));
            Poll::Ready(Some(Ok(Frame::data(piece))))
        };
        if res.is_ready() {
            this.progress.moved.fetch_add(1, Relaxed);
        }
        this.progress.on_client.store(res.is_ready(), Relaxed);
        res
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_counts_quiet_only_while_it_waits_on_its_client_without_moving() {
        let p = Progress::default();
        assert_eq!(p.quiet_ticks(), 0, "the first tick after the head counts as a move");
        assert_eq!(p.quiet_ticks(), 1);
        assert_eq!(p.quiet_ticks(), 2);
        p.moved.fetch_add(1, Relaxed);
        assert_eq!(p.quiet_ticks(), 0, "a frame taken starts the count again");
        assert_eq!(p.quiet_ticks(), 1);
        p.on_client.store(false, Relaxed);
        assert_eq!(p.quiet_ticks(), 0, "waiting on the upstream is not the client's stall");
        assert_eq!(p.quiet_ticks(), 0);
        p.on_client.store(true, Relaxed);
        assert_eq!(p.quiet_ticks(), 1);
    }

    #[tokio::test]
    async fn a_large_chunk_is_handed_on_in_pieces_each_counted_as_a_move() {
        use http_body_util::BodyExt;
        use hyper::body::Body as _;
        let streams = Streams::default();
        let idle = Arc::new(Idle::default());
        let chunk: Vec<u8> = (0..PIECE * 2 + 100).map(|i| i as u8).collect();
        let mut body = streams.sending(pipeline::full(chunk.clone()), Idle::begin(&idle));
        assert_eq!(body.size_hint().exact(), Some(chunk.len() as u64));
        let mut got = Vec::new();
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data");
            pieces.push(data.len());
            got.extend_from_slice(&data);
            assert_eq!(
                body.size_hint().exact(),
                Some((chunk.len() - got.len()) as u64),
                "hint after {pieces:?}"
            );
            assert_eq!(body.is_end_stream(), got.len() == chunk.len(), "end after {pieces:?}");
        }
        assert_eq!(pieces, [PIECE, PIECE, 100]);
        assert_eq!(got, chunk, "the pieces in order, nothing lost");
        assert!(body.is_end_stream());
        assert_eq!(body.progress.moved.load(Relaxed), 4, "three pieces and the end, each a move");
    }

    #[test]
    fn finished_streams_are_swept_as_the_list_grows() {
        let streams = Streams::default();
        let idle = Arc::new(Idle::default());
        for _ in 0..1000 {
            drop(streams.sending(pipeline::full(""), Idle::begin(&idle)));
        }
        assert_eq!(idle.in_flight.load(std::sync::atomic::Ordering::SeqCst), 0, "every body dropped");
        let kept = streams.live.lock().unwrap().len();
        assert!(kept <= 64, "{kept} entries kept for 1000 finished streams");
    }
}
