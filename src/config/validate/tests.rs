//! Whole-file checks: the shipped `gateway.toml.example` and `validate()`.

use std::path::Path;

use super::*;
use crate::config::interp::{deserialize_collecting_unknown, parse_and_interpolate};
use crate::config::raw::{self, RawConfig};

const EXAMPLE: &str = include_str!("../../../gateway.toml.example");
const SECRET: &str = "an-example-secret-that-is-long-enough-for-hs256";

fn env(name: &str) -> Option<String> {
    (name == "JWTGATE_SECRET").then(|| SECRET.to_string())
}

fn example_raw() -> RawConfig {
    let (value, errs) = parse_and_interpolate(EXAMPLE, &env).unwrap();
    assert!(errs.is_empty(), "{errs}");
    let (raw, errs, dropped) = deserialize_collecting_unknown(value).unwrap();
    assert!(errs.is_empty() && dropped.is_empty(), "{errs}");
    raw
}

#[test]
fn example_loads_without_unknown_keys_and_interpolates_the_secret() {
    let raw = example_raw();
    assert_eq!(raw.tokens.secret.as_deref(), Some(SECRET));
    assert_eq!(raw.upstreams[0].name, "app");
    assert_eq!(raw.upstreams[0].urls, ["http://127.0.0.1:9000"]);
    assert!(raw.routes.len() >= 8);
}

#[test]
fn example_needs_the_secret_variable() {
    let (_, errs) = parse_and_interpolate(EXAMPLE, &|_| None).unwrap();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["tokens.secret"]);
}

#[test]
fn example_sections_validate() {
    let raw = example_raw();
    let base = Path::new("/srv/jwtgate");
    let mut errs = ConfigErrors::default();
    let srv = server::server(&raw.server, base, &mut errs).unwrap();
    let adm = server::admin(raw.admin.as_ref().unwrap(), &mut errs).unwrap();
    server::admin_apart_from_server(&adm, &srv, &mut errs);
    server::log(&raw.log, &mut errs).unwrap();
    session::cookies(&raw.cookies, &mut errs).unwrap();
    session::csrf(&raw.csrf, &mut errs).unwrap();
    session::sessions(&raw.sessions, &raw.tokens, &mut errs).unwrap();
    let store = session::store(&raw.store, base, &mut errs).unwrap();
    assert_eq!(store.path, base.join("jwtgate.redb"));
    forward::forward(&raw.forward, &raw.sessions.identity_header, &mut errs).unwrap();
    forward::errors(&raw.errors, &mut errs).unwrap();
    upstream::upstreams(&raw.upstreams, base, &mut errs).unwrap();
    assert!(errs.is_empty(), "{errs}");
}

/// The example shows each key's default (DESIGN.md §3): compare it with the raw defaults.
#[test]
fn example_values_are_the_defaults() {
    let raw = example_raw();
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| assert_eq!(format!("{a:?}"), format!("{b:?}"));
    same(&raw.server, &raw::RawServer::default());
    same(&raw.admin.unwrap(), &raw::RawAdmin::default());
    same(&raw.log, &raw::RawLog::default());
    same(&raw::RawTokens { secret: None, ..raw.tokens }, &raw::RawTokens::default());
    same(&raw.cookies, &raw::RawCookies::default());
    same(&raw.csrf, &raw::RawCsrf::default());
    same(&raw.sessions, &raw::RawSessions::default());
    same(&raw.store, &raw::RawStore::default());
    same(&raw.forward, &raw::RawForward::default());
    same(&raw.errors, &raw::RawErrors::default());
    let up = &raw.upstreams[0];
    assert_eq!((up.connect_timeout.as_str(), up.timeout.as_str()), ("2s", "30s"));
}

/// Every key the raw structs accept is documented in the example (set or commented out;
/// a key shared by several tables only needs to appear once).
#[test]
fn example_documents_every_key() {
    let tables = [
        "server",
        "admin",
        "log",
        "tokens",
        "tokens.accept",
        "cookies",
        "csrf",
        "sessions",
        "store",
        "forward",
        "errors",
        "upstreams",
        "routes",
    ];
    for table in tables {
        for key in crate::config::unknown::known_keys(table) {
            let documented = EXAMPLE.lines().any(|line| {
                let line = line.trim_start().trim_start_matches('#').trim_start();
                line.starts_with(&format!("{key} =")) || line.starts_with(&format!("[[{table}.{key}]]"))
            });
            assert!(documented, "{table}.{key} is not in gateway.toml.example");
        }
        assert!(
            EXAMPLE.contains(&format!("[{table}]")) || EXAMPLE.contains(&format!("[[{table}]]")),
            "{table}"
        );
    }
}

