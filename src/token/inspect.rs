//! `jwtgate token inspect`: what a token says, and whether jwtgate accepts it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::claims::Claims;
use super::verify::{TokenError, Verifier};

/// The result of inspecting one token. `header` and `claims` are decoded
/// without any checks, for display, so an operator can see why a token is
/// refused; only `verdict` says whether jwtgate would accept it.
#[derive(Debug)]
pub struct Inspection {
    /// The header JSON, when the first part is base64url JSON.
    pub header: Option<Value>,
    /// The payload JSON, when the second part is base64url JSON — unverified
    /// unless `verdict` is `Ok`.
    pub claims: Option<Value>,
    /// Exactly what [`Verifier::verify`] returns at the same `now`.
    pub verdict: Result<Claims, TokenError>,
}

impl Inspection {
    /// True when the token verified; `token inspect` exits 1 otherwise.
    pub fn is_valid(&self) -> bool {
        self.verdict.is_ok()
    }
}

impl Verifier {
    /// Verifies `token` at `now` and also decodes its header and payload for
    /// display. Surrounding whitespace (a pasted newline) is ignored.
    pub fn inspect(&self, token: &str, now: i64) -> Inspection {
        let token = token.trim();
        let mut parts = token.split('.');
        Inspection {
            header: parts.next().and_then(decode_for_display),
            claims: parts.next().and_then(decode_for_display),
            verdict: self.verify_uncached(token, now),
        }
    }
}

/// Lenient on purpose (padding tolerated, duplicate names keep the last): this
/// is for showing, never for deciding.
fn decode_for_display(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
