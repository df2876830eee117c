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
//! answer at all: any token it ran on is one that got past the strip. And
//! where jwtgate refreshed the session on the way (its own login, cookies
//! with a missing or expired access token), the app must run on the token
//! the refresh minted, not on another spelling of the cookie. Without any one of jwtgate's rules for cookie names an app trims,
//! Authorization forms flask-jwt-extended reads, or bare tokens AuthX reads,
//! this fails within the default 1 024 cases.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::props;
use common::python::PyApp;
use common::raw::{request, send_bytes, send_raw};
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

/// A [`cookie_name`] form: the name itself half the time, a spelling an
/// app trims to it (1–4) three times in ten.
fn cookie_form() -> impl Strategy<Value = usize> {
    prop_oneof![5 => Just(0), 3 => 1..5usize, 2 => 5..COOKIE_NAME_FORMS]
}

/// An index below `len`, 0 (the plain form) `first_weight` times in ten.
fn index(len: usize, first_weight: u32) -> impl Strategy<Value = usize> {
    prop_oneof![first_weight => Just(0), 10 - first_weight => 1..len]
}

fn piece() -> impl Strategy<Value = Piece> {
    let authorization = (index(AUTH_NAMES.len(), 8), index(AUTH_FORMS.len(), 4), who())
        .prop_map(|(name, form, who)| Piece::Authorization { name, form, who });
    let pair = (cookie_form(), index(COOKIE_VALUES.len(), 8), who());
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
        let mallory = mallory_token(kind, CSRF, now);
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
    for target in TARGETS {
        // Minted per target: a long run (`PROPTEST_CASES`) outlasts a token.
        let tokens = Tokens::new(&gw, target, unix_now());
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

/// A session's tokens, fresh from a login through jwtgate, for one case of
/// the implicit-refresh property.
struct Session {
    /// The login's access token (valid) and an expired one of its family.
    access: String,
    expired: String,
    refresh: String,
    csrf: String,
    access_jti: String,
}

impl Session {
    async fn login(gw: &TestGateway) -> Session {
        let resp = request(gw.addr, "POST", "/login", &[("Content-Type", "application/json")], "{}").await;
        assert_eq!(resp.status, 200, "login: {}", resp.body);
        let body = resp.json();
        let (access, refresh) =
            (body["access_token"].as_str().unwrap(), body["refresh_token"].as_str().unwrap());
        let now = unix_now();
        let snap = gw.gateway.snapshot();
        let claims = |t: &str| {
            snap.runtime.tokens.verifier.verify(t, now).expect("jwtgate's own token").as_ref().clone()
        };
        let (a, r) = (claims(access), claims(refresh));
        let spec = MintSpec {
            sub: "alice",
            token_type: TokenType::Access,
            fresh: false,
            csrf: r.csrf.as_deref(),
            fid: r.fid.as_deref(),
            auth_time: r.auth_time,
            exp: Some(now - 120),
            extra: &serde_json::Map::new(),
        };
        let expired = snap.runtime.tokens.minter.mint(&spec, now - 180).expect("mint").token;
        Session {
            access: access.to_owned(),
            expired,
            refresh: refresh.to_owned(),
            csrf: r.csrf.unwrap(),
            access_jti: a.jti.unwrap(),
        }
    }
}

/// What a session case's pieces carry.
#[derive(Debug, Clone, Copy)]
enum SessionToken {
    Access,
    Expired,
    Refresh,
    MalloryAccess,
    MalloryRefresh,
}

#[derive(Debug, Clone)]
struct SessionCase {
    post: bool,
    /// Authorization forms (index into AUTH_FORMS) and what they carry.
    headers: Vec<(usize, SessionToken)>,
    /// Cookie pairs: spelling (cookie_name's form), of the access (false)
    /// or refresh (true) cookie's name, and the token.
    cookies: Vec<(usize, bool, SessionToken)>,
}

fn session_token() -> impl Strategy<Value = SessionToken> {
    prop_oneof![
        Just(SessionToken::Access),
        Just(SessionToken::Expired),
        Just(SessionToken::Refresh),
        Just(SessionToken::MalloryAccess),
        Just(SessionToken::MalloryRefresh),
    ]
}

fn session_case() -> impl Strategy<Value = SessionCase> {
    use SessionToken::*;
    let header = (index(AUTH_FORMS.len(), 5), session_token());
    // Mostly a token of the cookie's own type, as a browser holds them.
    let access = prop_oneof![2 => Just(Access), 3 => Just(Expired), 1 => Just(MalloryAccess)];
    let refresh = prop_oneof![4 => Just(Refresh), 1 => Just(MalloryRefresh)];
    let cookie = prop_oneof![
        4 => (cookie_form(), Just(false), access),
        4 => (cookie_form(), Just(true), refresh),
        1 => (cookie_form(), any::<bool>(), session_token()),
    ];
    (any::<bool>(), prop::option::weighted(0.25, header), prop::collection::vec(cookie, 1..4)).prop_map(
        |(post, header, cookies)| SessionCase { post, headers: header.into_iter().collect(), cookies },
    )
}

impl SessionCase {
    fn request(&self, s: &Session, mallory_access: &str, mallory_refresh: &str) -> String {
        let token = |t: SessionToken| match t {
            SessionToken::Access => s.access.as_str(),
            SessionToken::Expired => s.expired.as_str(),
            SessionToken::Refresh => s.refresh.as_str(),
            SessionToken::MalloryAccess => mallory_access,
            SessionToken::MalloryRefresh => mallory_refresh,
        };
        let method = if self.post { "POST" } else { "GET" };
        let mut req = format!(
            "{method} /protected HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nContent-Length: 0\r\nX-CSRF-TOKEN: {}\r\n",
            s.csrf
        );
        for &(form, t) in &self.headers {
            let value = String::from_utf8_lossy(AUTH_FORMS[form]).replace('@', token(t));
            req.push_str(&format!("Authorization: {value}\r\n"));
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|&(form, refresh, t)| {
                let name = if refresh { "refresh_token_cookie" } else { "access_token_cookie" };
                format!("{}={}", String::from_utf8_lossy(&cookie_name(form, name)), token(t))
            })
            .collect();
        req.push_str(&format!("Cookie: {}\r\n\r\n", pairs.join("; ")));
        req
    }
}

/// The identity provider behind jwtgate's login handler: every login is alice.
async fn idp() -> Upstream {
    let idp = Upstream::start(UpstreamBehavior::Ok).await;
    idp.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    idp
}

/// Implicit refresh: with cookies, jwtgate refreshes a request whose access
/// cookie is missing or expired and swaps the new token into the Cookie the
/// app gets. Whatever else the request carries (spellings of either cookie
/// an app reads as it, mallory's tokens, an expired one, Authorization
/// forms), the app runs on a token of alice's that jwtgate judged: the new
/// one when jwtgate refreshed and no Authorization header was sent, else the
/// login's access token.
async fn refreshed_requests_agree(app_script: &str, args: &[&str]) {
    let app = PyApp::start_with(app_script, args).await;
    let idp = idp().await;
    let routes = format!(
        "{ROUTES}\n[[routes]]\npath = \"/login\"\nhandler = \"login\"\nupstream = \"idp\"\n\n\
         [[upstreams]]\nname = \"idp\"\nurls = [\"http://{}\"]\n",
        idp.addr
    );
    let config = base_config(&routes).replace("[tokens]\n", "[tokens]\nissuer = \"jwtgate\"\n");
    let gw = start_gateway(&config, app.addr, None).await;
    let label = [app_script].iter().chain(args).copied().collect::<Vec<_>>().join(" ");
    let now = unix_now();
    let (mallory_access, mallory_refresh) =
        (mallory_token("access", CSRF, now), mallory_token("refresh", CSRF, now));
    let (refreshed, served) = (AtomicUsize::new(0), AtomicUsize::new(0));
    props::run(&label, 1024, session_case(), |case| {
        let session = props::block_on(Session::login(&gw));
        let request = case.request(&session, &mallory_access, &mallory_refresh);
        let resp = props::block_on(send_raw(gw.addr, &request));
        prop_assert_ne!(resp.status, 0, "no answer to {}", request);
        let new_access = resp.all("set-cookie").into_iter().find_map(|c| {
            let token = c.strip_prefix("access_token_cookie=")?.split(';').next()?.to_owned();
            (!token.is_empty()).then_some(token)
        });
        if new_access.is_some() {
            refreshed.fetch_add(1, Ordering::Relaxed);
        }
        if resp.status != 200 {
            return Ok(());
        }
        served.fetch_add(1, Ordering::Relaxed);
        let body = resp.json();
        prop_assert_eq!(&body["sub"], "alice", "{} ran on a token jwtgate never judged: {}", label, request);
        let ran_on = body["claims"]["jti"].as_str().unwrap_or_default().to_owned();
        let new_jti = new_access.as_deref().map(|t| {
            let claims =
                gw.gateway.snapshot().runtime.tokens.verifier.verify(t, unix_now()).expect("jwtgate's token");
            claims.jti.clone().unwrap()
        });
        match new_jti {
            Some(new) if case.headers.is_empty() => {
                prop_assert_eq!(
                    ran_on,
                    new,
                    "{} refreshed, but the app ran on another token: {}",
                    label,
                    request
                )
            }
            Some(new) => prop_assert!(
                ran_on == new || ran_on == session.access_jti,
                "{} ran on a token jwtgate never judged: {}",
                label,
                request
            ),
            None => {
                prop_assert_eq!(ran_on, session.access_jti, "{} ran on another token: {}", label, request)
            }
        }
        Ok(())
    });
    let (refreshed, served) = (refreshed.into_inner(), served.into_inner());
    eprintln!("{label}: refreshed {refreshed}, served {served}");
    assert!(refreshed > 0 && served > 0, "{label}: the requests must refresh and reach the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_runs_on_the_token_an_implicit_refresh_minted() {
    refreshed_requests_agree("flask_app.py", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx_runs_on_the_token_an_implicit_refresh_minted() {
    refreshed_requests_agree("authx_app.py", &[]).await;
}
