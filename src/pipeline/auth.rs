//! Phases that judge credentials: extract, verify, csrf, decide.

use std::time::Duration;

use http::{Method, Request};
use subtle::ConstantTimeEq;

use super::extract::{bearer, query_token, CookieJar, Credential, Source};
use super::RequestCtx;
use crate::error::GatewayError;
use crate::route::Policy;
use crate::token::{Claims, Location, TokenError, TokenType};

/// Finds the credential: the first configured location that carries a token
/// decides, and a bad token there is never retried from a later location.
pub fn extract<B>(ctx: &mut RequestCtx, req: &Request<B>, jar: &CookieJar) -> Result<(), GatewayError> {
    let rt = &ctx.snap.runtime;
    let cookies = &rt.cookies;
    jar.reject_duplicates(&[&cookies.access, &cookies.refresh, &cookies.csrf_access, &cookies.csrf_refresh])?;
    let header_token = bearer(req.headers())?;
    let mut csrf_values = req.headers().get_all(&rt.csrf.header).iter();
    ctx.csrf_header = match (csrf_values.next(), csrf_values.next()) {
        (Some(v), None) => v.to_str().ok().map(str::to_owned),
        _ => None,
    };
    let Some(route) = ctx.route() else { return Ok(()) };
    let cookie_name = if route.policy == Policy::Refresh { &cookies.refresh } else { &cookies.access };
    let query = ctx.canonical.as_ref().and_then(|c| c.query.as_deref());
    let mut found = None;
    for location in &rt.tokens.locations {
        found = match location {
            Location::Headers => header_token.map(|t| (t.to_owned(), Source::Header)),
            Location::Cookies => jar
                .get(cookie_name)
                .filter(|v| !v.is_empty())
                .map(|v| (String::from_utf8_lossy(v).into_owned(), Source::Cookie)),
            Location::Query => query
                .and_then(|q| query_token(q, &rt.tokens.query_param))
                .map(|t| (t.to_owned(), Source::Query)),
        };
        if found.is_some() {
            break;
        }
    }
    ctx.credential = found.map(|(token, source)| Credential { token, source });
    Ok(())
}

/// Verifies the credential for the route's policy: signature and claims,
/// token type, then revocation. Public routes look at nothing.
pub async fn verify(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(policy) = ctx.route().filter(|r| r.handler.is_none()).map(|r| r.policy) else {
        return Ok(());
    };
    if policy == Policy::Public {
        return Ok(());
    }
    let Some(credential) = &ctx.credential else {
        ctx.decision = "missing_token";
        return Err(GatewayError::MissingToken);
    };
    let claims = match ctx.snap.runtime.tokens.verifier.verify(&credential.token, ctx.now) {
        Ok(claims) => claims,
        Err(TokenError::Expired(claims)) => {
            ctx.claims = Some(*claims);
            return Err(GatewayError::TokenExpired);
        }
        Err(e) => {
            tracing::debug!(reason = %e, "token refused");
            return Err(e.into());
        }
    };
    check_type(policy, &claims)?;
    check_revoked(ctx, &claims).await?;
    ctx.claims = Some(claims);
    Ok(())
}

fn check_type(policy: Policy, claims: &Claims) -> Result<(), GatewayError> {
    match (policy, claims.token_type) {
        (Policy::Refresh, TokenType::Refresh) | (Policy::Access | Policy::Fresh, TokenType::Access) => Ok(()),
        (Policy::Refresh, TokenType::Access) => Err(GatewayError::WrongTokenType("this route needs a refresh token")),
        _ => Err(GatewayError::WrongTokenType("this route needs an access token")),
    }
}

/// "Revoked?" is the only store question outside rotation; a store that does
/// not answer within its timeout fails the request closed (503).
async fn check_revoked(ctx: &RequestCtx, claims: &Claims) -> Result<(), GatewayError> {
    let timeout: Duration = ctx.snap.runtime.store.timeout;
    let ask = ctx.gw.store.is_revoked(claims.jti.as_deref(), claims.fid.as_deref(), ctx.now);
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(false)) => Ok(()),
        Ok(Ok(true)) => Err(GatewayError::TokenRevoked),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "revocation check failed");
            Err(GatewayError::StoreUnavailable)
        }
        Err(_) => Err(GatewayError::StoreUnavailable),
    }
}

/// Double-submit CSRF for cookie-authenticated unsafe requests (DESIGN.md §7):
/// exactly one CSRF header, equal in constant time to the token's `csrf` claim.
pub fn csrf(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let cookie_auth = ctx.credential.as_ref().is_some_and(|c| c.source == Source::Cookie);
    if !cookie_auth || is_safe(&ctx.method) || !ctx.snap.runtime.csrf.enabled {
        return Ok(());
    }
    let expected = ctx.claims.as_ref().and_then(|c| c.csrf.as_deref()).filter(|c| !c.is_empty());
    let Some(expected) = expected else {
        return Err(GatewayError::CsrfFailed("the token carries no csrf claim"));
    };
    match ctx.csrf_header.as_deref() {
        Some(sent) if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(GatewayError::CsrfFailed("missing or mismatched CSRF header")),
    }
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Policy × credential state: freshness, `max_age`, `require`.
pub fn decide(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(route) = ctx.route() else { return Ok(()) };
    let Some(claims) = &ctx.claims else {
        ctx.decision = "public";
        return Ok(());
    };
    if route.policy == Policy::Fresh {
        let max_age = route.max_age.map(|d| d.as_secs());
        if !claims.is_fresh(ctx.now) {
            return Err(GatewayError::FreshTokenRequired { reason: "this route needs a fresh login", max_age });
        }
        if let Some(limit) = max_age {
            let login = claims.auth_time.or_else(|| claims.iat.map(|t| t as i64));
            if login.is_none_or(|t| ctx.now.saturating_sub(t) > limit as i64) {
                return Err(GatewayError::FreshTokenRequired { reason: "the login is older than max_age", max_age });
            }
        }
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
    ctx.decision = "allowed";
    Ok(())
}
