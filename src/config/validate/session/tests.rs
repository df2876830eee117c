use super::*;

fn keys(errs: &ConfigErrors) -> Vec<&str> {
    errs.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn cookie_defaults_are_valid() {
    let mut errs = ConfigErrors::default();
    let c = cookies(&RawCookies::default(), &mut errs).unwrap();
    assert_eq!(c.access, "access_token_cookie");
    assert_eq!(c.csrf_refresh, "csrf_refresh_token");
    assert_eq!((c.secure, c.same_site, c.domain, c.path.as_str()), (true, SameSite::Lax, None, "/"));
}

#[test]
fn cookie_names_must_be_tokens_and_distinct() {
    let raw = RawCookies {
        access: "a b".into(),
        refresh: "r".into(),
        csrf_access: "r".into(),
        csrf_refresh: "".into(),
        ..RawCookies::default()
    };
    let mut errs = ConfigErrors::default();
    assert!(cookies(&raw, &mut errs).is_none());
    assert_eq!(keys(&errs), ["cookies.access", "cookies.csrf_access", "cookies.csrf_refresh"]);
    assert!(errs.0[1].message.contains("cookies.refresh"), "{}", errs.0[1].message);
    for bad in ["x;y", "x=y", "x\"", "é", "x,y"] {
        let mut errs = ConfigErrors::default();
        cookies(&RawCookies { access: bad.into(), ..RawCookies::default() }, &mut errs);
        assert_eq!(keys(&errs), ["cookies.access"], "{bad}");
    }
}

#[test]
fn same_site_none_requires_secure() {
    let raw = RawCookies { same_site: "None".into(), secure: false, ..RawCookies::default() };
    let mut errs = ConfigErrors::default();
    assert!(cookies(&raw, &mut errs).is_none());
    assert_eq!(keys(&errs), ["cookies.same_site"]);
    let raw = RawCookies { same_site: "none".into(), ..RawCookies::default() };
    assert_eq!(cookies(&raw, &mut errs).unwrap().same_site, SameSite::None);
    let raw = RawCookies { same_site: "loose".into(), ..RawCookies::default() };
    let mut errs = ConfigErrors::default();
    assert!(cookies(&raw, &mut errs).is_none());
    assert!(errs.0[0].message.contains("\"strict\", \"lax\", \"none\""));
}

#[test]
fn cookie_domain_and_path() {
    let raw = RawCookies { domain: ".Example.com".into(), path: "/app".into(), ..RawCookies::default() };
    let c = cookies(&raw, &mut ConfigErrors::default()).unwrap();
    assert_eq!((c.domain.as_deref(), c.path.as_str()), (Some("example.com"), "/app"));
    let raw =
        RawCookies { domain: "https://example.com".into(), path: "app".into(), ..RawCookies::default() };
    let mut errs = ConfigErrors::default();
    assert!(cookies(&raw, &mut errs).is_none());
    assert_eq!(keys(&errs), ["cookies.domain", "cookies.path"]);
}

#[test]
fn cookie_prefixes_follow_browser_rules() {
    let raw =
        RawCookies { access: "__Host-at".into(), domain: "example.com".into(), ..RawCookies::default() };
    let mut errs = ConfigErrors::default();
    assert!(cookies(&raw, &mut errs).is_none());
    assert_eq!(keys(&errs), ["cookies.domain"]);
    let raw = RawCookies { refresh: "__Secure-rt".into(), secure: false, ..RawCookies::default() };
    let mut errs = ConfigErrors::default();
    assert!(cookies(&raw, &mut errs).is_none());
    assert_eq!(keys(&errs), ["cookies.refresh"]);
}

#[test]
fn csrf_header_and_origins() {
    let raw = RawCsrf {
        allowed_origins: vec!["HTTPS://App.Example.com:443".into(), "http://localhost:3000/".into()],
        ..RawCsrf::default()
    };
    let c = csrf(&raw, &mut ConfigErrors::default()).unwrap();
    assert_eq!(c.header, "x-csrf-token");
    assert_eq!(c.allowed_origins, ["https://app.example.com", "http://localhost:3000"]);

    let raw = RawCsrf {
        header: "X CSRF".into(),
        allowed_origins: vec![
            "app.example.com".into(),
            "https://a.example.com/path".into(),
            "null".into(),
            "https://a?x=1".into(),
            "*".into(),
        ],
        ..RawCsrf::default()
    };
    let mut errs = ConfigErrors::default();
    assert!(csrf(&raw, &mut errs).is_none());
    assert_eq!(
        keys(&errs),
        [
            "csrf.header",
            "csrf.allowed_origins[0]",
            "csrf.allowed_origins[1]",
            "csrf.allowed_origins[2]",
            "csrf.allowed_origins[3]",
            "csrf.allowed_origins[4]"
        ]
    );
    assert!(errs.0[1].message.contains("scheme://host[:port]"));
}

fn tokens_with_ttl(ttl: &str) -> RawTokens {
    RawTokens { access_ttl: ttl.into(), ..RawTokens::default() }
}

#[test]
fn session_defaults_and_refresh_ahead_default() {
    let mut errs = ConfigErrors::default();
    let s = sessions(&RawSessions::default(), &RawTokens::default(), &mut errs).unwrap();
    assert_eq!(s.identity_header, "x-jwtgate-identity");
    assert_eq!(s.login_response, LoginResponse::Tokens);
    assert_eq!(s.refresh_ahead, Duration::from_secs(60));
    assert_eq!(s.reuse_grace, Duration::from_secs(30));
    assert_eq!(s.max_session, Duration::from_secs(30 * 86400));
    assert_eq!(s.idle_timeout, Duration::from_secs(7 * 86400));
    let s = sessions(&RawSessions::default(), &tokens_with_ttl("2m"), &mut errs).unwrap();
    assert_eq!(s.refresh_ahead, Duration::from_secs(30));
    // A bad access_ttl is the token validator's to report; the default falls back to 60s.
    let s = sessions(&RawSessions::default(), &tokens_with_ttl("soon"), &mut errs).unwrap();
    assert_eq!(s.refresh_ahead, Duration::from_secs(60));
    assert!(errs.is_empty());
}

#[test]
fn explicit_refresh_ahead_must_be_below_access_ttl_when_implicit_refresh_runs() {
    let raw = RawSessions { refresh_ahead: Some("15m".into()), ..RawSessions::default() };
    let mut errs = ConfigErrors::default();
    assert!(sessions(&raw, &RawTokens::default(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["sessions.refresh_ahead"]);
    assert!(errs.0[0].message.contains("15m"), "{}", errs.0[0].message);

    let no_implicit = RawSessions { implicit_refresh: false, ..raw.clone() };
    assert!(sessions(&no_implicit, &RawTokens::default(), &mut ConfigErrors::default()).is_some());
    let headers_only = RawTokens { locations: vec!["headers".into()], ..RawTokens::default() };
    assert!(sessions(&raw, &headers_only, &mut ConfigErrors::default()).is_some());
    let ok = RawSessions { refresh_ahead: Some("2m".into()), ..RawSessions::default() };
    let s = sessions(&ok, &RawTokens::default(), &mut ConfigErrors::default()).unwrap();
    assert_eq!(s.refresh_ahead, Duration::from_secs(120));
}

/// `login_response = "upstream"` hands the tokens over only in cookies: with
/// no "cookies" location nobody would receive the session it mints.
#[test]
fn login_response_upstream_needs_the_cookie_location() {
    let upstream = RawSessions { login_response: "upstream".into(), ..RawSessions::default() };
    let headers_only =
        RawTokens { locations: vec!["headers".into(), "query".into()], ..RawTokens::default() };
    let mut errs = ConfigErrors::default();
    assert!(sessions(&upstream, &headers_only, &mut errs).is_none());
    assert_eq!(keys(&errs), ["sessions.login_response"]);
    for fix in ["add \"cookies\" to tokens.locations", "login_response = \"tokens\""] {
        assert!(errs.0[0].message.contains(fix), "{errs}");
    }

    let s = sessions(&upstream, &RawTokens::default(), &mut ConfigErrors::default()).unwrap();
    assert_eq!(s.login_response, LoginResponse::Upstream);
    let tokens = RawSessions::default();
    let s = sessions(&tokens, &headers_only, &mut ConfigErrors::default()).unwrap();
    assert_eq!(s.login_response, LoginResponse::Tokens);
}

#[test]
fn session_field_errors() {
    let raw = RawSessions {
        identity_header: "".into(),
        login_response: "json".into(),
        refresh_ahead: Some("x".into()),
        reuse_grace: "later".into(),
        max_session: "0s".into(),
        idle_timeout: "0s".into(),
        ..RawSessions::default()
    };
    let mut errs = ConfigErrors::default();
    assert!(sessions(&raw, &RawTokens::default(), &mut errs).is_none());
    assert_eq!(
        keys(&errs),
        [
            "sessions.identity_header",
            "sessions.login_response",
            "sessions.refresh_ahead",
            "sessions.reuse_grace",
            "sessions.max_session",
            "sessions.idle_timeout"
        ]
    );
}

#[test]
fn store_defaults_resolve_path_against_base() {
    let mut errs = ConfigErrors::default();
    let s = store(&RawStore::default(), Path::new("/etc/jwtgate"), &mut errs).unwrap();
    assert_eq!(s.backend, StoreBackend::Embedded);
    assert_eq!(s.path, Path::new("/etc/jwtgate/jwtgate.redb"));
    assert_eq!((s.timeout, s.max_staleness), (Duration::from_millis(250), Duration::from_secs(5)));
    assert!(s.url.is_none());
}

#[test]
fn redis_needs_a_redis_url_and_url_needs_redis() {
    let redis = |url: Option<&str>| RawStore {
        backend: "redis".into(),
        url: url.map(str::to_string),
        ..RawStore::default()
    };
    for good in ["redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal:6380"] {
        let s = store(&redis(Some(good)), Path::new("."), &mut ConfigErrors::default()).unwrap();
        assert_eq!((s.backend, s.url.as_deref()), (StoreBackend::Redis, Some(good)));
    }
    for bad in [
        None,
        Some("http://127.0.0.1:6379"),
        Some("redis://"),
        Some("redis://:secret@"),
        // What the store would refuse at start: `check` must too.
        Some("redis://127.0.0.1:6379/zero"),
        Some("redis://127.0.0.1:6379/0?protocol=9"),
        Some("rediss://127.0.0.1:6380/0#insecure"),
    ] {
        let mut errs = ConfigErrors::default();
        assert!(store(&redis(bad), Path::new("."), &mut errs).is_none(), "{bad:?}");
        assert_eq!(keys(&errs), ["store.url"]);
        assert!(!errs.0[0].message.contains("secret"), "the URL is never echoed");
    }
    let stray = RawStore { url: Some("redis://h".into()), ..RawStore::default() };
    let mut errs = ConfigErrors::default();
    assert!(store(&stray, Path::new("."), &mut errs).is_none());
    assert_eq!(keys(&errs), ["store.url"]);
}

#[test]
fn store_field_errors() {
    let raw = RawStore {
        backend: "sqlite".into(),
        timeout: "0ms".into(),
        max_staleness: "bad".into(),
        ..RawStore::default()
    };
    let mut errs = ConfigErrors::default();
    assert!(store(&raw, Path::new("."), &mut errs).is_none());
    assert_eq!(keys(&errs), ["store.backend", "store.timeout", "store.max_staleness"]);
    let raw = RawStore { path: " ".into(), ..RawStore::default() };
    let mut errs = ConfigErrors::default();
    assert!(store(&raw, Path::new("."), &mut errs).is_none());
    assert_eq!(keys(&errs), ["store.path"]);
    // A directory is no database file: check names the key.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let raw = RawStore { path: "sub".into(), ..RawStore::default() };
    let mut errs = ConfigErrors::default();
    assert!(store(&raw, dir.path(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["store.path"]);
    assert!(errs.0[0].message.contains("is a directory"), "{}", errs.0[0].message);
    for fine in ["jwtgate.redb", "sub/jwtgate.redb", "made-at-start/jwtgate.redb"] {
        let raw = RawStore { path: fine.into(), ..RawStore::default() };
        assert!(store(&raw, dir.path(), &mut ConfigErrors::default()).is_some(), "{fine}");
    }
    let mem = RawStore { backend: "memory".into(), ..RawStore::default() };
    assert_eq!(
        store(&mem, Path::new("."), &mut ConfigErrors::default()).unwrap().backend,
        StoreBackend::Memory
    );
}

#[test]
fn store_tls_ca_is_an_extra_root_for_a_rediss_url() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
    let raw = |backend: &str, url: Option<&str>, ca: &str| RawStore {
        backend: backend.into(),
        url: url.map(str::to_string),
        tls_ca: Some(ca.into()),
        ..RawStore::default()
    };
    let tls = Some("rediss://:s3cret@cache.internal:6380/0");

    let s = store(&raw("redis", tls, "ca.pem"), dir.path(), &mut ConfigErrors::default()).unwrap();
    assert_eq!(s.tls_ca.as_deref(), Some(dir.path().join("ca.pem").as_path()), "relative to the config");
    assert!(!format!("{s:?}").contains("s3cret"), "Debug hides the url: {s:?}");
    let none = store(&RawStore::default(), dir.path(), &mut ConfigErrors::default()).unwrap();
    assert!(none.tls_ca.is_none(), "default: no extra root");

    let refused = [
        (raw("redis", tls, "missing.pem"), "does not exist"),
        (raw("redis", tls, "junk.pem"), "give a PEM file of CA certificates"),
        (raw("redis", Some("redis://:s3cret@cache.internal:6379"), "ca.pem"), "rediss://"),
        (raw("embedded", None, "ca.pem"), "backend = \"redis\""),
        (raw("memory", None, "ca.pem"), "remove tls_ca"),
    ];
    for (bad, fix) in refused {
        let mut errs = ConfigErrors::default();
        assert!(store(&bad, dir.path(), &mut errs).is_none(), "{:?}", bad.tls_ca);
        assert_eq!(keys(&errs), ["store.tls_ca"], "{errs}");
        assert!(errs.0[0].message.contains(fix), "{errs}");
        assert!(!errs.0[0].message.contains("s3cret"), "the URL is never echoed: {errs}");
    }

    // A wrong url is reported on store.url alone.
    let mut errs = ConfigErrors::default();
    assert!(store(&raw("redis", Some("http://h"), "ca.pem"), dir.path(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["store.url"]);
}
