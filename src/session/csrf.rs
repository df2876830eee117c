//! CSRF (DESIGN.md §7): double submit compatible with AuthX and
//! flask-jwt-extended, plus the Origin / Sec-Fetch-Site check. Both run before
//! anything rotates.

use http::header::{HeaderName, ORIGIN};
use http::{HeaderMap, HeaderValue, Method};
use subtle::ConstantTimeEq;

use crate::config::Runtime;
use crate::error::GatewayError;

// Looked up by `HeaderName`: a lookup by `&str` parses the name again on every request.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The request facts CSRF and Origin checks need, captured once.
#[derive(Debug, Clone, Default)]
pub struct FetchMeta {
    pub origin: Option<HeaderValue>,
    pub sec_fetch_site: Option<HeaderValue>,
    pub sec_fetch_mode: Option<HeaderValue>,
    /// X-Forwarded-Proto / -Host, kept only when the peer is a trusted proxy.
    pub forwarded_proto: Option<HeaderValue>,
    pub forwarded_host: Option<HeaderValue>,
    /// The CSRF header's value when it was sent exactly once.
    pub csrf_header: Option<String>,
}

impl FetchMeta {
    pub fn capture(headers: &HeaderMap, rt: &Runtime, peer_trusted: bool) -> FetchMeta {
        let mut meta = FetchMeta::default();
        // The CSRF header's value, and whether it came more than once.
        let (mut csrf, mut csrf_again) = (None, false);
        // One pass over the (few) headers sent beats a hashed lookup per
        // name. Each slot keeps a name's first value, as `get` gives it.
        for (name, value) in headers {
            let first = |slot: &mut Option<HeaderValue>| {
                slot.get_or_insert_with(|| value.clone());
            };
            if *name == rt.csrf.header {
                csrf_again |= csrf.replace(value).is_some();
            }
            if name == ORIGIN {
                first(&mut meta.origin);
            } else if name == SEC_FETCH_SITE {
                first(&mut meta.sec_fetch_site);
            } else if name == SEC_FETCH_MODE {
                first(&mut meta.sec_fetch_mode);
            } else if peer_trusted && name == X_FORWARDED_PROTO {
                first(&mut meta.forwarded_proto);
            } else if peer_trusted && name == X_FORWARDED_HOST {
                first(&mut meta.forwarded_host);
            }
        }
        meta.csrf_header = match (csrf, csrf_again) {
            (Some(v), false) => v.to_str().ok().map(str::to_owned),
            _ => None,
        };
        meta
    }

    /// `Sec-Fetch-Site: cross-site` without `Sec-Fetch-Mode: navigate`: such a
    /// request may not use the refresh cookie (DESIGN.md §7).
    pub fn cross_site_subresource(&self) -> bool {
        self.sec_fetch_site.as_ref().is_some_and(|v| v == "cross-site")
            && self.sec_fetch_mode.as_ref().is_none_or(|v| v != "navigate")
    }
}

/// GET, HEAD, OPTIONS and TRACE need no CSRF token.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Origin check: an Origin other than our own or an allowed one, `Origin: null`,
/// or `Sec-Fetch-Site: cross-site` → 403. Neither header → pass.
pub fn check_origin(rt: &Runtime, meta: &FetchMeta, tls: bool, host: &str) -> Result<(), GatewayError> {
    if !rt.csrf.check_origin {
        return Ok(());
    }
    if meta.sec_fetch_site.as_ref().is_some_and(|v| v == "cross-site") {
        return Err(GatewayError::CsrfFailed("cross-site request"));
    }
    let Some(origin) = &meta.origin else { return Ok(()) };
    let origin = origin.to_str().map(normalize_origin).unwrap_or_default();
    let scheme = match meta.forwarded_proto.as_ref().and_then(|v| v.to_str().ok()) {
        Some(p) => p.trim().to_ascii_lowercase(),
        None if tls => "https".into(),
        None => "http".into(),
    };
    let host = meta.forwarded_host.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(host);
    let own = normalize_origin(&format!("{scheme}://{host}"));
    if origin != "null"
        && (origin == own || rt.csrf.allowed_origins.iter().any(|o| normalize_origin(o) == origin))
    {
        Ok(())
    } else {
        Err(GatewayError::CsrfFailed("cross-origin request"))
    }
}

