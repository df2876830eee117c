//! jwtgate and the app behind it must agree on which token a request carries.
//! Generated requests mix Authorization headers, Cookie headers and query
//! tokens in the spellings each side may read differently (scheme case, tabs,
//! a bare token, names an app trims or decodes, quoted values, odd separators),
//! and go through a real jwtgate to the real flask-jwt-extended (on Werkzeug's
//! server and on gunicorn) and AuthX apps,
//! on an access route (GET, and POST with its CSRF header) and on the apps'
//! own refresh endpoint behind a `refresh` route.
//!
//! Alice's tokens are jwtgate's and it accepts them. Mallory's are signed with
//! the shared secret but carry an issuer jwtgate refuses and the apps, not
//! checking `iss`, accept: the stand-in for any token an app cannot know is
//! bad (revoked, too old, failing `require`). Whatever the request, the app
//! must never answer as mallory: it would be running on a token jwtgate never
//! judged. Under `token = "strip"` the app behind an access route must not
//! answer at all: any token it ran on is one that got past the strip. Without any one of jwtgate's rules for cookie names an app trims,
//! Authorization forms flask-jwt-extended reads, or bare tokens AuthX reads,
//! this fails within the default 1 024 cases.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::props;
use common::python::PyApp;
use common::raw::{request, send_bytes};
use common::*;
use jwtgate::token::{MintSpec, TokenType};
use proptest::prelude::*;

/// The one CSRF value in every token, so a request's `X-CSRF-TOKEN` passes the
/// double submit whichever cookie a side reads (the question is which token).
const CSRF: &str = "c-0123456789";

/// Whose token a piece carries.
#[derive(Debug, Clone, Copy)]
enum Who {
    Alice,
    Mallory,
    Junk,
}

/// Authorization values; `@` is the token.
const AUTH_FORMS: &[&[u8]] = &[
    b"Bearer @",
    b"bearer @",
    b"BEARER @",
    b"Bearer  @",
    b"Bearer\t@",
    b"Bearer\xa0@",
    b"@",
    b" @",
    b"Basic eDp5, Bearer @",
    b"Bearer @, Basic eDp5",
    b"Bearer @ ",
    b"Bearer Bearer @",
    b"Token @",
    b"Bearer @\xa0",
    b"Bearer \"@\"",
];

const AUTH_NAMES: &[&str] = &["Authorization", "authorization", "AUTHORIZATION"];

/// How many spellings [`cookie_name`] knows.
const COOKIE_NAME_FORMS: usize = 15;

/// A spelling of the target's cookie `name`: itself, what Werkzeug or
/// Starlette trim to it (Python's whitespace, NBSP and NEL included), what
/// PHP decodes or mangles to it, what neither reads as it (quotes, case),
/// and other cookies.
fn cookie_name(form: usize, name: &str) -> Vec<u8> {
    let bytes = name.as_bytes();
    let first_underscore = |with: &str| name.replacen('_', with, 1).into_bytes();
    match form {
        0 => bytes.to_vec(),
        1 => [b" ", bytes].concat(),
        2 => [bytes, b" "].concat(),
        3 => [bytes, b"\xa0"].concat(),
        4 => [b"\x85", bytes].concat(),
        5 => first_underscore("%5F"),
        6 => first_underscore("."),
        7 => first_underscore(" "),
        8 => first_underscore("["),
        9 => [b"\"", bytes, b"\""].concat(),
        10 => name.to_ascii_uppercase().into_bytes(),
        11 => b"access_token_cookie".to_vec(),
        12 => b"refresh_token_cookie".to_vec(),
        13 => b"csrf_access_token".to_vec(),
        _ => b"x".to_vec(),
    }
}

/// Cookie values; `@` is the token.
const COOKIE_VALUES: &[&[u8]] = &[b"@", b"\"@\"", b"@ ", b" @", b"@\\"];

const COOKIE_SEPARATORS: &[&[u8]] = &[b"; ", b";", b";  ", b" ; ", b",", b", ", b";\t"];

const COOKIE_HEADER_NAMES: &[&str] = &["Cookie", "cookie"];

/// Query parameters; `@` is the token.
const QUERY_FORMS: &[&str] = &[
    "token=@",
    "Token=@",
    "tok%65n=@",
    "token%00=@",
    "token[]=@",
    "jwt=@",
    "access_token=@",
    "token=@&token=@",
    "x=1&token=@",
];

#[derive(Debug, Clone)]
enum Piece {
    Authorization { name: usize, form: usize, who: Who },
    Cookie { name: usize, pairs: Vec<(usize, usize, Who)>, separator: usize },
}

#[derive(Debug, Clone)]
struct Case {
    pieces: Vec<Piece>,
    query: Option<(usize, Who)>,
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![5 => Just(Who::Alice), 5 => Just(Who::Mallory), 1 => Just(Who::Junk)]
}

