//! Built-in handlers (DESIGN.md §6): login handoff, explicit refresh, logout,
//! JWKS. Each answers the request itself; the login handler forwards first.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::csrf::{check_double_submit, check_origin, is_safe};
use super::{cookie_mode, cookies, mint_access, mint_pair, rotate, with_timeout, SessionSeed};
use crate::error::GatewayError;
use crate::pipeline::extract::{bearer, CookieJar};
use crate::pipeline::{check_revoked, full, outbound, Body, RequestCtx};
use crate::route::Handler;
use crate::store::{Family, RenewOutcome, TokenPair};
use crate::token::strict_json::{self, StrictError};
use crate::token::{Claims, TokenError, TokenType, MAX_LEEWAY};

/// Identity headers larger than this are refused (502 bad_identity).
const MAX_IDENTITY_BYTES: usize = 4096;
/// Explicit refresh reads at most this much JSON body.
const MAX_REFRESH_BODY: usize = 16 * 1024;

/// Dispatches to the route's handler.
pub async fn serve(
    ctx: &mut RequestCtx,
    handler: Handler,
    req: Request<Incoming>,
    jar: &CookieJar,
) -> Result<Response<Body>, GatewayError> {
    match handler {
        Handler::Login => login(ctx, req, jar).await,
        Handler::Refresh => refresh(ctx, req, jar).await,
        Handler::Logout => logout(ctx, req, jar).await,
        Handler::Jwks => Ok(json_response(StatusCode::OK, &ctx.snap.runtime.tokens.verifier.jwks())),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn tokens_body(pair: &TokenPair, now: i64) -> Value {
    json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "bearer",
        "expires_in": (pair.access_exp - now).max(0),
    })
}

/// Login handoff: the app checks the credentials and names the user in the
/// identity header; jwtgate starts a family and mints a FRESH pair.
async fn login(
    ctx: &mut RequestCtx,
    mut req: Request<Incoming>,
    jar: &CookieJar,
) -> Result<Response<Body>, GatewayError> {
    // Login CSRF: a cross-site form must not log the victim into our session.
    check_origin(&ctx.snap.runtime, &ctx.fetch, ctx.conn.tls, &ctx.host)?;
    outbound::rewrite(ctx, &mut req, jar)?;
    let resp = outbound::send(ctx, req).await?;
    let rt = &ctx.snap.runtime;
    let identity = identity(resp.headers(), &rt.sessions.identity_header);
    let resp = outbound::cleaned(resp, &rt.sessions.identity_header);
    let ok_status = resp.status().is_success() || resp.status().is_redirection();
    let Some(identity) = identity.filter(|_| ok_status) else {
        return Ok(resp);
    };
    let (sub, extra) = identity?;
    let fid = uuid::Uuid::new_v4().to_string();
    let csrf = cookie_mode(rt).then(|| uuid::Uuid::new_v4().to_string());
    let seed = SessionSeed { sub: &sub, fid: &fid, csrf: csrf.as_deref(), auth_time: ctx.now, extra: &extra };
    let pair = mint_pair(rt, &seed, true, ctx.now)?;
    // A browser drops a cookie over 4 KiB without a word: the user would be
    // logged in by the answer and out on the next request.
    if cookie_mode(rt) && !cookies::fit_a_browser(&rt.cookies, &pair) {
        return Err(GatewayError::BadIdentity(
            "its claims make the session cookies larger than a browser keeps (4 KiB)",
        ));
    }
    let family =
        Family::new(&fid, &sub, &pair.refresh_jti, ctx.now, rt.sessions.max_session.as_secs() as i64);
    with_timeout(rt, ctx.gw.store.start_family(&family)).await?;
    if cookie_mode(rt) {
        ctx.set_cookies = cookies::for_session(rt, &pair, csrf.as_deref(), ctx.now);
    }
    ctx.decision = "login";
    match rt.sessions.login_response {
        crate::config::LoginResponse::Tokens => {
            // The app's own cookies (Flask's `session`, say) go out with the
            // tokens, and nothing else of its answer; jwtgate's are appended
            // after them (`outbound::finish`), so on a clash the browser
            // keeps jwtgate's.
            let mut tokens = json_response(StatusCode::OK, &tokens_body(&pair, ctx.now));
            for cookie in resp.headers().get_all(SET_COOKIE) {
                tokens.headers_mut().append(SET_COOKIE, cookie.clone());
            }
            Ok(tokens)
        }
        crate::config::LoginResponse::Upstream => Ok(resp),
    }
}

type Identity = Result<(String, Map<String, Value>), GatewayError>;

