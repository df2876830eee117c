//! Sessions against the real gateway (DESIGN.md §6–7): login handoff, implicit
//! and explicit refresh, rotation with reuse detection, CSRF, logout. Time is
//! a ManualClock: expiry is a clock move, not a sleep.

mod common;

use std::sync::Arc;

use common::flaky::Flaky;
use common::raw::{get, request};
use common::session::{assert_cleared, cookie_values, set_cookies, Jar, SESSION_ROUTES};
use common::*;
use jwtgate::clock::ManualClock;
use jwtgate::store::Store;

const T0: i64 = 1_900_000_000;

/// The shared session routes plus a `fresh` route.
fn routes() -> String {
    format!("{SESSION_ROUTES}\n[[routes]]\npath = \"/account/**\"\npolicy = \"fresh\"\nupstream = \"app\"\n")
}

struct Env {
    up: Upstream,
    gw: TestGateway,
    clock: Arc<ManualClock>,
}

async fn env() -> Env {
    env_with(&routes()).await
}

async fn env_with(routes: &str) -> Env {
    env_edited(routes, |cfg| cfg).await
}

/// The config text of `env_with`: one-minute access tokens, cookies over
/// plain HTTP.
fn env_config(routes: &str) -> String {
    base_config(routes)
        .replace("[tokens]\n", "[tokens]\naccess_ttl = \"60s\"\n")
        .replace("[store]\n", "[cookies]\nsecure = false\n\n[store]\n")
}

/// `env_with`, the config text passed through `edit` first.
async fn env_edited(routes: &str, edit: impl Fn(String) -> String) -> Env {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with
        .lock()
        .unwrap()
        .push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice","roles":["dev"]}"#.into()));
    let clock = Arc::new(ManualClock::new(T0));
    let gw = start_gateway(&edit(env_config(routes)), up.addr, Some(clock.clone())).await;
    Env { up, gw, clock }
}

impl Env {
    async fn login(&self) -> (RawResponse, Jar) {
        let resp = request(
            self.gw.addr,
            "POST",
            "/login",
            &[("Content-Type", "application/json")],
            r#"{"u":"alice"}"#,
        )
        .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let mut jar = Jar::default();
        jar.absorb(&resp);
        (resp, jar)
    }

    async fn with_jar(&self, method: &str, path: &str, jar: &Jar, extra: &[(&str, &str)]) -> RawResponse {
        let cookie = jar.header();
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        request(self.gw.addr, method, path, &headers, "").await
    }

    /// Each of `lines` is a line of the gateway's /metrics text.
    fn assert_counted(&self, lines: &[&str]) {
        let text = self.gw.gateway.metrics.encode();
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "{line} missing:\n{text}");
        }
    }

    fn claims(&self, token: &str) -> jwtgate::token::Claims {
        let snap = self.gw.gateway.snapshot();
        snap.runtime.tokens.verifier.verify(token, self.clock.now_secs()).unwrap().as_ref().clone()
    }
}

trait Now {
    fn now_secs(&self) -> i64;
}
impl Now for ManualClock {
    fn now_secs(&self) -> i64 {
        use jwtgate::clock::Clock;
        self.now()
    }
}

#[tokio::test]
async fn login_mints_a_fresh_pair_sets_cookies_and_hides_the_identity_header() {
    let env = env().await;
    // A client cannot smuggle an identity to the login upstream.
    let resp =
        request(env.gw.addr, "POST", "/login", &[("X-Jwtgate-Identity", r#"{"sub":"root"}"#)], "").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(env.up.last().headers.get("x-jwtgate-identity").is_none());
    assert!(resp.header("x-jwtgate-identity").is_none(), "identity header leaked to the client");
    let body = resp.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 60);
    let access = env.claims(body["access_token"].as_str().unwrap());
    assert_eq!(access.sub, "alice");
    assert!(access.is_fresh(T0), "a login mints a FRESH access token");
    assert_eq!(access.all["roles"], serde_json::json!(["dev"]));
    assert_eq!(access.auth_time, Some(T0));
    let refresh = env.claims(body["refresh_token"].as_str().unwrap());
    assert_eq!(refresh.fid, access.fid);
    assert_eq!(refresh.csrf, access.csrf);
    let cookies = set_cookies(&resp);
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("access_token_cookie=") && c.contains("HttpOnly")));
    assert!(cookies
        .iter()
        .any(|c| c.starts_with(&format!("csrf_access_token={}", access.csrf.clone().unwrap()))));
    // DESIGN §7: Max-Age = the refresh lifetime (30 days here) on all four,
    // so an expired access token still arrives and can be refreshed.
    for c in &cookies {
        let attrs: Vec<&str> = c.split("; ").collect();
        assert!(attrs.contains(&"Max-Age=2592000"), "{c}");
    }
}

