//! The typed claims of a verified token.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Access,
    Refresh,
}

/// The `fresh` claim: jwtgate / AuthX write a bool, flask-jwt-extended may write
/// a number meaning "fresh until this Unix time".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fresh {
    Absent,
    Flag(bool),
    Until(f64),
}

/// Claims of a token whose signature has been checked.
#[derive(Clone, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub token_type: TokenType,
    pub fresh: Fresh,
    pub jti: Option<String>,
    pub iat: Option<f64>,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub csrf: Option<String>,
    pub fid: Option<String>,
    pub auth_time: Option<i64>,
    /// Every claim as sent (typed ones included), for claim headers and `require`.
    pub all: Map<String, Value>,
}

impl Claims {
    /// DESIGN.md §5: `fresh == true`, or a number ≥ now.
    pub fn is_fresh(&self, now: i64) -> bool {
        match self.fresh {
            Fresh::Flag(b) => b,
            Fresh::Until(t) => t >= now as f64,
            Fresh::Absent => false,
        }
    }

    /// The claims minted tokens carry over from this one: everything but the
    /// reserved names (`iss aud exp nbf iat jti type fresh csrf fid auth_time`) and `sub`.
    pub fn extra(&self) -> Map<String, Value> {
        self.all
            .iter()
            .filter(|(k, _)| !is_reserved(k) && k.as_str() != "sub")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Names jwtgate sets itself; identity headers and `--claim` cannot override them.
pub fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "iss" | "aud" | "exp" | "nbf" | "iat" | "jti" | "type" | "fresh" | "csrf" | "fid" | "auth_time"
    )
}

impl std::fmt::Debug for Claims {
    // Claims are not secrets, but csrf is: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("sub", &self.sub)
            .field("type", &self.token_type)
            .field("fresh", &self.fresh)
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .field("fid", &self.fid)
            .finish_non_exhaustive()
    }
}