/// The identity header: once, ≤ 4 KiB of UTF-8 JSON, an object with a
/// non-empty string `sub`; reserved claim names are ignored. None = absent.
/// Read as a token's claims are: a member name twice, at any depth, is
/// refused, since serde keeps the last `sub` of two where another reader
/// (the app's own logs, a WAF) may keep the first.
fn identity(headers: &http::HeaderMap, name: &http::HeaderName) -> Option<Identity> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    Some((|| {
        if values.next().is_some() {
            return Err(GatewayError::BadIdentity("the identity header appears more than once"));
        }
        if first.len() > MAX_IDENTITY_BYTES {
            return Err(GatewayError::BadIdentity("the identity header is larger than 4 KiB"));
        }
        let text =
            std::str::from_utf8(first.as_bytes()).map_err(|_| GatewayError::BadIdentity("not UTF-8"))?;
        let mut map = strict_json::object(text.as_bytes()).map_err(|e| match e {
            StrictError::Invalid => GatewayError::BadIdentity("not a JSON object"),
            StrictError::Duplicate => GatewayError::BadIdentity("a member name appears twice"),
        })?;
        let sub = match map.remove("sub") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(GatewayError::BadIdentity("sub must be a non-empty string")),
        };
        map.retain(|k, _| !crate::token::claims::is_reserved(k));
        Ok((sub, map))
    })())
}

/// Where the explicit refresh token came from.
#[derive(Debug, PartialEq, Eq)]
enum From {
    Header,
    Body,
    Cookie,
}

/// Explicit refresh: Authorization header, JSON body `{"refresh_token"}`, or
/// (unsafe methods only, CSRF applies) the refresh cookie; GET: header only.
async fn refresh(
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
    jar: &CookieJar,
) -> Result<Response<Body>, GatewayError> {
    // Login CSRF, as at the login handler: where the answer sets the session
    // cookies, a cross-site form (`enctype="text/plain"` makes its body the
    // JSON this handler reads) must not put another session in the victim's
    // browser, whichever location its token came from. A GET cannot carry
    // one cross-site (an Authorization header needs a CORS preflight).
    let rt = &ctx.snap.runtime;
    if cookie_mode(rt) && !is_safe(&ctx.method) {
        check_origin(rt, &ctx.fetch, ctx.conn.tls, &ctx.host)?;
    }
    let (token, from) = refresh_credential(ctx, req, jar).await?;
    let claims = match ctx.snap.runtime.tokens.verifier.verify(&token, ctx.now) {
        Ok(c) => c,
        Err(TokenError::Expired(_)) => return Err(GatewayError::TokenExpired),
        Err(e) => return Err(e.into()),
    };
    if claims.token_type != TokenType::Refresh {
        return Err(GatewayError::WrongTokenType("this endpoint needs a refresh token"));
    }
    // The cookie comes only on unsafe methods in cookie mode: Origin is checked above.
    if from == From::Cookie {
        let access = session_access_cookie(ctx, jar, &claims)?;
        if ctx.snap.runtime.csrf.enabled {
            let expected = access.as_ref().map_or(claims.csrf.as_deref(), |a| a.csrf.as_deref());
            check_double_submit(&ctx.fetch, expected)?;
        }
    }
    check_revoked(ctx, &claims).await?;
    let pair = if ctx.snap.runtime.sessions.rotate_refresh {
        rotate(ctx, &claims, "explicit").await?
    } else {
        access_only(ctx, &claims, &token).await?
    };
    ctx.decision = "refreshed";
    Ok(json_response(StatusCode::OK, &tokens_body(&pair, ctx.now)))
}

/// The access cookie beside a refresh cookie, which the request's CSRF token
/// is judged by (DESIGN §7: signature verified, `exp` ignored). It must be of
/// the refresh cookie's family, as implicit refresh requires: else a refresh
/// cookie planted beside a session, with a CSRF cookie of its own, would be
/// judged by that cookie and set its session in the browser. An access cookie
/// that does not verify, or belongs to no family, fails the check.
fn session_access_cookie(
    ctx: &RequestCtx,
    jar: &CookieJar,
    refresh: &Claims,
) -> Result<Option<Arc<Claims>>, GatewayError> {
    const OTHER: GatewayError =
        GatewayError::CsrfFailed("the access cookie is not of the refresh cookie's session");
    let rt = &ctx.snap.runtime;
    let Some(raw) = jar.get(&rt.cookies.access).filter(|v| !v.is_empty()) else { return Ok(None) };
    let access = match rt.tokens.verifier.verify(&String::from_utf8_lossy(raw), ctx.now) {
        Ok(c) => c,
        Err(TokenError::Expired(c)) => Arc::new(*c),
        Err(_) => return Err(OTHER),
    };
    if access.fid.is_none() || access.fid != refresh.fid {
        return Err(OTHER);
    }
    Ok(Some(access))
}

