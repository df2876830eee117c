//! jwtgate and the app behind it must agree on which route a request takes.
//! Generated targets mix the apps' view names with separators raw and
//! encoded, dot segments, escapes, `;` parameters, case, absolute forms and
//! control bytes, beside headers some servers route on (`SCRIPT_NAME`,
//! `X-Original-URL`…), and go through a real jwtgate to the real
//! flask-jwt-extended (on Werkzeug's server, on gunicorn, which routes on
//! `SCRIPT_NAME`, and behind the ReverseProxied middleware of Flask's
//! snippets, which routes on `X-Script-Name`) and AuthX apps. (The other
//! routing headers are sent for apps that read them; none of these does.)
//! jwtgate serves everything as `public` except the apps' protected views,
//! which are `access`, `fresh` or `refresh` routes; every request carries
//! mallory's token, which the apps accept and jwtgate refuses. So a protected
//! view that answers through jwtgate ran under the public route's rules, on a
//! token jwtgate never judged.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::props;
use common::python::PyApp;
use common::raw::send_raw;
use common::*;
use proptest::prelude::*;

const ROUTES: &str = r#"
[[routes]]
path = "/**"
policy = "public"
upstream = "app"

[[routes]]
path = "/protected"
policy = "access"
upstream = "app"

[[routes]]
path = "/fresh"
policy = "fresh"
upstream = "app"

[[routes]]
path = "/sensitive_operation"
policy = "fresh"
upstream = "app"

[[routes]]
path = "/refresh"
policy = "refresh"
upstream = "app"
"#;

/// The apps' protected views, and what the rest of a target is made of.
const NAMES: &[&str] = &["protected", "fresh", "refresh", "sensitive_operation"];

const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    "//",
    ".",
    "..",
    "%2E",
    "%2e%2E",
    "%2F",
    "%2f",
    "%5C",
    "\\",
    ";",
    ";x=1",
    "%3B",
    "%00",
    "%0A",
    "%0d",
    "%09",
    "%20",
    "+",
    "%2B",
    "%25",
    "%252F",
    "%C0%AE",
    "%EF%BC%8F",
    "%E2%80%8B",
    "%EF%BB%BF",
    "%C2%A0",
    "*",
    ":",
    "@",
    "pub",
    "health",
    "x",
    "%70rotected",
    "prot%65cted",
    "PROTECTED",
    "Protected",
    "fresh%2F",
    "_",
    "-",
    "~",
];

const PREFIXES: &[&str] =
    &["/", "/", "/", "/", "//", "/./", "/x/../", "http://app.test/", "HTTP://APP.TEST/"];

/// A first segment a server may take as the app's mount point (`SCRIPT_NAME`).
const MOUNTS: &[&str] = &["pub", "x", "pub/x"];

const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "POST", "OPTIONS", "PUT", "PROPFIND"];

/// Headers a server or framework may route on; each goes with a value that
/// would move the request to a protected view (`@`: the target's mount).
const ROUTING_HEADERS: &[(&str, &str)] = &[
    ("SCRIPT_NAME", "@"),
    ("script_name", "@"),
    ("Script-Name", "@"),
    ("PATH_INFO", "/protected"),
    ("X-Original-URL", "/protected"),
    ("X-Rewrite-URL", "/protected"),
    ("X-Forwarded-Prefix", "@"),
    ("X-Forwarded-Path", "/protected"),
    ("X-Script-Name", "@"),
    ("X-HTTP-Method-Override", "POST"),
];

#[derive(Debug, Clone)]
struct Case {
    method: usize,
    prefix: usize,
    mount: Option<usize>,
    /// Each piece: a view name (Ok) or another piece (Err).
    pieces: Vec<Result<usize, usize>>,
    query: bool,
    headers: Vec<usize>,
    refresh_token: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let piece = prop_oneof![
        2 => (0..NAMES.len()).prop_map(Ok),
        3 => (0..PIECES.len()).prop_map(Err),
    ];
    (
        (0..METHODS.len(), 0..PREFIXES.len(), prop::option::of(0..MOUNTS.len())),
        prop::collection::vec(piece, 1..4),
        any::<bool>(),
        prop::collection::vec(0..ROUTING_HEADERS.len(), 1..4),
        any::<bool>(),
    )
        .prop_map(|((method, prefix, mount), pieces, query, headers, refresh_token)| Case {
            method,
            prefix,
            mount,
            pieces,
            query,
            headers,
            refresh_token,
        })
}

