//! Accepting connections: the connection cap, TLS, the protocol sniff (bounded by
//! `header_read_timeout`, which hyper's own timer does not cover), HTTP/1.1 and
//! HTTP/2 with their limits, and graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerSettings;
use crate::gateway::Gateway;
use crate::pipeline::{self, ConnInfo};
use crate::stall::WriteStall;

mod http2;
mod plain;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The next connection on `listener`. An accept error (mostly: out of file
/// descriptors) is logged and retried after a pause: retried at once, the
/// pending connection that caused it fails it again at once, and the loop
/// spins a core. Every listener (the admin's, the demo's) accepts this way.
/// The warning is logged once a second at most while the errors last.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, std::net::SocketAddr) {
    let mut failed = 0u32;
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                if failed % 50 == 0 {
                    tracing::warn!(error = %e, failed_in_a_row = failed + 1, "accept failed");
                }
                failed = failed.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for up to `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = gw.snapshot().runtime.server.clone();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        // Over the cap: close at once rather than queue (the client retries elsewhere).
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // From the current snapshot: a reload that renewed the certificate
        // applies to the next connection.
        let (limits, tls) = {
            let snapshot = gw.snapshot();
            let server = &snapshot.runtime.server;
            (ConnLimits::of(server), server.tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone())))
        };
        let ctx = ConnCtx {
            _active: crate::metrics::GaugeGuard::new(&gw.metrics.connections_active),
            gw: gw.clone(),
            limits,
            stop: stop_rx.clone(),
            _permit: permit,
        };
        let ended = move |res: Result<(), BoxError>| {
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        };
        // The connection's own future is the task: no wrapper holding a second
        // copy of its arguments for as long as the connection lives.
        match tls {
            None => tokio::spawn(plain::serve(stream, peer, ctx).map(ended)),
            Some(acceptor) => tokio::spawn(Box::pin(accept_tls(stream, peer, acceptor, ctx)).map(ended)),
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every live connection holds a permit: all permits back = all drained.
    let grace = settings.shutdown_grace;
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(grace, permits.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(?grace, "shutdown grace elapsed; closing the rest"),
    }
    Ok(())
}

/// The longest wait between two looks at a partial HTTP/2 preface.
const SNIFF_PAUSE_MAX: Duration = Duration::from_millis(64);

/// Waits (bounded) for enough bytes to tell HTTP/2's preface from HTTP/1.
async fn sniff_h2(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "no request within header_read_timeout")
        })??;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A partial preface: the bytes stay readable, so readiness cannot
        // say when more arrive. Wait a little, longer each time (the rest of
        // a split preface comes within a round trip): at a fixed 1 ms, each
        // client holding half a preface cost a thousand wake-ups a second
        // until header_read_timeout, and many of them a core.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(SNIFF_PAUSE_MAX);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a connection needs from `[server]`, copied per connection: a live
/// connection costs memory for as long as it is open, so it holds no more.
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
}

impl ConnLimits {
    fn of(server: &ServerSettings) -> ConnLimits {
        ConnLimits {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_header_bytes: server.max_header_bytes,
            max_headers: server.max_headers,
        }
    }
}

/// What a connection's task owns besides its socket, for as long as it lives.
struct ConnCtx {
    gw: Arc<Gateway>,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
    /// The server counts live connections by their permits when it drains.
    _permit: OwnedSemaphorePermit,
    _active: crate::metrics::GaugeGuard,
}

/// TLS handshake (bounded by `header_read_timeout`; ALPN decides h2), then
/// the HTTP connection.
async fn accept_tls(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    mut ctx: ConnCtx,
) -> Result<(), BoxError> {
    let stream = WriteStall::new(stream, ctx.limits.idle_timeout);
    let stream =
        tokio::time::timeout(ctx.limits.header_read_timeout, acceptor.accept(stream)).await.map_err(
            |_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake exceeded header_read_timeout"),
        )??;
    let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let conn = ConnInfo { peer, tls: true };
    if is_h2 {
        return http2::serve(stream, conn, &mut ctx).await;
    }
    serve_h1(stream, conn, &mut ctx).await
}

/// HTTP/1.1 over TLS. (Plaintext HTTP/1.1 is [`plain::serve`], which also
/// lets go of hyper's buffers between requests.)
async fn serve_h1<I>(stream: I, conn: ConnInfo, ctx: &mut ConnCtx) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // hyper keeps room for one service future per connection for the
    // connection's whole life; boxed, an idle connection holds a pointer
    // instead of the pipeline's whole state.
    let gw = ctx.gw.clone();
    // The last WebSocket handshake's hold, as in `plain`: an upgraded socket
    // is the tunnel's, and this task keeps the connection's permit and gauge
    // until the tunnel ends.
    let tunnel = Arc::new(pipeline::upgrade::LastTunnel::default());
    let watched = tunnel.clone();
    let service = service_fn(move |mut req| {
        watched.watch(&mut req);
        Box::pin(pipeline::handle(gw.clone(), conn, req))
    });
    let conn = h1_builder(&ctx.limits).serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    let stopped = tokio::select! {
        res = conn.as_mut() => res.map(|()| false)?,
        _ = ctx.stop.wait_for(|s| *s) => true,
    };
    if stopped {
        conn.as_mut().graceful_shutdown();
        conn.await?;
    }
    tunnel.closed().await;
    Ok(())
}

/// hyper's HTTP/1.1 settings from `[server]`. `header_read_timeout` also
/// closes idle keep-alive connections: hyper starts it when it waits for a head.
/// (Plaintext connections turn hyper's timer off and time the wait in
/// [`plain`]'s connection loop instead, without a timer per request.)
fn h1_builder(limits: &ConnLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.min(limits.idle_timeout))
        .max_headers(limits.max_headers.saturating_mul(2).max(100))
        .max_buf_size((limits.max_header_bytes * 2).max(16 * 1024))
        // One buffer per write (the head with a small body copied after it),
        // not a writev of queued pieces: 4-5 % more requests per second on
        // small responses, none lost on 64 KiB or 1 MiB ones (BENCHMARKS.md).
        .writev(false);
    builder
}