async fn refresh_credential(
    ctx: &RequestCtx,
    req: Request<Incoming>,
    jar: &CookieJar,
) -> Result<(String, From), GatewayError> {
    if let Some(t) = bearer(req.headers())? {
        return Ok((t.to_owned(), From::Header));
    }
    if is_safe(&ctx.method) {
        return Err(GatewayError::MissingToken);
    }
    let body = read_body(req, ctx.snap.runtime.server.idle_timeout).await?;
    if let Some(token) = body_token(&body)? {
        return Ok((token, From::Body));
    }
    let cookie = jar.get(&ctx.snap.runtime.cookies.refresh).filter(|v| !v.is_empty());
    match cookie.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(t) if cookie_mode(&ctx.snap.runtime) => Ok((t.to_owned(), From::Cookie)),
        _ => Err(GatewayError::MissingToken),
    }
}

/// The request body whole, at most [`MAX_REFRESH_BODY`]: more is 413, as
/// nginx answers a body over `client_max_body_size`; one that breaks off
/// (malformed chunks, cut short) is the client's 400. A client that
/// sends nothing more of it for `idle_timeout` gets 408, as on a proxied
/// upload (README, *Stalled transfers*): otherwise it would hold the
/// connection, and a `max_connections` slot, for as long as it liked.
async fn read_body(req: Request<Incoming>, idle: std::time::Duration) -> Result<Bytes, GatewayError> {
    let mut body = Limited::new(req.into_body(), MAX_REFRESH_BODY);
    let mut out = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(GatewayError::RequestTimeout),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(e))) if e.is::<LengthLimitError>() => {
                return Err(GatewayError::BodyTooLarge { limit: MAX_REFRESH_BODY })
            }
            Ok(Some(Err(_))) => return Err(GatewayError::BadRequest("refresh body unreadable")),
        }
    }
}

/// The body's non-empty string `refresh_token`. A body that is no JSON
/// object, or names none, gives none: the refresh cookie may still count.
/// A member name twice, at any depth, is 400, as in a token: serde would
/// keep the last `refresh_token` of two where another reader keeps the
/// first, and such a body is refused, not read as one without a token.
fn body_token(body: &Bytes) -> Result<Option<String>, GatewayError> {
    let map = match strict_json::object(body) {
        Ok(map) => map,
        Err(StrictError::Invalid) => return Ok(None),
        Err(StrictError::Duplicate) => {
            return Err(GatewayError::BadRequest("the refresh body names a JSON member twice"))
        }
    };
    Ok(map.get("refresh_token").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned))
}

/// `rotate_refresh = false`: a new access token, the same refresh token; the
/// family must still be alive, and the refresh counts as a use of it (its
/// idle time starts again, as at a rotation). Implicit refresh still
/// rotates, so a refresh token it rotated away goes through the rotation
/// rules instead (the current pair within the grace, reuse detection after
/// it): it must not keep minting access tokens here.
async fn access_only(ctx: &mut RequestCtx, claims: &Claims, token: &str) -> Result<TokenPair, GatewayError> {
    const NO_FAMILY: GatewayError = GatewayError::InvalidToken("no usable session family");
    let rt = &ctx.snap.runtime;
    let fid = claims.fid.as_deref().ok_or(NO_FAMILY)?;
    let jti = claims.jti.as_deref().ok_or(NO_FAMILY)?;
    let idle = rt.sessions.idle_timeout.as_secs() as i64;
    let renewal = with_timeout(rt, ctx.gw.store.renew(fid, jti, idle, ctx.now)).await;
    let outcome = match &renewal {
        Ok(RenewOutcome::Renewed { .. }) => "renewed",
        Ok(RenewOutcome::NotCurrent) => return rotate(ctx, claims, "explicit").await,
        Ok(RenewOutcome::Dead) => "dead",
        Err(_) => "store_error",
    };
    ctx.gw.metrics.refresh_outcome("explicit", outcome);
    let RenewOutcome::Renewed { expires_at } = renewal? else { return Err(NO_FAMILY) };
    let extra = claims.extra();
    let seed = SessionSeed::from_refresh(claims, &extra).ok_or(NO_FAMILY)?;
    // A refresh token without exp (not one jwtgate mints) lasts the session.
    let refresh_exp = claims.exp.map_or(expires_at, |e| e as i64);
    // Capped at the family's end too: a refresh token minted before a reload
    // raised max_session may end after it.
    let until = refresh_exp.min(expires_at);
    let access = mint_access(rt, &seed, until, ctx.now)?.ok_or(NO_FAMILY)?;
    let pair = TokenPair {
        access_token: access.token,
        access_exp: access.exp,
        refresh_token: token.to_owned(),
        refresh_jti: jti.to_owned(),
        refresh_exp,
    };
    if cookie_mode(rt) {
        ctx.set_cookies = cookies::for_session(rt, &pair, seed.csrf, ctx.now);
    }
    Ok(pair)
}

