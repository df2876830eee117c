//! DESIGN.md §4 through the real gateway: ambiguous targets are refused with
//! 400 before any upstream sees them; the upstream receives the canonical path.

mod common;

use common::raw::get;
use common::*;

const ROUTES: &str = r#"
[[routes]]
path = "/public/**"
policy = "public"
upstream = "app"

[[routes]]
path = "/admin/**"
policy = "access"
upstream = "app"

[[routes]]
path = "/files/*/meta"
policy = "public"
upstream = "app"

[[routes]]
path = "/static/**"
policy = "public"
upstream = "app"
strip_prefix = "/static"

[[routes]]
path = "/only-get"
policy = "public"
upstream = "app"
methods = ["GET", "HEAD"]
"#;

async fn env() -> (Upstream, TestGateway) {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(ROUTES), up.addr, None).await;
    (up, gw)
}

#[tokio::test]
async fn ambiguous_targets_are_refused_before_the_upstream() {
    let (up, gw) = env().await;
    let targets = [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2e/admin/x",
        "/public/.%2e/admin/x",
        "/public/./x",
        "/public/%2e/x",
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/a%5Cb",
        "/public/a%00b",
        "/public/a%0Ab",
        "/public/a;b",
        "/public/a%3Bx;y",
        "/public//x",
        "//public/x",
        "/public/a%252Fb",
        "/public/a%25",
        "/public/x.",
        "/public/x%2E",
        "/public/x%20",
        "/public/a%3Fb",
        "/public/a%23b",
        "/public/%EF%BC%8E%EF%BC%8E/admin",
        "/public/%E2%88%95x",
        "/public/%C3%28",
        "/public/%zz",
        "/public/%4",
    ];
    for target in targets {
        let resp = get(gw.addr, target, &[]).await;
        assert_eq!(resp.status, 400, "{target}: {}", resp.body);
        if !resp.body.is_empty() {
            resp.assert_problem(400, "bad_request");
        }
    }
    assert_eq!(up.count(), 0, "an ambiguous target reached the upstream: {:?}", up.requests());
}

#[tokio::test]
async fn raw_backslash_and_absolute_form_are_refused() {
    let (up, gw) = env().await;
    let resp =
        send_raw(gw.addr, "GET /public/a\\b HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(resp.status, 400);
    let resp = send_raw(
        gw.addr,
        "GET http://app.test/public/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    resp.assert_problem(400, "bad_request");
    let resp = send_raw(gw.addr, "OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(resp.status, 400);
    let resp =
        send_raw(gw.addr, "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\nConnection: close\r\n\r\n")
            .await;
    assert!(resp.status == 405 || resp.status == 400, "{resp:?}");
    let resp =
        send_raw(gw.addr, "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n").await;
    assert_eq!(resp.status, 400);
    // HTTP/1.1 requires a Host.
    let resp = send_raw(gw.addr, "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    resp.assert_problem(400, "bad_request");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn semicolons_pass_only_when_allowed() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(ROUTES)
        .replace("header_read_timeout = \"2s\"", "header_read_timeout = \"2s\"\nallow_semicolon = true");
    let gw = start_gateway(&cfg, up.addr, None).await;
    let resp = get(gw.addr, "/public/a;jsessionid=1", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().target, "/public/a;jsessionid=1");
}

#[tokio::test]
async fn unreserved_escapes_are_decoded_before_matching_and_forwarded_canonical() {
    let (up, gw) = env().await;
    let resp = get(gw.addr, "/%70ublic/%7Euser/caf%c3%a9?q=%2F", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().target, "/public/~user/caf%C3%A9?q=%2F");
    // An encoded letter cannot sneak past a protected prefix.
    let resp = get(gw.addr, "/%61dmin/x", &[]).await;
    resp.assert_problem(401, "missing_token");
}

#[tokio::test]
async fn globstar_matches_on_segment_boundaries_only() {
    let (up, gw) = env().await;
    get(gw.addr, "/admin", &[]).await.assert_problem(401, "missing_token");
    get(gw.addr, "/admin/", &[]).await.assert_problem(401, "missing_token");
    get(gw.addr, "/administrator", &[]).await.assert_problem(404, "no_route");
    assert_eq!(get(gw.addr, "/files/a.txt/meta", &[]).await.status, 200);
    get(gw.addr, "/files/a/b/meta", &[]).await.assert_problem(404, "no_route");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn trailing_slash_matches_like_the_bare_path_and_is_forwarded_as_sent() {
    let (up, gw) = env().await;
    assert_eq!(get(gw.addr, "/only-get/", &[]).await.status, 200);
    assert_eq!(up.last().target, "/only-get/");
}

#[tokio::test]
async fn strip_prefix_applies_to_the_canonical_path() {
    let (up, gw) = env().await;
    assert_eq!(get(gw.addr, "/static/css/%61pp.css?v=2", &[]).await.status, 200);
    assert_eq!(up.last().target, "/css/app.css?v=2");
    assert_eq!(get(gw.addr, "/static", &[]).await.status, 200);
    assert_eq!(up.last().target, "/");
}

#[tokio::test]
async fn method_mismatch_is_405_with_allow() {
    let (_up, gw) = env().await;
    let resp = common::raw::request(gw.addr, "DELETE", "/only-get", &[], "").await;
    resp.assert_problem(405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn no_route_is_404_never_an_implicit_public_fallback() {
    let (up, gw) = env().await;
    get(gw.addr, "/", &[]).await.assert_problem(404, "no_route");
    get(gw.addr, "/elsewhere", &[]).await.assert_problem(404, "no_route");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn case_folding_cannot_reach_a_route_under_another_routes_rules() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let routes = r#"
[[routes]]
path = "/**"
policy = "public"
upstream = "app"

[[routes]]
path = "/admin/**"
policy = "access"
upstream = "app"
"#;
    let gw = start_gateway(&base_config(routes), up.addr, None).await;
    // /Admin/x matches the public catch-all, but an upstream that folds case
    // would serve /admin/x: the gateway must not let it through as public.
    get(gw.addr, "/Admin/x", &[]).await.assert_problem(400, "bad_request");
    get(gw.addr, "/ADMIN", &[]).await.assert_problem(400, "bad_request");
    // ASP.NET Core upper-cases the dotless ı to I: `admın` is `admin` to it.
    get(gw.addr, "/adm%C4%B1n/x", &[]).await.assert_problem(400, "bad_request");
    assert_eq!(up.count(), 0);
    assert_eq!(get(gw.addr, "/About", &[]).await.status, 200);
    assert_eq!(get(gw.addr, "/kad%C4%B1n", &[]).await.status, 200, "folds onto no other route");
}

#[tokio::test]
async fn overlong_target_is_414() {
    let (up, gw) = env().await;
    let target = format!("/public/{}", "a".repeat(9000));
    let resp = get(gw.addr, &target, &[]).await;
    assert_eq!(resp.status, 414, "{}", resp.body);
    assert_eq!(up.count(), 0);
    // DESIGN §4 rule 2: ≤ 8 KiB passes, one byte more is 414; the query counts.
    let at_limit = format!("/public/x?q={}", "a".repeat(8192 - "/public/x?q=".len()));
    assert_eq!(at_limit.len(), 8192);
    let resp = get(gw.addr, &at_limit, &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(up.last().target, at_limit, "forwarded whole");
    get(gw.addr, &format!("{at_limit}a"), &[]).await.assert_problem(414, "uri_too_long");
    assert_eq!(up.count(), 1);
}
