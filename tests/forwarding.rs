//! DESIGN.md §8: what the upstream receives. Spoofed identity never arrives;
//! jwtgate's own headers always do.

mod common;

use common::raw::{get, request};
use common::*;
use jwtgate::token::TokenType;
use serde_json::Map;

/// Beside [`PUBLIC_AND_API`].
const MORE_ROUTES: &str = r#"
[[routes]]
path = "/app-refresh"
policy = "refresh"
upstream = "app"
"#;

fn routes() -> String {
    format!("{PUBLIC_AND_API}{MORE_ROUTES}")
}

async fn env(extra: &str) -> (Upstream, TestGateway) {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(&format!("{extra}\n{}", routes())), up.addr, None).await;
    (up, gw)
}

fn token(gw: &TestGateway) -> String {
    mint(gw, TokenType::Access, false, unix_now(), &Map::new())
}

const SPOOFS: &[(&str, &str)] = &[
    ("X-Auth-Subject", "admin"),
    ("X_Auth_Subject", "admin"),
    ("x-auth-fresh", "true"),
    ("X-Auth-Roles", "admin"),
    ("X-Jwtgate-Identity", r#"{"sub":"admin"}"#),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-Original-URI", "/admin"),
    ("X-Envoy-Original-Path", "/admin"),
    ("X-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Client-IP", "1.2.3.4"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Server", "evil.test"),
    ("X-Forwarded-Uri", "/admin"),
    ("X-Real-IP", "1.2.3.4"),
    ("True-Client-IP", "1.2.3.4"),
    ("X-Forwarded-For", "1.2.3.4"),
    ("X-Forwarded-Host", "evil.test"),
    ("Forwarded", "for=1.2.3.4"),
    // Other spellings of the scheme and method an app may read.
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Scheme", "https"),
    ("X-Forwarded-Protocol", "ssl"),
    ("Front-End-Https", "on"),
    ("X-Forwarded-Method", "DELETE"),
    ("X-Scheme", "https"),
    ("X-Url-Scheme", "https"),
    // Mount points that middlewares strip from the path they route on.
    ("X-Script-Name", "/public"),
    ("X-Forwarded-Path", "/admin"),
    // App servers that read `_` as `-` would merge these into the real ones.
    ("X_Real_IP", "6.6.6.6"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("x_forwarded_proto", "https"),
    ("X_Forwarded_Host", "evil.test"),
    ("true_client_ip", "6.6.6.6"),
];

fn assert_clean(seen: &Recorded, subject: Option<&str>) {
    assert_eq!(seen.header("x-auth-subject"), subject, "{:?}", seen.headers);
    assert!(seen.headers.get("x_auth_subject").is_none());
    assert!(seen.headers.get("x-auth-roles").is_none());
    assert!(seen.headers.get("x-jwtgate-identity").is_none());
    assert!(seen.headers.get("x-original-url").is_none());
    assert!(seen.headers.get("x-rewrite-url").is_none());
    assert!(seen.headers.get("x-http-method-override").is_none());
    assert!(seen.headers.get("x-real-ip").is_none());
    assert!(seen.headers.get("true-client-ip").is_none());
    for name in [
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-forwarded-protocol",
        "front-end-https",
        "x-scheme",
        "x-url-scheme",
        "x-script-name",
        "x-forwarded-path",
        // The rest of DESIGN §8's lists: always removed, and removed from a
        // peer that is not a trusted proxy.
        "x-original-uri",
        "x-envoy-original-path",
        "x-method-override",
        "x-http-method",
        "x-client-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-uri",
    ] {
        assert!(seen.headers.get(name).is_none(), "{name} reached the upstream: {:?}", seen.headers);
    }
    assert!(seen.headers.get("x-forwarded-method").is_none());
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("forwarded"), Some("for=127.0.0.1;proto=http;host=app.test"));
    assert_eq!(seen.header("host"), Some("app.test"), "the client's Host reaches the upstream unchanged");
    let underscored: Vec<&str> =
        seen.headers.keys().map(|k| k.as_str()).filter(|k| k.contains('_')).collect();
    assert!(underscored.is_empty(), "{underscored:?} reached the upstream");
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_public_routes() {
    let (up, gw) = env("").await;
    let resp = get(gw.addr, "/public/x", SPOOFS).await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert_clean(&seen, None);
    assert!(seen.headers.get("x-auth-fresh").is_none());
}

#[tokio::test]
async fn spoofed_identity_headers_are_replaced_on_protected_routes() {
    let (up, gw) = env("").await;
    let auth = format!("Bearer {}", token(&gw));
    let mut headers = SPOOFS.to_vec();
    headers.push(("Authorization", &auth));
    let resp = get(gw.addr, "/api/x", &headers).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last();
    assert_clean(&seen, Some("alice"));
    assert_eq!(seen.header("x-auth-fresh"), Some("false"));
    assert_eq!(seen.headers.get_all("x-auth-subject").iter().count(), 1);
    assert_eq!(seen.header("authorization"), Some(auth.as_str()), "token = keep forwards the bearer");
}

#[tokio::test]
async fn headers_named_in_connection_are_dropped() {
    let (up, gw) = env("").await;
    let resp =
        get(gw.addr, "/public/x", &[("Connection", "close, X-Secret"), ("X-Secret", "1"), ("X-Kept", "2")])
            .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert!(seen.headers.get("x-secret").is_none());
    assert_eq!(seen.header("x-kept"), Some("2"));
}

/// Hop-by-hop request headers end at jwtgate, over HTTP/1.1 and HTTP/2 alike
/// (HTTP/2 allows `te: trailers`, which an HTTP/1.1 upstream must not get).
#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let (up, gw) = env("").await;
    let hop_by_hop = [
        ("TE", "trailers"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Trailer", "X-T"),
    ];
    let resp = get(gw.addr, "/public/x", &hop_by_hop).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last();
    for name in ["te", "keep-alive", "proxy-connection", "trailer"] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream: {:?}", seen.headers);
    }
    let (mut h2, _conn) = common::client::h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test/public/h2")
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    let seen = up.last();
    assert_eq!(seen.target, "/public/h2");
    assert_eq!(seen.header("te"), None, "{:?}", seen.headers);
}

/// The names jwtgate writes itself cannot be listed away in `Connection`:
/// hop-by-hop names are removed before jwtgate adds its own headers.
#[tokio::test]
async fn connection_cannot_name_away_the_headers_jwtgate_writes() {
    let (up, gw) = env("").await;
    let auth = format!("Bearer {}", token(&gw));
    let listed =
        "X-Forwarded-For, Forwarded, X-Forwarded-Host, X-Forwarded-Proto, X-Auth-Subject, X-Auth-Fresh";
    let resp = get(gw.addr, "/api/x", &[("Authorization", &auth), ("Connection", listed)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{:?}", seen.headers);
    assert_eq!(seen.header("forwarded"), Some("for=127.0.0.1;proto=http;host=app.test"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-fresh"), Some("false"));
}

#[tokio::test]
async fn trusted_proxy_chain_is_kept_and_extended() {
    let (up, gw) = env("").await;
    drop(gw);
    let cfg = base_config(&routes()).replace("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n");
    let gw = start_gateway(&cfg, up.addr, None).await;
    let sent = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Script-Name", "/app"),
    ];
    let resp = get(gw.addr, "/public/x", &sent).await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.9"));
    assert_eq!(seen.header("x-forwarded-ssl"), Some("on"), "the proxy in front terminated TLS");
    assert_eq!(seen.header("x-script-name"), Some("/app"), "the proxy in front mounts the app");
}

/// gunicorn (by default, from 127.0.0.1) takes a `SCRIPT_NAME` header as the
/// mount point and routes on the path after it: `GET /public/api/x` with
/// `SCRIPT_NAME: /public` runs the app's `/api/x` view under the public
/// route's rules. Its `forwarder_headers` default also lets `PATH_INFO`
/// through. Neither reaches the upstream, in any spelling, from any peer.
#[tokio::test]
async fn a_script_name_header_never_reaches_the_upstream() {
    let spellings = [
        ("SCRIPT_NAME", "/public"),
        ("script_name", "/public"),
        ("Script-Name", "/public"),
        ("PATH_INFO", "/api/x"),
        ("path-info", "/api/x"),
    ];
    let trusted =
        base_config(&routes()).replace("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n");
    for config in [base_config(&routes()), trusted] {
        let up = Upstream::start(UpstreamBehavior::Ok).await;
        let gw = start_gateway(&config, up.addr, None).await;
        for (name, value) in spellings {
            let resp = get(gw.addr, "/public/api/x", &[(name, value)]).await;
            assert_eq!(resp.status, 200, "{name}: {}", resp.body);
            let seen = up.last();
            assert_eq!(seen.target, "/public/api/x");
            for sent in ["script_name", "script-name", "path_info", "path-info"] {
                assert!(seen.headers.get(sent).is_none(), "{name} reached the upstream: {:?}", seen.headers);
            }
        }
    }
}

#[tokio::test]
async fn token_strip_removes_bearer_and_access_cookie_and_refresh_cookie_by_default() {
    let (up, gw) = env("[forward]\ntoken = \"strip\"").await;
    let t = token(&gw);
    let cookie = format!("a=1; access_token_cookie={t}; refresh_token_cookie=r; b=2");
    let resp =
        get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {t}")), ("Cookie", &cookie)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last();
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.header("cookie"), Some("a=1; b=2"));

    // Spellings an app reads as the names (trimmed, PHP's `.` for `_`) go too.
    let cookie = "a=1;  access_token_cookie=FORGED; refresh.token.cookie=R; b=2";
    let resp = get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {t}")), ("Cookie", cookie)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("cookie"), Some("a=1; b=2"));
}

#[tokio::test]
async fn token_strip_removes_an_unverified_query_token_when_the_header_decided() {
    let target = "/api/x?a=1&token=forged.not.verified&%74oken=F&b=2";
    let (up, gw) = env("[forward]\ntoken = \"strip\"").await;
    let bearer = format!("Bearer {}", token(&gw));
    assert_eq!(get(gw.addr, target, &[("Authorization", &bearer)]).await.status, 200);
    assert_eq!(up.last().target, "/api/x?a=1&b=2", "every spelling of the query token goes");

    // `keep` forwards what it did not use, as sent.
    let (up, gw) = env("").await;
    let bearer = format!("Bearer {}", token(&gw));
    assert_eq!(get(gw.addr, target, &[("Authorization", &bearer)]).await.status, 200);
    assert_eq!(up.last().target, target);

    // Where the query is no token location, `token=` is the app's own parameter.
    let (up, gw) = cookies_first_strip().await;
    let cookie = format!("access_token_cookie={}", token(&gw));
    assert_eq!(get(gw.addr, target, &[("Cookie", &cookie)]).await.status, 200);
    assert_eq!(up.last().target, target);
}

/// `token = "strip"` where cookies come before headers: a cookie can decide
/// while a Bearer header rides along.
async fn cookies_first_strip() -> (Upstream, TestGateway) {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(&format!("[forward]\ntoken = \"strip\"\n{}", routes()))
        .replace(r#"locations = ["headers", "cookies", "query"]"#, r#"locations = ["cookies", "headers"]"#);
    let gw = start_gateway(&cfg, up.addr, None).await;
    (up, gw)
}

#[tokio::test]
async fn token_strip_removes_an_unverified_bearer_when_the_cookie_decided() {
    let (up, gw) = cookies_first_strip().await;
    let cookie = format!("access_token_cookie={}", token(&gw));
    // The last three are spellings flask-jwt-extended reads as a Bearer token
    // too: it splits a comma list, and each element on any whitespace.
    let sent = [
        "Bearer forged.not.verified",
        "bearer x",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer\tforged",
        ", Bearer forged",
        "Basic dXNlcjpwYXNz, Bearer forged",
        // AuthX reads these: the value with every `Bearer ` deleted.
        "forged.not.verified",
        "forged.not.Bearer verified",
    ];
    for bearer in sent {
        let resp = get(gw.addr, "/api/x", &[("Authorization", bearer), ("Cookie", &cookie)]).await;
        assert_eq!(resp.status, 200, "{bearer:?}: {}", resp.body);
        let kept = (bearer == "Basic dXNlcjpwYXNz").then_some(bearer);
        assert_eq!(up.last().header("authorization"), kept, "{bearer:?}: only a Bearer is a token to strip");
        assert_eq!(up.last().header("cookie"), None);
    }
}

#[tokio::test]
async fn token_strip_on_a_refresh_route_keeps_only_the_credential_that_authenticated() {
    let (up, gw) = cookies_first_strip().await;
    let refresh = mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new());
    let cookie = format!("refresh_token_cookie={refresh}");
    let resp = get(gw.addr, "/app-refresh", &[("Cookie", &cookie), ("Authorization", "Bearer forged")]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("cookie"), Some(cookie.as_str()), "the cookie authenticated: kept");
    assert_eq!(up.last().header("authorization"), None, "the Bearer beside it was never verified");
    let bearer = format!("Bearer {refresh}");
    let resp = get(gw.addr, "/app-refresh", &[("Authorization", &bearer)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("authorization"), Some(bearer.as_str()), "the header authenticated: kept");
}

/// With the query first among the locations, a `?token=` refresh credential
/// beside a refresh cookie: the cookie was never verified and goes (the
/// default `refresh_cookie = "strip"`), the query's token travels as the
/// Bearer.
#[tokio::test]
async fn a_refresh_route_whose_query_decided_drops_the_refresh_cookie() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(&routes()).replace(
        r#"locations = ["headers", "cookies", "query"]"#,
        r#"locations = ["query", "headers", "cookies"]"#,
    );
    let gw = start_gateway(&cfg, up.addr, None).await;
    let refresh = mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new());
    let cookie = format!("a=1; refresh_token_cookie={}", mallory_token("refresh", "c", unix_now()));
    let resp = get(gw.addr, &format!("/app-refresh?token={refresh}"), &[("Cookie", &cookie)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("authorization"), Some(format!("Bearer {refresh}").as_str()));
    assert_eq!(up.last().header("cookie"), Some("a=1"));
}

/// Under `keep` too, a route whose cookie decided drops a Bearer beside it:
/// `keep` forwards the token jwtgate verified, and an app reading the header
/// first would otherwise run (or, on a refresh route, refresh) on a token
/// jwtgate never verified, perhaps one it revoked. (Found by review.)
#[tokio::test]
async fn a_route_whose_cookie_decided_drops_a_bearer_beside_it_under_keep_too() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(&routes())
        .replace(r#"locations = ["headers", "cookies", "query"]"#, r#"locations = ["cookies", "headers"]"#);
    let gw = start_gateway(&cfg, up.addr, None).await;
    let refresh = mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new());
    let cookie = format!("refresh_token_cookie={refresh}");
    let other = format!("Bearer {}", mallory_token("refresh", "c", unix_now()));
    let resp = get(gw.addr, "/app-refresh", &[("Cookie", &cookie), ("Authorization", &other)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("cookie"), Some(cookie.as_str()), "the cookie authenticated: kept");
    assert_eq!(up.last().header("authorization"), None, "the Bearer beside it was never verified");
    // So does an access route whose cookie decided: `keep` forwards the
    // token jwtgate verified, not another one beside it.
    let access = format!("access_token_cookie={}", token(&gw));
    let other = format!("Bearer {}", mallory_token("access", "c", unix_now()));
    let resp = get(gw.addr, "/api/x", &[("Cookie", &access), ("Authorization", &other)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("cookie"), Some(access.as_str()), "the verified cookie travels (keep)");
    assert_eq!(up.last().header("authorization"), None, "the Bearer beside it was never verified");
    // Elsewhere `keep` forwards the client's Authorization as sent.
    let basic = "Basic dXNlcjpwYXNz";
    let resp = get(gw.addr, "/public/x", &[("Authorization", basic)]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().header("authorization"), Some(basic));
}

/// A refresh token from the query leaves the query (DESIGN §4 rule 3) and,
/// under `strip` as under `keep`, reaches the app as its Bearer: the app
/// refreshes with it, and given none would answer 401 (found by
/// `tests/differential_props.rs`).
#[tokio::test]
async fn token_strip_on_a_refresh_route_forwards_a_query_token_as_the_bearer() {
    let (up, gw) = env("[forward]\ntoken = \"strip\"").await;
    let refresh = mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new());
    let resp = get(gw.addr, &format!("/app-refresh?token={refresh}&a=1"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().target, "/app-refresh?a=1");
    assert_eq!(up.last().header("authorization"), Some(format!("Bearer {refresh}").as_str()));
    // Elsewhere a query token is the access token `strip` removes.
    let access = token(&gw);
    let resp = get(gw.addr, &format!("/api/x?token={access}"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!((up.last().target.as_str(), up.last().header("authorization")), ("/api/x", None));
}

#[tokio::test]
async fn claims_json_header_carries_every_claim() {
    let (up, gw) = env("[forward]\nclaims_json_header = \"X-Auth-Claims\"").await;
    let resp = get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {}", token(&gw)))]).await;
    assert_eq!(resp.status, 200);
    use base64::Engine;
    let raw = up.last().header("x-auth-claims").unwrap().to_string();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["type"], "access");
}

/// `claims_json_header` is stripped by its own name in every spelling, also
/// where no `strip_prefixes` entry covers it (`X-Auth-Claims` above is).
#[tokio::test]
async fn a_claims_json_header_outside_the_strip_prefixes_is_stripped_in_every_spelling() {
    let (up, gw) = env("[forward]\nclaims_json_header = \"X-User-Claims\"").await;
    let forged = "eyJzdWIiOiJhZG1pbiJ9"; // {"sub":"admin"}
    let spellings = [("X-User-Claims", forged), ("X_User_Claims", forged), ("x_user-claims", forged)];
    let resp = get(gw.addr, "/public/x", &spellings).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last();
    let left: Vec<&str> =
        seen.headers.keys().map(|k| k.as_str()).filter(|k| k.replace('_', "-") == "x-user-claims").collect();
    assert!(left.is_empty(), "{left:?} reached the upstream");

    let auth = format!("Bearer {}", token(&gw));
    let mut headers = spellings.to_vec();
    headers.push(("Authorization", &auth));
    let resp = get(gw.addr, "/api/x", &headers).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last();
    let values: Vec<&str> =
        seen.headers.get_all("x-user-claims").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(values.len(), 1, "{:?}", seen.headers);
    assert_ne!(values[0], forged, "the forged claims reached the upstream");
    assert!(seen.headers.keys().all(|k| !k.as_str().contains('_')), "{:?}", seen.headers);
}

#[tokio::test]
async fn request_and_response_bodies_pass_through_whole() {
    let up = Upstream::start(UpstreamBehavior::Echo).await;
    let gw = start_gateway(&base_config(&routes()), up.addr, None).await;
    // 1 MiB that is not one byte repeated: a lost or reordered piece shows.
    let body: String = (0..).map(|i: u32| format!("{i:07}\n")).take((1 << 20) / 8).collect();
    let resp = request(gw.addr, "POST", "/public/upload", &[("Content-Type", "text/plain")], &body).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().method, "POST");
    assert!(up.last().body == body.as_bytes(), "the upstream received another body");
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body == body, "the client received another body than the upstream sent");
}

#[tokio::test]
async fn identity_header_from_the_upstream_never_reaches_the_client() {
    let (up, gw) = env("").await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"x"}"#.into()));
    let resp = get(gw.addr, "/public/x", &[]).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("x-jwtgate-identity").is_none());
}

#[tokio::test]
async fn a_refresh_route_keeps_the_refresh_cookie_it_authenticated_with() {
    let (up, gw) = env("[forward]\ntoken = \"strip\"").await;
    let refresh = mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new());
    let cookie = format!("refresh_token_cookie={refresh}");
    let resp = get(gw.addr, "/app-refresh", &[("Cookie", &cookie)]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().header("cookie"), Some(cookie.as_str()), "the app can still refresh itself");
    // Elsewhere the default `refresh_cookie = "strip"` applies.
    let resp = get(gw.addr, "/public/x", &[("Cookie", &format!("{cookie}; a=1"))]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().header("cookie"), Some("a=1"));
}

/// A refresh route keeps the refresh cookie only when that cookie is what it
/// authenticated with. When a Bearer (or `?token=`) decided, a refresh cookie
/// beside it was never verified: under `refresh_cookie = "strip"` (the
/// default) it goes, or an app that reads cookies first would refresh from
/// it, a token jwtgate may have revoked (the app cannot know). Under
/// `token = "strip"` the access cookie goes too: it never is a refresh
/// route's credential. (Found by a review of token handling.)
#[tokio::test]
async fn a_refresh_route_drops_a_refresh_cookie_it_did_not_authenticate_with() {
    for (forward, left) in [("", "a=1; access_token_cookie=A"), ("[forward]\ntoken = \"strip\"", "a=1")] {
        let (up, gw) = env(forward).await;
        let refresh = mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new());
        let other = mallory_token("refresh", "c", unix_now());
        let cookie = format!("a=1; refresh_token_cookie={other}; access_token_cookie=A");
        let bearer = format!("Bearer {refresh}");
        let resp = get(gw.addr, "/app-refresh", &[("Authorization", &bearer), ("Cookie", &cookie)]).await;
        assert_eq!(resp.status, 200, "{forward:?}: {}", resp.body);
        assert_eq!(up.last().header("authorization"), Some(bearer.as_str()), "{forward:?}: the credential");
        assert_eq!(up.last().header("cookie"), Some(left), "{forward:?}");
        // Where a refresh cookie is sent, it decides before the query does.
        let resp = get(
            gw.addr,
            &format!("/app-refresh?token={refresh}"),
            &[("Cookie", "a=1; access_token_cookie=A")],
        )
        .await;
        assert_eq!(resp.status, 200, "{forward:?}: {}", resp.body);
        assert_eq!(
            up.last().header("authorization"),
            Some(bearer.as_str()),
            "{forward:?}: the query's credential"
        );
        assert_eq!(up.last().header("cookie"), Some(left), "{forward:?}: a query credential");
    }
}

