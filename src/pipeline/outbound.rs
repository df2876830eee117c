//! Phases that talk to the upstream and shape the response: rewrite, forward,
//! the final response touches, error responses and the access log.

use std::borrow::Cow;
use std::future::Future;

use futures_util::future::{Either, FutureExt};
use http::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, COOKIE, HOST, LOCATION,
    SET_COOKIE, TRANSFER_ENCODING,
};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use smallvec::SmallVec;

use super::extract::{query_without, CookieJar, Source};
use super::{full, Body, RequestCtx};
use crate::config::Keep;
use crate::error::GatewayError;
use crate::forward::pool::UpstreamBody;
use crate::forward::{claims, headers};
use crate::token::Location;

/// Strips spoofable headers, then adds jwtgate's own: X-Forwarded-*, claim
/// headers, the (possibly swapped) token; points the request at the canonical path.
pub fn rewrite(
    ctx: &mut RequestCtx,
    req: &mut Request<Incoming>,
    jar: &CookieJar,
) -> Result<(), GatewayError> {
    let rt = &ctx.snap.runtime;
    let route = ctx.route().ok_or(GatewayError::Internal)?;
    let hdrs = req.headers_mut();
    headers::strip_request(hdrs, &ctx.snap.strip);
    rewrite_credentials(ctx, hdrs, jar);
    let peer = ctx.conn.peer.ip();
    let trusted = ctx.peer_trusted();
    let proto = if ctx.conn.tls { "https" } else { "http" };
    headers::apply_forwarded(hdrs, &headers::Hop { peer, peer_trusted: trusted, proto, host: &ctx.host });
    if let Some(claims) = ctx.claims() {
        claims::inject(hdrs, claims, &rt.forward, ctx.now)?;
    }
    // HTTP/2 clients send :authority; an HTTP/1.1 upstream needs it as Host.
    if !hdrs.contains_key(HOST) {
        let host =
            HeaderValue::from_str(&ctx.host).map_err(|_| GatewayError::BadRequest("malformed host"))?;
        hdrs.insert(HOST, host);
    }
    let canonical = ctx.canonical.as_ref().ok_or(GatewayError::Internal)?;
    let query = forwarded_query(ctx);
    // The common request goes on as it came: an origin-form target whose
    // path is canonical already, no prefix to strip, the query verbatim.
    // Its URI is kept rather than rebuilt from the same bytes.
    let uri = req.uri();
    let as_sent = route.strip_prefix.is_none()
        && uri.scheme().is_none()
        && uri.authority().is_none()
        && uri.path() == canonical.path
        && uri.query() == query.as_deref();
    if !as_sent {
        let mut target = route.upstream_path(&canonical.path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(&query);
        }
        let pq = PathAndQuery::try_from(target).map_err(|_| GatewayError::Internal)?;
        *req.uri_mut() = Uri::from(pq);
    }
    // The version stays the client's: `Upstream::send` frames an HTTP/2
    // request's body by it, then sends HTTP/1.1.
    Ok(())
}

/// The query as forwarded: verbatim, minus a token that was taken from it
/// (and no `?` when nothing is left).
/// Under `token = "strip"`, minus every query token when the query is a token
/// location, as every Bearer goes: when a header or cookie decided, an
/// unverified `?token=` beside it would reach an app that reads the query
/// first. Where the query is no token location, `token=` is the app's own.
fn forwarded_query(ctx: &RequestCtx) -> Option<Cow<'_, str>> {
    let query = ctx.canonical.as_ref()?.query.as_deref()?;
    let tokens = &ctx.snap.runtime.tokens;
    let from_query = ctx.credential.as_ref().is_some_and(|c| c.source == Source::Query);
    let strip = ctx.snap.runtime.forward.token == Keep::Strip && tokens.locations.contains(&Location::Query);
    if !(from_query || strip) {
        return Some(Cow::Borrowed(query));
    }
    let rest = query_without(query, &tokens.query_param);
    // Removing shortens; with nothing left the target loses its `?` too. A
    // query nothing was removed from (an empty one too) stays as sent.
    if rest.len() == query.len() {
        Some(Cow::Borrowed(query))
    } else if rest.is_empty() {
        None
    } else {
        Some(Cow::Owned(rest))
    }
}

