//! Teams using AuthX or flask-jwt-extended put jwtgate in front without
//! changing a line: tokens those libraries really minted get the right outcome
//! on every policy, the seeds' curl flow works through jwtgate to a real AuthX
//! app, and tokens jwtgate mints are accepted by both libraries.

mod common;

use common::python::{mint_all, PyApp};
use common::raw::{get, request};
use common::*;
use jwtgate::store::Store;

const ROUTES: &str = r#"
[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"

[[routes]]
path = "/account/**"
policy = "fresh"
upstream = "app"

[[routes]]
path = "/app-refresh"
policy = "refresh"
upstream = "app"
"#;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// One access route in front of a Python app.
const PROTECTED: &str = "[[routes]]\npath = \"/protected\"\npolicy = \"access\"\nupstream = \"app\"\n";

/// (case, path, expected status, expected error code)
const CASES: &[(&str, &str, u16, &str)] = &[
    ("authx_access_fresh", "/api/x", 200, ""),
    ("authx_access_fresh", "/account/x", 200, ""),
    ("authx_access_fresh", "/app-refresh", 401, "wrong_token_type"),
    ("authx_access", "/api/x", 200, ""),
    ("authx_access", "/account/x", 401, "fresh_token_required"),
    ("authx_refresh", "/api/x", 401, "wrong_token_type"),
    ("authx_refresh", "/account/x", 401, "wrong_token_type"),
    ("authx_refresh", "/app-refresh", 200, ""),
    ("authx_access_expired", "/api/x", 401, "token_expired"),
    ("authx_access_extra", "/api/x", 200, ""),
    ("flask_access_fresh", "/api/x", 200, ""),
    ("flask_access_fresh", "/account/x", 200, ""),
    ("flask_access", "/api/x", 200, ""),
    ("flask_access", "/account/x", 401, "fresh_token_required"),
    ("flask_access_fresh_until", "/account/x", 200, ""),
    ("flask_access_fresh_until_past", "/api/x", 200, ""),
    ("flask_access_fresh_until_past", "/account/x", 401, "fresh_token_required"),
    ("flask_refresh", "/app-refresh", 200, ""),
    ("flask_refresh", "/api/x", 401, "wrong_token_type"),
    ("flask_access_expired", "/api/x", 401, "token_expired"),
    ("flask_access_claims", "/api/x", 200, ""),
];

#[tokio::test]
async fn library_minted_tokens_get_the_right_outcome_on_every_policy() {
    let tokens = mint_all(now());
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(ROUTES), up.addr, None).await;
    for &(case, path, status, code) in CASES {
        let token = tokens[case].as_str().unwrap_or_else(|| panic!("mint.py made no {case}"));
        let resp = get(gw.addr, path, &[("Authorization", &format!("Bearer {token}"))]).await;
        if status == 200 {
            assert_eq!(resp.status, 200, "{case} on {path}: {}", resp.body);
            assert_eq!(up.last().header("x-auth-subject"), Some("alice"), "{case}");
        } else {
            assert_eq!(resp.status, status, "{case} on {path}: {}", resp.body);
            assert_eq!(resp.json()["error"], code, "{case} on {path}");
        }
    }
    // flask's "fresh until" form reaches the app as the evaluated freshness.
    let t = tokens["flask_access_fresh_until"].as_str().unwrap();
    get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {t}"))]).await;
    assert_eq!(up.last().header("x-auth-fresh"), Some("true"));
}

