//! The request pipeline (DESIGN.md §1): one driver calls named phases in order
//! over one [`RequestCtx`]; [`handle`] is the only place an error becomes a
//! response, and it always writes the access log.

mod auth;
pub mod extract;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod upgrade;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::gateway::{Gateway, Snapshot};
use crate::route::{Canonical, Route};
use crate::session::csrf::FetchMeta;
use crate::store::TokenPair;
use crate::token::Claims;
use extract::Credential;

pub use auth::check_revoked;
pub use outbound::policy_name;

/// The access credential after the verify phase.
#[derive(Debug, Default)]
pub enum TokenState {
    /// Nothing presented (or a public route, where nothing is looked at).
    #[default]
    Absent,
    /// Verified, right type, not revoked.
    Valid(Arc<Claims>),
    /// Signature and claims fine but expired: CSRF may still read it, refresh
    /// may replace it. Boxed, like `refreshed`: rare, and every request's
    /// future holds a `RequestCtx`.
    Expired(Box<Claims>),
}

impl TokenState {
    /// The access token's claims, expired or not: what CSRF and implicit
    /// refresh judge the session by.
    pub fn signed(&self) -> Option<&Claims> {
        match self {
            TokenState::Valid(c) => Some(c),
            TokenState::Expired(c) => Some(c),
            TokenState::Absent => None,
        }
    }
}

/// Every response body jwtgate sends: a streamed upstream body or a local one.
pub type Body = BoxBody<Bytes, BodyError>;

/// Why a streamed body ended before its end: hyper's error (wrapped), or
/// `TimedOut` when the upstream stalled ([`crate::forward::pool::UpstreamBody`]).
/// hyper then closes the client's connection (HTTP/1) or resets its stream
/// (HTTP/2). (An `io::Error` rather than a boxed `dyn Error`: with the box,
/// rustc could no longer prove the plain connection's future `Send`.)
pub type BodyError = std::io::Error;

/// A local, fully known body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// How the connection reached jwtgate.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Per-request state every phase reads and writes.
pub struct RequestCtx {
    pub gw: Arc<Gateway>,
    pub snap: Arc<Snapshot>,
    pub conn: ConnInfo,
    pub started: Instant,
    /// Unix seconds, read once so every check in one request agrees.
    pub now: i64,
    pub method: Method,
    /// Host as sent (for X-Forwarded-Host); `match_host` is lower-cased, port dropped.
    pub host: String,
    pub match_host: String,
    pub canonical: Option<Canonical>,
    route: Option<usize>,
    pub credential: Option<Credential>,
    pub token: TokenState,
    /// Origin, Sec-Fetch-*, CSRF header: what the csrf phase judges.
    pub fetch: FetchMeta,
    /// The pair an implicit refresh minted; rewrite forwards its access token.
    pub refreshed: Option<Box<TokenPair>>,
    /// Set-Cookie values for whatever response this request gets, errors included.
    pub set_cookies: Vec<HeaderValue>,
    /// A browser page load: with `errors.login_url`, its 401 becomes a 303.
    pub browser_navigation: bool,
    pub upstream_time: Option<Duration>,
    /// What the gateway decided, for the access log.
    pub decision: &'static str,
    /// The error code of a 401/403, for `jwtgate_auth_failures_total`.
    pub failure: Option<&'static str>,
}

impl RequestCtx {
    fn new(gw: Arc<Gateway>, conn: ConnInfo, method: Method) -> RequestCtx {
        let snap = gw.snapshot();
        let now = gw.clock.now();
        RequestCtx {
            gw,
            snap,
            conn,
            started: Instant::now(),
            now,
            method,
            host: String::new(),
            match_host: String::new(),
            canonical: None,
            route: None,
            credential: None,
            token: TokenState::Absent,
            fetch: FetchMeta::default(),
            refreshed: None,
            set_cookies: Vec::new(),
            browser_navigation: false,
            upstream_time: None,
            decision: "refused",
            failure: None,
        }
    }

    fn set_route(&mut self, index: usize) {
        self.route = Some(index);
    }

    /// The verified (or freshly refreshed) access claims.
    pub fn claims(&self) -> Option<&Claims> {
        match &self.token {
            TokenState::Valid(c) => Some(c),
            _ => None,
        }
    }

    /// Is the connection's peer one of `trusted_proxies`?
    pub fn peer_trusted(&self) -> bool {
        let peer = self.conn.peer.ip();
        self.snap.runtime.server.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// The matched route, once the route phase ran.
    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.snap.runtime.routes.routes().get(i))
    }

    /// The matched route's upstream, by name, for log lines.
    pub fn upstream_name(&self) -> &str {
        self.route().and_then(|r| r.upstream.as_deref()).unwrap_or_default()
    }
}

/// Serves one request. Never fails: errors become problem+json here and only here.
///
/// `handle` and `drive` return `async` blocks rather than being `async fn`s: an
/// `async fn` keeps each argument twice (as given, and as its local), so the
/// request would be in the future twice at each level (BENCHMARKS.md, future sizes).
#[allow(clippy::manual_async_fn)] // deliberately not an async fn (above)
pub fn handle(
    gw: Arc<Gateway>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send {
    async move {
        let mut ctx = RequestCtx::new(gw, conn, req.method().clone());
        ctx.browser_navigation = outbound::is_browser_navigation(&req);
        let mut resp = match drive(&mut ctx, req).await {
            Ok(resp) => resp,
            Err(err) => outbound::error_response(&mut ctx, &err),
        };
        outbound::finish(&mut ctx, &mut resp);
        if ctx.method == Method::HEAD {
            outbound::bodiless(&mut resp);
        }
        outbound::record(&ctx, &resp);
        outbound::access_log(&ctx, &resp);
        Ok(resp)
    }
}

/// The phases of DESIGN.md §1, in order.
#[allow(clippy::manual_async_fn)] // not an async fn: see `handle`
fn drive(
    ctx: &mut RequestCtx,
    mut req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + '_ {
    async move {
        inbound::limits(ctx, &req)?;
        inbound::host(ctx, &req)?;
        inbound::canonical(ctx, &req)?;
        inbound::route(ctx)?;
        let jar = extract::CookieJar::parse(req.headers());
        ctx.fetch = FetchMeta::capture(req.headers(), &ctx.snap.runtime, ctx.peer_trusted());
        auth::extract(ctx, &req, &jar)?;
        // The session endpoints and WebSocket upgrades are boxed: they are rare,
        // and their state would otherwise make every proxied request's future
        // larger, and so every move of it dearer (BENCHMARKS.md).
        if let Some(handler) = ctx.route().and_then(|r| r.handler) {
            return Box::pin(crate::session::handlers::serve(ctx, handler, req, &jar)).await;
        }
        auth::verify(ctx).await?;
        let websocket = upgrade::is_websocket(&req);
        crate::session::implicit::csrf_phase(ctx, &jar, websocket)?;
        crate::session::implicit::refresh_phase(ctx, &jar).await?;
        auth::decide(ctx)?;
        outbound::rewrite(ctx, &mut req, &jar)?;
        if websocket {
            return Box::pin(upgrade::forward(ctx, req)).await;
        }
        outbound::forward(ctx, req).await
    }
}
