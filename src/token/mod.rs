//! Tokens: the typed claims, the key set, verification (DESIGN.md §5) and
//! minting. Verification and minting take `now` (Unix seconds) from the
//! caller's [`crate::clock::Clock`]; nothing here reads the wall clock or a store.
//!
//! `required_claims` may name any claim, not only the registered and
//! jwtgate-specific ones: an app may insist on, say, `roles` being present.
//! A claim whose value is `null` counts as absent.

mod cache;
pub mod claims;
mod der;
mod inspect;
mod keygen;
pub mod keys;
pub mod mint;
mod pem_keys;
pub(crate) mod strict_json;
pub mod verify;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

pub use claims::{is_reserved, Claims, Fresh, TokenType};
pub use inspect::Inspection;
pub use keys::{generate, GeneratedKey, KeygenError};
pub use mint::{MintSpec, Minted, Minter};
pub use verify::{TokenError, Verifier};

use crate::config::raw::RawTokens;
use crate::config::{whole_seconds, ConfigErrors};
use keys::{KeyConfig, PemField};
use verify::ClaimRules;

/// Where credentials are looked for; order in `[tokens] locations` is precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// `Authorization: Bearer <token>`.
    Headers,
    /// The `[cookies] access` / `refresh` cookies.
    Cookies,
    /// The `query_param` query parameter (removed before forwarding).
    Query,
}

/// The validated `[tokens]` table.
#[derive(Debug)]
pub struct TokenSettings {
    /// The `[tokens]` key first, then every `[[tokens.accept]]` key, in config order.
    pub verifier: Verifier,
    /// Signs with the `[tokens]` key.
    pub minter: Minter,
    /// Default `["headers", "cookies"]`; order is precedence.
    pub locations: Vec<Location>,
    /// Default `"token"`.
    pub query_param: String,
    /// Default 15m.
    pub access_ttl: Duration,
    /// Default 30d.
    pub refresh_ttl: Duration,
    /// Default 5s, at most [`MAX_LEEWAY`]; applies to exp, nbf, iat and the
    /// lifetime cap.
    pub leeway: Duration,
    /// Default 8192; larger tokens are refused before any decoding.
    pub max_token_bytes: usize,
}

/// The largest `leeway` a config may set: five minutes, Kerberos's
/// customary bound on clock skew. Everything a store keeps to stop a token
/// (a revoked id, a revoked or expired family) is kept this long past the
/// token's end, whatever the leeway is now, so a reload that raises the
/// leeway cannot bring a logged-out token back.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

impl TokenSettings {
    /// Validates `[tokens]` and every `[[tokens.accept]]`, loading key files
    /// relative to `base_dir`; every problem is pushed to `errs` with its key path.
    pub fn build(raw: &RawTokens, base_dir: &Path, errs: &mut ConfigErrors) -> Option<TokenSettings> {
        let before = errs.0.len();
        let signing = keys::load_signing(&signing_config(raw), base_dir, errs);
        let accepted: Vec<_> = raw
            .accept
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let cfg = KeyConfig {
                    prefix: format!("tokens.accept[{i}]"),
                    algorithm: &a.algorithm,
                    kid: a.kid.as_deref(),
                    secret: a.secret.as_deref(),
                    secret_file: a.secret_file.as_deref(),
                    pem: a.public_key.as_deref(),
                    pem_field: PemField::PublicKey,
                };
                keys::load_verify(&cfg, base_dir, errs)
            })
            .collect();
        let access_ttl = positive_duration("tokens.access_ttl", &raw.access_ttl, errs);
        let refresh_ttl = positive_duration("tokens.refresh_ttl", &raw.refresh_ttl, errs);
        let leeway = whole_seconds("tokens.leeway", &raw.leeway, errs).filter(|&d| {
            let ok = d <= MAX_LEEWAY;
            if !ok {
                errs.push(
                    "tokens.leeway",
                    format!(
                        "{:?} is more clock skew than jwtgate allows (at most \"5m\"): revocations are kept \
                         only that long past a token's exp; fix the clocks (NTP) and write e.g. \"5s\"",
                        raw.leeway
                    ),
                );
            }
            ok
        });
        let locations = parse_locations(&raw.locations, errs);
        check_claim_settings(raw, errs);
        if errs.0.len() != before {
            return None;
        }
        let (signing, first) = signing?;
        let (access_ttl, refresh_ttl, leeway) = (access_ttl?, refresh_ttl?, leeway?);
        let issuer = Some(raw.issuer.clone()).filter(|s| !s.is_empty());
        let rules = ClaimRules {
            issuer: issuer.clone(),
            audience: raw.audience.clone(),
            required: raw.required_claims.clone(),
            access_ttl: secs(access_ttl),
            refresh_ttl: secs(refresh_ttl),
            leeway: secs(leeway),
            max_token_bytes: raw.max_token_bytes,
        };
        let mut keys = vec![first];
        keys.extend(accepted.into_iter().flatten());
        Some(TokenSettings {
            verifier: Verifier::new(keys, rules),
            minter: Minter::new(signing, issuer, raw.audience.clone(), secs(access_ttl), secs(refresh_ttl)),
            locations,
            query_param: raw.query_param.clone(),
            access_ttl,
            refresh_ttl,
            leeway,
            max_token_bytes: raw.max_token_bytes,
        })
    }
}

