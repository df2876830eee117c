//! Sessions (DESIGN.md §6–7): minting a session's token pair, the rotation
//! step shared by explicit and implicit refresh, CSRF and Origin checks, and
//! the built-in handlers.

pub mod cookies;
pub mod csrf;
pub mod handlers;
pub mod implicit;

use std::task::Poll;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::Runtime;
use crate::error::GatewayError;
use crate::pipeline::RequestCtx;
use crate::store::{RotateOutcome, RotateRequest, StoreError, TokenPair};
use crate::token::{Claims, Location, MintSpec, Minted, TokenType, MAX_LEEWAY};

/// What every token of one family shares.
#[derive(Debug, Clone)]
pub struct SessionSeed<'a> {
    pub sub: &'a str,
    pub fid: &'a str,
    /// None when cookies are not a location (no CSRF needed).
    pub csrf: Option<&'a str>,
    pub auth_time: i64,
    pub extra: &'a Map<String, Value>,
}

impl<'a> SessionSeed<'a> {
    /// The seed carried by a verified refresh token (None without `fid`).
    pub fn from_refresh(claims: &'a Claims, extra: &'a Map<String, Value>) -> Option<SessionSeed<'a>> {
        Some(SessionSeed {
            sub: &claims.sub,
            fid: claims.fid.as_deref()?,
            csrf: claims.csrf.as_deref(),
            auth_time: claims.auth_time.or(claims.iat.map(|t| t as i64))?,
            extra,
        })
    }
}

impl SessionSeed<'_> {
    /// What a token of this family is minted from.
    fn spec(&self, token_type: TokenType, fresh: bool, exp: i64) -> MintSpec<'_> {
        MintSpec {
            sub: self.sub,
            token_type,
            fresh,
            csrf: self.csrf,
            fid: Some(self.fid),
            auth_time: Some(self.auth_time),
            exp: Some(exp),
            extra: self.extra,
        }
    }
}

/// When a session that began at `auth_time` ends: `auth_time + max_session`
/// by the config in force, which a reload may have moved either way.
fn session_end(rt: &Runtime, seed: &SessionSeed<'_>) -> i64 {
    seed.auth_time.saturating_add(rt.sessions.max_session.as_secs() as i64)
}

/// Mints an access + refresh pair. The refresh token ends at
/// min(now + refresh_ttl, auth_time + max_session); rotation never extends it.
pub fn mint_pair(
    rt: &Runtime,
    seed: &SessionSeed<'_>,
    fresh: bool,
    now: i64,
) -> Result<TokenPair, GatewayError> {
    let tokens = &rt.tokens;
    let refresh_exp = now.saturating_add(tokens.refresh_ttl.as_secs() as i64).min(session_end(rt, seed));
    let access_exp = now.saturating_add(tokens.access_ttl.as_secs() as i64).min(refresh_exp);
    let access = tokens.minter.mint(&seed.spec(TokenType::Access, fresh, access_exp), now)?;
    let refresh = tokens.minter.mint(&seed.spec(TokenType::Refresh, false, refresh_exp), now)?;
    Ok(TokenPair {
        access_token: access.token,
        access_exp: access.exp,
        refresh_token: refresh.token,
        refresh_jti: refresh.jti,
        refresh_exp: refresh.exp,
    })
}

/// A new access token for a refresh token that stays (`rotate_refresh =
/// false`). It ends by `until` (the caller's: that refresh token's `exp` and
/// the family record's end, which a reuse revocation covers) and by the
/// session's end. `None` when no time is left: a reload lowered
/// `max_session` below the session's age, or the refresh token is past its
/// `exp` (accepted only for the leeway).
pub fn mint_access(
    rt: &Runtime,
    seed: &SessionSeed<'_>,
    until: i64,
    now: i64,
) -> Result<Option<Minted>, GatewayError> {
    let until = until.min(session_end(rt, seed));
    if until <= now {
        return Ok(None);
    }
    let exp = now.saturating_add(rt.tokens.access_ttl.as_secs() as i64).min(until);
    Ok(Some(rt.tokens.minter.mint(&seed.spec(TokenType::Access, false, exp), now)?))
}

/// Does this config keep sessions in cookies?
pub fn cookie_mode(rt: &Runtime) -> bool {
    rt.tokens.locations.contains(&Location::Cookies)
}

