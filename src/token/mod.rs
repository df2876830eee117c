//! Tokens: the typed claims, the key set, verification (DESIGN.md §5) and
//! minting. Verification and minting take `now` (Unix seconds) from the
//! caller's [`crate::clock::Clock`]; nothing here reads the wall clock or a store.

pub mod claims;
mod der;
mod keygen;
pub mod keys;
pub mod mint;
mod pem_keys;
mod strict_json;
pub mod verify;

use std::path::Path;
use std::time::Duration;

pub use claims::{Claims, Fresh, TokenType};
pub use keys::{generate, GeneratedKey, KeygenError};
pub use mint::{MintSpec, Minted, Minter};
pub use verify::{TokenError, Verifier};

use crate::config::raw::RawTokens;
use crate::config::ConfigErrors;

/// Where credentials are looked for; order in `[tokens] locations` is precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Headers,
    Cookies,
    Query,
}

/// The validated `[tokens]` table.
#[derive(Debug)]
pub struct TokenSettings {
    pub verifier: Verifier,
    pub minter: Minter,
    pub locations: Vec<Location>,
    pub query_param: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub leeway: Duration,
    pub max_token_bytes: usize,
}

impl TokenSettings {
    /// Validates `[tokens]` and every `[[tokens.accept]]`, loading key files
    /// relative to `base_dir`; every problem is pushed to `errs` with its key path.
    pub fn build(raw: &RawTokens, base_dir: &Path, errs: &mut ConfigErrors) -> Option<TokenSettings> {
        let _ = (raw, base_dir, errs);
        todo!("token helper")
    }
}