#[test]
fn parse_reports_syntax_alone_and_everything_else_in_one_run() {
    let errs = crate::config::parse("[server\n", Path::new(".")).unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert_eq!(errs.0[0].key, "(syntax)");
    let text = "[server]\nlisen = 1\nmax_headers = \"many\"\n[tokens]\nsecret = \"${NOPE_NOT_SET}\"\n[[routes]]\npolcy = 2\n";
    let errs = crate::config::parse(text, Path::new(".")).unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    for key in ["tokens.secret", "server.max_headers", "routes[0].polcy", "server.lisen", "routes[0].path"] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // No knock-on errors on keys that already failed.
    assert_eq!(keys.iter().filter(|k| **k == "tokens.secret").count(), 1, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| **k == "server.max_headers").count(), 1, "{keys:?}");
}

/// The keys `parse` reports for the example with each `(from, to)` edit made.
fn error_keys_after(edits: &[(&str, &str)]) -> Vec<String> {
    let mut text = EXAMPLE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} is not in the example");
        text = text.replacen(from, to, 1);
    }
    let text = text.replace("${JWTGATE_SECRET}", SECRET);
    let errs = crate::config::parse(&text, Path::new("/srv/jwtgate")).unwrap_err();
    errs.iter().map(|e| e.key.clone()).collect()
}

#[test]
fn a_mistake_is_reported_alone_not_with_what_follows_from_it() {
    let secret = "secret = \"${JWTGATE_SECRET}\"";
    let name = "name = \"app\"";
    let urls = "urls = [";
    let ahead = "# refresh_ahead = \"60s\"";
    let cases: [(&[(&str, &str)], &str); 8] = [
        // Not also "tokens: needs one of secret / secret_file / private_key".
        (&[(secret, "secret = 12345")], "tokens.secret"),
        (&[(secret, "secre = \"x\"")], "tokens.secre"),
        // Not also every route's "no [[upstreams]] named \"app\"; known: none".
        (&[(name, "name = 12345")], "upstreams[0].name"),
        (&[(name, "nam = \"app\"")], "upstreams[0].nam"),
        (&[(name, "name = \"\"")], "upstreams[0].name"),
        // Not also "urls: no URL".
        (&[(urls, "url = [")], "upstreams[0].url"),
        // Not also "policy: missing" and "upstream: missing".
        (&[("handler = \"refresh\"", "handler = 5")], "routes[7].handler"),
        // Not also "refresh_ahead is not shorter than access_ttl (15m)", the default's.
        (
            &[("access_ttl = \"15m\"", "access_ttl = 3600"), (ahead, "refresh_ahead = \"20m\"")],
            "tokens.access_ttl",
        ),
    ];
    for (edits, key) in cases {
        assert_eq!(error_keys_after(edits), [key], "after {edits:?}");
    }
}

#[test]
fn a_mistake_of_its_own_beside_another_is_still_reported() {
    // The misspelled key's twin is written too: its own error is no consequence.
    let both = error_keys_after(&[("urls = [\"http://127.0.0.1:9000\"]", "urls = []\nurl = [\"http://x\"]")]);
    assert_eq!(both, ["upstreams[0].url", "upstreams[0].urls"]);
    // refresh_ahead against a valid access_ttl.
    let ahead = error_keys_after(&[("# refresh_ahead = \"60s\"", "refresh_ahead = \"20m\"")]);
    assert_eq!(ahead, ["sessions.refresh_ahead"]);
    // A route naming an upstream that does not exist, when every upstream's name is fine.
    let route = error_keys_after(&[("upstream = \"app\"", "upstream = \"ap\"")]);
    assert_eq!(route, ["routes[0].upstream"]);
    // Two unrelated mistakes.
    let two = error_keys_after(&[
        ("secret = \"${JWTGATE_SECRET}\"", "secret = 1"),
        ("max_headers = 100", "max_headers = 0"),
    ]);
    assert_eq!(two, ["tokens.secret", "server.max_headers"]);
}

#[test]

fn example_validates_in_full() {
    let runtime = validate(&example_raw(), Path::new("/srv/jwtgate")).unwrap();
    assert_eq!(runtime.upstreams[0].name, "app");
    assert!(runtime.admin.is_some());
}

#[test]

fn validate_collects_errors_from_every_section() {
    let mut raw = example_raw();
    raw.server.max_headers = 0;
    raw.log.format = "xml".into();
    raw.cookies.same_site = "loose".into();
    raw.store.backend = "sqlite".into();
    raw.upstreams[0].urls = vec!["ftp://x".into()];
    let errs = validate(&raw, Path::new(".")).unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    for key in
        ["server.max_headers", "log.format", "cookies.same_site", "store.backend", "upstreams[0].urls[0]"]
    {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}

#[test]

fn admin_on_the_server_address_is_an_error() {
    let mut raw = example_raw();
    raw.admin = Some(raw::RawAdmin { listen: "0.0.0.0:8080".into() });
    let errs = validate(&raw, Path::new(".")).unwrap_err();
    assert!(errs.iter().any(|e| e.key == "admin.listen"), "{errs}");
}