/// The rotation step (DESIGN.md §7) for a verified refresh token: pre-mint a
/// NON-fresh candidate pair, then one atomic compare-and-rotate in the store.
/// Reuse revokes the family and clears the cookies (on this very response).
pub async fn rotate(ctx: &mut RequestCtx, refresh: &Claims, mode: &str) -> Result<TokenPair, GatewayError> {
    const NO_FAMILY: GatewayError = GatewayError::InvalidToken("no usable session family");
    let rt = &ctx.snap.runtime;
    let extra = refresh.extra();
    let seed = SessionSeed::from_refresh(refresh, &extra).ok_or(NO_FAMILY)?;
    let presented = refresh.jti.clone().ok_or(NO_FAMILY)?;
    // A reload lowered max_session below this session's age: it is over,
    // rather than rotated into a pair that is born expired.
    if session_end(rt, &seed) <= ctx.now {
        ctx.gw.metrics.refresh_outcome(mode, "dead");
        return Err(NO_FAMILY);
    }
    let candidate = mint_pair(rt, &seed, false, ctx.now)?;
    let req = RotateRequest {
        fid: seed.fid.to_owned(),
        presented_jti: presented,
        candidate,
        reuse_grace: rt.sessions.reuse_grace.as_secs() as i64,
        idle_timeout: rt.sessions.idle_timeout.as_secs() as i64,
        leeway: MAX_LEEWAY.as_secs() as i64,
    };
    let outcome = match with_timeout(rt, ctx.gw.store.rotate(&req, ctx.now)).await {
        Ok(outcome) => outcome,
        Err(e) => {
            ctx.gw.metrics.refresh_outcome(mode, "store_error");
            return Err(e);
        }
    };
    let name = match &outcome {
        RotateOutcome::Rotated(_) => "rotated",
        RotateOutcome::Replayed(_) => "replayed",
        RotateOutcome::ReuseDetected => "reuse",
        RotateOutcome::Dead => "dead",
    };
    ctx.gw.metrics.refresh_outcome(mode, name);
    match outcome {
        RotateOutcome::Rotated(pair) | RotateOutcome::Replayed(pair) => {
            if cookie_mode(rt) {
                ctx.set_cookies = cookies::for_session(rt, &pair, seed.csrf, ctx.now);
            }
            Ok(pair)
        }
        RotateOutcome::ReuseDetected => {
            tracing::warn!(fid = seed.fid, sub = seed.sub, "refresh token reuse: family revoked");
            ctx.set_cookies = cookies::cleared(&rt.cookies);
            Err(GatewayError::RefreshReuse)
        }
        RotateOutcome::Dead => Err(NO_FAMILY),
    }
}

/// A store call bounded by `[store] timeout`; failure → 503, nothing changed.
/// A call that answers at once (the revocation check, from the embedded
/// store's memory) is polled before any clock is read or timer set.
pub async fn with_timeout<T>(
    rt: &Runtime,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, GatewayError> {
    bounded(rt.store.timeout, call).await
}

async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, GatewayError> {
    let mut call = std::pin::pin!(call);
    let answer = match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        Poll::Ready(answer) => Ok(answer),
        Poll::Pending => tokio::time::timeout(timeout, call).await,
    };
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store call failed");
            Err(GatewayError::StoreUnavailable)
        }
        Err(_) => {
            tracing::warn!("store call timed out");
            Err(GatewayError::StoreUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const LIMIT: Duration = Duration::from_millis(50);

    /// Pending on its first poll (waking itself), then `answer`.
    async fn after_one_pending<T>(answer: Result<T, StoreError>) -> Result<T, StoreError> {
        tokio::task::yield_now().await;
        answer
    }

    #[tokio::test]
    async fn an_immediate_answer_passes_through() {
        assert_eq!(bounded(LIMIT, async { Ok(7) }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn an_answer_after_waiting_passes_through() {
        assert_eq!(bounded(LIMIT, after_one_pending(Ok(8))).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_failed_call_is_a_503_whenever_it_fails() {
        let now = bounded::<()>(LIMIT, async { Err(StoreError::new("down")) }).await;
        assert!(matches!(now, Err(GatewayError::StoreUnavailable)), "{now:?}");
        let later = bounded::<()>(LIMIT, after_one_pending(Err(StoreError::new("down")))).await;
        assert!(matches!(later, Err(GatewayError::StoreUnavailable)), "{later:?}");
    }

    #[tokio::test]
    async fn a_call_that_never_answers_is_a_503_after_the_timeout() {
        let started = Instant::now();
        let result = bounded::<()>(LIMIT, std::future::pending()).await;
        assert!(matches!(result, Err(GatewayError::StoreUnavailable)), "{result:?}");
        let waited = started.elapsed();
        assert!(waited >= LIMIT && waited < LIMIT * 20, "gave up after {waited:?}");
    }
}