/// Lower-cased, default port dropped, so `http://A:80` equals `http://a`.
fn normalize_origin(origin: &str) -> String {
    let o = origin.trim().to_ascii_lowercase();
    if let Some(rest) = o.strip_suffix(":80").filter(|_| o.starts_with("http://")) {
        return rest.to_owned();
    }
    if let Some(rest) = o.strip_suffix(":443").filter(|_| o.starts_with("https://")) {
        return rest.to_owned();
    }
    o
}

/// Double submit: exactly one CSRF header, equal in constant time to the
/// session's `csrf` claim; a missing or empty claim fails.
pub fn check_double_submit(meta: &FetchMeta, expected: Option<&str>) -> Result<(), GatewayError> {
    let expected = expected
        .filter(|c| !c.is_empty())
        .ok_or(GatewayError::CsrfFailed("the session has no csrf value"))?;
    match meta.csrf_header.as_deref() {
        Some(sent) if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(GatewayError::CsrfFailed("CSRF header does not match")),
        None => Err(GatewayError::CsrfFailed("missing or repeated CSRF header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize_default_ports_and_case() {
        assert_eq!(normalize_origin("HTTP://App.Test:80"), "http://app.test");
        assert_eq!(normalize_origin("https://app.test:443"), "https://app.test");
        assert_eq!(normalize_origin("http://app.test:8080"), "http://app.test:8080");
        assert_eq!(normalize_origin("https://app.test:80"), "https://app.test:80");
    }

    fn runtime() -> Runtime {
        crate::config::parse(crate::config::TEST_CONFIG, std::path::Path::new(".")).unwrap()
    }

    /// The one-pass capture gives what a lookup per name gives: each name's
    /// first value, the CSRF header only when sent once, the forwarded pair
    /// only from a trusted peer.
    #[test]
    fn capture_takes_first_values_and_a_single_csrf_header() {
        let rt = runtime();
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://a.test"),
            ("x-forwarded-host", "front.test"),
            ("origin", "https://b.test"),
            ("sec-fetch-mode", "cors"),
            ("x-csrf-token", "tok"),
            ("x-forwarded-proto", "https"),
            ("sec-fetch-site", "cross-site"),
        ] {
            h.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let direct = FetchMeta::capture(&h, &rt, false);
        assert_eq!(direct.origin, h.get(ORIGIN).cloned());
        assert_eq!(direct.origin.as_ref().unwrap(), "https://a.test");
        assert_eq!(direct.sec_fetch_site.as_ref().unwrap(), "same-origin");
        assert_eq!(direct.sec_fetch_mode.as_ref().unwrap(), "cors");
        assert_eq!(direct.csrf_header.as_deref(), Some("tok"));
        assert!(direct.forwarded_proto.is_none() && direct.forwarded_host.is_none(), "untrusted peer");
        let trusted = FetchMeta::capture(&h, &rt, true);
        assert_eq!(trusted.forwarded_proto.as_ref().unwrap(), "https");
        assert_eq!(trusted.forwarded_host.as_ref().unwrap(), "front.test");
        h.append(HeaderName::from_static("x-csrf-token"), HeaderValue::from_static("tok"));
        assert_eq!(FetchMeta::capture(&h, &rt, false).csrf_header, None, "sent twice");
        assert_eq!(FetchMeta::capture(&HeaderMap::new(), &rt, true).origin, None);
    }

    #[test]
    fn double_submit_needs_one_equal_header_and_a_claim() {
        let mut meta = FetchMeta { csrf_header: Some("abc".into()), ..Default::default() };
        assert!(check_double_submit(&meta, Some("abc")).is_ok());
        assert!(check_double_submit(&meta, Some("abd")).is_err());
        assert!(check_double_submit(&meta, Some("")).is_err());
        assert!(check_double_submit(&meta, None).is_err());
        meta.csrf_header = None;
        assert!(check_double_submit(&meta, Some("abc")).is_err());
    }
}
