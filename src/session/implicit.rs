//! The csrf and refresh phases for cookie sessions (DESIGN.md §7): when the
//! access cookie is absent, expired or about to expire and the refresh cookie
//! is usable, rotate once and carry on with the new access token.

use std::sync::Arc;

use super::csrf::{check_double_submit, check_origin, is_safe};
use super::{cookie_mode, rotate};
use crate::error::GatewayError;
use crate::pipeline::extract::{CookieJar, Source};
use crate::pipeline::{RequestCtx, TokenState};
use crate::route::Policy;
use crate::token::{Claims, TokenError, TokenType};

/// Is this request's session carried by cookies (so CSRF applies)?
fn cookie_session(ctx: &RequestCtx, jar: &CookieJar) -> bool {
    match &ctx.credential {
        Some(c) => c.source == Source::Cookie,
        None => cookie_mode(&ctx.snap.runtime) && jar.get(&ctx.snap.runtime.cookies.refresh).is_some(),
    }
}

/// The refresh cookie's claims: signature checked, `exp` ignored (CSRF only).
fn refresh_cookie_claims(ctx: &RequestCtx, jar: &CookieJar) -> Option<Arc<Claims>> {
    let raw = jar.get(&ctx.snap.runtime.cookies.refresh)?;
    let token = std::str::from_utf8(raw).ok()?;
    match ctx.snap.runtime.tokens.verifier.verify(token, ctx.now) {
        Ok(c) => Some(c),
        Err(TokenError::Expired(c)) => Some(Arc::new(*c)),
        Err(_) => None,
    }
}

/// The csrf phase: for a cookie-carried session on an unsafe method, Origin
/// and double submit against the access cookie's `csrf` claim (expired still
/// counts), or without one, the refresh cookie's.
///
/// A WebSocket handshake gets the Origin check (cross-site WebSocket
/// hijacking; a browser cannot add a header to it) when a cookie carries its
/// credential, on any route, or when the refresh cookie would carry its
/// session; here, before an implicit refresh would rotate the session for a
/// cross-site page.
pub fn csrf_phase(ctx: &RequestCtx, jar: &CookieJar, websocket: bool) -> Result<(), GatewayError> {
    let rt = &ctx.snap.runtime;
    let protected = ctx.route().is_some_and(|r| r.handler.is_none() && r.policy != Policy::Public);
    let double_submit = protected && !is_safe(&ctx.method) && cookie_session(ctx, jar);
    let cookie_credential = ctx.credential.as_ref().is_some_and(|c| c.source == Source::Cookie);
    let hijackable = websocket && (cookie_credential || (protected && cookie_session(ctx, jar)));
    if !double_submit && !hijackable {
        return Ok(());
    }
    check_origin(rt, &ctx.fetch, ctx.conn.tls, &ctx.host)?;
    if !double_submit || !rt.csrf.enabled {
        return Ok(());
    }
    let expected = match ctx.token.signed() {
        Some(access) => access.csrf.clone(),
        None => refresh_cookie_claims(ctx, jar).and_then(|c| c.csrf.clone()),
    };
    check_double_submit(&ctx.fetch, expected.as_deref())
}

/// A refresh cookie implicit refresh may use, and the one that makes a fresh
/// route answer fresh_token_required (with or without implicit refresh):
/// valid, a refresh token, with a `fid` (AuthX / flask-jwt-extended cookies
/// have none: ignored, not cleared), of the same session as the access
/// cookie beside it, and not sent by a cross-site subresource request.
///
/// The same session: the csrf phase judged the request by the access
/// cookie's `csrf` claim. A refresh cookie of another family (planted from a
/// sibling subdomain, where the cookie `domain` is shared) would otherwise
/// run that request, CSRF passed, as whoever the planted session belongs to.
fn usable_refresh(ctx: &RequestCtx, jar: &CookieJar) -> Option<Arc<Claims>> {
    if ctx.fetch.cross_site_subresource() {
        return None;
    }
    let raw = jar.get(&ctx.snap.runtime.cookies.refresh)?;
    let claims = ctx.snap.runtime.tokens.verifier.verify(std::str::from_utf8(raw).ok()?, ctx.now).ok()?;
    // An access cookie without `fid` (AuthX / flask-jwt-extended) belongs to
    // no jwtgate session, so to none a refresh cookie with one could renew.
    let same_session =
        ctx.token.signed().is_none_or(|access| access.fid.is_some() && access.fid == claims.fid);
    (claims.token_type == TokenType::Refresh && claims.fid.is_some() && same_session).then_some(claims)
}

/// `exp - refresh_ahead <= now`: leeway never delays a refresh.
fn wants_refresh(ctx: &RequestCtx) -> bool {
    // f64 seconds: a sub-second refresh_ahead ("750ms") must not round to 0.
    let ahead = ctx.snap.runtime.sessions.refresh_ahead.as_secs_f64();
    match &ctx.token {
        TokenState::Absent | TokenState::Expired(_) => true,
        TokenState::Valid(c) => c.exp.is_some_and(|exp| exp - ahead <= ctx.now as f64),
    }
}

/// The refresh phase. Access routes rotate (with `implicit_refresh`); fresh
/// routes never do, and an absent or expired access cookie there with a
/// valid refresh cookie → 401 fresh_token_required with nothing rotated,
/// whether or not `implicit_refresh` is on (DESIGN §7 and §9 state it without
/// that condition: the client has a session, and needs a fresh login).
pub async fn refresh_phase(ctx: &mut RequestCtx, jar: &CookieJar) -> Result<(), GatewayError> {
    let rt = &ctx.snap.runtime;
    let Some(policy) = ctx.route().filter(|r| r.handler.is_none()).map(|r| r.policy) else { return Ok(()) };
    let from_cookie_or_none = ctx.credential.as_ref().is_none_or(|c| c.source == Source::Cookie);
    if !matches!(policy, Policy::Access | Policy::Fresh)
        || !cookie_mode(rt)
        || !from_cookie_or_none
        || !wants_refresh(ctx)
    {
        return Ok(());
    }
    if policy == Policy::Fresh {
        if matches!(ctx.token, TokenState::Valid(_)) || usable_refresh(ctx, jar).is_none() {
            return Ok(());
        }
        let max_age = ctx.route().and_then(|r| r.max_age).map(|d| d.as_secs());
        return Err(GatewayError::FreshTokenRequired { reason: "a fresh login is required", max_age });
    }
    if !rt.sessions.implicit_refresh {
        return Ok(());
    }
    let Some(refresh) = usable_refresh(ctx, jar) else { return Ok(()) };
    // Boxed: every request's future would otherwise carry the rotation's state.
    Box::pin(refresh_now(ctx, refresh)).await
}

/// The implicit refresh itself: the refresh token checked, the pair rotated,
/// the new access token verified for this request.
async fn refresh_now(ctx: &mut RequestCtx, refresh: Arc<Claims>) -> Result<(), GatewayError> {
    crate::pipeline::check_revoked(ctx, &refresh).await?;
    let pair = rotate(ctx, &refresh, "implicit").await?;
    let claims = ctx.snap.runtime.tokens.verifier.verify(&pair.access_token, ctx.now)?;
    ctx.token = TokenState::Valid(claims);
    ctx.refreshed = Some(Box::new(pair));
    ctx.decision = "refreshed";
    Ok(())
}