/// Cookie crumbs joined into one header (HTTP/1.1 allows only one); `token` /
/// `refresh_cookie = "strip"` remove the credentials the upstream should not see.
fn rewrite_credentials(ctx: &RequestCtx, hdrs: &mut http::HeaderMap, jar: &CookieJar) {
    let fwd = &ctx.snap.runtime.forward;
    let cookies = &ctx.snap.runtime.cookies;
    // After an implicit refresh the upstream sees the new tokens, as the
    // browser will from now on.
    let swapped;
    let jar = match &ctx.refreshed {
        Some(pair) => {
            let mut j = jar.clone();
            j.set(&cookies.access, &pair.access_token);
            j.set(&cookies.refresh, &pair.refresh_token);
            swapped = j;
            &swapped
        }
        None => jar,
    };
    // On a `refresh` route the refresh token IS the credential the app
    // refreshes with (AuthX / flask-jwt-extended apps behind jwtgate): the
    // strip options never remove the credential a route authenticated with,
    // and only that one: a token beside it was never verified (and may be
    // revoked, which the app cannot know).
    let refresh_route = ctx.route().is_some_and(|r| r.policy == crate::route::Policy::Refresh);
    let forwarded = fwd.token == Keep::Keep || refresh_route;
    match &ctx.credential {
        Some(c) if c.source == Source::Header => respell_bearer(hdrs, &c.token),
        // A query token leaves the query (DESIGN §4 rule 3); where it is
        // forwarded it travels as the header apps read first, in place of
        // any other Authorization: given none, an app would go on to its next
        // location (a cookie, a `jwt=` parameter, a JSON body) and run on a
        // token jwtgate never saw, or (on a refresh route) have nothing to
        // refresh with.
        Some(c) if c.source == Source::Query && forwarded => respell_bearer(hdrs, &c.token),
        _ => {}
    }
    let source = ctx.credential.as_ref().map(|c| c.source);
    let in_header = matches!(source, Some(Source::Header | Source::Query));
    let cookie_decided = source == Some(Source::Cookie);
    let mut drop: SmallVec<[&str; 2]> = SmallVec::new();
    if fwd.token == Keep::Strip {
        // The access token `strip` is about; on a refresh route it is no
        // credential at all (that route reads the refresh cookie).
        drop.push(&cookies.access);
    }
    // A Bearer that did not authenticate goes: where a cookie decided (or an
    // implicit refresh swapped the cookies), an unverified Bearer beside it
    // would reach an app that reads the header first, and the app would run
    // (or refresh) on a token jwtgate never verified, perhaps one it revoked.
    // `keep` forwards the token jwtgate verified, not another; under `strip`
    // every Bearer goes but a refresh route's own credential.
    let drop_bearer = match fwd.token {
        Keep::Strip => !(refresh_route && in_header),
        Keep::Keep => cookie_decided || ctx.refreshed.is_some(),
    };
    if drop_bearer && hdrs.get_all(AUTHORIZATION).iter().any(super::extract::is_bearer) {
        hdrs.remove(AUTHORIZATION);
    }
    if fwd.refresh_cookie == Keep::Strip && !(refresh_route && cookie_decided) {
        drop.push(&cookies.refresh);
    }
    // No Cookie header sent and none swapped in: nothing to remove or render.
    if !jar.sent() && ctx.refreshed.is_none() {
        return;
    }
    hdrs.remove(COOKIE);
    if let Some(value) = jar.render_without(&drop).and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        hdrs.insert(COOKIE, value);
    }
}

/// Makes the Authorization header `Bearer <token>`: flask-jwt-extended
/// reads the scheme only in that spelling, and given `bearer <token>` or
/// `Bearer\t<token>` would read a cookie jwtgate never verified instead.
fn respell_bearer(hdrs: &mut http::HeaderMap, token: &str) {
    const SCHEME: &[u8] = b"Bearer ";
    // Compared whole: where the query decided, the header is the client's,
    // and one as long as the token may hold another token.
    let as_sent =
        hdrs.get(AUTHORIZATION).is_some_and(|v| v.as_bytes().strip_prefix(SCHEME) == Some(token.as_bytes()));
    if !as_sent {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            hdrs.insert(AUTHORIZATION, value);
        }
    }
}

/// Sends to the route's upstream over the pooled client; bodies stream both ways.
pub fn forward(
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + '_ {
    exchange(ctx, req, false, |ctx, resp| cleaned(resp, &ctx.snap.runtime.sessions.identity_header))
}

