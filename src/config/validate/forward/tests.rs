use std::collections::BTreeMap;

use super::*;

fn keys(errs: &ConfigErrors) -> Vec<&str> {
    errs.iter().map(|e| e.key.as_str()).collect()
}

fn with_claims(pairs: &[(&str, &str)]) -> RawForward {
    let claims: BTreeMap<String, String> =
        pairs.iter().map(|(c, h)| (c.to_string(), h.to_string())).collect();
    RawForward { claims, ..RawForward::default() }
}

#[test]
fn defaults_are_valid() {
    let mut errs = ConfigErrors::default();
    let f = forward(&RawForward::default(), "X-Jwtgate-Identity", &mut errs).unwrap();
    assert_eq!(f.strip_prefixes, ["x-auth-"]);
    let claims: Vec<(&str, &str)> = f.claims.iter().map(|(c, h)| (c.as_str(), h.as_str())).collect();
    assert_eq!(claims, [("fresh", "x-auth-fresh"), ("sub", "x-auth-subject")]);
    assert!(f.claims_json_header.is_none());
    assert_eq!((f.token, f.refresh_cookie), (Keep::Keep, Keep::Strip));
}

#[test]
fn strip_prefixes_are_folded_and_not_empty() {
    let raw = RawForward { strip_prefixes: vec!["X_Remote_".into(), "".into()], ..RawForward::default() };
    let mut errs = ConfigErrors::default();
    assert!(forward(&raw, "x-id", &mut errs).is_none());
    assert_eq!(keys(&errs), ["forward.strip_prefixes[1]"]);
    let raw = RawForward { strip_prefixes: vec!["X_Remote_".into()], ..RawForward::default() };
    let f = forward(&raw, "x-id", &mut ConfigErrors::default()).unwrap();
    assert_eq!(f.strip_prefixes, ["x-remote-"]);
}

#[test]
fn reserved_claim_headers_are_refused_case_and_underscore_insensitively() {
    for header in [
        "Host",
        "content_length",
        "Transfer-Encoding",
        "connection",
        "COOKIE",
        "Authorization",
        "Forwarded",
        "X-Forwarded-For",
        "x_forwarded_user",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Connection",
        "X_Jwtgate_Identity",
    ] {
        let mut errs = ConfigErrors::default();
        assert!(
            forward(&with_claims(&[("sub", header)]), "X-Jwtgate-Identity", &mut errs).is_none(),
            "{header}"
        );
        assert_eq!(keys(&errs), ["forward.claims.sub"], "{header}");
        assert!(errs.0[0].message.contains("write another name"));
    }
}

#[test]
fn claims_json_header_is_checked_like_a_claim_header() {
    let raw = RawForward { claims_json_header: "Cookie".into(), ..RawForward::default() };
    let mut errs = ConfigErrors::default();
    assert!(forward(&raw, "x-id", &mut errs).is_none());
    assert_eq!(keys(&errs), ["forward.claims_json_header"]);

    let raw = RawForward { claims_json_header: "X-Auth-Claims".into(), ..RawForward::default() };
    let f = forward(&raw, "x-id", &mut ConfigErrors::default()).unwrap();
    assert_eq!(f.claims_json_header.unwrap(), "x-auth-claims");
}

#[test]
fn duplicate_claim_headers_are_refused() {
    let raw = with_claims(&[("a", "X-Auth-User"), ("b", "x_auth_user")]);
    let mut errs = ConfigErrors::default();
    assert!(forward(&raw, "x-id", &mut errs).is_none());
    assert_eq!(keys(&errs), ["forward.claims.b"]);
    assert!(errs.0[0].message.contains("forward.claims.a"), "{}", errs.0[0].message);

    let raw = RawForward { claims_json_header: "X-Auth-Subject".into(), ..RawForward::default() };
    let mut errs = ConfigErrors::default();
    assert!(forward(&raw, "x-id", &mut errs).is_none());
    assert_eq!(keys(&errs), ["forward.claims_json_header"]);
}

#[test]
fn invalid_header_and_odd_claim_names() {
    let raw = with_claims(&[("https://x/roles", "X Roles"), ("", "X-Empty")]);
    let mut errs = ConfigErrors::default();
    assert!(forward(&raw, "x-id", &mut errs).is_none());
    assert_eq!(keys(&errs), ["forward.claims.\"\"", "forward.claims.\"https://x/roles\""]);
}

#[test]
fn token_and_refresh_cookie_are_keep_or_strip() {
    let raw = RawForward { token: "STRIP".into(), refresh_cookie: "drop".into(), ..RawForward::default() };
    let mut errs = ConfigErrors::default();
    assert!(forward(&raw, "x-id", &mut errs).is_none());
    assert_eq!(keys(&errs), ["forward.refresh_cookie"]);
    assert!(errs.0[0].message.contains("\"keep\", \"strip\""));
}

#[test]
fn login_url_empty_path_or_http_url() {
    let ok = |url: &str| {
        errors(&RawErrors { login_url: url.into() }, &mut ConfigErrors::default()).unwrap().login_url
    };
    assert_eq!(ok(""), None);
    assert_eq!(ok("/login"), Some("/login".into()));
    assert_eq!(ok("/login?app=1"), Some("/login?app=1".into()));
    assert_eq!(ok("https://id.example.com/login"), Some("https://id.example.com/login".into()));
    for bad in ["login", "//evil.example", "ftp://x/login", "https:///x", "/login#top", "/log in"] {
        let mut errs = ConfigErrors::default();
        assert!(errors(&RawErrors { login_url: bad.into() }, &mut errs).is_none(), "{bad}");
        assert_eq!(keys(&errs), ["errors.login_url"], "{bad}");
    }
}
