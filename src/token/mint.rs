//! Minting jwtgate's own tokens (DESIGN.md §5 "Minted by jwtgate").

use serde_json::{Map, Value};

use super::claims::TokenType;
use super::verify::TokenError;

/// What to put into one token; `jti`, `iat`, `exp`, `iss`, `aud` are filled in.
#[derive(Debug, Clone)]
pub struct MintSpec<'a> {
    pub sub: &'a str,
    pub token_type: TokenType,
    /// Access tokens only; ignored for refresh tokens.
    pub fresh: bool,
    pub csrf: Option<&'a str>,
    pub fid: Option<&'a str>,
    pub auth_time: Option<i64>,
    /// Overrides now + ttl (used to cap a refresh token at auth_time + max_session).
    pub exp: Option<i64>,
    /// Extra identity claims; reserved names are ignored.
    pub extra: &'a Map<String, Value>,
}

/// A minted token and the facts the caller stores about it.
#[derive(Clone)]
pub struct Minted {
    pub token: String,
    pub jti: String,
    pub exp: i64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .finish()
    }
}

/// Signs tokens with the `[tokens]` signing key.
#[derive(Debug)]
pub struct Minter {}

impl Minter {
    pub fn mint(&self, spec: &MintSpec<'_>, now: i64) -> Result<Minted, TokenError> {
        let _ = (spec, now);
        todo!("token helper")
    }
}