/// `login_response = "upstream"`: the app's own answer goes back with the
/// cookies added and without the identity header; a refused login (not 2xx
/// or 3xx) goes back as the app sent it, minus that header.
#[tokio::test]
async fn login_response_upstream_passes_the_apps_answer_without_the_identity_header() {
    let upstream_answer =
        |cfg: String| cfg.replace("[sessions]\n", "[sessions]\nlogin_response = \"upstream\"\n");
    let env = env_edited(&routes(), upstream_answer).await;
    let (resp, jar) = env.login().await;
    assert_eq!(resp.body, "upstream ok");
    assert!(resp.header("x-jwtgate-identity").is_none(), "identity header leaked to the client");
    assert!(jar.get("access_token_cookie").is_some() && jar.get("refresh_token_cookie").is_some());

    let refusal =
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nX-Jwtgate-Identity: {\"sub\":\"alice\"}\r\n\r\nno";
    let (app, _) = common::raw::answering_upstream(refusal.to_owned()).await;
    let gw = start_gateway(&upstream_answer(env_config(&routes())), app, None).await;
    let refused = request(gw.addr, "POST", "/login", &[], "").await;
    assert_eq!((refused.status, refused.body.as_str()), (401, "no"));
    assert!(refused.header("x-jwtgate-identity").is_none(), "identity header leaked on a refused login");
    assert!(refused.all("set-cookie").is_empty());
}

/// A refresh body over 16 KiB is 413 `body_too_large`, as nginx answers a
/// body over `client_max_body_size`; one that breaks off (a malformed chunk)
/// stays the client's 400. Neither reaches the upstream.
#[tokio::test]
async fn a_refresh_body_over_16_kib_gets_413_and_a_broken_one_400() {
    let env = env().await;
    let body = format!(r#"{{"refresh_token":"{}"}}"#, "a".repeat(20 * 1024));
    let json = ("Content-Type", "application/json");
    let resp = request(env.gw.addr, "POST", "/refresh", &[json], &body).await;
    resp.assert_problem(413, "body_too_large");
    assert!(set_cookies(&resp).is_empty());
    let broken = "POST /refresh HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
                  Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    common::raw::send_raw(env.gw.addr, broken).await.assert_problem(400, "bad_request");
    assert_eq!(env.up.count(), 0, "the upstream received nothing");
}

/// The identity header and the refresh body are read as a token's claims
/// are: a member name twice (`{"sub":"alice","sub":"admin"}`), at any depth,
/// is refused, where serde kept the last copy and another reader may keep
/// the first. A refresh body naming a member twice is 400, neither its last
/// `refresh_token` nor a fall-back to the cookie; a body that is no JSON at
/// all still falls back to the cookie.
#[tokio::test]
async fn a_json_member_named_twice_is_refused_in_the_identity_header_and_the_refresh_body() {
    let env = env().await;
    let (resp, jar) = env.login().await;
    let token = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    for twice in [
        r#"{"sub":"alice","sub":"admin"}"#,
        r#"{"sub":"alice","roles":["dev"],"roles":["admin"]}"#,
        r#"{"sub":"alice","org":{"id":1,"id":2}}"#,
    ] {
        *env.up.respond_with.lock().unwrap() = vec![("X-Jwtgate-Identity".into(), twice.into())];
        let resp = request(env.gw.addr, "POST", "/login", &[], "").await;
        resp.assert_problem(502, "bad_identity");
        assert!(resp.all("set-cookie").is_empty(), "nothing minted for {twice}");
        assert!(resp.header("x-jwtgate-identity").is_none());
    }

    let json = ("Content-Type", "application/json");
    let last_wins = format!(r#"{{"refresh_token":"not-a-token","refresh_token":"{token}"}}"#);
    let resp = request(env.gw.addr, "POST", "/refresh", &[json], &last_wins).await;
    resp.assert_problem(400, "bad_request");
    assert!(set_cookies(&resp).is_empty());
    let csrf = ("X-CSRF-TOKEN", jar.get("csrf_access_token").unwrap());
    let no_token_twice = r#"{"remember":true,"remember":false}"#;
    let cookie = jar.header();
    let by_cookie = [json, csrf, ("Cookie", cookie.as_str())];
    let resp = request(env.gw.addr, "POST", "/refresh", &by_cookie, no_token_twice).await;
    resp.assert_problem(400, "bad_request");
    assert!(set_cookies(&resp).is_empty());
    let resp = request(env.gw.addr, "POST", "/refresh", &by_cookie, "not json").await;
    assert_eq!(resp.status, 200, "a body that is no JSON falls back to the cookie: {}", resp.body);
}

/// An identity whose claims would make a token cookie larger than the 4 KiB
/// a browser keeps is refused at login (502, nothing minted): the browser
/// would drop the cookie silently and the user be logged out on the next
/// request. Without cookies (`locations` without "cookies") there is no such
/// limit, and a smaller identity logs in.
#[tokio::test]
async fn an_identity_too_large_for_a_browser_cookie_is_refused_in_cookie_mode() {
    let identity = |bio: usize| format!(r#"{{"sub":"alice","bio":"{}"}}"#, "b".repeat(bio));
    let env = env().await;
    *env.up.respond_with.lock().unwrap() = vec![("X-Jwtgate-Identity".into(), identity(3000))];
    let resp = request(env.gw.addr, "POST", "/login", &[], "").await;
    resp.assert_problem(502, "bad_identity");
    assert!(resp.all("set-cookie").is_empty(), "nothing minted");
    *env.up.respond_with.lock().unwrap() = vec![("X-Jwtgate-Identity".into(), identity(2000))];
    let resp = request(env.gw.addr, "POST", "/login", &[], "").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let longest = set_cookies(&resp).iter().map(|c| c.split(';').next().unwrap().len()).max().unwrap();
    assert!(longest > 2000 && longest <= 4096, "{longest}");

    let headers_only = |cfg: String| {
        cfg.replace(r#"locations = ["headers", "cookies", "query"]"#, r#"locations = ["headers"]"#)
    };
    let env = env_edited(&routes(), headers_only).await;
    *env.up.respond_with.lock().unwrap() = vec![("X-Jwtgate-Identity".into(), identity(3000))];
    let resp = request(env.gw.addr, "POST", "/login", &[], "").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.json()["access_token"].as_str().unwrap().len() > 4096);
}

/// `login_response = "tokens"` keeps the app's own Set-Cookie (Flask's
/// `session`): an app put behind jwtgate keeps its cookies, and jwtgate's
/// come after them, so on a clash the browser keeps jwtgate's. Nothing else
/// of the app's answer goes out: the body is the token JSON, the app's other
/// headers stay behind.
#[tokio::test]
async fn login_response_tokens_keeps_the_apps_set_cookie_before_jwtgates() {
    let env = env().await;
    let app = [
        ("Set-Cookie", "session=abc; Path=/; HttpOnly"),
        ("Set-Cookie", "access_token_cookie=from-the-app; Path=/"),
        ("X-App", "login view"),
    ];
    env.up.respond_with.lock().unwrap().extend(app.map(|(n, v)| (n.to_owned(), v.to_owned())));
    let (resp, jar) = env.login().await;
    let body = resp.json();
    assert_eq!(body["token_type"], "bearer", "{body}");
    assert!(resp.header("x-app").is_none(), "the app's other headers stay behind");
    let lines = resp.all("set-cookie");
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[..2], [app[0].1, app[1].1], "the app's cookies first, as it sent them");
    assert!(lines[2..].iter().any(|c| c.starts_with("access_token_cookie=ey")), "{lines:?}");
    assert_eq!(jar.get("session"), Some("abc"));
    assert_eq!(jar.get("access_token_cookie"), body["access_token"].as_str(), "jwtgate's cookie wins");
}

/// `[cookies]` reaches every cookie jwtgate sets: SameSite and Path as
/// configured, Secure by default, HttpOnly on the tokens and not on the CSRF
/// values (the page's script must read those).
#[tokio::test]
async fn same_site_and_path_from_the_config_reach_every_session_cookie() {
    let strict = |cfg: String| {
        cfg.replace("[cookies]\nsecure = false\n", "[cookies]\nsame_site = \"strict\"\npath = \"/app\"\n")
    };
    let env = env_edited(&routes(), strict).await;
    let (resp, _) = env.login().await;
    let cookies = set_cookies(&resp);
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    for c in &cookies {
        assert!(c.contains("; SameSite=Strict") && !c.contains("SameSite=Lax"), "{c}");
        assert!(c.contains("; Path=/app;"), "{c}");
        assert!(c.contains("; Secure"), "Secure by default: {c}");
        assert_eq!(c.contains("; HttpOnly"), !c.starts_with("csrf_"), "{c}");
    }
}

/// A browser deletes a cookie only for a Set-Cookie with the same Path and
/// Domain: logout's clearing cookies carry the configured ones.
#[tokio::test]
async fn logout_clears_the_cookies_with_the_configured_path_and_domain() {
    let scoped =
        |cfg: String| cfg.replace("[cookies]\n", "[cookies]\npath = \"/app\"\ndomain = \"app.test\"\n");
    let env = env_edited(&routes(), scoped).await;
    let resp = request(env.gw.addr, "POST", "/logout", &[], "").await;
    assert_eq!(resp.status, 204, "{}", resp.body);
    assert_cleared(&resp);
    for c in set_cookies(&resp) {
        assert!(c.contains("=; Path=/app; Max-Age=0; Domain=app.test"), "{c}");
    }
}

/// With CSRF protection off, jwtgate sets no CSRF cookies (as AuthX and
/// flask-jwt-extended do), on login and on an implicit refresh alike.
#[tokio::test]
async fn csrf_off_sets_only_the_token_cookies() {
    let env = env_with(&format!("[csrf]\nenabled = false\n\n{}", routes())).await;
    let (resp, jar) = env.login().await;
    let names = |r: &RawResponse| -> Vec<String> {
        cookie_values(r).iter().map(|c| c.split('=').next().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&resp), ["access_token_cookie", "refresh_token_cookie"]);
    env.clock.advance(61);
    let refresh_only = format!("refresh_token_cookie={}", jar.get("refresh_token_cookie").unwrap());
    let resp = get(env.gw.addr, "/api/x", &[("Cookie", &refresh_only)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(names(&resp), ["access_token_cookie", "refresh_token_cookie"], "the rotation's cookies");
    let seen = env.up.last();
    assert!(
        seen.header("cookie").is_some_and(|c| c.contains("access_token_cookie=")),
        "upstream sees the new token"
    );
}

#[tokio::test]
async fn login_without_identity_passes_the_app_response_and_a_bad_identity_is_502() {
    let env = env().await;
    env.up.respond_with.lock().unwrap().clear();
    let resp = request(env.gw.addr, "POST", "/login", &[], "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "upstream ok");
    assert!(resp.all("set-cookie").is_empty());
    for bad in [r#"not json"#, r#"{"sub":""}"#, r#"{"sub":42}"#, r#"["sub"]"#] {
        *env.up.respond_with.lock().unwrap() = vec![("X-Jwtgate-Identity".into(), bad.into())];
        let resp = request(env.gw.addr, "POST", "/login", &[], "").await;
        resp.assert_problem(502, "bad_identity");
        assert!(resp.all("set-cookie").is_empty(), "nothing minted for {bad}");
        assert!(resp.header("x-jwtgate-identity").is_none());
    }
}

#[tokio::test]
async fn cross_site_login_is_refused_before_forwarding() {
    let env = env().await;
    let resp = request(env.gw.addr, "POST", "/login", &[("Origin", "https://evil.test")], "").await;
    resp.assert_problem(403, "csrf_failed");
    let resp = request(env.gw.addr, "POST", "/login", &[("Sec-Fetch-Site", "cross-site")], "").await;
    resp.assert_problem(403, "csrf_failed");
    assert_eq!(env.up.count(), 0);
    let resp = request(env.gw.addr, "POST", "/login", &[("Origin", "http://app.test")], "").await;
    assert_eq!(resp.status, 200, "same-origin login works");
}

#[tokio::test]
async fn expired_access_cookie_is_refreshed_transparently() {
    let env = env().await;
    let (_, mut jar) = env.login().await;
    let old_access = jar.get("access_token_cookie").unwrap().to_owned();
    let caching = [
        ("Cache-Control", "public, max-age=3600"),
        ("Expires", "Wed, 21 Oct 2099 07:28:00 GMT"),
        ("CDN-Cache-Control", "max-age=3600"),
        ("Surrogate-Control", "max-age=3600"),
    ];
    env.up.respond_with.lock().unwrap().extend(caching.map(|(n, v)| (n.into(), v.into())));
    env.clock.advance(120);
    let resp = env.with_jar("GET", "/api/data", &jar, &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // The app's answer now carries alice's tokens: no cache may keep it.
    assert_eq!(resp.all("cache-control"), ["no-store"]);
    for (name, _) in &caching[1..] {
        assert!(resp.header(name).is_none(), "{name} would let a cache keep it");
    }
    let seen = env.up.last();
    let cookie = seen.header("cookie").unwrap().to_owned();
    assert!(!cookie.contains(&old_access), "upstream got the expired token");
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-fresh"), Some("false"), "a refreshed token is never fresh");
    jar.absorb(&resp);
    let new_access = jar.get("access_token_cookie").unwrap().to_owned();
    assert_ne!(new_access, old_access);
    assert!(cookie.contains(&new_access), "upstream saw the new token");
    // The new cookies keep working without another rotation.
    let before = set_cookies(&resp);
    let resp = env.with_jar("GET", "/api/data", &jar, &[]).await;
    assert_eq!(resp.status, 200);
    assert!(resp.all("set-cookie").is_empty());
    assert_eq!(
        resp.all("cache-control"),
        ["public, max-age=3600"],
        "without cookies, the app's caching stands"
    );
    assert_eq!(before.len(), 4);
}

#[tokio::test]
async fn nearly_expired_access_cookie_is_refreshed_ahead() {
    let env = env().await;
    let (_, jar) = env.login().await;
    env.clock.advance(50); // refresh_ahead = min(60s, 60s/4) = 15s: 10 s left
    let resp = env.with_jar("GET", "/api/data", &jar, &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(set_cookies(&resp).len(), 4);
}

#[tokio::test]
async fn replay_within_grace_gets_the_same_pair_and_after_it_kills_the_family() {
    let env = env().await;
    let (_, old) = env.login().await;
    env.clock.advance(120);
    let first = env.with_jar("GET", "/api/a", &old, &[]).await;
    env.clock.advance(10);
    let second = env.with_jar("GET", "/api/b", &old, &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(cookie_values(&first), cookie_values(&second), "a retried request gets the same pair");
    assert_eq!(cookie_values(&first).len(), 4);
    let mut current = old.clone();
    current.absorb(&first);
    env.clock.advance(30);
    let reuse = env.with_jar("GET", "/api/c", &old, &[]).await;
    reuse.assert_problem(401, "refresh_reuse");
    assert_cleared(&reuse);
    // The family's access tokens stop working at once.
    let resp = env.with_jar("GET", "/api/d", &current, &[]).await;
    resp.assert_problem(401, "token_revoked");
}

/// `rotate_refresh = false` keeps the refresh token at the explicit endpoint,
/// but implicit refresh still rotates: the token it rotated away must meet
/// the rotation rules there, not keep minting access tokens.
#[tokio::test]
async fn without_rotation_a_rotated_away_refresh_token_still_meets_reuse_detection() {
    let env =
        env_edited(&routes(), |cfg| cfg.replace("[sessions]\n", "[sessions]\nrotate_refresh = false\n"))
            .await;
    let (login, old) = env.login().await;
    let old_refresh = format!("Bearer {}", login.json()["refresh_token"].as_str().unwrap());
    // The current refresh token gets an access token and stays the same.
    let kept = get(env.gw.addr, "/refresh", &[("Authorization", &old_refresh)]).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(format!("Bearer {}", kept.json()["refresh_token"].as_str().unwrap()), old_refresh);
    // An implicit refresh rotates it away.
    env.clock.advance(120);
    let implicit = env.with_jar("GET", "/api/a", &old, &[]).await;
    assert_eq!(set_cookies(&implicit).len(), 4, "{}", implicit.body);
    let mut current = old.clone();
    current.absorb(&implicit);
    // Within the grace, the old token gets the current pair, as a replay would.
    env.clock.advance(10);
    let replay = get(env.gw.addr, "/refresh", &[("Authorization", &old_refresh)]).await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(Some(replay.json()["refresh_token"].as_str().unwrap()), current.get("refresh_token_cookie"));
    // After it, the old token is reuse: the family dies.
    env.clock.advance(30);
    get(env.gw.addr, "/refresh", &[("Authorization", &old_refresh)])
        .await
        .assert_problem(401, "refresh_reuse");
    env.with_jar("GET", "/api/b", &current, &[]).await.assert_problem(401, "token_revoked");
}

#[tokio::test]
async fn fresh_routes_never_refresh() {
    let env = env().await;
    let (_, jar) = env.login().await;
    assert_eq!(env.with_jar("GET", "/account/x", &jar, &[]).await.status, 200, "just logged in: fresh");
    env.clock.advance(120);
    let resp = env.with_jar("GET", "/account/x", &jar, &[]).await;
    resp.assert_problem(401, "fresh_token_required");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotates on a fresh route");
    let mut jar = jar;
    let resp = env.with_jar("GET", "/api/x", &jar, &[]).await;
    jar.absorb(&resp);
    let resp = env.with_jar("GET", "/account/x", &jar, &[]).await;
    resp.assert_problem(401, "fresh_token_required");
}

/// DESIGN §7 / §9 state the fresh-route rule without a condition: with
/// `implicit_refresh = false` too, a fresh route given a valid refresh
/// cookie but no live access cookie answers fresh_token_required (log in
/// again), while an access route, which would have refreshed, says the token
/// is missing. (Found by a conformance audit: it said missing_token.)
#[tokio::test]
async fn without_implicit_refresh_a_fresh_route_still_asks_for_a_fresh_login() {
    let env =
        env_edited(&routes(), |cfg| cfg.replace("[sessions]\n", "[sessions]\nimplicit_refresh = false\n"))
            .await;
    let (_, jar) = env.login().await;
    assert_eq!(env.with_jar("GET", "/account/x", &jar, &[]).await.status, 200, "just logged in: fresh");
    let mut no_access = jar.clone();
    no_access.0.remove("access_token_cookie");
    let resp = env.with_jar("GET", "/account/x", &no_access, &[]).await;
    resp.assert_problem(401, "fresh_token_required");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotates");
    env.with_jar("GET", "/api/x", &no_access, &[]).await.assert_problem(401, "missing_token");
    env.clock.advance(120);
    let resp = env.with_jar("GET", "/account/x", &jar, &[]).await;
    resp.assert_problem(401, "fresh_token_required");
    let resp = env.with_jar("GET", "/api/x", &jar, &[]).await;
    resp.assert_problem(401, "token_expired");
    assert!(resp.all("set-cookie").is_empty(), "implicit_refresh = false: nothing rotates");
}

/// Unsafe means every method but GET, HEAD, OPTIONS and TRACE: each needs
/// the double-submit header with a cookie credential; the safe ones never do.
#[tokio::test]
async fn every_unsafe_method_needs_csrf_and_no_safe_one_does() {
    let env = env().await;
    let (_, jar) = env.login().await;
    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    for method in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"] {
        env.with_jar(method, "/api/x", &jar, &[]).await.assert_problem(403, "csrf_failed");
        let resp = env.with_jar(method, "/api/x", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
        assert_eq!(resp.status, 200, "{method} with the header: {}", resp.body);
        assert_eq!(env.up.last().method, method);
    }
    for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
        let resp = env.with_jar(method, "/api/x", &jar, &[]).await;
        assert_eq!(resp.status, 200, "{method} needs no CSRF header: {}", resp.body);
    }
}

/// DESIGN §7's Origin rules on a proxied route, beside the double submit:
/// the request's own origin passes, `Sec-Fetch-Site: cross-site` is refused,
/// an origin in `allowed_origins` passes; behind a trusted proxy the
/// request's origin is the forwarded scheme and host.
#[tokio::test]
async fn origin_rules_on_an_access_route() {
    let env = env_edited(&routes(), |cfg| {
        cfg.replace("[store]\n", "[csrf]\nallowed_origins = [\"https://spa.test\"]\n\n[store]\n")
            .replace("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
    })
    .await;
    let (_, jar) = env.login().await;
    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    let post = |extra: Vec<(&'static str, &'static str)>| {
        let mut headers = vec![("X-CSRF-TOKEN", csrf.as_str())];
        headers.extend(extra);
        let jar = &jar;
        let env = &env;
        async move { env.with_jar("POST", "/api/x", jar, &headers).await }
    };
    assert_eq!(post(vec![("Origin", "http://app.test")]).await.status, 200, "same origin");
    assert_eq!(post(vec![("Sec-Fetch-Site", "same-origin")]).await.status, 200);
    assert_eq!(post(vec![("Origin", "https://spa.test")]).await.status, 200, "allowed_origins");
    post(vec![("Sec-Fetch-Site", "cross-site")]).await.assert_problem(403, "csrf_failed");
    post(vec![("Origin", "https://spa.test.evil")]).await.assert_problem(403, "csrf_failed");
    // From the trusted proxy, the origin the browser saw is the forwarded one.
    let forwarded = vec![("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "front.test")];
    let with = |origin: &'static str| [forwarded.clone(), vec![("Origin", origin)]].concat();
    assert_eq!(post(with("https://front.test")).await.status, 200, "the forwarded origin");
    post(with("http://app.test")).await.assert_problem(403, "csrf_failed");
}

/// Implicit refresh serves navigations and same-site requests, never a
/// cross-site subresource (an `<img>` on another site would otherwise
/// rotate the victim's session); and the rotated cookies go out on a
/// refusal jwtgate makes after rotating (403 `require` not met).
#[tokio::test]
async fn implicit_refresh_skips_cross_site_subresources_and_sets_cookies_on_a_later_refusal() {
    let routes = format!(
        "{}\n[[routes]]\npath = \"/admin/**\"\npolicy = \"access\"\nupstream = \"app\"\nrequire = {{ roles = \"root\" }}\n",
        routes()
    );
    let env = env_with(&routes).await;
    let (_, jar) = env.login().await;
    let mut no_access = jar.clone();
    no_access.0.remove("access_token_cookie");
    let subresource = [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "cors")];
    let resp = env.with_jar("GET", "/api/x", &no_access, &subresource).await;
    resp.assert_problem(401, "missing_token");
    assert!(resp.all("set-cookie").is_empty(), "a cross-site subresource rotates nothing");
    let navigation = [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "navigate")];
    let resp = env.with_jar("GET", "/api/x", &no_access, &navigation).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(set_cookies(&resp).len(), 4, "a top-level navigation refreshes");
    let mut jar = no_access;
    jar.absorb(&resp);
    jar.0.remove("access_token_cookie");
    let resp = env.with_jar("GET", "/admin/x", &jar, &[]).await;
    resp.assert_problem(403, "forbidden");
    assert_eq!(set_cookies(&resp).len(), 4, "the rotated pair still reaches the browser");
}

#[tokio::test]
async fn unsafe_cookie_requests_need_csrf_before_anything_rotates() {
    let env = env().await;
    let (_, jar) = env.login().await;
    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    env.with_jar("POST", "/api/x", &jar, &[]).await.assert_problem(403, "csrf_failed");
    env.with_jar("POST", "/api/x", &jar, &[("X-CSRF-TOKEN", "wrong")])
        .await
        .assert_problem(403, "csrf_failed");
    env.with_jar("POST", "/api/x", &jar, &[("X-CSRF-TOKEN", &csrf), ("X-CSRF-TOKEN", &csrf)])
        .await
        .assert_problem(403, "csrf_failed");
    let ok = env.with_jar("POST", "/api/x", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let cross = env
        .with_jar("POST", "/api/x", &jar, &[("X-CSRF-TOKEN", &csrf), ("Origin", "https://evil.test")])
        .await;
    cross.assert_problem(403, "csrf_failed");
    env.with_jar("POST", "/api/x", &jar, &[("X-CSRF-TOKEN", &csrf), ("Origin", "null")])
        .await
        .assert_problem(403, "csrf_failed");
    // Expired access cookie: CSRF still judged (from the expired token) before the rotation.
    env.clock.advance(120);
    let resp = env.with_jar("POST", "/api/x", &jar, &[]).await;
    resp.assert_problem(403, "csrf_failed");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotated on a CSRF failure");
    let resp = env.with_jar("POST", "/api/x", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(set_cookies(&resp).len(), 4);
}

/// A browser whose access cookie is gone (its Max-Age passed) still sends the
/// refresh cookie, and that is a cookie session too: an unsafe request
/// without the double submit is refused before anything rotates or reaches
/// the app.
#[tokio::test]
async fn a_refresh_cookie_alone_still_needs_csrf_on_unsafe_requests() {
    let env = env().await;
    let (_, mut jar) = env.login().await;
    jar.0.remove("access_token_cookie");
    let before = env.up.count();
    let resp = env.with_jar("POST", "/api/x", &jar, &[]).await;
    resp.assert_problem(403, "csrf_failed");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotated on a CSRF failure");
    assert_eq!(env.up.count(), before, "the app saw the refused request");
}

/// The refresh cookie must hold a refresh token: an access token planted there
/// (still valid, and signed by the same key) neither refreshes the session
/// nor counts as a reuse that would end the real one.
#[tokio::test]
async fn an_access_token_in_the_refresh_cookie_is_not_a_refresh_token() {
    let env = env().await;
    let (_, jar) = env.login().await;
    let mut planted = jar.clone();
    let access = jar.get("access_token_cookie").unwrap().to_owned();
    planted.0.insert("refresh_token_cookie".into(), access);
    planted.0.remove("access_token_cookie");
    let before = env.up.count();
    let resp = env.with_jar("GET", "/api/x", &planted, &[]).await;
    resp.assert_problem(401, "missing_token");
    assert!(resp.all("set-cookie").is_empty(), "nothing minted from an access token");
    assert_eq!(env.up.count(), before);
    assert_eq!(env.with_jar("GET", "/api/y", &jar, &[]).await.status, 200, "the real session lives on");
}

/// The csrf phase judges a request by its access cookie; the refresh cookie
/// beside it must be of that session. One planted from another family (cookie
/// tossing from a sibling subdomain) is not used: the request would run, CSRF
/// passed, in the planted session.
#[tokio::test]
async fn a_refresh_cookie_of_another_session_is_not_used_beside_the_access_cookie() {
    let env = env().await;
    let (_, victim) = env.login().await;
    let (_, planted) = env.login().await;
    let mut mixed = victim.clone();
    let refresh = planted.get("refresh_token_cookie").unwrap();
    mixed.0.insert("refresh_token_cookie".into(), refresh.to_owned());
    let csrf = victim.get("csrf_access_token").unwrap().to_owned();
    let before = env.up.count();
    env.clock.advance(120);

    let resp = env.with_jar("POST", "/api/x", &mixed, &[("X-CSRF-TOKEN", &csrf)]).await;
    resp.assert_problem(401, "token_expired");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotated: {:?}", resp.all("set-cookie"));
    assert_eq!(env.up.count(), before, "nothing reached the upstream");

    // An access cookie minted elsewhere (AuthX, flask-jwt-extended: no `fid`)
    // belongs to no jwtgate session either.
    let extra = serde_json::Map::new();
    let foreign = jwtgate::token::MintSpec {
        sub: "victim",
        token_type: jwtgate::token::TokenType::Access,
        fresh: false,
        csrf: Some("victim-csrf"),
        fid: None,
        auth_time: None,
        exp: None,
        extra: &extra,
    };
    let foreign = env.gw.gateway.snapshot().runtime.tokens.minter.mint(&foreign, T0).unwrap().token;
    mixed.0.insert("access_token_cookie".into(), foreign);
    let resp = env.with_jar("POST", "/api/x", &mixed, &[("X-CSRF-TOKEN", "victim-csrf")]).await;
    resp.assert_problem(401, "token_expired");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotated: {:?}", resp.all("set-cookie"));
    assert_eq!(env.up.count(), before, "nothing reached the upstream");

    // Either session, whole, still refreshes: the planted one was not rotated.
    for jar in [&victim, &planted] {
        let csrf = jar.get("csrf_access_token").unwrap();
        let resp = env.with_jar("POST", "/api/x", jar, &[("X-CSRF-TOKEN", csrf)]).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(set_cookies(&resp).len(), 4);
    }
}

#[tokio::test]
async fn explicit_refresh_by_bearer_body_and_cookie() {
    let env = env().await;
    let (resp, jar) = env.login().await;
    let refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    // The seeds' flow: curl --oauth2-bearer $REFRESH_TOKEN …/refresh (a GET).
    let r1 = get(env.gw.addr, "/refresh", &[("Authorization", &format!("Bearer {refresh}"))]).await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    let body = r1.json();
    let access = env.claims(body["access_token"].as_str().unwrap());
    assert!(!access.is_fresh(T0), "explicit refresh mints a non-fresh token");
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, refresh);
    // HEAD is not in `methods`: it would rotate and lose the new pair with the body.
    let head =
        request(env.gw.addr, "HEAD", "/refresh", &[("Authorization", &format!("Bearer {rotated}"))], "")
            .await;
    assert_eq!(head.status, 405);
    assert_eq!(head.header("allow"), Some("GET, POST"));
    // JSON body.
    let r2 = request(
        env.gw.addr,
        "POST",
        "/refresh",
        &[("Content-Type", "application/json")],
        &format!(r#"{{"refresh_token":"{rotated}"}}"#),
    )
    .await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    // The access token is not a refresh token.
    let at = body["access_token"].as_str().unwrap();
    get(env.gw.addr, "/refresh", &[("Authorization", &format!("Bearer {at}"))])
        .await
        .assert_problem(401, "wrong_token_type");
    // Cookie: unsafe method only, with CSRF.
    let env2 = env_with(&routes()).await;
    let (_, jar2) = env2.login().await;
    let csrf = jar2.get("csrf_refresh_token").unwrap().to_owned();
    env2.with_jar("POST", "/refresh", &jar2, &[]).await.assert_problem(403, "csrf_failed");
    env2.with_jar("POST", "/refresh", &jar2, &[("X-CSRF-TOKEN", &csrf), ("Origin", "https://evil.test")])
        .await
        .assert_problem(403, "csrf_failed");
    env2.with_jar("GET", "/refresh", &jar2, &[]).await.assert_problem(401, "missing_token");
    let r3 = env2.with_jar("POST", "/refresh", &jar2, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(r3.status, 200, "{}", r3.body);
    assert_eq!(set_cookies(&r3).len(), 4);
    drop(jar);
}

/// Login CSRF through the refresh handler: in cookie mode it sets the
/// session cookies of any refresh token it is given, so a cross-site form
/// (`enctype="text/plain"` makes its body JSON) carrying mallory's refresh
/// token would put mallory's session in alice's browser. It is judged by
/// Origin / Sec-Fetch-Site as login is, whichever location the token came
/// from; same-origin and header-less (curl, SDK) refreshes still work.
#[tokio::test]
async fn a_cross_site_form_cannot_refresh_into_another_session() {
    let env = env().await;
    let (resp, _) = env.login().await;
    let mallorys = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    let form = |token: &str| format!("{{\"refresh_token\":\"{token}\",\"x\":\"=\"}}\r\n");
    let text = ("Content-Type", "text/plain");
    for cross_site in [
        vec![
            ("Origin", "https://evil.test"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "navigate"),
            text,
        ],
        vec![("Origin", "https://evil.test"), text],
        vec![("Sec-Fetch-Site", "cross-site"), text],
        vec![("Origin", "null"), text],
    ] {
        let r = request(env.gw.addr, "POST", "/refresh", &cross_site, &form(&mallorys)).await;
        r.assert_problem(403, "csrf_failed");
        assert!(set_cookies(&r).is_empty(), "no session cookie set cross-site: {:?}", set_cookies(&r));
        // A Bearer header from a cross-site page (it would need CORS) is judged alike.
        let mut with_bearer = cross_site.clone();
        let bearer = format!("Bearer {mallorys}");
        with_bearer.push(("Authorization", &bearer));
        request(env.gw.addr, "POST", "/refresh", &with_bearer, "").await.assert_problem(403, "csrf_failed");
    }
    // Nothing rotated: the refresh token is still current, and a same-origin
    // page and a client sending no Origin refresh with it.
    let same_origin =
        request(env.gw.addr, "POST", "/refresh", &[("Origin", "http://app.test"), text], &form(&mallorys))
            .await;
    assert_eq!(same_origin.status, 200, "{}", same_origin.body);
    assert_eq!(set_cookies(&same_origin).len(), 4);
    let rotated = same_origin.json()["refresh_token"].as_str().unwrap().to_owned();
    let curl =
        request(env.gw.addr, "POST", "/refresh", &[("Content-Type", "application/json")], &form(&rotated))
            .await;
    assert_eq!(curl.status, 200, "{}", curl.body);
    // Only where cookies are set: a headers-only gateway's refresh answer
    // is JSON a cross-site page cannot read.
    let headers_only = env_edited(&routes(), |cfg| {
        cfg.replace("locations = [\"headers\", \"cookies\", \"query\"]", "locations = [\"headers\"]")
    })
    .await;
    let (resp, _) = headers_only.login().await;
    let token = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    let r = request(
        headers_only.gw.addr,
        "POST",
        "/refresh",
        &[("Origin", "https://evil.test"), text],
        &form(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(set_cookies(&r).is_empty());
}

/// Explicit refresh by cookie judges the CSRF token by the access cookie
/// beside the refresh cookie (DESIGN §7), which must be of the same family:
/// a refresh cookie planted beside alice's session, with a CSRF cookie of its
/// own, is refused whichever CSRF value comes with it. Alice's own expired
/// access cookie still counts (exp ignored).
#[tokio::test]
async fn a_planted_refresh_cookie_beside_a_session_is_not_refreshed() {
    let env = env().await;
    let (_, alice) = env.login().await;
    let (_, planted) = env.login().await;
    let cookie = format!(
        "access_token_cookie={}; csrf_access_token={}; refresh_token_cookie={}; csrf_refresh_token={}",
        alice.get("access_token_cookie").unwrap(),
        alice.get("csrf_access_token").unwrap(),
        planted.get("refresh_token_cookie").unwrap(),
        planted.get("csrf_refresh_token").unwrap(),
    );
    for csrf in [planted.get("csrf_refresh_token").unwrap(), alice.get("csrf_access_token").unwrap()] {
        let r = request(env.gw.addr, "POST", "/refresh", &[("Cookie", &cookie), ("X-CSRF-TOKEN", csrf)], "")
            .await;
        r.assert_problem(403, "csrf_failed");
        assert!(set_cookies(&r).is_empty());
    }
    // Alice's whole jar, her access cookie expired: judged by its csrf claim, refreshed.
    env.clock.advance(120);
    let csrf = alice.get("csrf_access_token").unwrap().to_owned();
    let r = env.with_jar("POST", "/refresh", &alice, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(set_cookies(&r).len(), 4);
}

/// A refresh body that stops arriving is cut after `idle_timeout` with 408,
/// as a proxied upload is (README, *Stalled transfers*), instead of holding
/// its connection for ever.
#[tokio::test]
async fn a_stalled_refresh_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = env_edited(&routes(), |cfg| {
        cfg.replace("header_read_timeout = \"2s\"", "header_read_timeout = \"2s\"\nidle_timeout = \"1s\"")
    })
    .await;
    assert_eq!(env.gw.gateway.snapshot().runtime.server.idle_timeout, std::time::Duration::from_secs(1));
    let mut conn = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let head = "POST /refresh HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"refresh_";
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the connection was still held after 10 s: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "cut early: {:?}", started.elapsed());
}

/// `jwtgate_refresh_total` counts each outcome by mode: a rotation, then the
/// rotated-away token presented after the grace (reuse).
#[tokio::test]
async fn refresh_outcomes_are_counted_by_mode() {
    let env = env().await;
    let (resp, _) = env.login().await;
    let old = format!("Bearer {}", resp.json()["refresh_token"].as_str().unwrap());
    assert_eq!(get(env.gw.addr, "/refresh", &[("Authorization", &old)]).await.status, 200);
    env.clock.advance(31); // past reuse_grace
    get(env.gw.addr, "/refresh", &[("Authorization", &old)]).await.assert_problem(401, "refresh_reuse");
    env.assert_counted(&[
        r#"jwtgate_refresh_total{mode="explicit",outcome="rotated"} 1"#,
        r#"jwtgate_refresh_total{mode="explicit",outcome="reuse"} 1"#,
    ]);
}

#[tokio::test]
async fn logout_revokes_the_family_and_clears_cookies() {
    let env = env().await;
    let (resp, jar) = env.login().await;
    let body = resp.json();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    // By cookie, logout is an unsafe request like any other: another site's
    // page cannot end the session (double submit, then Origin).
    env.with_jar("POST", "/logout", &jar, &[]).await.assert_problem(403, "csrf_failed");
    env.with_jar("POST", "/logout", &jar, &[("X-CSRF-TOKEN", &csrf), ("Origin", "https://evil.test")])
        .await
        .assert_problem(403, "csrf_failed");
    assert_eq!(env.with_jar("GET", "/api/x", &jar, &[]).await.status, 200, "refused logouts revoked nothing");
    let out = env.with_jar("POST", "/logout", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert_cleared(&out);
    get(env.gw.addr, "/refresh", &[("Authorization", &format!("Bearer {refresh}"))])
        .await
        .assert_problem(401, "token_revoked");
    get(env.gw.addr, "/api/x", &[("Authorization", &format!("Bearer {access}"))])
        .await
        .assert_problem(401, "token_revoked");
}

/// Tokens another issuer minted (AuthX, flask-jwt-extended) carry no family:
/// logout revokes their `jti`, which must hold for as long as the verifier
/// accepts the token: past `exp` by the leeway, and for good without `exp`.
#[tokio::test]
async fn a_logged_out_token_stays_revoked_as_long_as_it_would_be_accepted() {
    let with_exp = format!(r#"{{"sub":"alice","type":"access","jti":"j-exp","iat":{T0},"exp":{}}}"#, T0 + 60);
    let without_exp = r#"{"sub":"alice","type":"access","jti":"j-none"}"#.to_owned();
    let cases = [
        (r#"["exp", "jti"]"#, with_exp, vec![T0 + 60, T0 + 61, T0 + 65]),
        (r#"["jti"]"#, without_exp, vec![T0 + 1, T0 + 86_400, T0 + 3_650 * 86_400]),
    ];
    for (required, payload, later) in cases {
        let up = Upstream::start(UpstreamBehavior::Ok).await;
        let clock = Arc::new(ManualClock::new(T0));
        let cfg = base_config(&routes())
            .replace("[tokens]\n", &format!("[tokens]\nrequired_claims = {required}\n"));
        let gw = start_gateway(&cfg, up.addr, Some(clock.clone())).await;
        let bearer = format!("Bearer {}", hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &payload));
        let auth = [("Authorization", bearer.as_str())];
        let api = || get(gw.addr, "/api/x", &auth);
        assert_eq!(api().await.status, 200, "{payload}");
        let out = request(gw.addr, "POST", "/logout", &auth, "").await;
        assert_eq!(out.status, 204, "{}", out.body);
        for t in later {
            clock.set(t);
            api().await.assert_problem(401, "token_revoked");
        }
        assert_eq!(up.count(), 1, "only the request before logout reached the app");
    }
}

/// A reload may raise the leeway (to five minutes at most), and a token
/// logged out before it must not pass again inside the new one. A token
/// without family was revoked only until `exp` plus the old leeway. The
/// purge runs between the logout and the reload, and the request comes 100 s
/// after the token's `exp`.
#[tokio::test]
async fn a_reload_that_raises_the_leeway_reopens_no_logged_out_token() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let clock = Arc::new(ManualClock::new(T0));
    let cfg =
        base_config(&routes()).replace("[tokens]\n", "[tokens]\nrequired_claims = [\"exp\", \"jti\"]\n");
    let gw = start_gateway(&cfg, up.addr, Some(clock.clone())).await;
    let payload = format!(r#"{{"sub":"alice","type":"access","jti":"j-1","iat":{T0},"exp":{}}}"#, T0 + 60);
    let bearer = format!("Bearer {}", hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &payload));
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(request(gw.addr, "POST", "/logout", &auth, "").await.status, 204);
    clock.set(T0 + 160);
    gw.gateway.purge_store().await.unwrap();
    let text = raised_leeway(cfg).replace("{upstream}", &up.addr.to_string());
    gw.gateway.swap(jwtgate::config::parse(&text, std::path::Path::new(".")).unwrap());
    get(gw.addr, "/api/x", &auth).await.assert_problem(401, "token_revoked");
    assert_eq!(up.count(), 0);
}

/// The same for a session's last access token, whose `exp` is its family's
/// end: the family was revoked, and purged, the old leeway after that end,
/// both after a logout and after a refresh token's reuse.
#[tokio::test]
async fn a_reload_that_raises_the_leeway_reopens_no_revoked_session() {
    for reuse in [false, true] {
        let env = env_edited(&routes(), with_max_session("1h")).await;
        let (_, first) = env.login().await;
        env.clock.advance(3560);
        let last = env.with_jar("GET", "/api/a", &first, &[]).await;
        assert_eq!(last.status, 200, "{}", last.body);
        let mut jar = first.clone();
        jar.absorb(&last);
        let access = format!("Bearer {}", jar.get("access_token_cookie").unwrap());
        assert_eq!(env.claims(&access[7..]).exp, Some((T0 + 3600) as f64), "ends with the family");
        env.clock.advance(31); // past reuse_grace
        if reuse {
            env.with_jar("GET", "/api/b", &first, &[]).await.assert_problem(401, "refresh_reuse");
        } else {
            let out = request(env.gw.addr, "POST", "/logout", &[("Authorization", &access)], "").await;
            assert_eq!(out.status, 204, "{}", out.body);
        }
        env.clock.set(T0 + 3700);
        env.gw.gateway.purge_store().await.unwrap();
        reload(&env, raised_leeway(session_config("1h")));
        let resp = get(env.gw.addr, "/api/c", &[("Authorization", &access)]).await;
        resp.assert_problem(401, "token_revoked");
    }
}

/// `cfg` with the largest leeway a config may set.
fn raised_leeway(cfg: String) -> String {
    cfg.replace("[tokens]\n", "[tokens]\nleeway = \"5m\"\n")
}

/// The Bearer header is the presented token at logout whatever
/// `tokens.locations` says, as it is at the refresh handler: otherwise GET
/// /logout answered 204 and revoked nothing.
#[tokio::test]
async fn logout_by_bearer_revokes_whatever_the_token_locations() {
    let routes =
        routes().replace("handler = \"logout\"\n", "handler = \"logout\"\nmethods = [\"GET\", \"POST\"]\n");
    for locations in [r#"["cookies"]"#, r#"["cookies", "headers"]"#] {
        let env = env_edited(&routes, |cfg| {
            cfg.replace(r#"locations = ["headers", "cookies", "query"]"#, &format!("locations = {locations}"))
        })
        .await;
        let (resp, jar) = env.login().await;
        let body = resp.json();
        let access = format!("Bearer {}", body["access_token"].as_str().unwrap());
        let refresh = format!("Bearer {}", body["refresh_token"].as_str().unwrap());
        let out = env.with_jar("GET", "/logout", &jar, &[("Authorization", &access)]).await;
        assert_eq!(out.status, 204, "{locations}: {}", out.body);
        env.clock.advance(1);
        get(env.gw.addr, "/refresh", &[("Authorization", &refresh)])
            .await
            .assert_problem(401, "token_revoked");
        // Where the cookies come first, a POST logs out the cookie session
        // (CSRF-checked), whatever stray Bearer a page script adds.
        let (_, jar) = env.login().await;
        let csrf = jar.get("csrf_access_token").unwrap().to_owned();
        let extra = [("X-CSRF-TOKEN", csrf.as_str()), ("Authorization", "Bearer undefined")];
        let out = env.with_jar("POST", "/logout", &jar, &extra).await;
        assert_eq!(out.status, 204, "{locations}: {}", out.body);
        env.clock.advance(1);
        let refresh = format!("Bearer {}", jar.get("refresh_token_cookie").unwrap());
        get(env.gw.addr, "/refresh", &[("Authorization", &refresh)])
            .await
            .assert_problem(401, "token_revoked");
    }
}

#[tokio::test]
async fn fifty_racing_requests_with_the_same_expired_cookies_rotate_once() {
    let env = env().await;
    for round in 0..3 {
        let (_, jar) = env.login().await;
        env.clock.advance(120);
        let before = env.up.count();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (addr, cookie) = (env.gw.addr, jar.header());
            tasks.push(tokio::spawn(async move {
                get(addr, &format!("/api/race/{i}"), &[("Cookie", &cookie)]).await
            }));
        }
        let mut sets = Vec::new();
        for t in tasks {
            let resp = t.await.unwrap();
            assert_eq!(resp.status, 200, "round {round}: {}", resp.body);
            sets.push(set_cookies(&resp));
        }
        assert_eq!(sets[0].len(), 4, "round {round}: the first response set no new pair");
        assert!(
            sets.windows(2).all(|w| w[0] == w[1]),
            "round {round}: all 50 responses set identical cookies"
        );
        let seen: Vec<_> = env.up.requests()[before..].to_vec();
        assert_eq!(seen.len(), 50);
        let tokens: std::collections::HashSet<String> =
            seen.iter().map(|r| r.header("cookie").unwrap().to_owned()).collect();
        assert_eq!(tokens.len(), 1, "round {round}: every upstream hit carried the same new token");
    }
}

#[tokio::test]
async fn a_refresh_cookie_without_fid_is_ignored_not_cleared() {
    let env = env().await;
    let refresh = mint(&env.gw, jwtgate::token::TokenType::Refresh, false, T0, &serde_json::Map::new());
    let resp = get(env.gw.addr, "/api/x", &[("Cookie", &format!("refresh_token_cookie={refresh}"))]).await;
    resp.assert_problem(401, "missing_token");
    assert!(resp.all("set-cookie").is_empty());
}

#[tokio::test]
async fn a_store_failure_during_refresh_is_503_with_nothing_rotated_and_no_cookie_touched() {
    use jwtgate::store::Store;
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    let clock = Arc::new(ManualClock::new(T0));
    let memory = Arc::new(jwtgate::store::MemoryStore::new());
    let flaky = Arc::new(Flaky::new(memory.clone()));
    let cfg = base_config(&routes())
        .replace("[tokens]\n", "[tokens]\naccess_ttl = \"60s\"\n")
        .replace("[store]\n", "[cookies]\nsecure = false\n\n[store]\n");
    let gw = start_gateway_with(&cfg, up.addr, Some(clock.clone()), memory.clone(), flaky.clone()).await;
    let login = request(gw.addr, "POST", "/login", &[], "").await;
    let mut jar = Jar::default();
    jar.absorb(&login);
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let fid =
        gw.gateway.snapshot().runtime.tokens.verifier.verify(&refresh, T0).unwrap().fid.clone().unwrap();
    let before = memory.family(&fid).await.unwrap().unwrap();
    clock.advance(120);
    flaky.set_down(true);
    let hits = up.count();
    let cookie = jar.header();
    for resp in [
        get(gw.addr, "/api/x", &[("Cookie", &cookie)]).await,
        get(gw.addr, "/refresh", &[("Authorization", &format!("Bearer {refresh}"))]).await,
    ] {
        resp.assert_problem(503, "store_unavailable");
        assert!(resp.header("retry-after").is_some(), "503 carries Retry-After");
        assert!(resp.all("set-cookie").is_empty(), "no cookie touched on a store failure");
    }
    assert_eq!(up.count(), hits, "nothing reached the upstream");
    assert_eq!(memory.family(&fid).await.unwrap().unwrap(), before, "nothing rotated");
    // The store is back: the same cookies refresh normally.
    flaky.set_down(false);
    let resp = get(gw.addr, "/api/x", &[("Cookie", &cookie)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(cookie_values(&resp).len(), 4);
}

/// The config text of `env`, with `max_session` set (for a reload).
fn with_max_session(max_session: &str) -> impl Fn(String) -> String + '_ {
    move |cfg| cfg.replace("[sessions]\n", &format!("[sessions]\nmax_session = \"{max_session}\"\n"))
}

/// Installs `cfg` as a reload would.
fn reload(env: &Env, cfg: String) {
    let text = cfg.replace("{upstream}", &env.up.addr.to_string());
    env.gw.gateway.swap(jwtgate::config::parse(&text, std::path::Path::new(".")).unwrap());
}

/// `env`'s config with `max_session` set.
fn session_config(max_session: &str) -> String {
    with_max_session(max_session)(env_config(&routes()))
}

/// A reload that raised `max_session` lengthens running sessions at their next
/// rotation: the family lasts as long as the tokens it issued, so it keeps
/// rotating past the end it began with, and a reuse revocation still stops
/// its newest access token there.
#[tokio::test]
async fn a_raised_max_session_lengthens_running_sessions_and_their_revocation() {
    let env = env_edited(&routes(), with_max_session("1h")).await;
    let (_, old) = env.login().await;
    reload(&env, session_config("2h"));
    env.clock.advance(3500);
    let first = env.with_jar("GET", "/api/a", &old, &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let mut rotated_away = old.clone();
    rotated_away.absorb(&first);
    env.clock.advance(200); // past the hour the session began with
    let second = env.with_jar("GET", "/api/b", &rotated_away, &[]).await;
    assert_eq!(second.status, 200, "rotates past the first end: {}", second.body);
    assert_eq!(set_cookies(&second).len(), 4);
    let mut jar = rotated_away.clone();
    jar.absorb(&second);
    let newest = env.claims(jar.get("access_token_cookie").unwrap());
    assert!(newest.exp.unwrap() as i64 > T0 + 3700);
    env.clock.advance(31); // past reuse_grace
    let reuse = env.with_jar("GET", "/api/c", &rotated_away, &[]).await;
    reuse.assert_problem(401, "refresh_reuse");
    env.gw.store.purge(T0 + 3731, 30).await.unwrap();
    let resp = env.with_jar("GET", "/api/d", &jar, &[]).await;
    resp.assert_problem(401, "token_revoked");
}

/// A reload that lowered `max_session` below a session's age ends it: no
/// rotation into tokens that are born expired.
#[tokio::test]
async fn a_lowered_max_session_ends_older_sessions() {
    let env = env().await;
    let (_, jar) = env.login().await;
    env.clock.advance(1800);
    reload(&env, session_config("20m"));
    let seen = env.up.count();
    let resp = env.with_jar("GET", "/api/a", &jar, &[]).await;
    resp.assert_problem(401, "invalid_token");
    assert!(set_cookies(&resp).is_empty(), "nothing rotated: {:?}", set_cookies(&resp));
    assert_eq!(env.up.count(), seen, "the upstream was not reached");
}

/// A config with `rotate_refresh = false`.
fn rotation_off(cfg: String) -> String {
    cfg.replace("[sessions]\n", "[sessions]\nrotate_refresh = false\n")
}

/// `env`'s config with `rotate_refresh = false` and `max_session` set.
fn no_rotation(max_session: &str) -> String {
    rotation_off(session_config(max_session))
}

/// Without rotation, the explicit refresh mints only an access token: a
/// lowered `max_session` ends the session there too, rather than minting a
/// token that is born expired.
#[tokio::test]
async fn without_rotation_a_lowered_max_session_ends_older_sessions() {
    let env = env_edited(&routes(), rotation_off).await;
    let (login, _) = env.login().await;
    let refresh = format!("Bearer {}", login.json()["refresh_token"].as_str().unwrap());
    env.clock.advance(1800);
    reload(&env, no_rotation("20m"));
    let resp = get(env.gw.addr, "/refresh", &[("Authorization", &refresh)]).await;
    resp.assert_problem(401, "invalid_token");
}

/// Without rotation, after a reload raised `max_session`, the access token
/// the explicit refresh mints ends with the refresh token that stays (and so
/// with the family): a reuse revocation, which lasts until the family's end,
/// still covers it.
#[tokio::test]
async fn without_rotation_a_new_access_token_ends_with_its_refresh_token() {
    let env = env_edited(&routes(), with_max_session("1h")).await;
    let (login, old) = env.login().await;
    let login_refresh = format!("Bearer {}", login.json()["refresh_token"].as_str().unwrap());
    env.clock.advance(100);
    let implicit = env.with_jar("GET", "/api/a", &old, &[]).await;
    assert_eq!(set_cookies(&implicit).len(), 4);
    let mut current = old.clone();
    current.absorb(&implicit);
    let current_refresh = format!("Bearer {}", current.get("refresh_token_cookie").unwrap());
    reload(&env, no_rotation("2h"));
    env.clock.advance(3490); // T0 + 3590: 10 s left of the family's hour
    let kept = get(env.gw.addr, "/refresh", &[("Authorization", &current_refresh)]).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let access = kept.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(env.claims(&access).exp, Some((T0 + 3600) as f64), "ends with the refresh token");
    env.clock.advance(5);
    get(env.gw.addr, "/refresh", &[("Authorization", &login_refresh)])
        .await
        .assert_problem(401, "refresh_reuse");
    let resp = get(env.gw.addr, "/api/d", &[("Authorization", &format!("Bearer {access}"))]).await;
    resp.assert_problem(401, "token_revoked");
}

/// An app that logs the user out by clearing its cookies (flask-jwt-extended's
/// `unset_jwt_cookies`, on a route jwtgate guards) may get a request jwtgate
/// refreshed on the way. The app's Set-Cookie for a name is the last word:
/// jwtgate's new cookies after it would have kept the browser logged in. A
/// cookie of another name leaves jwtgate's in place.
#[tokio::test]
async fn an_app_clearing_its_cookies_on_an_implicitly_refreshed_request_has_the_last_word() {
    let env = env().await;
    let (_, jar) = env.login().await;
    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    env.clock.advance(120);
    let names = ["access_token_cookie", "refresh_token_cookie", "csrf_access_token", "csrf_refresh_token"];
    let clears: Vec<String> = names.iter().map(|n| format!("{n}=; Max-Age=0; Path=/")).collect();
    env.up.respond_with.lock().unwrap().extend(clears.iter().map(|c| ("Set-Cookie".to_owned(), c.clone())));
    let resp = env.with_jar("POST", "/api/logout", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let forwarded = env.up.last().header("cookie").unwrap().to_owned();
    assert!(!forwarded.contains(jar.get("access_token_cookie").unwrap()), "the app got the refreshed token");
    assert_eq!(set_cookies(&resp), set_cookies_of(&clears), "only the app's Set-Cookie");
    let mut after = jar.clone();
    after.absorb(&resp);
    assert!(after.0.is_empty(), "the browser is logged out: {after:?}");

    // Another cookie: jwtgate's four cookies as well as the app's. Another
    // name, or the same name at another Path (a browser keeps both): had
    // jwtgate's new pair been left out, the browser would keep the refresh
    // token just rotated away, and its next refresh would read as reuse.
    for other in ["theme=dark; Path=/", "refresh_token_cookie=; Max-Age=0; Path=/token/refresh"] {
        env.up.respond_with.lock().unwrap().truncate(1); // the identity header, for the login
        let (_, jar) = env.login().await;
        env.clock.advance(120);
        env.up.respond_with.lock().unwrap().push(("Set-Cookie".into(), other.into()));
        let resp = env.with_jar("GET", "/api/page", &jar, &[]).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let lines = set_cookies(&resp);
        assert_eq!(lines.len(), 5, "{other}: {lines:?}");
        assert!(lines.iter().any(|l| l == other), "{lines:?}");
        let rotated = lines
            .iter()
            .find(|l| l.starts_with("refresh_token_cookie=ey"))
            .expect("jwtgate's refresh cookie");
        assert!(!rotated.contains(jar.get("refresh_token_cookie").unwrap()), "{rotated}");
    }
}

fn set_cookies_of(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

/// Without rotation, an explicit refresh is a use of the session, as a
/// rotation is: a client refreshing more often than `idle_timeout` keeps its
/// session (it was cut off `idle_timeout` after its login), and one that
/// stops refreshing for longer loses it.
#[tokio::test]
async fn without_rotation_each_explicit_refresh_keeps_the_session_from_idling_out() {
    let idle = |cfg: String| rotation_off(cfg).replace("[sessions]\n", "[sessions]\nidle_timeout = \"1h\"\n");
    let env = env_edited(&routes(), idle).await;
    let (login, _) = env.login().await;
    let refresh_token = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {refresh_token}");
    for round in 1..=3 {
        env.clock.advance(50 * 60);
        let resp = get(env.gw.addr, "/refresh", &[("Authorization", &bearer)]).await;
        assert_eq!(resp.status, 200, "refresh {round}, {} min after login: {}", round * 50, resp.body);
        assert_eq!(resp.json()["refresh_token"], refresh_token.as_str(), "the refresh token stays");
    }
    env.clock.advance(3601);
    let resp = get(env.gw.addr, "/refresh", &[("Authorization", &bearer)]).await;
    resp.assert_problem(401, "invalid_token");
    env.assert_counted(&[
        r#"jwtgate_refresh_total{mode="explicit",outcome="renewed"} 3"#,
        r#"jwtgate_refresh_total{mode="explicit",outcome="dead"} 1"#,
    ]);
}

/// By cookie, logout falls back to the refresh cookie when the access cookie
/// beside it no longer verifies (here its signature is broken; in life, a key
/// since dropped): the session is revoked and the cookies cleared, where the
/// logout was refused with 401 and the refresh cookie stayed usable. A pair
/// of which nothing verifies is still refused.
#[tokio::test]
async fn logout_by_cookie_revokes_the_session_when_only_the_refresh_cookie_verifies() {
    let env = env().await;
    let (_, mut jar) = env.login().await;
    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    let refresh = format!("Bearer {}", jar.get("refresh_token_cookie").unwrap());
    let broken = |token: &str| format!("{}{}", &token[..token.len() - 4], "AAAA");
    let access = broken(jar.get("access_token_cookie").unwrap());
    jar.0.insert("access_token_cookie".into(), access);
    let mut nothing_verifies = jar.clone();
    let refresh_cookie = broken(jar.get("refresh_token_cookie").unwrap());
    nothing_verifies.0.insert("refresh_token_cookie".into(), refresh_cookie);
    let refused = env.with_jar("POST", "/logout", &nothing_verifies, &[("X-CSRF-TOKEN", &csrf)]).await;
    refused.assert_problem(401, "invalid_token");
    env.with_jar("POST", "/logout", &jar, &[]).await.assert_problem(403, "csrf_failed");
    let out = env.with_jar("POST", "/logout", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert_cleared(&out);
    get(env.gw.addr, "/refresh", &[("Authorization", &refresh)]).await.assert_problem(401, "token_revoked");
}