/// An index below `len`, 0 (the plain form) `first_weight` times in ten.
fn index(len: usize, first_weight: u32) -> impl Strategy<Value = usize> {
    prop_oneof![first_weight => Just(0), 10 - first_weight => 1..len]
}

fn piece() -> impl Strategy<Value = Piece> {
    let authorization = (index(AUTH_NAMES.len(), 8), index(AUTH_FORMS.len(), 4), who())
        .prop_map(|(name, form, who)| Piece::Authorization { name, form, who });
    let pair = (index(COOKIE_NAME_FORMS, 4), index(COOKIE_VALUES.len(), 8), who());
    let cookie =
        (0..COOKIE_HEADER_NAMES.len(), prop::collection::vec(pair, 1..4), 0..COOKIE_SEPARATORS.len())
            .prop_map(|(name, pairs, separator)| Piece::Cookie { name, pairs, separator });
    prop_oneof![1 => authorization, 2 => cookie]
}

fn case() -> impl Strategy<Value = Case> {
    let query = prop::option::weighted(0.2, (index(QUERY_FORMS.len(), 4), who()));
    (prop::collection::vec(piece(), 0..4), query).prop_map(|(pieces, query)| Case { pieces, query })
}

/// Where the requests go: the route's method and path, the cookie it reads,
/// and the type of token it takes.
struct Target {
    method: &'static str,
    path: &'static str,
    cookie: &'static str,
    token_type: TokenType,
}

const TARGETS: &[Target] = &[
    Target {
        method: "GET",
        path: "/protected",
        cookie: "access_token_cookie",
        token_type: TokenType::Access,
    },
    Target {
        method: "POST",
        path: "/protected",
        cookie: "access_token_cookie",
        token_type: TokenType::Access,
    },
    Target {
        method: "POST",
        path: "/refresh",
        cookie: "refresh_token_cookie",
        token_type: TokenType::Refresh,
    },
];

const ROUTES: &str = r#"
[[routes]]
path = "/protected"
policy = "access"
upstream = "app"

[[routes]]
path = "/refresh"
policy = "refresh"
upstream = "app"
"#;

/// Alice's and mallory's tokens for one target.
struct Tokens {
    target: &'static Target,
    alice: String,
    mallory: String,
}

impl Tokens {
    fn new(gw: &TestGateway, target: &'static Target, now: i64) -> Tokens {
        let spec = MintSpec {
            sub: "alice",
            token_type: target.token_type,
            fresh: false,
            csrf: Some(CSRF),
            fid: None,
            auth_time: None,
            exp: None,
            extra: &serde_json::Map::new(),
        };
        let alice = gw.gateway.snapshot().runtime.tokens.minter.mint(&spec, now).expect("mint").token;
        let kind = match target.token_type {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        };
        let claims = format!(
            r#"{{"sub":"mallory","iss":"evil","type":"{kind}","fresh":false,"csrf":"{CSRF}","jti":"m-{kind}","iat":{now},"nbf":{now},"exp":{}}}"#,
            now + 600
        );
        let mallory = hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
        Tokens { target, alice, mallory }
    }

    fn of(&self, who: Who) -> &[u8] {
        match who {
            Who::Alice => self.alice.as_bytes(),
            Who::Mallory => self.mallory.as_bytes(),
            Who::Junk => b"e30.e30.junk",
        }
    }

    /// `form` with every `@` replaced by `who`'s token.
    fn fill(&self, form: &[u8], who: Who) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, part) in form.split(|&b| b == b'@').enumerate() {
            if i > 0 {
                out.extend_from_slice(self.of(who));
            }
            out.extend_from_slice(part);
        }
        out
    }

    fn request(&self, case: &Case) -> Vec<u8> {
        let Target { method, path, cookie, .. } = self.target;
        let query = match case.query {
            Some((form, who)) => {
                format!("?{}", String::from_utf8_lossy(&self.fill(QUERY_FORMS[form].as_bytes(), who)))
            }
            None => String::new(),
        };
        let mut req = format!("{method} {path}{query} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n")
            .into_bytes();
        if *method == "POST" {
            req.extend_from_slice(format!("Content-Length: 0\r\nX-CSRF-TOKEN: {CSRF}\r\n").as_bytes());
        }
        for piece in &case.pieces {
            match piece {
                Piece::Authorization { name, form, who } => {
                    req.extend_from_slice(AUTH_NAMES[*name].as_bytes());
                    req.extend_from_slice(b": ");
                    req.extend_from_slice(&self.fill(AUTH_FORMS[*form], *who));
                }
                Piece::Cookie { name, pairs, separator } => {
                    req.extend_from_slice(COOKIE_HEADER_NAMES[*name].as_bytes());
                    req.extend_from_slice(b": ");
                    for (i, &(name, value, who)) in pairs.iter().enumerate() {
                        if i > 0 {
                            req.extend_from_slice(COOKIE_SEPARATORS[*separator]);
                        }
                        req.extend_from_slice(&cookie_name(name, cookie));
                        req.push(b'=');
                        req.extend_from_slice(&self.fill(COOKIE_VALUES[value], who));
                    }
                }
            }
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req
    }
}

