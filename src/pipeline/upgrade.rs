//! WebSocket upgrades (DESIGN.md §8): the handshake is authenticated like any
//! request, then the two upgraded connections are spliced. The tunnel closes
//! when the session's family (or token) is revoked. Only `websocket` is ever
//! forwarded as an upgrade: `h2c` and anything else are stripped.
//!
//! An open tunnel is still its client connection: it keeps that connection's
//! `max_connections` permit and its count in `jwtgate_connections_active`
//! (the connection's task waits for it, see [`LastTunnel`]), the shutdown drain
//! waits for it, and it closes after `[server] idle_timeout` with no byte
//! either way, as nginx's `proxy_read_timeout` closes a quiet one.
//!
//! The tunnel opens only on the upstream's answer to this handshake: a 101
//! with `Upgrade: websocket` and the `Sec-WebSocket-Accept` the client's key
//! calls for (RFC 6455 §4.2.2). A bare 101 from an endpoint that did not
//! switch (one that echoes a status code, say) would otherwise leave a raw
//! tunnel to an app still reading HTTP, and every request written into it
//! would reach the app past the route policy ("WebSocket smuggling").

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use http::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{full, outbound, Body, RequestCtx};
use crate::error::GatewayError;

/// How often an open tunnel asks the store whether its session was revoked.
const REVOCATION_POLL: Duration = Duration::from_secs(1);

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// An HTTP/1.1 `GET` with `Upgrade: websocket` and `Connection: upgrade`
/// (RFC 6455 §4.1: a handshake is a GET). Any other method is an ordinary
/// request, its `Upgrade` dropped as hop-by-hop.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    // In order of cost: most requests stop at the first test they fail.
    req.version() == http::Version::HTTP_11
        && req.method() == http::Method::GET
        && req.headers().get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Holds the client connection's place while its tunnel lives: dropped with
/// the tunnel, or with the request when no tunnel opened. (In an `Arc`
/// because request extensions must be `Clone`.)
#[derive(Clone)]
pub struct TunnelHold(#[allow(dead_code)] Arc<oneshot::Sender<()>>);

/// A client connection's last WebSocket handshake, for its task to wait on
/// once hyper has given the socket to the tunnel: the task keeps the
/// connection's permit and gauge until the tunnel ends. Without it a tunnel
/// counted against no limit.
#[derive(Debug, Default)]
pub struct LastTunnel(std::sync::Mutex<Option<oneshot::Receiver<()>>>);

impl LastTunnel {
    /// For a WebSocket handshake, puts a [`TunnelHold`] in the request, which
    /// [`forward`] hands to the tunnel, and keeps its other end.
    pub fn watch<B>(&self, req: &mut Request<B>) {
        if !is_websocket(req) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        req.extensions_mut().insert(TunnelHold(Arc::new(tx)));
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rx);
    }

    /// Resolves when the last handshake's tunnel has ended, at once if it
    /// opened none (its hold went with the request) or there was none.
    pub async fn closed(&self) {
        let last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(closed) = last {
            let _ = closed.await;
        }
    }
}

/// Forwards the handshake; on 101 splices client and upstream in a task.
pub async fn forward(
    ctx: &mut RequestCtx,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    // A cookie-carried handshake's Origin was checked in the csrf phase.
    let accept = expected_accept(req.headers())?;
    let hold = req.extensions_mut().remove::<TunnelHold>();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let h = req.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let mut resp = outbound::send_handshake(ctx, req).await?;
    let upgraded_upstream = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded_upstream && !answers_handshake(resp.headers(), &accept) {
        // Dropping the response drops its upgrade and closes the connection.
        let upstream = ctx.upstream_name();
        tracing::warn!(
            upstream,
            "upstream answered a WebSocket handshake with a 101 that is not its answer: no tunnel"
        );
        return Err(GatewayError::UpstreamUnavailable);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let mut resp = outbound::cleaned(resp, &ctx.snap.runtime.sessions.identity_header);
    if !upgraded_upstream {
        return Ok(resp);
    }
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let (jti, fid) = ctx.claims().map_or((None, None), |c| (c.jti.clone(), c.fid.clone()));
    let gw = ctx.gw.clone();
    let idle_timeout = ctx.snap.runtime.server.idle_timeout;
    tokio::spawn(async move {
        let _hold = hold;
        let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) else {
            tracing::debug!("websocket upgrade did not complete");
            return;
        };
        let last = LastProgress::new();
        let mut client = Progress { io: TokioIo::new(client), last: &last };
        let mut upstream = Progress { io: TokioIo::new(upstream), last: &last };
        tokio::select! {
            res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                tracing::debug!(result = ?res.map(|_| ()), "websocket tunnel closed");
            }
            () = watch_revocation(&gw, jti, fid) => tracing::info!("websocket tunnel closed: session revoked"),
            () = last.quiet_for(idle_timeout) => {
                tracing::debug!(?idle_timeout, "websocket tunnel closed: no byte either way for idle_timeout");
            }
        }
    });
    ctx.decision = "tunnel";
    Ok(resp.map(|_| full("")))
}

/// The `Sec-WebSocket-Accept` the handshake's one `Sec-WebSocket-Key` calls
/// for: base64 of SHA-1 over the key and RFC 6455's GUID. No key, or two, is
/// no WebSocket handshake (400).
fn expected_accept(headers: &HeaderMap) -> Result<String, GatewayError> {
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(GatewayError::BadRequest("a WebSocket handshake needs one Sec-WebSocket-Key"));
    };
    let mut input = Vec::with_capacity(key.len() + 36);
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// Whether a 101's head is the upstream's answer to this handshake.
fn answers_handshake(headers: &HeaderMap, accept: &str) -> bool {
    let upgrade = headers.get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let mut accepts = headers.get_all(SEC_WEBSOCKET_ACCEPT).iter();
    let accepted =
        matches!((accepts.next(), accepts.next()), (Some(v), None) if v.as_bytes() == accept.as_bytes());
    upgrade && accepted
}

/// Resolves when the tunnel's session is revoked. A public tunnel (no
/// claims) never resolves; a store error keeps polling (the tunnel is already
/// authenticated; failing closed here would cut every socket on a store blip).
async fn watch_revocation(gw: &crate::Gateway, jti: Option<String>, fid: Option<String>) {
    if jti.is_none() && fid.is_none() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    loop {
        tick.tick().await;
        if let Ok(true) = gw.store.is_revoked(jti.as_deref(), fid.as_deref(), gw.clock.now()).await {
            return;
        }
    }
}

/// When a tunnel last moved a byte, in milliseconds since it opened (an
/// atomic, so the tunnel's future stays `Send`; only its own task touches it).
struct LastProgress {
    opened: Instant,
    millis: AtomicU64,
}

impl LastProgress {
    fn new() -> LastProgress {
        LastProgress { opened: Instant::now(), millis: AtomicU64::new(0) }
    }

    fn moved(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(millis, Relaxed);
    }

    /// Resolves once no byte has moved for `limit`: sleeps until the last
    /// progress plus `limit`, and again from there if bytes moved meanwhile.
    async fn quiet_for(&self, limit: Duration) {
        loop {
            let deadline = self.opened + Duration::from_millis(self.millis.load(Relaxed)) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of a tunnel, noting each read that brought bytes: every byte the
/// tunnel moves is read from one side first.
struct Progress<'a, T> {
    io: T,
    last: &'a LastProgress,
}

impl<T: AsyncRead + Unpin> AsyncRead for Progress<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Progress<'_, T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
