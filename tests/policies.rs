//! Every policy × every credential state, against the real gateway and a real
//! upstream: what the client got AND what the upstream received.

mod common;

use common::raw::{get, request};
use common::*;
use jwtgate::token::TokenType;
use serde_json::{json, Map, Value};

/// Beside [`PUBLIC_AND_API`].
const MORE_ROUTES: &str = r#"
[[routes]]
path = "/account/**"
policy = "fresh"
upstream = "app"

[[routes]]
path = "/recent/**"
policy = "fresh"
max_age = "10m"
upstream = "app"

[[routes]]
path = "/app-refresh"
policy = "refresh"
upstream = "app"

[[routes]]
path = "/admin/**"
policy = "access"
upstream = "app"
require = { roles = "admin" }
"#;

fn routes() -> String {
    format!("{PUBLIC_AND_API}{MORE_ROUTES}")
}

struct Env {
    up: Upstream,
    gw: TestGateway,
}

async fn env() -> Env {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(&routes()), up.addr, None).await;
    Env { up, gw }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Env {
    fn mint_at(&self, token_type: TokenType, fresh: bool, at: i64, extra: &Map<String, Value>) -> String {
        common::mint(&self.gw, token_type, fresh, at, extra)
    }

    fn mint(&self, token_type: TokenType, fresh: bool) -> String {
        self.mint_at(token_type, fresh, now(), &Map::new())
    }

    async fn bearer(&self, path: &str, token: &str) -> RawResponse {
        get(self.gw.addr, path, &[("Authorization", &format!("Bearer {token}"))]).await
    }
}

/// A token signed with another key: the signature part of a token from a
/// gateway configured with a different secret.
fn bad_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[3] = if sig[3] == 'A' { 'B' } else { 'A' };
    format!("{head}.{}", sig.into_iter().collect::<String>())
}

#[derive(Clone, Copy, Debug)]
enum State {
    None,
    Valid,
    Expired,
    WrongType,
    BadSignature,
    Revoked,
    NotFresh,
}

async fn credential(env: &Env, path: &str, state: State) -> Option<String> {
    let wants_refresh = path.starts_with("/app-refresh");
    let (right, wrong) = if wants_refresh {
        (TokenType::Refresh, TokenType::Access)
    } else {
        (TokenType::Access, TokenType::Refresh)
    };
    let token = match state {
        State::None => return None,
        State::Valid => env.mint(right, true),
        State::Expired => env.mint_at(right, true, now() - 3 * 86400 * 31, &Map::new()),
        State::WrongType => env.mint(wrong, true),
        State::BadSignature => bad_signature(&env.mint(right, true)),
        State::Revoked => {
            let t = env.mint(right, true);
            let claims = env.gw.gateway.snapshot().runtime.tokens.verifier.verify(&t, now()).unwrap();
            use jwtgate::store::Store;
            env.gw.store.revoke_jti(claims.jti.as_deref().unwrap(), now() + 3600, now()).await.unwrap();
            t
        }
        State::NotFresh => env.mint(right, false),
    };
    Some(token)
}

async fn call(env: &Env, path: &str, state: State) -> RawResponse {
    match credential(env, path, state).await {
        None => get(env.gw.addr, path, &[]).await,
        Some(t) => env.bearer(path, &t).await,
    }
}

/// (path, state, expected status, expected error code or "" for a 200)
const MATRIX: &[(&str, State, u16, &str)] = &[
    ("/public/x", State::None, 200, ""),
    ("/public/x", State::Valid, 200, ""),
    ("/public/x", State::Expired, 200, ""),
    ("/public/x", State::WrongType, 200, ""),
    ("/public/x", State::BadSignature, 200, ""),
    ("/public/x", State::Revoked, 200, ""),
    ("/public/x", State::NotFresh, 200, ""),
    ("/api/x", State::None, 401, "missing_token"),
    ("/api/x", State::Valid, 200, ""),
    ("/api/x", State::Expired, 401, "token_expired"),
    ("/api/x", State::WrongType, 401, "wrong_token_type"),
    ("/api/x", State::BadSignature, 401, "invalid_token"),
    ("/api/x", State::Revoked, 401, "token_revoked"),
    ("/api/x", State::NotFresh, 200, ""),
    ("/account/x", State::None, 401, "missing_token"),
    ("/account/x", State::Valid, 200, ""),
    ("/account/x", State::Expired, 401, "token_expired"),
    ("/account/x", State::WrongType, 401, "wrong_token_type"),
    ("/account/x", State::BadSignature, 401, "invalid_token"),
    ("/account/x", State::Revoked, 401, "token_revoked"),
    ("/account/x", State::NotFresh, 401, "fresh_token_required"),
    ("/app-refresh", State::None, 401, "missing_token"),
    ("/app-refresh", State::Valid, 200, ""),
    ("/app-refresh", State::Expired, 401, "token_expired"),
    ("/app-refresh", State::WrongType, 401, "wrong_token_type"),
    ("/app-refresh", State::BadSignature, 401, "invalid_token"),
    ("/app-refresh", State::Revoked, 401, "token_revoked"),
    ("/app-refresh", State::NotFresh, 200, ""),
];

