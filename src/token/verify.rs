//! Verification per DESIGN.md §5: size cap, header hygiene, kid → key → one
//! algorithm, signature, typed claims, time checks. Type, freshness, `require`
//! and revocation are the pipeline's business, not this module's.

use super::claims::Claims;

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

/// Checks tokens against the configured keys and claim rules.
#[derive(Debug)]
pub struct Verifier {}

impl Verifier {
    /// Full verification at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let _ = (token, now);
        todo!("token helper")
    }
}