#[tokio::test]
async fn a_cookie_header_with_nothing_left_to_forward_is_dropped_and_none_is_made_up() {
    let (up, gw) = env("").await;
    let bearer = format!("Bearer {}", token(&gw));
    for cookie in [Some(";"), Some("refresh_token_cookie=r"), Some(""), None] {
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend(cookie.map(|c| ("Cookie", c)));
        let resp = get(gw.addr, "/api/x", &headers).await;
        assert_eq!(resp.status, 200, "{cookie:?}: {}", resp.body);
        assert!(up.last().headers.get("cookie").is_none(), "{cookie:?}");
    }
}

/// DESIGN.md §6: the identity header never reaches the client, not even as a
/// trailer of a chunked response. (HTTP/2 clients get trailers; HTTP/1.1 ones
/// do not, since `Trailer` is hop-by-hop and hyper sends only declared ones.)
#[tokio::test]
async fn the_identity_header_never_reaches_the_client_as_a_trailer() {
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                              Trailer: X-Jwtgate-Identity, X-Checksum\r\n\r\n2\r\nok\r\n0\r\n\
                              X-Jwtgate-Identity: {\"sub\":\"alice\",\"internal\":\"secret\"}\r\n\
                              X_Jwtgate_Identity: {\"sub\":\"alice\"}\r\nX-Checksum: 42\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    let gw = start_gateway(&base_config(PUBLIC_AND_API), upstream, None).await;
    let (mut sender, _conn) = common::client::h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test/public/x").body(Empty::<bytes::Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("trailer").is_none());
    let body = resp.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().expect("trailers are forwarded at all");
    assert_eq!(body.to_bytes(), "ok");
    assert_eq!(trailers.get("x-checksum").unwrap(), "42");
    assert!(trailers.get("x-jwtgate-identity").is_none(), "the identity trailer leaked: {trailers:?}");
    assert!(trailers.get("x_jwtgate_identity").is_none(), "its underscore spelling leaked: {trailers:?}");
}

/// `Transfer-Encoding` is hop-by-hop, so jwtgate removes it: only `chunked`,
/// which hyper decoded, can go. Another coding would reach the client still on
/// the body, announced as none; beside a `Content-Length` the stale length
/// would cut the body short and look complete (RFC 9112 §6.1). Both are 502.
#[tokio::test]
async fn a_response_transfer_coding_that_cannot_be_passed_on_is_a_502() {
    let cases = [
        (
            "chunked beside a length",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            None,
        ),
        ("gzip", "Transfer-Encoding: gzip\r\nConnection: close\r\n\r\nGZIPPED", None),
        ("gzip, then chunked", "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", None),
        (
            "chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            None,
        ),
        ("chunked", "Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Some("hello")),
        ("a length", "Content-Length: 5\r\n\r\nhello", Some("hello")),
    ];
    for (case, rest, passes) in cases {
        let (app, _got) = common::raw::answering_upstream(format!("HTTP/1.1 200 OK\r\n{rest}")).await;
        let gw = start_gateway(&base_config(PUBLIC_AND_API), app, None).await;
        let resp = common::raw::get(gw.addr, "/public/a", &[]).await;
        match passes {
            Some(body) => assert_eq!((resp.status, resp.body.as_str()), (200, body), "{case}: {resp:?}"),
            None => resp.assert_problem(502, "upstream_unavailable"),
        }
    }
}

/// A chunked body on a GET reaches the app as a body does on a POST (nginx
/// forwards it too); hyper's client would otherwise send the GET bodiless.
#[tokio::test]
async fn a_chunked_get_body_reaches_the_upstream() {
    let (up, gw) = public_and_api().await;
    for method in ["GET", "HEAD", "POST"] {
        let sent = common::raw::send_raw(
            gw.addr,
            &format!(
                "{method} /public/search HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n11\r\n{{\"owner\":\"alice\"}}\r\n0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(sent.status, 200, "{method}");
        let seen = up.last();
        assert_eq!(
            (seen.method.as_str(), &seen.body[..]),
            (method, &br#"{"owner":"alice"}"#[..]),
            "{method}: {seen:?}"
        );
    }
}

/// A request body that breaks off in malformed chunks is the client's error:
/// 400, not an upstream failure (502) an operator would be alerted to.
#[tokio::test]
async fn a_malformed_request_body_is_a_400_not_an_upstream_failure() {
    let (_up, gw) = public_and_api().await;
    let resp = common::raw::send_raw(
        gw.addr,
        "POST /public/a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         3\r\nabc\r\nZZ\r\n",
    )
    .await;
    resp.assert_problem(400, "bad_request");
    let metrics = gw.gateway.metrics.encode();
    assert!(!metrics.contains("status=\"502\""), "{metrics}");
}

/// Where the query comes first and decides, the Authorization a client sent
/// beside it is replaced by the verified query token, even one of the same
/// length (an app reading the query first finds it gone and falls back to
/// the header); on a refresh route under `strip` too.
#[tokio::test]
async fn a_query_token_that_decided_replaces_a_same_length_bearer() {
    for token_mode in ["keep", "strip"] {
        let up = Upstream::start(UpstreamBehavior::Ok).await;
        let cfg = base_config(&format!("[forward]\ntoken = \"{token_mode}\"\n{}", routes())).replace(
            r#"locations = ["headers", "cookies", "query"]"#,
            r#"locations = ["query", "headers", "cookies"]"#,
        );
        let gw = start_gateway(&cfg, up.addr, None).await;
        let (path, verified, other) = if token_mode == "keep" {
            ("/api/x", token(&gw), mint(&gw, TokenType::Access, false, unix_now() - 1, &Map::new()))
        } else {
            (
                "/app-refresh",
                mint(&gw, TokenType::Refresh, false, unix_now(), &Map::new()),
                mint(&gw, TokenType::Refresh, false, unix_now() - 1, &Map::new()),
            )
        };
        assert_eq!(verified.len(), other.len(), "the same length");
        assert_ne!(verified, other);
        let resp = get(
            gw.addr,
            &format!("{path}?token={verified}"),
            &[("Authorization", &format!("Bearer {other}"))],
        )
        .await;
        assert_eq!(resp.status, 200, "{token_mode}: {}", resp.body);
        assert_eq!(up.last().target, path, "{token_mode}");
        let expected = format!("Bearer {verified}");
        assert_eq!(up.last().header("authorization"), Some(expected.as_str()), "{token_mode}");
    }
}

/// Under `strip` with the query a token location, a query with no token in
/// it goes as sent: an empty one keeps its `?`.
#[tokio::test]
async fn token_strip_leaves_a_query_without_a_token_as_sent() {
    let (up, gw) = env("[forward]\ntoken = \"strip\"").await;
    for target in ["/public/x?", "/public/x?a=1&&b", "/public/x?a=1;"] {
        let resp = get(gw.addr, target, &[]).await;
        assert_eq!(resp.status, 200, "{target}: {}", resp.body);
        assert_eq!(up.last().target, target);
    }
}