#[tokio::test]
async fn the_seed_curl_flow_works_through_jwtgate_to_a_real_authx_app() {
    let app = PyApp::start("authx_app.py").await;
    let routes = r#"
[[routes]]
path = "/login"
policy = "public"
upstream = "app"

[[routes]]
path = "/protected"
policy = "access"
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
    let gw = start_gateway(&base_config(routes), app.addr, None).await;
    let json = [("Content-Type", "application/json")];
    let bad = request(gw.addr, "POST", "/login", &json, r#"{"username":"test", "password":"nope"}"#).await;
    assert_eq!(bad.status, 401, "the app's own 401 passes through: {}", bad.body);
    let login = request(gw.addr, "POST", "/login", &json, r#"{"username":"test", "password":"test"}"#).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let bearer = |t: &str| format!("Bearer {t}");
    let resp = get(gw.addr, "/protected", &[("Authorization", &bearer(&token))]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["sub"], "test");
    let resp = get(gw.addr, "/sensitive_operation", &[("Authorization", &bearer(&token))]).await;
    assert_eq!(resp.body, "\"You have access to this sensitive operation\"");
    let resp = request(gw.addr, "POST", "/refresh", &[("Authorization", &bearer(&refresh))], "").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let new_token = resp.json()["access_token"].as_str().unwrap().to_owned();
    let resp = get(gw.addr, "/protected", &[("Authorization", &bearer(&new_token))]).await;
    assert_eq!(resp.status, 200);
    // A refreshed token is not fresh: jwtgate answers 401 itself, not the app's 500 or 422.
    let resp = get(gw.addr, "/sensitive_operation", &[("Authorization", &bearer(&new_token))]).await;
    resp.assert_problem(401, "fresh_token_required");
}

const HANDOFF: &str = r#"
[[routes]]
path = "/login"
handler = "login"
upstream = "app"

[[routes]]
path = "/refresh"
handler = "refresh"
methods = ["GET", "POST"]
"#;

#[tokio::test]
async fn tokens_jwtgate_mints_are_accepted_by_authx_and_flask() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    let gw = start_gateway(&base_config(HANDOFF), up.addr, None).await;
    let login = request(gw.addr, "POST", "/login", &[], "").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let fresh = login.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let rotated = get(gw.addr, "/refresh", &[("Authorization", &format!("Bearer {refresh}"))]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let stale = rotated.json()["access_token"].as_str().unwrap().to_owned();
    let new_refresh = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    let csrf =
        gw.gateway.snapshot().runtime.tokens.verifier.verify(&fresh, now()).unwrap().csrf.clone().unwrap();
    for app_name in ["authx_app.py", "flask_app.py"] {
        let app = PyApp::start(app_name).await;
        let bearer = |t: &str| format!("Bearer {t}");
        let check = |status: u16, resp: &RawResponse, what: &str| {
            assert_eq!(resp.status, status, "{app_name} {what}: {}", resp.body);
        };
        let r = get(app.addr, "/protected", &[("Authorization", &bearer(&fresh))]).await;
        check(200, &r, "GET /protected with a jwtgate access token");
        assert_eq!(r.json()["sub"], "alice");
        check(
            200,
            &get(app.addr, "/fresh", &[("Authorization", &bearer(&fresh))]).await,
            "fresh token on /fresh",
        );
        check(
            401,
            &get(app.addr, "/fresh", &[("Authorization", &bearer(&stale))]).await,
            "refreshed token on /fresh",
        );
        check(
            200,
            &get(app.addr, "/protected", &[("Authorization", &bearer(&stale))]).await,
            "refreshed token",
        );
        let r = request(app.addr, "POST", "/refresh", &[("Authorization", &bearer(&new_refresh))], "").await;
        check(200, &r, "a jwtgate refresh token on the app's refresh endpoint");
        // Cookie mode with CSRF, exactly as a browser behind jwtgate would send it.
        let cookie = format!("access_token_cookie={fresh}; csrf_access_token={csrf}");
        let r = request(app.addr, "POST", "/protected", &[("Cookie", &cookie), ("X-CSRF-TOKEN", &csrf)], "")
            .await;
        check(200, &r, "cookie + CSRF");
        let r = request(app.addr, "POST", "/protected", &[("Cookie", &cookie)], "").await;
        check(401, &r, "cookie without CSRF");
    }
}

/// flask-jwt-extended reads the Authorization header its own way: the Bearer
/// element of a comma list, split on any whitespace, the scheme only as
/// `Bearer`, and otherwise the cookie. Wherever that would make the app run
/// on another token than the one jwtgate judged (alice's, say, revoked at
/// jwtgate by a logout the app never heard of), jwtgate refuses the request
/// or forwards the header in the spelling the app reads.
#[tokio::test]
async fn flask_runs_on_the_token_jwtgate_judged_whatever_the_authorization_spelling() {
    let app = PyApp::start("flask_app.py").await;
    let gw = start_gateway(&base_config(PROTECTED), app.addr, None).await;
    let (alice, mallory) = (mint_as(&gw, "alice"), mint_as(&gw, "mallory"));
    // (Authorization, cookie token, whom the app runs as when asked directly,
    // what jwtgate answers: its status and whom the app then runs as.)
    let cases = [
        (format!("Basic eA==, Bearer {alice}"), &mallory, "alice", 400, None),
        (format!("Bearer\t{alice}"), &mallory, "alice", 200, Some("alice")),
        (format!("bearer {mallory}"), &alice, "alice", 200, Some("mallory")),
        (format!("BEARER {mallory}"), &alice, "alice", 200, Some("mallory")),
        (format!("Bearer {mallory}"), &alice, "mallory", 200, Some("mallory")),
    ];
    for (authorization, cookie, direct_sub, status, sub) in cases {
        let headers =
            [("Authorization", authorization.as_str()), ("Cookie", &format!("access_token_cookie={cookie}"))];
        let direct = get(app.addr, "/protected", &headers).await;
        assert_eq!(direct.status, 200, "{authorization:.16}: {}", direct.body);
        assert_eq!(direct.json()["sub"], direct_sub, "{authorization:.16}: the app's parser changed");
        let resp = get(gw.addr, "/protected", &headers).await;
        assert_eq!(resp.status, status, "{authorization:.16}: {}", resp.body);
        match sub {
            Some(sub) => assert_eq!(resp.json()["sub"], sub, "{authorization:.16}"),
            None => resp.assert_problem(400, "bad_request"),
        }
    }
    // A NBSP between scheme and token (obs-text, which hyper passes) is
    // whitespace to Python: refused, never left for the cookie to decide.
    let mut raw = format!("GET /protected HTTP/1.1\r\nHost: app.test\r\nCookie: access_token_cookie={mallory}\r\nConnection: close\r\nAuthorization: Bearer").into_bytes();
    raw.push(0xa0);
    raw.extend_from_slice(format!("{alice}\r\n\r\n").as_bytes());
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(&raw).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("bad_request"), "{answer}");
}

/// AuthX reads the whole Authorization value with every `Bearer ` deleted
/// (a bare token is its token), and stops at a header it cannot decode.
/// Where that reading is a token, the value must be `Bearer <token>` or the
/// request is refused: jwtgate would otherwise have found no token there and
/// judged the cookie while AuthX ran on the header.
#[tokio::test]
async fn authx_runs_on_the_token_jwtgate_judged_whatever_the_authorization_spelling() {
    let app = PyApp::start("authx_app.py").await;
    let gw = start_gateway(&base_config(PROTECTED), app.addr, None).await;
    let (alice, mallory) = (mint_as(&gw, "alice"), mint_as(&gw, "mallory"));
    let (head, signature) = alice.rsplit_once('.').unwrap();
    let cookie = format!("access_token_cookie={mallory}");
    for authorization in [alice.clone(), format!("{head}.Bearer {signature}")] {
        let headers = [("Authorization", authorization.as_str()), ("Cookie", cookie.as_str())];
        let direct = get(app.addr, "/protected", &headers).await;
        assert_eq!(direct.status, 200, "{authorization:.16}: {}", direct.body);
        assert_eq!(direct.json()["sub"], "alice", "{authorization:.16}: AuthX's reading changed");
        get(gw.addr, "/protected", &headers).await.assert_problem(400, "bad_request");
    }
    // `bearer <token>` fails at AuthX when asked directly; through jwtgate it
    // arrives as `Bearer <token>`.
    let headers =
        [("Authorization", format!("bearer {mallory}")), ("Cookie", format!("access_token_cookie={alice}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_ne!(get(app.addr, "/protected", &headers).await.status, 200);
    let resp = get(gw.addr, "/protected", &headers).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["sub"], "mallory");
}

/// When the query decides (a location after the header and the cookie), the
/// token leaves the query (DESIGN §4 rule 3) and travels as the header both
/// libraries read first: an app that got none would go on to a cookie it
/// reads and jwtgate did not. A cookie whose name only an app reads as the
/// cookie is refused there.
#[tokio::test]
async fn a_query_token_reaches_the_app_as_the_bearer_it_reads_first() {
    for app_name in ["flask_app.py", "authx_app.py"] {
        let app = PyApp::start(app_name).await;
        let gw = start_gateway(&base_config(PROTECTED), app.addr, None).await;
        let (alice, mallory) = (mint_as(&gw, "alice"), mint_as(&gw, "mallory"));
        let target = format!("/protected?token={mallory}");
        let resp = get(gw.addr, &target, &[]).await;
        assert_eq!(resp.status, 200, "{app_name}: {}", resp.body);
        assert_eq!(resp.json()["sub"], "mallory", "{app_name}");
        // The shadow: the app, asked directly, runs on alice's cookie.
        let cookie = format!("access_token_cookie ={alice}");
        let direct = get(app.addr, &target, &[("Cookie", &cookie)]).await;
        assert_eq!(direct.status, 200, "{app_name}: {}", direct.body);
        assert_eq!(direct.json()["sub"], "alice", "{app_name}: the app's parser changed");
        get(gw.addr, &target, &[("Cookie", &cookie)]).await.assert_problem(400, "bad_request");
    }
}

fn mint_as(gw: &TestGateway, sub: &str) -> String {
    let spec = jwtgate::token::MintSpec {
        sub,
        token_type: jwtgate::token::TokenType::Access,
        fresh: false,
        csrf: None,
        fid: None,
        auth_time: None,
        exp: None,
        extra: &serde_json::Map::new(),
    };
    gw.gateway.snapshot().runtime.tokens.minter.mint(&spec, now()).unwrap().token
}

/// Werkzeug and Starlette trim a cookie's name; jwtgate takes the access
/// cookie only by its exact name (DESIGN §7). Beside the real cookie, a
/// copy whose name only the app trims would be one cookie to jwtgate and two
/// to the app, which acts on its parser's pick (Werkzeug the first,
/// Starlette the last): jwtgate would judge bob's token while the app ran
/// as alice. Such a request is refused as a duplicate.
#[tokio::test]
async fn an_access_cookie_that_the_app_reads_twice_is_refused() {
    for (app_name, spelling) in [
        ("flask_app.py", "x=1;  access_token_cookie={alice}; access_token_cookie={bob}"),
        ("authx_app.py", "access_token_cookie={bob}; access_token_cookie ={alice}"),
        ("authx_app.py", "access_token_cookie={bob};\taccess_token_cookie={alice}"),
    ] {
        let app = PyApp::start(app_name).await;
        let gw = start_gateway(&base_config(PROTECTED), app.addr, None).await;
        let (alice, bob) = (mint_as(&gw, "alice"), mint_as(&gw, "bob"));
        let cookie = spelling.replace("{alice}", &alice).replace("{bob}", &bob);
        // The premise, asked of the app directly: it acts on alice's copy.
        let direct = get(app.addr, "/protected", &[("Cookie", &cookie)]).await;
        assert_eq!(direct.status, 200, "{app_name} {spelling}: {}", direct.body);
        assert_eq!(direct.json()["sub"], "alice", "{app_name} {spelling}: the app's parser changed");
        let resp = get(gw.addr, "/protected", &[("Cookie", &cookie)]).await;
        resp.assert_problem(400, "bad_request");
        // bob's cookie alone is bob, to both.
        let resp =
            get(gw.addr, "/protected", &[("Cookie", &format!("x=1; access_token_cookie={bob}"))]).await;
        assert_eq!(resp.status, 200, "{app_name}: {}", resp.body);
        assert_eq!(resp.json()["sub"], "bob");
    }
}

/// gunicorn, Flask's usual production server, takes `SCRIPT_NAME` from
/// 127.0.0.1 by default (its `forwarder_headers`), so from a jwtgate beside
/// it, and routes on the path after it; the ReverseProxied middleware of
/// Flask's snippets does the same with `X-Script-Name` from anyone. So
/// `GET /pub/protected` with `SCRIPT_NAME: /pub` runs the app's `/protected`
/// view. Through jwtgate that request is on the public route, where no token
/// is judged.
#[tokio::test]
async fn a_mount_point_header_cannot_move_a_request_to_another_flask_view() {
    let cases: [(&[&str], &str); 3] = [
        (&["--server", "gunicorn"], "SCRIPT_NAME"),
        (&["--server", "gunicorn"], "script_name"),
        (&["--reverse-proxied"], "X-Script-Name"),
    ];
    for (args, name) in cases {
        let app = PyApp::start_with("flask_app.py", args).await;
        let routes =
            format!("[[routes]]\npath = \"/pub/**\"\npolicy = \"public\"\nupstream = \"app\"\n\n{PROTECTED}");
        let gw = start_gateway(&base_config(&routes), app.addr, None).await;
        // Signed with the shared key, refused by jwtgate (revoked), accepted by the app.
        let mallory = mint_as(&gw, "mallory");
        let jti =
            gw.gateway.snapshot().runtime.tokens.verifier.verify(&mallory, unix_now()).unwrap().jti.clone();
        gw.store.revoke_jti(jti.as_deref().unwrap(), unix_now() + 3600, unix_now()).await.unwrap();
        let bearer = format!("Bearer {mallory}");
        get(gw.addr, "/protected", &[("Authorization", &bearer)]).await.assert_problem(401, "token_revoked");
        let headers = [(name, "/pub"), ("Authorization", bearer.as_str())];
        let direct = get(app.addr, "/pub/protected", &headers).await;
        assert_eq!(direct.status, 200, "{args:?} no longer routes on {name}: {}", direct.body);
        assert_eq!(direct.json()["sub"], "mallory");
        let resp = get(gw.addr, "/pub/protected", &headers).await;
        assert_eq!(resp.status, 404, "{args:?} {name}: {}", resp.body);
        assert_ne!(resp.header("content-type"), Some("application/problem+json"), "the app's own 404");
    }
}