/// An upstream response as the client may see it: hop-by-hop headers and
/// `identity` stripped from its head and from its trailers (DESIGN.md §6: the
/// identity header never reaches the client; HTTP/2 clients and HTTP/1.1
/// ones sending `TE: trailers` would get a trailer).
pub fn cleaned(resp: Response<UpstreamBody>, identity: &HeaderName) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    headers::strip_response(&mut parts.headers, identity);
    // A body of known length has no trailers (HTTP/1.1 sends them only after
    // chunks): nothing to watch.
    if body.size_hint().exact().is_some() {
        return Response::from_parts(parts, body.boxed());
    }
    let identity = identity.clone();
    let body = body.map_frame(move |mut frame| {
        if let Some(trailers) = frame.trailers_mut() {
            headers::strip_response(trailers, &identity);
        }
        frame
    });
    Response::from_parts(parts, body.boxed())
}

/// The upstream exchange itself, response untouched (the login handler reads
/// the identity header before it is stripped).
pub fn send(
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<UpstreamBody>, GatewayError>> + Send + '_ {
    exchange(ctx, req, false, |_, resp| resp)
}

/// [`send`] for a WebSocket handshake, the one request a 101 may answer.
pub fn send_handshake(
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<UpstreamBody>, GatewayError>> + Send + '_ {
    exchange(ctx, req, true, |_, resp| resp)
}

/// Starts the exchange now and returns its end, `then` applied. Not an `async
/// fn`: that would hold the request a second time beside the upstream's own
/// future, and copy both as it starts (BENCHMARKS.md, future sizes).
///
/// A 101 answers only a WebSocket handshake (`handshake`). To any other
/// request it is 502: passed on, it told an HTTP/1.1 client the connection
/// had switched to a protocol nobody speaks on it, and an HTTP/2 client got
/// a status RFC 9113 §8.6 forbids.
fn exchange<'a, T>(
    ctx: &'a mut RequestCtx,
    req: Request<Incoming>,
    handshake: bool,
    then: impl FnOnce(&RequestCtx, Response<UpstreamBody>) -> T + Send + 'a,
) -> impl Future<Output = Result<T, GatewayError>> + Send + 'a {
    let sent = std::time::Instant::now();
    let pending = match ctx.route.and_then(|i| ctx.snap.route_upstreams.get(i)?.clone()) {
        Some(upstream) => Either::Left(upstream.send(req, sent)),
        None => Either::Right(std::future::ready(Err(GatewayError::Internal))),
    };
    pending.map(move |result| {
        ctx.upstream_time = Some(sent.elapsed());
        let resp = result?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS && !handshake {
            let upstream = ctx.upstream_name();
            tracing::warn!(upstream, "upstream answered 101 to a request that asked for no upgrade");
            return Err(GatewayError::UpstreamUnavailable);
        }
        // A body of known length (none included) was framed by its length:
        // hyper reads any Transfer-Encoding as chunked or to the close instead.
        if resp.body().size_hint().exact().is_none() && !framing_ok(resp.headers()) {
            let upstream = ctx.upstream_name();
            tracing::warn!(
                upstream,
                "upstream response framed with a Transfer-Encoding jwtgate cannot pass on"
            );
            return Err(GatewayError::UpstreamUnavailable);
        }
        Ok(then(ctx, resp))
    })
}

/// Whether a response's framing survives the hop. `Transfer-Encoding` is
/// hop-by-hop and goes, so it may only be `chunked`, which hyper has decoded;
/// any other coding would reach the client still applied to the body and
/// announced as none. Beside a `Content-Length` it is an error (RFC 9112 §6.1:
/// a sign of response splitting), and the stale length would otherwise cut the
/// client's body short while looking complete. The answer is 502, and the
/// upstream connection, its body unread, is dropped.
fn framing_ok(headers: &HeaderMap) -> bool {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    match codings.next() {
        None => true,
        Some(coding) => {
            codings.next().is_none()
                && coding.as_bytes().eq_ignore_ascii_case(b"chunked")
                && !headers.contains_key(CONTENT_LENGTH)
        }
    }
}