/// Logout: revoke the presented session family (expired tokens count if the
/// signature is valid), clear all four cookies, 204. The Bearer header is
/// the presented token when `tokens.locations` picked it, and on a GET
/// whatever `locations` says, as at the refresh handler (a client that
/// refreshes with it must be able to log out with it, not get a 204 that
/// revoked nothing). A POST whose cookie `locations` put first logs out the
/// cookie session, whatever stray Bearer a page script adds.
async fn logout(
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
    jar: &CookieJar,
) -> Result<Response<Body>, GatewayError> {
    use crate::pipeline::extract::Source;
    let rt = &ctx.snap.runtime;
    let header = match ctx.credential.as_ref() {
        Some(c) if c.source == Source::Header => Some(c.token.as_str()),
        Some(c) if c.source == Source::Cookie && !is_safe(&ctx.method) => None,
        _ => bearer(req.headers())?,
    };
    let presented: Vec<String> = match header {
        Some(t) => vec![t.to_owned()],
        None if !is_safe(&ctx.method) => [&rt.cookies.access, &rt.cookies.refresh]
            .into_iter()
            .filter_map(|name| jar.get(name).filter(|v| !v.is_empty()))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
        None => Vec::new(),
    };
    if !presented.is_empty() {
        let claims = first_verified(ctx, &presented)?;
        if header.is_none() {
            check_origin(rt, &ctx.fetch, ctx.conn.tls, &ctx.host)?;
            if rt.csrf.enabled {
                check_double_submit(&ctx.fetch, claims.csrf.as_deref())?;
            }
        }
        revoke(ctx, &claims).await?;
    }
    ctx.set_cookies = cookies::cleared(&ctx.snap.runtime.cookies);
    ctx.decision = "logout";
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// The first of the presented tokens whose signature verifies (expired
/// counts), else the first one's error. By cookie, the access cookie comes
/// first and the refresh cookie after it: an access cookie that no longer
/// verifies (signed with a key since dropped) must not leave the session
/// beside it alive, logged out in the browser and revoked nowhere.
fn first_verified(ctx: &RequestCtx, presented: &[String]) -> Result<Arc<Claims>, GatewayError> {
    let mut first_error = None;
    for token in presented {
        match ctx.snap.runtime.tokens.verifier.verify(token, ctx.now) {
            Ok(c) => return Ok(c),
            Err(TokenError::Expired(c)) => return Ok(Arc::new(*c)),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    Err(first_error.map_or(GatewayError::MissingToken, GatewayError::from))
}

/// The longest a token is remembered as revoked: a token without `exp`
/// never expires, so for as long as any duration jwtgate accepts (and what
/// a store's expiry can hold).
const REVOKED_AT_MOST: i64 = 100 * 365 * 24 * 3600;

/// Revokes the token's family and id for as long as a verifier could still
/// accept the token: until `exp` plus the largest leeway a config may set
/// (a reload may raise it), and a token without `exp` for good. Revoked only
/// until `exp`, a logged-out token would pass again for the leeway after it;
/// one without `exp`, a second after logout.
async fn revoke(ctx: &RequestCtx, claims: &Claims) -> Result<(), GatewayError> {
    let rt = &ctx.snap.runtime;
    let leeway = MAX_LEEWAY.as_secs() as i64;
    let forever = ctx.now.saturating_add(REVOKED_AT_MOST);
    let accepted_until = claims.exp.map_or(forever, |exp| (exp as i64).saturating_add(leeway).min(forever));
    if let Some(fid) = &claims.fid {
        let session_end = claims
            .auth_time
            .unwrap_or(ctx.now)
            .saturating_add(rt.sessions.max_session.as_secs() as i64)
            .saturating_add(leeway);
        let until = session_end.max(accepted_until).min(forever);
        with_timeout(rt, ctx.gw.store.revoke_family(fid, until, leeway, ctx.now)).await?;
    }
    if let Some(jti) = &claims.jti {
        with_timeout(rt, ctx.gw.store.revoke_jti(jti, accepted_until, ctx.now)).await?;
    }
    Ok(())
}