#[tokio::test]
async fn every_policy_against_every_credential_state() {
    let env = env().await;
    for &(path, state, status, code) in MATRIX {
        let before = env.up.count();
        let resp = call(&env, path, state).await;
        let ctx = format!("{path} with {state:?}");
        if status == 200 {
            assert_eq!(resp.status, 200, "{ctx}: {}", resp.body);
            assert_eq!(resp.body, "upstream ok", "{ctx}");
            assert_eq!(env.up.count(), before + 1, "{ctx}: upstream not reached");
            let seen = env.up.last();
            if path.starts_with("/public") {
                assert_eq!(seen.header("x-auth-subject"), None, "{ctx}: public routes carry no claims");
            } else {
                assert_eq!(seen.header("x-auth-subject"), Some("alice"), "{ctx}");
            }
        } else {
            resp.assert_problem(status, code);
            assert_eq!(env.up.count(), before, "{ctx}: a refused request reached the upstream");
            assert_eq!(resp.header("www-authenticate"), Some(challenge(code)), "{ctx}");
        }
    }
}

/// The challenge of each refusal, exactly as DESIGN §9's table writes it.
fn challenge(code: &str) -> &'static str {
    match code {
        "missing_token" => r#"Bearer realm="jwtgate""#,
        "invalid_token" | "wrong_token_type" | "token_revoked" | "refresh_reuse" => {
            r#"Bearer error="invalid_token""#
        }
        "token_expired" => r#"Bearer error="invalid_token", error_description="The access token expired""#,
        "fresh_token_required" => r#"Bearer error="insufficient_user_authentication""#,
        "forbidden" => r#"Bearer error="insufficient_scope""#,
        other => panic!("{other} has no challenge"),
    }
}