/// Touches every response gets, errors included: pending Set-Cookie values.
/// A response that carries them (an implicit refresh's new tokens on the
/// app's answer) is `Cache-Control: no-store` whatever the app said, as the
/// login and refresh handlers' are: a shared cache must never store one
/// user's tokens and hand them to the next visitor. The fields such caches
/// read instead of `Cache-Control` go too.
///
/// On an implicitly refreshed request the app's own Set-Cookie for one of
/// jwtgate's cookies (the same name, Path and Domain) is the last word: an
/// app logging the user out clears its cookies, and jwtgate's new ones after
/// them would keep the browser logged in.
/// A HEAD response has no content (RFC 9110 §9.3.2; RFC 9113 §8.1). hyper's
/// HTTP/1 server leaves out a body it is given; its HTTP/2 server sends it,
/// and the client takes the stream for a protocol error and never sees the
/// status. So a body jwtgate made itself (a refusal, a session endpoint's
/// answer) is replaced by none, with the Content-Length a GET would get. An
/// upstream's answer to a HEAD already has no body and is left alone.
pub fn bodiless(resp: &mut Response<Body>) {
    if resp.body().is_end_stream() {
        return;
    }
    if let Some(len) = resp.body().size_hint().exact() {
        resp.headers_mut().entry(http::header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(len));
    }
    *resp.body_mut() = full(bytes::Bytes::new());
}

pub fn finish(ctx: &mut RequestCtx, resp: &mut Response<Body>) {
    if ctx.set_cookies.is_empty() {
        return;
    }
    let headers = resp.headers_mut();
    if ctx.refreshed.is_some() && headers.contains_key(SET_COOKIE) {
        let settings = &ctx.snap.runtime.cookies;
        let request_path = ctx.canonical.as_ref().map_or("/", |c| c.path.as_str());
        let app_sets = |ours: &HeaderValue| {
            headers.get_all(SET_COOKIE).iter().any(|theirs| {
                crate::session::cookies::same_cookie(
                    theirs.as_bytes(),
                    ours.as_bytes(),
                    settings,
                    request_path,
                )
            })
        };
        ctx.set_cookies.retain(|ours| !app_sets(ours));
        if ctx.set_cookies.is_empty() {
            return;
        }
    }
    for cookie in ctx.set_cookies.drain(..) {
        headers.append(SET_COOKIE, cookie);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for name in ["expires", "cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control"] {
        headers.remove(name);
    }
}

/// The problem+json response for `err`, or a 303 to `errors.login_url` for a
/// browser page load that would get a 401.
pub fn error_response(ctx: &mut RequestCtx, err: &GatewayError) -> Response<Body> {
    if matches!(err.status().as_u16(), 401 | 403) {
        ctx.failure = Some(err.code());
    }
    ctx.decision = err.code();
    if err.status() == StatusCode::UNAUTHORIZED && ctx.browser_navigation {
        if let Some(resp) = login_redirect(ctx) {
            return resp;
        }
    }
    err.to_response().map(|b| b.map_err(|never| match never {}).boxed())
}

fn login_redirect(ctx: &RequestCtx) -> Option<Response<Body>> {
    let login = ctx.snap.runtime.errors.login_url.as_deref()?;
    let canonical = ctx.canonical.as_ref()?;
    let mut next = canonical.path.clone();
    // A query token goes whether or not it was the credential (a cookie may
    // have decided): `login_url` may be another site's, and `next` ends up
    // in its logs and the browser's history. Where the query is no token
    // location, `token=` is the app's own parameter (an invitation link's,
    // say) and stays.
    let tokens = &ctx.snap.runtime.tokens;
    let query = canonical.query.as_deref().map(|q| {
        if tokens.locations.contains(&Location::Query) {
            query_without(q, &tokens.query_param)
        } else {
            q.to_owned()
        }
    });
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        next.push('?');
        next.push_str(&q);
    }
    let sep = if login.contains('?') { '&' } else { '?' };
    let location = format!("{login}{sep}next={}", percent_encode(&next));
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut().insert(LOCATION, HeaderValue::from_str(&location).ok()?);
    Some(resp)
}

/// Everything but unreserved characters, so `next` is one opaque query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Is this a browser navigation (a page load, not XHR / fetch)?
pub fn is_browser_navigation<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    // Cheapest first: an API call stops at the Accept check.
    matches!(*req.method(), Method::GET | Method::HEAD)
        && h.get_all(ACCEPT).iter().any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
        && h.get("x-requested-with").is_none()
        && h.get("sec-fetch-mode").is_none_or(|m| m == "navigate")
}