fn signing_config(raw: &RawTokens) -> KeyConfig<'_> {
    KeyConfig {
        prefix: "tokens".into(),
        algorithm: &raw.algorithm,
        kid: raw.kid.as_deref(),
        secret: raw.secret.as_deref(),
        secret_file: raw.secret_file.as_deref(),
        pem: raw.private_key.as_deref(),
        pem_field: PemField::PrivateKey,
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn positive_duration(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<Duration> {
    let d = whole_seconds(key, value, errs)?;
    if d.as_secs() == 0 {
        errs.push(key, format!("{value:?} is too short; token lifetimes are whole seconds, at least \"1s\""));
        return None;
    }
    Some(d)
}

/// `locations`: non-empty, each of headers / cookies / query, none twice.
fn parse_locations(raw: &[String], errs: &mut ConfigErrors) -> Vec<Location> {
    if raw.is_empty() {
        errs.push("tokens.locations", "is empty; list at least one of \"headers\", \"cookies\", \"query\"");
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        let key = format!("tokens.locations[{i}]");
        // Case-insensitive, as every other word-valued key (config::validate).
        let loc = match name.trim().to_ascii_lowercase().as_str() {
            "headers" => Location::Headers,
            "cookies" => Location::Cookies,
            "query" => Location::Query,
            _ => {
                errs.push(
                    key,
                    format!("{name:?} is not a location; use \"headers\", \"cookies\" or \"query\""),
                );
                continue;
            }
        };
        if out.contains(&loc) {
            errs.push(key, format!("{name:?} is listed twice; each location may appear once"));
            continue;
        }
        out.push(loc);
    }
    out
}

/// The claim-related keys with no other home: audience, required_claims,
/// query_param, max_token_bytes.
fn check_claim_settings(raw: &RawTokens, errs: &mut ConfigErrors) {
    for (i, aud) in raw.audience.iter().enumerate() {
        if aud.is_empty() {
            errs.push(format!("tokens.audience[{i}]"), "is empty; remove it or name the audience");
        }
    }
    for (i, name) in raw.required_claims.iter().enumerate() {
        if name.trim().is_empty() || name.trim() != name {
            errs.push(format!("tokens.required_claims[{i}]"), format!("{name:?} is not a claim name"));
        }
    }
    if raw.query_param.is_empty() {
        errs.push("tokens.query_param", "is empty; name the query parameter, e.g. \"token\"");
    }
    if raw.max_token_bytes == 0 {
        errs.push("tokens.max_token_bytes", "must be greater than 0 (default 8192)");
    }
}
