//! Every refusal jwtgate makes, and the one place they become responses
//! (DESIGN.md §9): `application/problem+json` with a Bearer challenge where the
//! table says so. Bodies never carry tokens, secrets or internal detail.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use http_body_util::Full;

use crate::token::TokenError;

/// Why a request was refused. `status()` and `code()` are exhaustive on purpose.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no credentials were presented")]
    MissingToken,
    #[error("the token is invalid: {0}")]
    InvalidToken(&'static str),
    #[error("the token has expired")]
    TokenExpired,
    #[error("{0}")]
    WrongTokenType(&'static str),
    #[error("the token has been revoked")]
    TokenRevoked,
    #[error("a rotated refresh token was reused; the session has been revoked")]
    RefreshReuse,
    #[error("{reason}")]
    FreshTokenRequired { reason: &'static str, max_age: Option<u64> },
    #[error("the token lacks the claim {claim} this route requires")]
    Forbidden { claim: String },
    #[error("CSRF check failed: {0}")]
    CsrfFailed(&'static str),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("the request body stopped arriving")]
    RequestTimeout,
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("no route matches this request")]
    NoRoute,
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: Vec<Method> },
    #[error("request header block too large")]
    HeadersTooLarge,
    #[error("request target longer than 8 KiB")]
    UriTooLong,
    #[error("transfer coding not implemented")]
    NotImplemented,
    #[error("session store unavailable")]
    StoreUnavailable,
    #[error("the login upstream sent an invalid identity header: {0}")]
    BadIdentity(&'static str),
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("internal error")]
    Internal,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            MissingToken
            | InvalidToken(_)
            | TokenExpired
            | WrongTokenType(_)
            | TokenRevoked
            | RefreshReuse
            | FreshTokenRequired { .. } => StatusCode::UNAUTHORIZED,
            Forbidden { .. } | CsrfFailed(_) => StatusCode::FORBIDDEN,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            NoRoute => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UriTooLong => StatusCode::URI_TOO_LONG,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            BadIdentity(_) | UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` member of the problem body; also the metrics `reason` label.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            MissingToken => "missing_token",
            InvalidToken(_) => "invalid_token",
            TokenExpired => "token_expired",
            WrongTokenType(_) => "wrong_token_type",
            TokenRevoked => "token_revoked",
            RefreshReuse => "refresh_reuse",
            FreshTokenRequired { .. } => "fresh_token_required",
            Forbidden { .. } => "forbidden",
            CsrfFailed(_) => "csrf_failed",
            BadRequest(_) => "bad_request",
            RequestTimeout => "request_timeout",
            BodyTooLarge { .. } => "body_too_large",
            NoRoute => "no_route",
            MethodNotAllowed { .. } => "method_not_allowed",
            HeadersTooLarge => "header_too_large",
            UriTooLong => "uri_too_long",
            NotImplemented => "not_implemented",
            StoreUnavailable => "store_unavailable",
            BadIdentity(_) => "bad_identity",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            Internal => "internal_error",
        }
    }

    /// The RFC 6750 / RFC 9470 challenge, for the 401s and the 403 forbidden,
    /// exactly as DESIGN §9's table writes it (a realm only where no error is
    /// named; no description beside `insufficient_user_authentication`).
    pub fn challenge(&self) -> Option<String> {
        use GatewayError::*;
        match self {
            MissingToken => Some(r#"Bearer realm="jwtgate""#.into()),
            InvalidToken(_) | WrongTokenType(_) | TokenRevoked | RefreshReuse => {
                Some(r#"Bearer error="invalid_token""#.into())
            }
            TokenExpired => {
                Some(r#"Bearer error="invalid_token", error_description="The access token expired""#.into())
            }
            FreshTokenRequired { max_age, .. } => {
                let mut c = String::from(r#"Bearer error="insufficient_user_authentication""#);
                if let Some(age) = max_age {
                    c.push_str(&format!(", max_age={age}"));
                }
                Some(c)
            }
            Forbidden { .. } => Some(r#"Bearer error="insufficient_scope""#.into()),
            CsrfFailed(_)
            | BadRequest(_)
            | RequestTimeout
            | BodyTooLarge { .. }
            | NoRoute
            | MethodNotAllowed { .. }
            | HeadersTooLarge
            | UriTooLong
            | NotImplemented
            | StoreUnavailable
            | BadIdentity(_)
            | UpstreamUnavailable
            | UpstreamTimeout
            | Internal => None,
        }
    }

    /// The problem+json response; `Set-Cookie` from a rotation is appended by the caller.
    pub fn to_response(&self) -> http::Response<Full<Bytes>> {
        let status = self.status();
        let body = serde_json::json!({
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "error": self.code(),
            "detail": self.to_string(),
        });
        let mut resp = http::Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(c) = self.challenge() {
            if let Ok(v) = HeaderValue::from_str(&c) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                let list = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                if let Ok(v) = HeaderValue::from_str(&list) {
                    headers.insert(ALLOW, v);
                }
            }
            GatewayError::StoreUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<TokenError> for GatewayError {
    fn from(e: TokenError) -> Self {
        use TokenError::*;
        match e {
            Expired(_) => GatewayError::TokenExpired,
            UnknownType => GatewayError::WrongTokenType("the token type is neither access nor refresh"),
            TooLarge => GatewayError::InvalidToken("token too large"),
            Malformed => GatewayError::InvalidToken("malformed token"),
            ForbiddenHeader(_) => GatewayError::InvalidToken("forbidden token header parameter"),
            UnsupportedAlgorithm => GatewayError::InvalidToken("algorithm not accepted"),
            UnknownKey => GatewayError::InvalidToken("no key matches the token's kid and alg"),
            BadSignature => GatewayError::InvalidToken("bad signature"),
            BadClaims(_) => GatewayError::InvalidToken("malformed claims"),
            MissingClaim(_) => GatewayError::InvalidToken("a required claim is missing"),
            IssuedInFuture => GatewayError::InvalidToken("iat is in the future"),
            NotYetValid => GatewayError::InvalidToken("token not valid yet"),
            LifetimeTooLong => GatewayError::InvalidToken("token lifetime exceeds the configured ttl"),
            BadIssuer => GatewayError::InvalidToken("issuer mismatch"),
            BadAudience => GatewayError::InvalidToken("audience mismatch"),
            Signing => GatewayError::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_match_the_contract() {
        let cases: Vec<(GatewayError, u16, &str)> = vec![
            (GatewayError::MissingToken, 401, "missing_token"),
            (GatewayError::InvalidToken("x"), 401, "invalid_token"),
            (GatewayError::TokenExpired, 401, "token_expired"),
            (GatewayError::WrongTokenType("x"), 401, "wrong_token_type"),
            (GatewayError::TokenRevoked, 401, "token_revoked"),
            (GatewayError::RefreshReuse, 401, "refresh_reuse"),
            (GatewayError::FreshTokenRequired { reason: "x", max_age: None }, 401, "fresh_token_required"),
            (GatewayError::Forbidden { claim: "roles".into() }, 403, "forbidden"),
            (GatewayError::CsrfFailed("x"), 403, "csrf_failed"),
            (GatewayError::BadRequest("x"), 400, "bad_request"),
            (GatewayError::BodyTooLarge { limit: 16384 }, 413, "body_too_large"),
            (GatewayError::NoRoute, 404, "no_route"),
            (GatewayError::MethodNotAllowed { allow: vec![] }, 405, "method_not_allowed"),
            (GatewayError::HeadersTooLarge, 431, "header_too_large"),
            (GatewayError::UriTooLong, 414, "uri_too_long"),
            (GatewayError::NotImplemented, 501, "not_implemented"),
            (GatewayError::StoreUnavailable, 503, "store_unavailable"),
            (GatewayError::BadIdentity("x"), 502, "bad_identity"),
            (GatewayError::UpstreamUnavailable, 502, "upstream_unavailable"),
            (GatewayError::UpstreamTimeout, 504, "upstream_timeout"),
            (GatewayError::Internal, 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn fresh_challenge_carries_unquoted_max_age() {
        let e = GatewayError::FreshTokenRequired { reason: "x", max_age: Some(600) };
        let c = e.challenge().unwrap();
        assert!(c.contains(r#"error="insufficient_user_authentication""#), "{c}");
        assert!(c.ends_with(", max_age=600"), "{c}");
    }

    #[test]
    fn store_unavailable_has_retry_after_and_405_has_allow() {
        let r = GatewayError::StoreUnavailable.to_response();
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        let r = GatewayError::MethodNotAllowed { allow: vec![Method::GET, Method::HEAD] }.to_response();
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
    }
}
