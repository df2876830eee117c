use std::time::Duration;

use super::*;

fn keys(errs: &ConfigErrors) -> Vec<&str> {
    errs.iter().map(|e| e.key.as_str()).collect()
}

fn up(name: &str, urls: &[&str]) -> RawUpstream {
    RawUpstream {
        name: name.into(),
        urls: urls.iter().map(|u| u.to_string()).collect(),
        ..RawUpstream::default()
    }
}

#[test]
fn a_valid_upstream() {
    let mut errs = ConfigErrors::default();
    let ups =
        upstreams(&[up("app", &["http://127.0.0.1:9000", "https://b.internal/"])], Path::new("."), &mut errs)
            .unwrap();
    assert_eq!(ups[0].name, "app");
    assert_eq!(ups[0].urls.len(), 2);
    assert_eq!(ups[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(ups[0].timeout, Duration::from_secs(30));
    assert!(ups[0].tls_ca.is_none());
}

#[test]
fn names_must_be_unique_and_non_empty() {
    let raw = [up("app", &["http://a"]), up("", &["http://a"]), up("app", &["http://b"])];
    let mut errs = ConfigErrors::default();
    assert!(upstreams(&raw, Path::new("."), &mut errs).is_none());
    assert_eq!(keys(&errs), ["upstreams[1].name", "upstreams[2].name"]);
    assert_eq!(names(&raw), ["app"]);
}

#[test]
fn urls_must_be_http_origins() {
    let raw = [up(
        "app",
        &[
            "http://ok:1",
            "http://h/api",
            "http://h/?q=1",
            "ftp://h",
            "/relative",
            "http://u:p@h",
            "https://h/",
        ],
    )];
    let mut errs = ConfigErrors::default();
    assert!(upstreams(&raw, Path::new("."), &mut errs).is_none());
    assert_eq!(
        keys(&errs),
        [
            "upstreams[0].urls[1]",
            "upstreams[0].urls[2]",
            "upstreams[0].urls[3]",
            "upstreams[0].urls[4]",
            "upstreams[0].urls[5]"
        ]
    );
    assert!(errs.0[0].message.contains("strip_prefix"));
}

#[test]
fn no_urls_is_an_error() {
    let mut errs = ConfigErrors::default();
    assert!(upstreams(&[up("app", &[])], Path::new("."), &mut errs).is_none());
    assert_eq!(keys(&errs), ["upstreams[0].urls"]);
}

#[test]
fn timeouts_and_tls_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "x").unwrap();
    let mut errs = ConfigErrors::default();
    let junk = RawUpstream { tls_ca: Some("junk.pem".into()), ..up("a", &["https://h"]) };
    assert!(upstreams(&[junk], dir.path(), &mut errs).is_none(), "a tls_ca with no certificate is refused");
    assert_eq!(keys(&errs), ["upstreams[0].tls_ca"]);
    let good = RawUpstream { tls_ca: Some("ca.pem".into()), ..up("a", &["https://h"]) };
    let mut errs = ConfigErrors::default();
    let ups = upstreams(std::slice::from_ref(&good), dir.path(), &mut errs).unwrap();
    assert_eq!(ups[0].tls_ca.as_deref(), Some(dir.path().join("ca.pem").as_path()));

    let bad = RawUpstream {
        connect_timeout: "0s".into(),
        timeout: "forever".into(),
        tls_ca: Some("nope.pem".into()),
        ..up("a", &["https://h"])
    };
    assert!(upstreams(&[bad], dir.path(), &mut errs).is_none());
    assert_eq!(keys(&errs), ["upstreams[0].connect_timeout", "upstreams[0].timeout", "upstreams[0].tls_ca"]);
}

#[test]
fn an_absurdly_long_timeout_is_refused_not_overflowed_later() {
    // humantime parses this; `now + it` would panic on every request.
    let huge = RawUpstream { timeout: "300000000000y".into(), ..up("a", &["http://h"]) };
    let mut errs = ConfigErrors::default();
    assert!(upstreams(&[huge], Path::new("."), &mut errs).is_none());
    assert_eq!(keys(&errs), ["upstreams[0].timeout"]);
    assert!(errs.iter().any(|e| e.message.contains("longer than 100 years")), "{errs:?}");
    let long = RawUpstream { timeout: "100y".into(), ..up("a", &["http://h"]) };
    let mut errs = ConfigErrors::default();
    assert!(
        upstreams(&[long], Path::new("."), &mut errs).is_some(),
        "100 years is the longest accepted: {errs:?}"
    );
}