#[tokio::test]
async fn fresh_header_reports_evaluated_freshness() {
    let env = env().await;
    let resp = env.bearer("/api/x", &env.mint(TokenType::Access, false)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(env.up.last().header("x-auth-fresh"), Some("false"));
    let resp = env.bearer("/api/x", &env.mint(TokenType::Access, true)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(env.up.last().header("x-auth-fresh"), Some("true"));
}

#[tokio::test]
async fn not_fresh_gets_the_rfc9470_challenge_with_max_age() {
    let env = env().await;
    let resp = env.bearer("/account/x", &env.mint(TokenType::Access, false)).await;
    resp.assert_problem(401, "fresh_token_required");
    assert_eq!(resp.header("www-authenticate"), Some(r#"Bearer error="insufficient_user_authentication""#));
    let resp = env.bearer("/recent/x", &env.mint(TokenType::Access, false)).await;
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_user_authentication", max_age=600"#)
    );
}

#[tokio::test]
async fn max_age_counts_from_the_login() {
    let env = env().await;
    // Fresh, still valid, but issued (logged in) 11 minutes ago: too old for max_age 10m.
    let old = env.mint_at(TokenType::Access, true, now() - 660, &Map::new());
    env.bearer("/recent/x", &old).await.assert_problem(401, "fresh_token_required");
    let recent = env.mint_at(TokenType::Access, true, now() - 60, &Map::new());
    assert_eq!(env.bearer("/recent/x", &recent).await.status, 200);
    // A login time in the future would pass max_age for ever; within the
    // leeway (clock skew) it counts as now.
    let n = now();
    let with_login = |at: i64| {
        let payload = format!(
            r#"{{"sub":"alice","type":"access","fresh":true,"jti":"j-{at}","iat":{n},"exp":{},"auth_time":{at}}}"#,
            n + 300
        );
        hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &payload)
    };
    env.bearer("/recent/x", &with_login(n + 10 * 365 * 86_400))
        .await
        .assert_problem(401, "fresh_token_required");
    assert_eq!(env.bearer("/recent/x", &with_login(n + 3)).await.status, 200);
}

#[tokio::test]
async fn require_checks_scalar_and_array_claims() {
    let env = env().await;
    let mut extra = Map::new();
    extra.insert("roles".into(), json!(["dev", "admin"]));
    let admin = env.mint_at(TokenType::Access, false, now(), &extra);
    let resp = env.bearer("/admin/panel", &admin).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    extra.insert("roles".into(), json!("dev"));
    let dev = env.mint_at(TokenType::Access, false, now(), &extra);
    let resp = env.bearer("/admin/panel", &dev).await;
    resp.assert_problem(403, "forbidden");
    assert_eq!(resp.header("www-authenticate"), Some(r#"Bearer error="insufficient_scope""#));
    // An array needs the value in it, not just to be there.
    extra.insert("roles".into(), json!(["dev", "ops"]));
    let team = env.mint_at(TokenType::Access, false, now(), &extra);
    env.bearer("/admin/panel", &team).await.assert_problem(403, "forbidden");
    let plain = env.mint(TokenType::Access, true);
    env.bearer("/admin/panel", &plain).await.assert_problem(403, "forbidden");
    assert_eq!(env.up.count(), 1, "only the admin's request reached the app");
    // Each 403 is counted by its reason, as the 401s are.
    let text = env.gw.gateway.metrics.encode();
    let line = r#"jwtgate_auth_failures_total{reason="forbidden"} 3"#;
    assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
}

/// Where `required_claims` leaves out `iat`, a fresh token may carry no
/// login time at all: `max_age` cannot count from it, so it refuses.
#[tokio::test]
async fn max_age_refuses_a_fresh_token_with_no_login_time() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(&routes()).replace("[tokens]\n", "[tokens]\nrequired_claims = [\"exp\"]\n");
    let gw = start_gateway(&cfg, up.addr, None).await;
    let payload = format!(r#"{{"sub":"alice","type":"access","fresh":true,"exp":{}}}"#, now() + 300);
    let no_login = format!("Bearer {}", hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &payload));
    assert_eq!(get(gw.addr, "/api/x", &[("Authorization", &no_login)]).await.status, 200, "a valid token");
    get(gw.addr, "/recent/x", &[("Authorization", &no_login)])
        .await
        .assert_problem(401, "fresh_token_required");
    assert_eq!(up.count(), 1);
}

/// `?token=` is a credential only where `query` is a configured location.
#[tokio::test]
async fn a_query_token_is_no_credential_unless_the_query_is_a_location() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(&routes()).replace(
        "locations = [\"headers\", \"cookies\", \"query\"]",
        "locations = [\"headers\", \"cookies\"]",
    );
    assert!(!cfg.contains("\"query\"]"), "{cfg}");
    let gw = start_gateway(&cfg, up.addr, None).await;
    let t = common::mint(&gw, TokenType::Access, false, now(), &Map::new());
    get(gw.addr, &format!("/api/x?token={t}"), &[]).await.assert_problem(401, "missing_token");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn tokens_are_found_in_cookie_and_query_and_query_token_is_removed() {
    let env = env().await;
    let t = env.mint(TokenType::Access, false);
    let resp =
        get(env.gw.addr, "/api/c", &[("Cookie", &format!("theme=dark; access_token_cookie={t}"))]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(env.up.last().header("x-auth-subject"), Some("alice"));
    let resp = get(env.gw.addr, &format!("/api/q?a=1&token={t}&b=2"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(env.up.last().target, "/api/q?a=1&b=2");
    // A second token under a name a form parser decodes to `token` is no
    // way to hand the app a token jwtgate did not verify.
    let resp = get(env.gw.addr, &format!("/api/q?token={t}&%74oken=FORGED&t%6Fken=X&b=2"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(env.up.last().target, "/api/q?b=2");
    // Nor is a `;`, which some parsers read as `&`.
    let resp = get(env.gw.addr, &format!("/api/q?x=1;token=FORGED&token={t}"), &[]).await;
    assert_eq!(resp.status, 401, "the first query token decides: {}", resp.body);
    let resp = get(env.gw.addr, &format!("/api/q?token={t}&x=1;token=FORGED"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(env.up.last().target, "/api/q?x=1");
}

#[tokio::test]
async fn first_location_with_a_token_decides() {
    let env = env().await;
    let good = env.mint(TokenType::Access, false);
    let resp = get(
        env.gw.addr,
        "/api/x",
        &[("Authorization", "Bearer not.a.token"), ("Cookie", &format!("access_token_cookie={good}"))],
    )
    .await;
    resp.assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn duplicate_authorization_or_auth_cookie_is_a_bad_request() {
    let env = env().await;
    let t = env.mint(TokenType::Access, false);
    let auth = format!("Bearer {t}");
    get(env.gw.addr, "/api/x", &[("Authorization", &auth), ("Authorization", &auth)])
        .await
        .assert_problem(400, "bad_request");
    let c = format!("access_token_cookie={t}; access_token_cookie={t}");
    get(env.gw.addr, "/api/x", &[("Cookie", &c)]).await.assert_problem(400, "bad_request");
    // Twice as an app that trims names reads them (compat_python.rs has the apps).
    let c = format!("x=1;  access_token_cookie={t}; access_token_cookie={t}");
    get(env.gw.addr, "/api/x", &[("Cookie", &c)]).await.assert_problem(400, "bad_request");
    // Alone, such a spelling is not the cookie (DESIGN 7: names compare as raw bytes).
    let c = format!("x=1;  access_token_cookie={t}");
    get(env.gw.addr, "/api/x", &[("Cookie", &c)]).await.assert_problem(401, "missing_token");
    assert_eq!(env.up.count(), 0);
}

#[tokio::test]
async fn cookie_authenticated_unsafe_request_needs_the_csrf_header() {
    let env = env().await;
    let t = env.mint(TokenType::Access, false);
    let cookie = format!("access_token_cookie={t}");
    let resp = request(env.gw.addr, "POST", "/api/x", &[("Cookie", &cookie)], "{}").await;
    resp.assert_problem(403, "csrf_failed");
    // The same token as a bearer header needs no CSRF token.
    let resp =
        request(env.gw.addr, "POST", "/api/x", &[("Authorization", &format!("Bearer {t}"))], "{}").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(env.up.last().body, "{}");
}

#[tokio::test]
async fn login_url_redirects_browser_navigations_only() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(&format!("[errors]\nlogin_url = \"/login\"\n{}", routes()));
    let gw = start_gateway(&cfg, up.addr, None).await;
    let resp = get(gw.addr, "/api/page?x=1", &[("Accept", "text/html,application/xhtml+xml")]).await;
    assert_eq!(resp.status, 303);
    assert_eq!(resp.header("location"), Some("/login?next=%2Fapi%2Fpage%3Fx%3D1"));
    let resp =
        get(gw.addr, "/api/page", &[("Accept", "text/html"), ("X-Requested-With", "XMLHttpRequest")]).await;
    resp.assert_problem(401, "missing_token");
    let resp = request(gw.addr, "POST", "/api/page", &[("Accept", "text/html")], "").await;
    resp.assert_problem(401, "missing_token");
    // A query token leaves `next` even when a cookie decided (here a bad
    // one): login_url may be another site's, with logs of its own.
    let resp = get(
        gw.addr,
        "/api/page?token=secret.query.token&x=1",
        &[("Accept", "text/html"), ("Cookie", "access_token_cookie=not.a.token")],
    )
    .await;
    assert_eq!(resp.status, 303, "{}", resp.body);
    assert_eq!(resp.header("location"), Some("/login?next=%2Fapi%2Fpage%3Fx%3D1"));
    // Where the query is no token location (the default), `token=` is the
    // app's own parameter, an invitation link's say, and `next` keeps it.
    let cfg = cfg.replace(
        "locations = [\"headers\", \"cookies\", \"query\"]",
        "locations = [\"headers\", \"cookies\"]",
    );
    let gw = start_gateway(&cfg, up.addr, None).await;
    let resp = get(gw.addr, "/api/invites/accept?token=XYZ", &[("Accept", "text/html")]).await;
    assert_eq!(resp.status, 303, "{}", resp.body);
    assert_eq!(resp.header("location"), Some("/login?next=%2Fapi%2Finvites%2Faccept%3Ftoken%3DXYZ"));
}

/// The rest of the navigation rule: a HEAD is a page load too; a fetch that
/// says it is one (`Sec-Fetch-Mode: cors`) gets the 401 whatever it accepts;
/// a 403 is an answer for a logged-in user, not a reason to log in; and a
/// `login_url` with a query of its own gets `&next=`.
#[tokio::test]
async fn login_url_keeps_its_query_takes_head_and_leaves_fetches_and_403s_alone() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(
        &base_config(&format!("[errors]\nlogin_url = \"/login?app=1\"\n{}", routes())),
        up.addr,
        None,
    )
    .await;
    let html = ("Accept", "text/html");
    let resp = get(gw.addr, "/api/page?x=1", &[html]).await;
    assert_eq!(resp.status, 303, "{}", resp.body);
    assert_eq!(resp.header("location"), Some("/login?app=1&next=%2Fapi%2Fpage%3Fx%3D1"));
    let head = request(gw.addr, "HEAD", "/api/page", &[html], "").await;
    assert_eq!((head.status, head.header("location")), (303, Some("/login?app=1&next=%2Fapi%2Fpage")));
    get(gw.addr, "/api/page", &[html, ("Sec-Fetch-Mode", "cors")]).await.assert_problem(401, "missing_token");
    let nav = get(gw.addr, "/api/page", &[html, ("Sec-Fetch-Mode", "navigate")]).await;
    assert_eq!(nav.status, 303, "a navigation is still sent to log in");
    let t = common::mint(&gw, TokenType::Access, false, now(), &Map::new());
    let cookie = format!("access_token_cookie={t}");
    let refused = get(gw.addr, "/admin/panel", &[html, ("Cookie", &cookie)]).await;
    refused.assert_problem(403, "forbidden");
    assert!(refused.header("location").is_none());
    assert_eq!(up.count(), 0);
}