impl Case {
    fn request(&self, access: &str, refresh: &str) -> String {
        let mut target = PREFIXES[self.prefix].to_owned();
        let mount = self.mount.map_or("pub", |m| MOUNTS[m]);
        if self.mount.is_some() {
            target.push_str(mount);
            target.push('/');
        }
        for piece in &self.pieces {
            target.push_str(match piece {
                Ok(name) => NAMES[*name],
                Err(other) => PIECES[*other],
            });
        }
        if self.query {
            target.push_str("?a=1");
        }
        let method = METHODS[self.method];
        let token = if self.refresh_token { refresh } else { access };
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nContent-Length: 0\r\nAuthorization: Bearer {token}\r\n"
        );
        for &h in &self.headers {
            let (name, value) = ROUTING_HEADERS[h];
            let value = value.replace('@', &format!("/{mount}"));
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req
    }
}

/// Whether a response is a protected view's answer: the apps' views answer
/// with the token's `sub` (AuthX's sensitive operation with its sentence).
fn a_view_ran(resp: &RawResponse) -> bool {
    resp.status == 200 && (resp.body.contains("\"sub\"") || resp.body.contains("sensitive operation"))
}

async fn routes_agree(app_script: &str, args: &[&str]) {
    let app = PyApp::start_with(app_script, args).await;
    let config = base_config(ROUTES).replace("[tokens]\n", "[tokens]\nissuer = \"jwtgate\"\n");
    let gw = start_gateway(&config, app.addr, None).await;
    let label = [app_script].iter().chain(args).copied().collect::<Vec<_>>().join(" ");
    let now = unix_now();
    let (access, refresh) = (mallory_token("access", "-", now), mallory_token("refresh", "-", now));
    // The premise: asked directly, a view runs on her token; through
    // jwtgate, the route refuses it and a public path reaches the app.
    let direct = Case {
        method: 0,
        prefix: 0,
        mount: None,
        pieces: vec![Ok(0)],
        query: false,
        headers: vec![],
        refresh_token: false,
    };
    let resp = send_raw(app.addr, &direct.request(&access, &refresh)).await;
    assert!(
        a_view_ran(&resp),
        "{label}: the app refuses mallory's token itself: {} {}",
        resp.status,
        resp.body
    );
    send_raw(gw.addr, &direct.request(&access, &refresh)).await.assert_problem(401, "invalid_token");
    let health = PIECES.iter().position(|p| *p == "health").unwrap();
    let health = Case { pieces: vec![Err(health)], ..direct };
    assert_eq!(send_raw(gw.addr, &health.request(&access, &refresh)).await.status, 200, "{label}: /health");

    let (reached_app, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    props::run(&label, 4096, case(), |case| {
        let request = case.request(&access, &refresh);
        let resp = props::block_on(send_raw(gw.addr, &request));
        prop_assert_ne!(resp.status, 0, "no answer to {}", request);
        prop_assert!(
            !a_view_ran(&resp),
            "{}: a protected view ran on a public route: {}{}",
            label,
            request,
            resp.body
        );
        let counter = if resp.header("content-type") == Some("application/problem+json") {
            &refused
        } else {
            &reached_app
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    let (reached_app, refused) = (reached_app.into_inner(), refused.into_inner());
    eprintln!("{label}: reached the app {reached_app}, refused by jwtgate {refused}");
    assert!(reached_app > 0 && refused > 0, "{label}: the requests must reach both sides");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_views_are_reached_only_through_their_routes() {
    routes_agree("flask_app.py", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_views_on_gunicorn_are_reached_only_through_their_routes() {
    routes_agree("flask_app.py", &["--server", "gunicorn"]).await;
}

/// Behind the ReverseProxied middleware of Flask's snippets, which routes on
/// the path with `X-Script-Name` cut from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_views_behind_a_mount_point_middleware_are_reached_only_through_their_routes() {
    routes_agree("flask_app.py", &["--reverse-proxied"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx_views_are_reached_only_through_their_routes() {
    routes_agree("authx_app.py", &[]).await;
}
