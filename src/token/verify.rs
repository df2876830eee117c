//! Verification per DESIGN.md §5: size cap, header hygiene, kid → key → one
//! algorithm, signature, typed claims, time checks. Type, freshness, `require`
//! and revocation are the pipeline's business, not this module's.
//!
//! Order matters and is fixed: nothing is decoded before the size cap, the
//! payload is not parsed before the signature verifies, and
//! [`TokenError::Expired`] is only returned once every other check has passed
//! (callers use its claims for CSRF, logout and implicit refresh).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;

use serde_json::{json, Value};

use super::cache::VerifiedCache;
use super::claims::{Claims, TokenType};
use super::keys::{parse_algorithm, VerifyKey};
use super::strict_json::{self, StrictError};

/// Why a token was refused. [`TokenError::Expired`] carries the claims (all
/// other checks passed) so CSRF, logout and implicit refresh can still read them.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token larger than max_token_bytes")]
    TooLarge,
    #[error("token is not a well-formed JWS compact serialization")]
    Malformed,
    #[error("token header carries the forbidden parameter {0}")]
    ForbiddenHeader(&'static str),
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("no configured key matches the token's kid and alg")]
    UnknownKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("claims are malformed: {0}")]
    BadClaims(&'static str),
    #[error("required claim {0} is missing")]
    MissingClaim(String),
    #[error("iat is in the future")]
    IssuedInFuture,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token lifetime exceeds the configured ttl")]
    LifetimeTooLong,
    #[error("issuer does not match")]
    BadIssuer,
    #[error("audience does not match")]
    BadAudience,
    #[error("type claim is neither access nor refresh")]
    UnknownType,
    #[error("token has expired")]
    Expired(Box<Claims>),
    #[error("signing failed")]
    Signing,
}

/// Header parameters that make a token refused outright: key-fetching hints
/// jwtgate never follows (`jku`, `jwk`, `x5u`, `x5c`), extensions it does not
/// implement (`crit`, `b64`), and JWE / compression / nesting (`enc`, `zip`, `cty`).
const FORBIDDEN_HEADERS: [&str; 9] = ["crit", "jku", "jwk", "x5u", "x5c", "b64", "zip", "enc", "cty"];

/// The claim rules of `[tokens]`, in the units verification compares in.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Vec<String>,
    pub(crate) required: Vec<String>,
    pub(crate) access_ttl: i64,
    pub(crate) refresh_ttl: i64,
    pub(crate) leeway: i64,
    pub(crate) max_token_bytes: usize,
}

/// Checks tokens against the configured keys and claim rules. Built once per
/// config load by [`super::TokenSettings::build`]; keys are in config order,
/// the `[tokens]` key first.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<VerifyKey>,
    rules: ClaimRules,
    /// Always present: a hit (a seeded hash and a constant-time compare of the
    /// token, + the time checks) costs ~0.1 µs against ~5 µs for a cold HS256
    /// verify (parsing dominates, not the HMAC) and ~50 µs for RS256/ES256
    /// (`cargo bench --bench hot_path -- verify`).
    pub(crate) cache: Option<VerifiedCache>,
}

/// The three dot-separated parts of a compact JWS, still encoded.
pub(crate) struct Parts<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    pub(crate) signing_input: &'a str,
}

/// The header fields verification uses, from a strictly parsed header.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

impl Verifier {
    pub(crate) fn new(keys: Vec<VerifyKey>, rules: ClaimRules) -> Verifier {
        Verifier { keys, rules, cache: Some(VerifiedCache::new()) }
    }

