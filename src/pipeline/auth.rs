//! Phases that judge the access credential: extract, verify, decide.

use http::Request;

use super::extract::{authorization, bearer_token, query_token, CookieJar, Credential, Source};
use super::{RequestCtx, TokenState};
use crate::error::GatewayError;
use crate::route::Policy;
use crate::token::{Claims, Location, TokenError, TokenType};

/// Finds the credential: the first configured location that carries a token
/// decides, and a bad token there is never retried from a later location.
pub fn extract<B>(ctx: &mut RequestCtx, req: &Request<B>, jar: &CookieJar) -> Result<(), GatewayError> {
    let rt = &ctx.snap.runtime;
    let cookies = &rt.cookies;
    jar.reject_duplicates(&[&cookies.access, &cookies.refresh, &cookies.csrf_access, &cookies.csrf_refresh])?;
    // Two Authorization headers are refused whichever location decides; a
    // malformed one only where the header location is reached.
    let authorization = authorization(req.headers())?;
    let Some(route) = ctx.route() else { return Ok(()) };
    let cookie_name = if route.policy == Policy::Refresh { &cookies.refresh } else { &cookies.access };
    let query = ctx.canonical.as_ref().and_then(|c| c.query.as_deref());
    let mut found = None;
    // A cookie only an app reads as the cookie (`access_token_cookie =…`),
    // where the cookie location found none.
    let mut shadowed = false;
    for location in &rt.tokens.locations {
        found = match location {
            Location::Headers => {
                authorization.map(bearer_token).transpose()?.flatten().map(|t| (t.to_owned(), Source::Header))
            }
            Location::Cookies => {
                let cookie = jar.get(cookie_name).filter(|v| !v.is_empty());
                shadowed = cookie.is_none() && jar.spelled(cookie_name);
                cookie.map(|v| (String::from_utf8_lossy(v).into_owned(), Source::Cookie))
            }
            Location::Query => query
                .and_then(|q| query_token(q, &rt.tokens.query_param))
                .map(|t| (t.to_owned(), Source::Query)),
        };
        if found.is_some() {
            break;
        }
    }
    // A later location decided: an app that reads cookies before that
    // location, or does not read it at all, would run on the shadow instead.
    if shadowed && found.is_some() {
        return Err(GatewayError::BadRequest(
            "an authentication cookie's name is spelled as only an app reads it",
        ));
    }
    ctx.credential = found.map(|(token, source)| Credential { token, source });
    Ok(())
}

/// Verifies the credential for the route's policy: signature and claims, token
/// type, revocation. An expired token is kept (as `Expired`) for the csrf and
/// refresh phases; every other failure refuses the request here.
pub async fn verify(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(policy) = ctx.route().map(|r| r.policy) else { return Ok(()) };
    if policy == Policy::Public {
        return Ok(());
    }
    let Some(credential) = &ctx.credential else { return Ok(()) };
    match ctx.snap.runtime.tokens.verifier.verify(&credential.token, ctx.now) {
        Ok(claims) => {
            check_type(policy, &claims)?;
            if let Err(e) = check_revoked(ctx, &claims).await {
                if matches!(e, GatewayError::TokenRevoked) {
                    ctx.snap.runtime.tokens.verifier.forget(&credential.token);
                }
                return Err(e);
            }
            ctx.token = TokenState::Valid(claims);
        }
        Err(TokenError::Expired(claims)) => ctx.token = TokenState::Expired(claims),
        Err(e) => {
            tracing::debug!(reason = %e, "token refused");
            return Err(e.into());
        }
    }
    Ok(())
}

fn check_type(policy: Policy, claims: &Claims) -> Result<(), GatewayError> {
    match (policy, claims.token_type) {
        (Policy::Refresh, TokenType::Refresh) | (Policy::Access | Policy::Fresh, TokenType::Access) => Ok(()),
        (Policy::Refresh, TokenType::Access) => {
            Err(GatewayError::WrongTokenType("this route needs a refresh token"))
        }
        _ => Err(GatewayError::WrongTokenType("this route needs an access token")),
    }
}

/// "Revoked?" — the only store question outside rotation. A store that does
/// not answer within its timeout fails the request closed (503).
pub async fn check_revoked(ctx: &RequestCtx, claims: &Claims) -> Result<(), GatewayError> {
    let ask = ctx.gw.store.is_revoked(claims.jti.as_deref(), claims.fid.as_deref(), ctx.now);
    if crate::session::with_timeout(&ctx.snap.runtime, ask).await? {
        return Err(GatewayError::TokenRevoked);
    }
    Ok(())
}

/// Policy × credential state: presence, expiry, freshness, `max_age`, `require`.
pub fn decide(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(route) = ctx.route() else { return Ok(()) };
    if route.policy == Policy::Public {
        ctx.decision = "public";
        return Ok(());
    }
    let claims = match &ctx.token {
        TokenState::Absent => return Err(GatewayError::MissingToken),
        TokenState::Expired(_) => return Err(GatewayError::TokenExpired),
        TokenState::Valid(c) => c,
    };
    if route.policy == Policy::Fresh {
        let leeway = ctx.snap.runtime.tokens.leeway.as_secs() as i64;
        check_fresh(claims, route.max_age.map(|d| d.as_secs()), ctx.now, leeway)?;
    }
    for (claim, wanted) in &route.require {
        let ok = match claims.all.get(claim) {
            Some(serde_json::Value::Array(items)) => items.contains(wanted),
            Some(value) => value == wanted,
            None => false,
        };
        if !ok {
            return Err(GatewayError::Forbidden { claim: claim.clone() });
        }
    }
    if ctx.decision != "refreshed" {
        ctx.decision = "allowed";
    }
    Ok(())
}

/// Fresh, and (with `max_age`) logged in recently: `auth_time`, or `iat` of a
/// fresh token without `auth_time`. A login later than now (beyond the
/// leeway, as for `iat`) is no evidence of a recent one: it would pass
/// `max_age` for ever.
fn check_fresh(claims: &Claims, max_age: Option<u64>, now: i64, leeway: i64) -> Result<(), GatewayError> {
    if !claims.is_fresh(now) {
        return Err(GatewayError::FreshTokenRequired { reason: "this route needs a fresh login", max_age });
    }
    if let Some(limit) = max_age {
        let login = claims.auth_time.or_else(|| claims.iat.map(|t| t as i64));
        if login.is_none_or(|t| now.saturating_sub(t) > limit as i64 || t > now.saturating_add(leeway)) {
            return Err(GatewayError::FreshTokenRequired {
                reason: "the login is older than max_age",
                max_age,
            });
        }
    }
    Ok(())
}