/// One structured event per request; never a token, never the query.
pub fn access_log(ctx: &RequestCtx, resp: &Response<Body>) {
    if !ctx.snap.runtime.log.access_log {
        return;
    }
    let route = ctx.route();
    tracing::info!(
        target: "jwtgate::access",
        method = %ctx.method,
        path = %ctx.canonical.as_ref().map_or(Cow::Borrowed("-"), |c| without_tokens(&c.path)),
        host = %ctx.match_host,
        route = route.map_or("-", |r| r.pattern.as_str()),
        policy = route.map_or("-", |r| policy_name(r)),
        decision = ctx.decision,
        status = resp.status().as_u16(),
        // Seconds, as the duration histograms (and nginx's $request_time) count.
        latency = ctx.started.elapsed().as_secs_f64(),
        upstream_latency = ctx.upstream_time.map(|d| d.as_secs_f64()),
        sub = ctx.claims().map(|c| c.sub.as_str()),
        peer = %ctx.conn.peer.ip(),
    );
}

/// `path` with every compact JWS in it (a magic link's or an e-mail check's
/// segment) written `[token]`: the access log carries no token (DESIGN.md
/// §11), wherever the client put it. A JWS is three base64url parts joined by
/// dots, the first a JSON header, which always encodes to `eyJ…`.
fn without_tokens(path: &str) -> Cow<'_, str> {
    const B64URL: fn(&u8) -> bool = |b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    if !path.contains("eyJ") {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let (mut copied, mut at) = (0, 0);
    while let Some(found) = path[at..].find("eyJ") {
        let start = at + found;
        // Three runs of base64url, the first two non-empty, joined by dots.
        let mut end = start;
        let mut parts = 0;
        while parts < 3 {
            let run = bytes[end..].iter().take_while(|b| B64URL(b)).count();
            if run == 0 && parts < 2 {
                break;
            }
            end += run;
            parts += 1;
            if parts < 3 && bytes.get(end) == Some(&b'.') {
                end += 1;
            } else {
                break;
            }
        }
        if parts == 3 {
            out.push_str(&path[copied..start]);
            out.push_str("[token]");
            copied = end;
            at = end;
        } else {
            at = start + 3;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(path);
    }
    out.push_str(&path[copied..]);
    Cow::Owned(out)
}

/// Metrics for one answered request.
pub fn record(ctx: &RequestCtx, resp: &Response<Body>) {
    let m = &ctx.gw.metrics;
    match ctx.route.and_then(|i| ctx.snap.route_served.get(i)).filter(|_| resp.status() == StatusCode::OK) {
        Some(served) => {
            served.inc();
        }
        None => {
            let route = ctx.route();
            let labels = crate::metrics::RequestLabels {
                route: route.map_or("-", |r| r.pattern.as_str()).to_owned(),
                policy: route.map_or("-", policy_name).to_owned(),
                status: resp.status().as_str().to_owned(),
            };
            m.requests.get_or_create(&labels).inc();
        }
    }
    m.request_duration.observe(ctx.started.elapsed().as_secs_f64());
    if let Some(t) = ctx.upstream_time {
        m.upstream_duration.observe(t.as_secs_f64());
    }
    if let Some(code) = ctx.failure {
        m.auth_failures.get_or_create(&crate::metrics::ReasonLabels { reason: code.into() }).inc();
    }
}

/// The route's policy (or handler) as logs and metrics name it.
pub fn policy_name(route: &crate::route::Route) -> &'static str {
    use crate::route::{Handler, Policy};
    match (route.handler, route.policy) {
        (Some(Handler::Login), _) => "handler:login",
        (Some(Handler::Refresh), _) => "handler:refresh",
        (Some(Handler::Logout), _) => "handler:logout",
        (Some(Handler::Jwks), _) => "handler:jwks",
        (None, Policy::Public) => "public",
        (None, Policy::Access) => "access",
        (None, Policy::Fresh) => "fresh",
        (None, Policy::Refresh) => "refresh",
    }
}

#[cfg(test)]
mod tests {
    use super::without_tokens;

    #[test]
    fn access_log_paths_lose_their_tokens_and_keep_the_rest() {
        let jws = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_9";
        for (path, logged) in [
            ("/api/items/7", "/api/items/7"),
            (&format!("/verify/{jws}") as &str, "/verify/[token]"),
            (&format!("/l/x-{jws}.html/{jws}"), "/l/x-[token].html/[token]"),
            ("/a/eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0./b", "/a/[token]/b"),
            // Not three parts, or an empty header or payload: kept.
            ("/eyJ/eyJhbGci.only-two", "/eyJ/eyJhbGci.only-two"),
            ("/eyJa..c/eyJa.b", "/eyJa..c/eyJa.b"),
        ] {
            assert_eq!(without_tokens(path), logged, "{path}");
        }
    }
}
