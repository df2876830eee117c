//! The request pipeline (DESIGN.md §1): one driver calls named phases in order
//! over one [`RequestCtx`]; [`handle`] is the only place an error becomes a
//! response, and it always writes the access log.

mod auth;
pub mod extract;
mod inbound;
mod outbound;

use std::convert::Infallible;
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
use crate::token::Claims;
use extract::Credential;

/// Every response body jwtgate sends: a streamed upstream body or a local one.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A local, fully known body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// What a phase tells the driver.
pub enum Flow {
    Continue,
    Respond(Response<Body>),
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
    pub claims: Option<Claims>,
    /// The CSRF header's value when it was sent exactly once.
    pub csrf_header: Option<String>,
    /// Set-Cookie values for whatever response this request gets, errors included.
    pub set_cookies: Vec<HeaderValue>,
    /// A browser page load: with `errors.login_url`, its 401 becomes a 303.
    pub browser_navigation: bool,
    pub upstream_time: Option<Duration>,
    /// What the gateway decided, for the access log.
    pub decision: &'static str,
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
            claims: None,
            csrf_header: None,
            set_cookies: Vec::new(),
            browser_navigation: false,
            upstream_time: None,
            decision: "refused",
        }
    }

    fn set_route(&mut self, index: usize) {
        self.route = Some(index);
    }

    /// The matched route, once the route phase ran.
    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.snap.runtime.routes.routes().get(i))
    }
}

/// Serves one request. Never fails: errors become problem+json here and only here.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut ctx = RequestCtx::new(gw, conn, req.method().clone());
    ctx.browser_navigation = outbound::is_browser_navigation(&req);
    let mut resp = match drive(&mut ctx, req).await {
        Ok(resp) => resp,
        Err(err) => outbound::error_response(&ctx, &err),
    };
    outbound::finish(&mut ctx, &mut resp);
    outbound::access_log(&ctx, &resp);
    Ok(resp)
}

/// The phases of DESIGN.md §1, in order.
async fn drive(ctx: &mut RequestCtx, mut req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    inbound::limits(ctx, &req)?;
    inbound::host(ctx, &req)?;
    inbound::canonical(ctx, &req)?;
    if let Flow::Respond(resp) = inbound::route(ctx)? {
        return Ok(resp);
    }
    let jar = extract::CookieJar::parse(req.headers());
    auth::extract(ctx, &req, &jar)?;
    auth::verify(ctx).await?;
    // csrf and implicit refresh run here (sessions); until then a cookie
    // credential on an unsafe method is refused rather than trusted.
    auth::csrf(ctx)?;
    auth::decide(ctx)?;
    outbound::rewrite(ctx, &mut req, &jar)?;
    outbound::forward(ctx, req).await
}
