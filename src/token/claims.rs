//! The typed claims of a verified token.

use serde_json::{Map, Value};

use super::verify::TokenError;

/// The `type` claim; a token without one is an access token (AuthX and
/// flask-jwt-extended always write it, minimal app tokens may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// `"access"`, or no `type` claim.
    Access,
    /// `"refresh"`.
    Refresh,
}

/// The `fresh` claim: jwtgate / AuthX write a bool, flask-jwt-extended may write
/// a number meaning "fresh until this Unix time".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fresh {
    /// No `fresh` claim: not fresh.
    Absent,
    /// `fresh: true|false`.
    Flag(bool),
    /// `fresh: <number>`: fresh until that Unix time (inclusive).
    Until(f64),
}

impl TokenType {
    /// The claim value: `"access"` or `"refresh"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }
}

/// Claims of a token whose signature has been checked. Time claims are `f64`
/// because AuthX writes float `exp`/`iat`; `None` means absent (or `null`).
#[derive(Clone, PartialEq)]
pub struct Claims {
    /// Always a non-empty string.
    pub sub: String,
    /// From `type`; absent means access.
    pub token_type: TokenType,
    /// Use [`Claims::is_fresh`] rather than matching on this.
    pub fresh: Fresh,
    pub jti: Option<String>,
    /// Seconds; float when an AuthX app minted the token.
    pub iat: Option<f64>,
    /// Seconds; `None` only when `exp` is not in `required_claims`.
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    /// The double-submit value; kept out of `Debug`.
    pub csrf: Option<String>,
    /// Session family id (jwtgate-minted tokens).
    pub fid: Option<String>,
    /// Login time (integer seconds).
    pub auth_time: Option<i64>,
    /// Every claim as sent (typed ones included), for claim headers and `require`.
    pub all: Map<String, Value>,
}

impl Claims {
    /// Types the claims of a signed payload: `sub` a non-empty string; `type`
    /// absent, `"access"` or `"refresh"`; `exp`/`iat`/`nbf` numbers; `fresh` a
    /// bool or number; `jti`/`csrf`/`fid` strings; `auth_time` an integer.
    /// A `null` optional claim counts as absent.
    pub(crate) fn from_map(all: Map<String, Value>) -> Result<Claims, TokenError> {
        let sub = match all.get("sub") {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("sub".into())),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(TokenError::BadClaims("sub must be a non-empty string")),
        };
        let token_type = match all.get("type") {
            None | Some(Value::Null) => TokenType::Access,
            Some(Value::String(s)) if s == "access" => TokenType::Access,
            Some(Value::String(s)) if s == "refresh" => TokenType::Refresh,
            Some(_) => return Err(TokenError::UnknownType),
        };
        let fresh = match all.get("fresh") {
            None | Some(Value::Null) => Fresh::Absent,
            Some(Value::Bool(b)) => Fresh::Flag(*b),
            Some(Value::Number(n)) => Fresh::Until(n.as_f64().unwrap_or(f64::NAN)),
            Some(_) => return Err(TokenError::BadClaims("fresh must be a boolean or a number")),
        };
        Ok(Claims {
            sub,
            token_type,
            fresh,
            jti: string(&all, "jti", "jti must be a string")?,
            iat: number(&all, "iat", "iat must be a number")?,
            exp: number(&all, "exp", "exp must be a number")?,
            nbf: number(&all, "nbf", "nbf must be a number")?,
            csrf: string(&all, "csrf", "csrf must be a string")?,
            fid: string(&all, "fid", "fid must be a string")?,
            auth_time: integer(&all, "auth_time", "auth_time must be an integer")?,
            all,
        })
    }

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

fn string(all: &Map<String, Value>, name: &str, bad: &'static str) -> Result<Option<String>, TokenError> {
    match all.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::BadClaims(bad)),
    }
}

fn number(all: &Map<String, Value>, name: &str, bad: &'static str) -> Result<Option<f64>, TokenError> {
    match all.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(TokenError::BadClaims(bad)),
        Some(_) => Err(TokenError::BadClaims(bad)),
    }
}

fn integer(all: &Map<String, Value>, name: &str, bad: &'static str) -> Result<Option<i64>, TokenError> {
    match all.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(TokenError::BadClaims(bad)),
        Some(_) => Err(TokenError::BadClaims(bad)),
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