    /// Full verification at `now` (Unix seconds). The signature and claim
    /// verdicts are cached (see the `cache` module); the time checks run
    /// every time.
    /// Shared, so a cache hit costs a reference count rather than a copy of
    /// every claim.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>, TokenError> {
        if let Some(cached) = self.cache.as_ref().and_then(|c| c.get(token)) {
            // It passed every check when it was cached, by this verifier's
            // own rules: only what the clock changes can fail it now.
            self.check_time(&cached, now)?;
            return Ok(cached);
        }
        let claims = Arc::new(self.verify_uncached(token, now)?);
        if let Some(cache) = &self.cache {
            cache.insert(token, claims.clone(), now);
        }
        Ok(claims)
    }

    /// [`Verifier::verify`] without the cache: every step, every time. For
    /// `token inspect` and the cold-path benchmarks.
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let parts = split(token, self.rules.max_token_bytes)?;
        let header = parse_header(parts.header)?;
        self.check_signature(&parts, &header)?;
        let claims = decode_claims(parts.payload)?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    /// Drops `token` from the verified cache: it was found revoked.
    pub fn forget(&self, token: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(token);
        }
    }

    /// The JWK Set (RFC 7517) of the asymmetric verification keys, each with
    /// `kid` (when configured), `alg` and `use: "sig"`; HMAC secrets never appear.
    /// Served by the `jwks` handler.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys.iter().filter_map(|k| k.jwk.clone().map(Value::Object)).collect();
        json!({ "keys": keys })
    }

    /// Candidates: exact kid (absent matches only keys without kid), bound to
    /// exactly the header's alg, tried in config order.
    fn check_signature(&self, parts: &Parts<'_>, header: &Header) -> Result<(), TokenError> {
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && k.kid.as_deref() == header.kid.as_deref())
            .peekable();
        if candidates.peek().is_none() {
            return Err(TokenError::UnknownKey);
        }
        for key in candidates {
            // aws-lc compares HMACs in constant time; an Err (bad base64 in the
            // signature) is as good as a wrong signature.
            if let Ok(true) = jsonwebtoken::crypto::verify(
                parts.signature,
                parts.signing_input.as_bytes(),
                &key.key,
                header.alg,
            ) {
                return Ok(());
            }
        }
        Err(TokenError::BadSignature)
    }

    /// Everything after the signature: required claims, iss/aud, time checks.
    fn check_claims(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let r = &self.rules;
        if let Some(missing) = r.required.iter().find(|name| claims.all.get(*name).is_none_or(Value::is_null))
        {
            return Err(TokenError::MissingClaim(missing.clone()));
        }
        if let Some(issuer) = &r.issuer {
            match claims.all.get("iss") {
                None | Some(Value::Null) => return Err(TokenError::MissingClaim("iss".into())),
                Some(Value::String(iss)) if iss == issuer => {}
                Some(_) => return Err(TokenError::BadIssuer),
            }
        }
        if !r.audience.is_empty() {
            check_audience(claims.all.get("aud"), &r.audience)?;
        }
        self.check_time(claims, now)
    }

    /// The checks whose verdict moves with the clock: nbf, iat, the lifetime
    /// (measured from now when there is no iat) and exp.
    fn check_time(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let r = &self.rules;
        let (now, leeway) = (now as f64, r.leeway as f64);
        if claims.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        // Without exp (allowed only when `exp` is not in required_claims) the
        // token never expires and no lifetime can be measured.
        let Some(exp) = claims.exp else { return Ok(()) };
        let ttl = match claims.token_type {
            TokenType::Access => r.access_ttl,
            TokenType::Refresh => r.refresh_ttl,
        } as f64;
        let too_long = match claims.iat {
            Some(iat) => exp - iat > ttl + leeway,
            None => exp > now + ttl + leeway,
        };
        if too_long {
            return Err(TokenError::LifetimeTooLong);
        }
        // jsonwebtoken's rule: expired iff exp < now - leeway (valid at exactly now - leeway).
        if exp < now - leeway {
            return Err(TokenError::Expired(Box::new(claims.clone())));
        }
        Ok(())
    }
}

/// `aud` a string or an array of strings; one must be among `audience`.
fn check_audience(aud: Option<&Value>, audience: &[String]) -> Result<(), TokenError> {
    let accepted = |v: &Value| v.as_str().is_some_and(|a| audience.iter().any(|x| x == a));
    match aud {
        None | Some(Value::Null) => Err(TokenError::MissingClaim("aud".into())),
        Some(Value::Array(items)) if items.iter().any(accepted) => Ok(()),
        Some(v) if accepted(v) => Ok(()),
        Some(_) => Err(TokenError::BadAudience),
    }
}

/// Size cap first (before any decoding), then exactly three non-empty base64url parts.
pub(crate) fn split(token: &str, max_bytes: usize) -> Result<Parts<'_>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut it = token.splitn(4, '.');
    let (Some(header), Some(payload), Some(signature), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(TokenError::Malformed);
    };
    // '=' padding, '+' '/' (plain base64) and whitespace are all refused here.
    let b64url =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !(b64url(header) && b64url(payload) && b64url(signature)) {
        return Err(TokenError::Malformed);
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parts { header, payload, signature, signing_input })
}

/// Parses the header ourselves (jsonwebtoken's `Header` would accept `crit`,
/// `jku`, duplicate names, …): alg exactly one of the supported names.
fn parse_header(encoded: &str) -> Result<Header, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| TokenError::Malformed)?;
    let mut map = strict_json::object(&bytes).map_err(|_| TokenError::Malformed)?;
    let alg = match map.get("alg") {
        None => return Err(TokenError::Malformed),
        Some(Value::String(name)) => parse_algorithm(name).ok_or(TokenError::UnsupportedAlgorithm)?,
        Some(_) => return Err(TokenError::UnsupportedAlgorithm),
    };
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|name| map.contains_key(**name)) {
        return Err(TokenError::ForbiddenHeader(name));
    }
    let kid = match map.remove("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok(Header { alg, kid })
}

fn decode_claims(encoded: &str) -> Result<Claims, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| TokenError::Malformed)?;
    let map = strict_json::object(&bytes).map_err(|e| match e {
        StrictError::Duplicate => TokenError::BadClaims("a claim name appears twice"),
        StrictError::Invalid => TokenError::Malformed,
    })?;
    Claims::from_map(map)
}
