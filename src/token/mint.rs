//! Minting jwtgate's own tokens (DESIGN.md §5 "Minted by jwtgate").

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::claims::{is_reserved, TokenType};
use super::keys::{algorithm_name, SigningKey};
use super::verify::TokenError;

/// What to put into one token; `jti`, `iat`, `exp`, `iss`, `aud` are filled in.
#[derive(Debug, Clone)]
pub struct MintSpec<'a> {
    /// The subject; must not be empty.
    pub sub: &'a str,
    /// Access or refresh; picks the ttl and whether `fresh` is written.
    pub token_type: TokenType,
    /// Access tokens only; ignored for refresh tokens.
    pub fresh: bool,
    /// The session's double-submit value, when cookies are a location.
    pub csrf: Option<&'a str>,
    /// The session family id.
    pub fid: Option<&'a str>,
    /// Login time, carried unchanged through rotations.
    pub auth_time: Option<i64>,
    /// Overrides now + ttl (used to cap a refresh token at auth_time + max_session).
    pub exp: Option<i64>,
    /// Extra identity claims; reserved names are ignored.
    pub extra: &'a Map<String, Value>,
}

/// A minted token and the facts the caller stores about it.
#[derive(Clone)]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// Its `jti` (uuid4), for revocation.
    pub jti: String,
    /// Its `exp` (Unix seconds), e.g. for cookie Max-Age.
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
pub struct Minter {
    key: SigningKey,
    issuer: Option<String>,
    audience: Vec<String>,
    access_ttl: i64,
    refresh_ttl: i64,
    /// `base64url({"alg","typ":"JWT","kid"?})`: the same for every token, so encoded once.
    header_b64: String,
}

impl Minter {
    pub(crate) fn new(
        key: SigningKey,
        issuer: Option<String>,
        audience: Vec<String>,
        access_ttl: i64,
        refresh_ttl: i64,
    ) -> Minter {
        let mut header = json!({ "alg": algorithm_name(key.alg), "typ": "JWT" });
        if let Some(kid) = &key.kid {
            header["kid"] = Value::String(kid.clone());
        }
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Minter { key, issuer, audience, access_ttl, refresh_ttl, header_b64 }
    }

    /// The algorithm minted tokens carry.
    pub fn algorithm(&self) -> Algorithm {
        self.key.alg
    }

    /// The kid minted headers carry, if `[tokens] kid` is set.
    pub fn kid(&self) -> Option<&str> {
        self.key.kid.as_deref()
    }

    /// Mints one token at `now` (Unix seconds). Fails only on an empty `sub`
    /// (which no verifier would accept) or a signing failure.
    pub fn mint(&self, spec: &MintSpec<'_>, now: i64) -> Result<Minted, TokenError> {
        if spec.sub.is_empty() {
            return Err(TokenError::BadClaims("sub must be a non-empty string"));
        }
        let jti = Uuid::new_v4().to_string();
        let ttl = match spec.token_type {
            TokenType::Access => self.access_ttl,
            TokenType::Refresh => self.refresh_ttl,
        };
        let exp = spec.exp.unwrap_or(now.saturating_add(ttl));
        let claims = self.claims(spec, &jti, now, exp);
        let payload = serde_json::to_vec(&claims).map_err(|_| TokenError::Signing)?;
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 400);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = jsonwebtoken::crypto::sign(token.as_bytes(), &self.key.key, self.key.alg)
            .map_err(|_| TokenError::Signing)?;
        token.push('.');
        token.push_str(&signature);
        Ok(Minted { token, jti, exp })
    }

    /// The extra claims first, so nothing jwtgate sets can be overridden by them.
    fn claims(&self, spec: &MintSpec<'_>, jti: &str, now: i64, exp: i64) -> Map<String, Value> {
        let mut claims: Map<String, Value> = spec
            .extra
            .iter()
            .filter(|(k, _)| !is_reserved(k) && k.as_str() != "sub")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        claims.insert("sub".into(), spec.sub.into());
        claims.insert("type".into(), spec.token_type.as_str().into());
        if spec.token_type == TokenType::Access {
            claims.insert("fresh".into(), spec.fresh.into());
        }
        claims.insert("jti".into(), jti.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        if let Some(csrf) = spec.csrf {
            claims.insert("csrf".into(), csrf.into());
        }
        if let Some(fid) = spec.fid {
            claims.insert("fid".into(), fid.into());
        }
        if let Some(auth_time) = spec.auth_time {
            claims.insert("auth_time".into(), auth_time.into());
        }
        if let Some(iss) = &self.issuer {
            claims.insert("iss".into(), iss.clone().into());
        }
        match self.audience.as_slice() {
            [] => {}
            [one] => drop(claims.insert("aud".into(), one.clone().into())),
            many => drop(claims.insert("aud".into(), many.to_vec().into())),
        }
        claims
    }
}
