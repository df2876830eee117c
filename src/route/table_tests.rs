//! Route table: build-time validation, most-specific match, 405, case guard,
//! strip_prefix (DESIGN.md §4 rules 6–9, §3, §6).

use std::time::Duration;

use http::Method;
use serde::Deserialize;

use super::{canonicalize, Handler, Policy, Route, RouteMiss, RouteTable};
use crate::config::raw::RawRoute;
use crate::config::ConfigErrors;

#[derive(Deserialize)]
struct Doc {
    routes: Vec<RawRoute>,
}

fn try_build(routes_toml: &str) -> Result<RouteTable, ConfigErrors> {
    let doc: Doc = toml::from_str(routes_toml).expect("test TOML parses");
    let mut errs = ConfigErrors::default();
    let upstreams = ["app".to_owned(), "api".to_owned()];
    match RouteTable::build(&doc.routes, &upstreams, &mut errs) {
        Some(table) if errs.is_empty() => Ok(table),
        _ => Err(errs),
    }
}

fn build(routes_toml: &str) -> RouteTable {
    try_build(routes_toml).unwrap_or_else(|e| panic!("config refused:\n{e}"))
}

fn errors(routes_toml: &str) -> Vec<String> {
    match try_build(routes_toml) {
        Ok(_) => panic!("config accepted"),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

fn has(errs: &[String], key: &str) -> bool {
    errs.iter().any(|e| e.starts_with(&format!("{key}: ")))
}

/// The index of the route answering `METHOD target` on `host`, canonicalizing first.
fn route_of(table: &RouteTable, host: &str, method: Method, target: &str) -> Result<usize, RouteMiss> {
    let path = canonicalize(target, false).expect("canonical target").path;
    table.lookup(host, &method, &path).map(|r| r.index)
}

fn get(table: &RouteTable, target: &str) -> Result<usize, RouteMiss> {
    route_of(table, "app.example.com", Method::GET, target)
}

const LAYERED: &str = r#"
[[routes]]
path = "/**"
policy = "public"
upstream = "app"
[[routes]]
path = "/api/**"
policy = "access"
upstream = "api"
[[routes]]
path = "/api/*"
policy = "public"
upstream = "api"
[[routes]]
path = "/api/*/admin"
policy = "fresh"
upstream = "api"
max_age = "10m"
[[routes]]
path = "/api/health"
policy = "public"
upstream = "api"
[[routes]]
path = "/api/**"
policy = "refresh"
upstream = "api"
host = "Internal.Example.com"
[[routes]]
path = "/api/**"
policy = "fresh"
upstream = "api"
methods = ["DELETE"]
[[routes]]
path = "/admin/**"
policy = "access"
upstream = "app"
"#;

#[test]
fn most_specific_route_wins() {
    let t = build(LAYERED);
    assert_eq!(get(&t, "/"), Ok(0));
    assert_eq!(get(&t, "/other/x"), Ok(0));
    assert_eq!(get(&t, "/api"), Ok(1));
    assert_eq!(get(&t, "/api/x/y"), Ok(1));
    assert_eq!(get(&t, "/api/x"), Ok(2), "/api/* beats /api/**");
    assert_eq!(get(&t, "/api/x/admin"), Ok(3), "more literal segments win");
    assert_eq!(get(&t, "/api/health"), Ok(4), "exact wins");
    assert_eq!(route_of(&t, "internal.example.com", Method::GET, "/api/health"), Ok(5), "host-specific wins");
    assert_eq!(route_of(&t, "app.example.com", Method::DELETE, "/api/x/y"), Ok(6), "a method list wins");
    assert_eq!(route_of(&t, "app.example.com", Method::DELETE, "/api/x"), Ok(2), "method list ranks last");
}

#[test]
fn prefix_patterns_match_on_segment_boundaries() {
    let t = build(LAYERED);
    assert_eq!(get(&t, "/admin"), Ok(7));
    assert_eq!(get(&t, "/admin/"), Ok(7));
    assert_eq!(get(&t, "/admin/users/1"), Ok(7));
    assert_eq!(get(&t, "/administrator"), Ok(0));
    assert_eq!(get(&t, "/admin.php"), Ok(0));
}

#[test]
fn unreserved_escapes_and_trailing_slash_match_like_the_plain_path() {
    let t = build(LAYERED);
    assert_eq!(get(&t, "/%61dmin/x"), Ok(7));
    assert_eq!(get(&t, "/api/%68ealth"), Ok(4));
    assert_eq!(get(&t, "/api/health/"), Ok(4));
    assert_eq!(get(&t, "/api/x/admin/"), Ok(3));
}

#[test]
fn no_match_is_404_and_method_mismatch_is_405_with_the_union_of_methods() {
    let t = build(
        r#"
[[routes]]
path = "/login"
handler = "login"
upstream = "app"
[[routes]]
path = "/login"
policy = "public"
upstream = "app"
methods = ["GET", "POST", "HEAD"]
host = "a.test"
[[routes]]
path = "/items/*"
policy = "access"
upstream = "app"
methods = ["GET", "HEAD"]
[[routes]]
path = "/items/**"
policy = "access"
upstream = "app"
methods = ["PUT", "GET"]
[[routes]]
path = "/.well-known/jwks.json"
handler = "jwks"
"#,
    );
    let allow = |list: &[Method]| Err(RouteMiss::MethodNotAllowed { allow: list.to_vec() });
    assert_eq!(get(&t, "/nothing"), Err(RouteMiss::NotFound));
    assert_eq!(get(&t, "/login"), allow(&[Method::POST]));
    assert_eq!(route_of(&t, "x.test", Method::POST, "/login"), Ok(0));
    assert_eq!(
        route_of(&t, "a.test", Method::PUT, "/login"),
        allow(&[Method::POST, Method::GET, Method::HEAD])
    );
    assert_eq!(route_of(&t, "a.test", Method::GET, "/login"), Ok(1));
    assert_eq!(
        route_of(&t, "x.test", Method::DELETE, "/items/1"),
        allow(&[Method::GET, Method::HEAD, Method::PUT])
    );
    assert_eq!(route_of(&t, "x.test", Method::PUT, "/items/1"), Ok(3));
    assert_eq!(get(&t, "/.well-known/jwks.json"), Ok(4));
    assert_eq!(route_of(&t, "x.test", Method::POST, "/.well-known/jwks.json"), allow(&[Method::GET]));
}

#[test]
fn handler_routes_are_public_with_default_methods() {
    let t = build("[[routes]]\npath = \"/auth/refresh\"\nhandler = \"refresh\"\n");
    let route = &t.routes()[0];
    assert_eq!((route.policy, route.handler), (Policy::Public, Some(Handler::Refresh)));
    assert_eq!(route.effective_methods(), Some(&[Method::POST][..]));
    assert!(route.allows(&Method::POST) && !route.allows(&Method::GET));
    assert!(route.upstream.is_none());
}

#[test]
fn case_guard_refuses_paths_a_case_folding_upstream_would_route_elsewhere() {
    let t = build(LAYERED);
    assert_eq!(get(&t, "/ADMIN/users"), Err(RouteMiss::CaseConflict));
    assert_eq!(get(&t, "/Api/x/Admin"), Err(RouteMiss::CaseConflict), "fresh vs public");
    assert_eq!(get(&t, "/Other/Page"), Ok(0), "no other route in lower case");
    let t = build(
        r#"
[[routes]]
path = "/Docs/**"
policy = "public"
upstream = "app"
[[routes]]
path = "/**"
policy = "public"
upstream = "app"
[[routes]]
path = "/API/**"
policy = "access"
upstream = "app"
[[routes]]
path = "/api/**"
policy = "public"
upstream = "app"
"#,
    );
    assert_eq!(get(&t, "/docs/x"), Ok(1), "same rules: no conflict");
    assert_eq!(get(&t, "/Docs/x"), Ok(0));
    assert_eq!(get(&t, "/api/x"), Err(RouteMiss::CaseConflict), "upper-case pattern under other rules");
    assert_eq!(get(&t, "/API/x"), Err(RouteMiss::CaseConflict));
}

#[test]
fn case_guard_reads_letters_that_fold_into_ascii_as_their_ascii() {
    // ASP.NET Core routes `admın` (dotless ı) to `admin`; Java's equalsIgnoreCase
    // matches the Kelvin sign with `k`.
    let t = build(LAYERED);
    assert_eq!(get(&t, "/adm%C4%B1n/users"), Err(RouteMiss::CaseConflict), "access, not /**'s public");
    assert_eq!(get(&t, "/%E2%84%AAey/x"), Ok(0), "folds to /key: public like /**");
    assert_eq!(get(&t, "/api/x/Adm%C4%B1n"), Err(RouteMiss::CaseConflict), "fresh vs public");
    assert_eq!(get(&t, "/kategori/kad%C4%B1n"), Ok(0), "a Turkish word that folds onto no other route");
}

#[test]
fn case_guard_compares_require_and_max_age() {
    let t = build(
        r#"
[[routes]]
path = "/**"
policy = "access"
upstream = "app"
[[routes]]
path = "/billing/**"
policy = "access"
upstream = "app"
require = { roles = "billing" }
"#,
    );
    assert_eq!(get(&t, "/Billing/x"), Err(RouteMiss::CaseConflict));
    assert_eq!(get(&t, "/billing/x"), Ok(1));
    assert_eq!(get(&t, "/Blog"), Ok(0));
}

const RESERVED: &str = r#"
[[routes]]
path = "/**"
policy = "public"
upstream = "app"
[[routes]]
path = "/api/**"
policy = "access"
upstream = "api"
[[routes]]
path = "/api/users:purge"
policy = "fresh"
upstream = "api"
[[routes]]
path = "/@me/**"
policy = "access"
upstream = "app"
[[routes]]
path = "/odata/$metadata"
policy = "access"
upstream = "app"
[[routes]]
path = "/files/*"
policy = "access"
upstream = "app"
"#;

#[test]
fn escape_guard_refuses_escapes_an_app_would_decode_into_a_route_under_other_rules() {
    let t = build(RESERVED);
    assert_eq!(get(&t, "/api/users:purge"), Ok(2));
    assert_eq!(get(&t, "/api/users%3Apurge"), Err(RouteMiss::EscapeConflict), "fresh, not /api/**'s access");
    assert_eq!(get(&t, "/api/users%3apurge"), Err(RouteMiss::EscapeConflict), "lower-case hex alike");
    assert_eq!(get(&t, "/%40me/x"), Err(RouteMiss::EscapeConflict), "access, not /**'s public");
    assert_eq!(get(&t, "/odata/%24metadata"), Err(RouteMiss::EscapeConflict));
    assert_eq!(get(&t, "/odata/%24METADATA"), Err(RouteMiss::EscapeConflict), "decoded, then case-folded");
    // Escapes that change nothing pass, and are forwarded as sent.
    assert_eq!(get(&t, "/files/bob%40example.com"), Ok(5), "one segment either way");
    assert_eq!(get(&t, "/api/a%2Bb%3Dc"), Ok(1), "/api/** either way");
    assert_eq!(get(&t, "/blog/%E2%9C%93%21"), Ok(0));
    assert_eq!(canonicalize("/files/bob%40example.com", false).unwrap().path, "/files/bob%40example.com");
}

#[test]
fn escape_guard_also_folds_case_where_the_case_guard_runs() {
    let t = build(
        r#"
[[routes]]
path = "/**"
policy = "public"
upstream = "app"
[[routes]]
path = "/OData/$metadata"
policy = "access"
upstream = "app"
"#,
    );
    assert_eq!(get(&t, "/OData/$metadata"), Ok(1));
    assert_eq!(get(&t, "/odata/%24metadata"), Err(RouteMiss::EscapeConflict), "decoded and lower-cased");
    assert_eq!(get(&t, "/odata/$metadata"), Err(RouteMiss::CaseConflict));
}

#[test]
fn patterns_spell_sub_delims_raw() {
    let errs = errors("[[routes]]\npath = \"/files/a%2Bb\"\npolicy = \"public\"\nupstream = \"app\"\n");
    assert!(has(&errs, "routes[0].path"), "{errs:?}");
    assert!(errs[0].contains("'+'") && errs[0].contains("%2B"), "names the escape and the fix: {errs:?}");
    let errs = errors("[[routes]]\npath = \"/%40me\"\npolicy = \"public\"\nupstream = \"app\"\n");
    assert!(errs[0].contains("'@'"), "{errs:?}");
    // A literal `*` segment has no raw spelling: %2A stays, and matches only itself.
    let t = build("[[routes]]\npath = \"/x/%2A\"\npolicy = \"access\"\nupstream = \"app\"\n[[routes]]\npath = \"/x/**\"\npolicy = \"public\"\nupstream = \"app\"\n");
    assert_eq!(get(&t, "/x/%2a"), Ok(0));
    assert_eq!(get(&t, "/x/y"), Ok(1));
}

#[test]
fn a_route_listing_get_answers_head_too() {
    let t = build(
        r#"
[[routes]]
path = "/admin/**"
policy = "access"
upstream = "app"
methods = ["GET", "POST"]
[[routes]]
path = "/**"
policy = "public"
upstream = "app"
"#,
    );
    // Apps run their GET view for HEAD: it must not fall to the public route.
    assert_eq!(route_of(&t, "app.example.com", Method::HEAD, "/admin/secret"), Ok(0));
    assert_eq!(
        route_of(&t, "app.example.com", Method::PUT, "/admin/secret"),
        Ok(1),
        "other methods fall as listed"
    );
    assert_eq!(t.routes()[0].effective_methods(), Some(&[Method::GET, Method::POST, Method::HEAD][..]));
    // A handler route keeps exactly its list (HEAD /refresh would rotate for nothing).
    let t = build("[[routes]]\npath = \"/refresh\"\nhandler = \"refresh\"\nmethods = [\"GET\", \"POST\"]\n");
    assert_eq!(t.routes()[0].effective_methods(), Some(&[Method::GET, Method::POST][..]));
    let t = build(
        "[[routes]]\npath = \"/report\"\npolicy = \"access\"\nupstream = \"app\"\nmethods = [\"GET\"]\n",
    );
    let allow = vec![Method::GET, Method::HEAD];
    assert_eq!(
        route_of(&t, "app.example.com", Method::DELETE, "/report"),
        Err(RouteMiss::MethodNotAllowed { allow })
    );
    // HEAD on a route of its own beside GET now overlaps: said at load, not decided silently.
    let errs = errors(
        r#"
[[routes]]
path = "/x"
policy = "access"
upstream = "app"
methods = ["GET"]
[[routes]]
path = "/x"
policy = "public"
upstream = "app"
methods = ["HEAD"]
"#,
    );
    assert!(
        errs.iter().any(|e| e.contains("HEAD /x") && e.contains("HEAD needs no route of its own")),
        "{errs:?}"
    );
}

#[test]
fn strip_prefix_removes_whole_segments() {
    let t = build(
        r#"
[[routes]]
path = "/static/**"
policy = "public"
upstream = "app"
strip_prefix = "/static/"
[[routes]]
path = "/v1/*/x"
policy = "public"
upstream = "app"
strip_prefix = "/v1"
[[routes]]
path = "/plain"
policy = "public"
upstream = "app"
"#,
    );
    let r = &t.routes()[0];
    assert_eq!(r.strip_prefix.as_deref(), Some("/static"));
    assert_eq!(r.upstream_path("/static/a/b"), "/a/b");
    assert_eq!(r.upstream_path("/static/a/"), "/a/");
    assert_eq!(r.upstream_path("/static"), "/");
    assert_eq!(r.upstream_path("/static/"), "/");
    assert_eq!(t.routes()[1].upstream_path("/v1/q/x"), "/q/x");
    assert_eq!(t.routes()[2].upstream_path("/plain/"), "/plain/");
}

#[test]
fn strip_prefix_must_be_a_segment_prefix_of_the_literal_part() {
    let errs = errors(
        r#"
[[routes]]
path = "/static/**"
policy = "public"
upstream = "app"
strip_prefix = "/stat"
[[routes]]
path = "/v1/*/x"
policy = "public"
upstream = "app"
strip_prefix = "/v1/a"
[[routes]]
path = "/a/**"
policy = "public"
upstream = "app"
strip_prefix = "a"
"#,
    );
    assert!(has(&errs, "routes[0].strip_prefix") && has(&errs, "routes[1].strip_prefix"), "{errs:#?}");
    assert!(has(&errs, "routes[2].strip_prefix"), "{errs:#?}");
}

#[test]
fn overlapping_routes_of_equal_rank_are_a_config_error() {
    let route = |path: &str, extra: &str| {
        format!("[[routes]]\npath = \"{path}\"\npolicy = \"public\"\nupstream = \"app\"\n{extra}\n")
    };
    let errs = errors(&(route("/a/*", "") + &route("/*/b", "")));
    assert!(has(&errs, "routes[1].path") && errs[0].contains("/a/b"), "{errs:#?}");
    assert!(has(&errors(&(route("/x", "") + &route("/x/", ""))), "routes[1].path"));
    assert!(has(
        &errors(&(route("/a/**", "methods = [\"GET\"]") + &route("/a/**", "methods = [\"PUT\", \"GET\"]"))),
        "routes[1].path"
    ));
    // Disjoint patterns, methods or hosts, or different ranks, are fine.
    build(&(route("/a/*", "") + &route("/b/*", "")));
    build(&(route("/a/**", "methods = [\"GET\"]") + &route("/a/**", "methods = [\"POST\"]")));
    build(&(route("/a/**", "host = \"x.test\"") + &route("/a/**", "host = \"y.test\"")));
    build(&(route("/a/**", "") + &route("/a/*", "") + &route("/**", "")));
}

#[test]
fn every_route_error_is_collected_with_its_key() {
    let errs = errors(
        r#"
[[routes]]
path = "admin"
policy = "private"
upstream = "nowhere"
methods = ["get", "POST", "POST", "BAD METHOD"]
host = "https://a.test:8443"
max_age = "soon"
[[routes]]
path = "/a/**/b"
[[routes]]
path = "/login"
handler = "login"
policy = "public"
[[routes]]
path = "/logout"
handler = "logout"
upstream = "app"
[[routes]]
path = "/x"
handler = "signup"
[[routes]]
path = "/y"
policy = "access"
upstream = "app"
max_age = "5m"
require = { roles = "admin", level = 2, ok = true, ratio = 0.5, list = ["a"] }
[[routes]]
path = "/z"
policy = "public"
upstream = "app"
require = { roles = "admin" }
methods = []
[[routes]]
path = "/now"
policy = "fresh"
upstream = "app"
max_age = "0s"
"#,
    );
    for key in [
        "routes[0].path",
        "routes[0].policy",
        "routes[0].upstream",
        "routes[0].methods[0]",
        "routes[0].methods[2]",
        "routes[0].methods[3]",
        "routes[0].host",
        "routes[0].max_age",
        "routes[1].path",
        "routes[1].policy",
        "routes[1].upstream",
        "routes[2].policy",
        "routes[3].upstream",
        "routes[4].handler",
        "routes[5].max_age",
        "routes[5].require.ratio",
        "routes[5].require.list",
        "routes[6].require",
        "routes[6].methods",
        "routes[7].max_age",
    ] {
        assert!(has(&errs, key), "no error for {key} in {errs:#?}");
    }
    assert!(!has(&errs, "routes[5].require.roles"), "{errs:#?}");
}

#[test]
fn login_needs_an_upstream() {
    let errs = errors("[[routes]]\npath = \"/login\"\nhandler = \"login\"\n");
    assert!(has(&errs, "routes[0].upstream"), "{errs:#?}");
}

#[test]
fn an_ipv6_route_host_is_kept_in_its_canonical_spelling() {
    let t = build(
        r#"
[[routes]]
path = "/**"
policy = "access"
upstream = "app"
host = "[0:0:0::1]"
"#,
    );
    assert_eq!(t.routes()[0].host.as_deref(), Some("[::1]"), "as requests' hosts are matched");
}

#[test]
fn an_ipv4_route_host_must_be_dotted_decimal() {
    let route = |host: &str| {
        format!("[[routes]]\npath = \"/**\"\npolicy = \"access\"\nupstream = \"app\"\nhost = \"{host}\"\n")
    };
    assert_eq!(build(&route("10.0.0.1")).routes()[0].host.as_deref(), Some("10.0.0.1"));
    assert_eq!(build(&route("10.example")).routes()[0].host.as_deref(), Some("10.example"));
    for host in ["10.1", "0x0a.0.0.1", "167772161", "10.0.0.01"] {
        let errs = errors(&route(host));
        assert!(has(&errs, "routes[0].host"), "{host}: {errs:#?}");
        assert!(format!("{errs:?}").contains("four decimal numbers"), "{host}: {errs:#?}");
    }
}

#[test]
fn fields_are_compiled() {
    let t = build(
        r#"
[[routes]]
path = "/p/**"
policy = "fresh"
upstream = "app"
host = "App.Example.COM"
max_age = "10m"
methods = ["GET", "HEAD"]
require = { roles = "admin", level = 2, staff = true }
"#,
    );
    let r: &Route = &t.routes()[0];
    assert_eq!(r.host.as_deref(), Some("app.example.com"));
    assert_eq!(r.max_age, Some(Duration::from_secs(600)));
    assert_eq!(r.methods.as_deref(), Some(&[Method::GET, Method::HEAD][..]));
    let require: Vec<(&str, serde_json::Value)> =
        r.require.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    assert_eq!(
        require,
        [
            ("level", serde_json::json!(2)),
            ("roles", serde_json::json!("admin")),
            ("staff", serde_json::json!(true))
        ]
    );
    assert_eq!(route_of(&t, "app.example.com", Method::HEAD, "/p"), Ok(0));
    assert_eq!(route_of(&t, "other.test", Method::HEAD, "/p"), Err(RouteMiss::NotFound));
}

#[test]
fn describe_renders_an_aligned_table() {
    let text = build(LAYERED).describe();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(lines[0].starts_with("#  HOST"), "{text}");
    let path_col = lines[0].find("PATH").expect("PATH column");
    assert!(lines.iter().skip(1).all(|l| l[path_col..].starts_with('/')), "{text}");
    assert!(text.contains("max_age=10m") && text.contains("internal.example.com") && text.contains("DELETE"));
    let handlers = build("[[routes]]\npath = \"/jwks\"\nhandler = \"jwks\"\n").describe();
    assert!(handlers.contains("GET (default)") && handlers.contains("handler:jwks"), "{handlers}");
    assert!(RouteTable::default().describe().contains("no routes"));
}

#[test]
fn misses_turn_into_the_documented_errors() {
    use http::StatusCode;
    assert_eq!(RouteMiss::NotFound.into_error().status(), StatusCode::NOT_FOUND);
    let allow = RouteMiss::MethodNotAllowed { allow: vec![Method::GET] };
    assert_eq!(allow.into_error().status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(RouteMiss::CaseConflict.into_error().status(), StatusCode::BAD_REQUEST);
    assert_eq!(RouteMiss::EscapeConflict.into_error().status(), StatusCode::BAD_REQUEST);
    assert_eq!(super::PathError::TooLong.into_error().status(), StatusCode::URI_TOO_LONG);
    assert_eq!(super::PathError::Ambiguous("x").into_error().status(), StatusCode::BAD_REQUEST);
}