/// How the generated requests came out, so a run that never reached the app
/// (or was never refused) fails instead of passing on nothing.
#[derive(Default)]
struct Tally {
    served_as_alice: AtomicUsize,
    refused_by_jwtgate: AtomicUsize,
    refused_by_app: AtomicUsize,
}

async fn app_agrees_with_jwtgate(app_script: &str, args: &[&str], token: &str) {
    let app = PyApp::start_with(app_script, args).await;
    let config = base_config(&format!("[forward]\ntoken = \"{token}\"\n{ROUTES}"))
        .replace("[tokens]\n", "[tokens]\nissuer = \"jwtgate\"\n");
    let gw = start_gateway(&config, app.addr, None).await;
    let now = unix_now();
    for target in TARGETS {
        let tokens = Tokens::new(&gw, target, now);
        let Target { method, path, token_type, .. } = target;
        // Under strip only a refresh route's own credential reaches the app.
        let app_sees_tokens = token == "keep" || *token_type == TokenType::Refresh;
        let label = format!(
            "{} {method} {path}, token = {token}",
            [app_script].iter().chain(args).copied().collect::<Vec<_>>().join(" ")
        );
        let send = |addr, token: &str| {
            let auth = format!("Bearer {token}");
            async move {
                request(addr, method, path, &[("Authorization", &auth), ("X-CSRF-TOKEN", CSRF)], "").await
            }
        };
        // The premise, asked of the app directly: it runs as mallory on her token.
        let direct = send(app.addr, &tokens.mallory).await;
        assert_eq!(direct.status, 200, "{label} refuses mallory's token itself: {}", direct.body);
        assert_eq!(direct.json()["sub"], "mallory", "{label}");
        // And through jwtgate: alice is served (or, stripped, refused by the
        // app for want of a token), mallory refused.
        let alice = send(gw.addr, &tokens.alice).await;
        if app_sees_tokens {
            assert_eq!(alice.status, 200, "{label}: {}", alice.body);
            assert_eq!(alice.json()["sub"], "alice", "{label}");
        } else {
            assert_eq!(alice.status, 401, "{label}: {}", alice.body);
            assert_ne!(
                alice.header("content-type"),
                Some("application/problem+json"),
                "{label}: the app's 401"
            );
        }
        send(gw.addr, &tokens.mallory).await.assert_problem(401, "invalid_token");

        let tally = Tally::default();
        props::run(&label, 1024, case(), |case| {
            let request = tokens.request(&case);
            let resp = props::block_on(send_bytes(gw.addr, &request));
            let shown = String::from_utf8_lossy(&request).into_owned();
            prop_assert_ne!(resp.status, 0, "no answer to {}", shown);
            if resp.status == 200 {
                prop_assert!(app_sees_tokens, "{} ran on a token that got past the strip: {}", label, shown);
                let sub = &resp.json()["sub"];
                prop_assert_eq!(sub, "alice", "{} ran on a token jwtgate never judged: {}", label, shown);
                tally.served_as_alice.fetch_add(1, Ordering::Relaxed);
            } else if resp.header("content-type") == Some("application/problem+json") {
                tally.refused_by_jwtgate.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.refused_by_app.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        let served = tally.served_as_alice.load(Ordering::Relaxed);
        let refused = tally.refused_by_jwtgate.load(Ordering::Relaxed);
        let app_refused = tally.refused_by_app.load(Ordering::Relaxed);
        eprintln!("{label}: served as alice {served}, refused by jwtgate {refused}, refused by the app {app_refused}");
        let reached_app = if app_sees_tokens { served } else { app_refused };
        assert!(reached_app > 0 && refused > 0, "{label}: the requests must reach both sides: {served} served, {app_refused} refused by the app, {refused} by jwtgate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_never_runs_on_a_token_jwtgate_did_not_accept() {
    app_agrees_with_jwtgate("flask_app.py", &[], "keep").await;
}

/// gunicorn parses the head itself (Werkzeug's server above does not run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_on_gunicorn_never_runs_on_a_token_jwtgate_did_not_accept() {
    app_agrees_with_jwtgate("flask_app.py", &["--server", "gunicorn"], "keep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_never_runs_on_a_token_jwtgate_stripped() {
    app_agrees_with_jwtgate("flask_app.py", &[], "strip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx_never_runs_on_a_token_jwtgate_did_not_accept() {
    app_agrees_with_jwtgate("authx_app.py", &[], "keep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx_never_runs_on_a_token_jwtgate_stripped() {
    app_agrees_with_jwtgate("authx_app.py", &[], "strip").await;
}
