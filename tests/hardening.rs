//! Attacks and failures: forged token headers, oversized input, slow clients,
//! broken upstreams, HTTP/2 clients in front of HTTP/1.1 upstreams.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::raw::{get, send_raw};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims_json() -> String {
    let n = now();
    format!(r#"{{"sub":"alice","type":"access","fresh":true,"jti":"j1","iat":{n},"exp":{}}}"#, n + 300)
}

async fn bearer(gw: &TestGateway, token: &str) -> RawResponse {
    get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
async fn a_correctly_signed_handmade_token_is_accepted() {
    // Guards the tests below: they fail for the header, not for the signature.
    let (_up, gw) = public_and_api().await;
    let resp = bearer(&gw, &hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &claims_json())).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn alg_none_in_any_case_is_refused() {
    let (up, gw) = public_and_api().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = format!(
            "{}.{}.",
            B64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            B64.encode(claims_json())
        );
        bearer(&gw, &token).await.assert_problem(401, "invalid_token");
        let signed = hs256_with_header(&format!(r#"{{"alg":"{alg}"}}"#), &claims_json());
        bearer(&gw, &signed).await.assert_problem(401, "invalid_token");
    }
    assert_eq!(up.count(), 0);
}

/// An HTTP/2 request whose `host` field names another host than its
/// `:authority` is refused: routing would go by one, and the app read the other.
#[tokio::test]
async fn an_http2_host_field_that_differs_from_authority_is_400() {
    let (up, gw) = public_and_api().await;
    let (mut h2, _conn) = common::client::h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test/public/x")
        .header("host", "admin.example.com")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(up.count(), 0, "nothing forwarded");
}

/// An HTTP/2 body longer or shorter than its `content-length` is malformed
/// (RFC 9113 §8.1.1): the app never gets a request that looks complete. The
/// h2 crate enforces it; this guards against a change there.
#[tokio::test]
async fn an_http2_body_that_disagrees_with_its_content_length_never_reaches_the_app_whole() {
    use http_body_util::Full;
    let (up, gw) = public_and_api().await;
    for (announced, sent) in [("10", "12345"), ("3", "12345")] {
        let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut h2, conn) = hyper::client::conn::http2::handshake::<_, _, Full<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post("http://app.test/public/cl")
            .header("content-length", announced)
            .body(Full::new(bytes::Bytes::from_static(sent.as_bytes())))
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), h2.send_request(req)).await.unwrap();
        if let Ok(resp) = &answer {
            assert_ne!(
                resp.status(),
                200,
                "content-length {announced} with {} bytes answered 200",
                sent.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for seen in up.requests().iter().filter(|r| r.target == "/public/cl") {
            let length = seen.header("content-length").and_then(|v| v.parse::<usize>().ok());
            let whole = !seen.body.is_empty() && length.is_none_or(|n| n == seen.body.len());
            assert!(!whole, "the app got a complete-looking request: {:?} {:?}", seen.headers, seen.body);
        }
    }
}

/// The configured key decides the algorithm: a token signed with the same
/// secret under HS384 or HS512, and saying so, is no HS256 token.
#[tokio::test]
async fn another_hmac_algorithm_with_the_same_secret_is_refused() {
    use aws_lc_rs::hmac::{HMAC_SHA384, HMAC_SHA512};
    let (up, gw) = public_and_api().await;
    for (alg, hmac) in [("HS384", HMAC_SHA384), ("HS512", HMAC_SHA512)] {
        let token = hmac_with_header(hmac, &format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &claims_json());
        bearer(&gw, &token).await.assert_problem(401, "invalid_token");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn forbidden_header_parameters_are_refused_even_when_signed() {
    let (up, gw) = public_and_api().await;
    for param in [
        r#""crit":["exp"]"#,
        r#""jku":"http://evil.test/jwks""#,
        r#""jwk":{"kty":"oct","k":"AAAA"}"#,
        r#""x5u":"http://evil.test/c""#,
        r#""x5c":["MII"]"#,
        r#""b64":false"#,
        r#""zip":"DEF""#,
        r#""enc":"A128GCM""#,
        r#""cty":"JWT""#,
    ] {
        let token = hs256_with_header(&format!(r#"{{"alg":"HS256",{param}}}"#), &claims_json());
        bearer(&gw, &token).await.assert_problem(401, "invalid_token");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn unknown_kid_and_duplicate_claims_are_refused() {
    let (_up, gw) = public_and_api().await;
    let token = hs256_with_header(r#"{"alg":"HS256","kid":"nope"}"#, &claims_json());
    bearer(&gw, &token).await.assert_problem(401, "invalid_token");
    let dup = claims_json().replacen(r#""sub":"alice""#, r#""sub":"alice","sub":"admin""#, 1);
    let token = hs256_with_header(r#"{"alg":"HS256"}"#, &dup);
    bearer(&gw, &token).await.assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let (_up, gw) = public_and_api().await;
    let big = claims_json().replacen('{', &format!(r#"{{"pad":"{}","#, "p".repeat(9000)), 1);
    let token = hs256_with_header(r#"{"alg":"HS256"}"#, &big);
    bearer(&gw, &token).await.assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn claims_unfit_for_a_header_refuse_the_request() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = base_config(PUBLIC_AND_API).replace(
        "[tokens]\n",
        "[forward]\nclaims = { sub = \"X-Auth-Subject\", team = \"X-Auth-Team\" }\n\n[tokens]\n",
    );
    let gw = start_gateway(&cfg, up.addr, None).await;
    let payload = claims_json().replacen('{', r#"{"team":"a\r\nX-Admin: 1","#, 1);
    bearer(&gw, &hs256_with_header(r#"{"alg":"HS256"}"#, &payload))
        .await
        .assert_problem(401, "invalid_token");
    let payload = claims_json().replacen('{', r#"{"team":["a,b"],"#, 1);
    bearer(&gw, &hs256_with_header(r#"{"alg":"HS256"}"#, &payload))
        .await
        .assert_problem(401, "invalid_token");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
/// jwtgate's own answers, problem+json: the test upstream's hyper refuses
/// more than 100 fields with a bare 431 of its own, which a forwarded request
/// would bring back, so the status alone proves nothing.
async fn too_many_or_too_large_headers_are_431() {
    let (up, gw) = public_and_api().await;
    // Just over max_headers (100), and far over it (hyper parses up to 200).
    for n in [101, 150] {
        let many: Vec<(String, String)> = (0..n).map(|i| (format!("X-H{i}"), "v".to_string())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        get(gw.addr, "/public/x", &refs).await.assert_problem(431, "header_too_large");
    }
    let big = "v".repeat(70_000);
    get(gw.addr, "/public/x", &[("X-Big", &big)]).await.assert_problem(431, "header_too_large");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn unknown_transfer_coding_is_501_and_malformed_is_400() {
    let (up, gw) = public_and_api().await;
    let req = "POST /public/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    send_raw(gw.addr, req).await.assert_problem(501, "not_implemented");
    let req = "POST /public/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(send_raw(gw.addr, req).await.status, 400);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_header_read_timeout() {
    let (_up, gw) = public_and_api().await;
    for partial in ["", "GET /public/x HTTP/1.1\r\nHost: app"] {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let connected = std::time::Instant::now();
        stream.write_all(partial.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        // header_read_timeout is 2s in the test config: closed well before 8s.
        let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut buf)).await;
        let open = connected.elapsed();
        assert!(read.is_ok(), "connection with {partial:?} still open after 8s");
        assert!(open >= Duration::from_millis(1900), "connection with {partial:?} cut after only {open:?}");
        assert!(
            buf.is_empty(),
            "connection with {partial:?} got an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
}

#[tokio::test]
async fn upstream_down_is_502_and_hung_is_504() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let gw = start_gateway(&base_config(PUBLIC_AND_API), dead_addr, None).await;
    get(gw.addr, "/public/x", &[]).await.assert_problem(502, "upstream_unavailable");

    let hung = Upstream::start(UpstreamBehavior::Hang).await;
    let gw = start_gateway(&base_config(PUBLIC_AND_API), hung.addr, None).await;
    let started = std::time::Instant::now();
    get(gw.addr, "/public/x", &[]).await.assert_problem(504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(6), "timeout is 2s in the test config");
}

#[tokio::test]
async fn http2_clients_reach_http11_upstreams_with_their_authority_as_host() {
    use http_body_util::{BodyExt, Empty};
    let (up, gw) = public_and_api().await;
    let (mut sender, _conn) = common::client::h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test:8443/public/h2?x=1")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"upstream ok");
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.target, "/public/h2?x=1");
    assert_eq!(seen.header("host"), Some("app.test:8443"));
    assert_eq!(seen.header("cookie"), Some("a=1; b=2"), "HTTP/2 cookie crumbs are joined");
}

/// An HTTP/2 GET whose HEADERS frame does not end the stream (its end comes in
/// an empty DATA frame) has no body: it reaches the HTTP/1.1 upstream as a
/// plain GET, not one announcing a chunked body.
#[tokio::test]
async fn an_http2_get_ended_by_an_empty_data_frame_reaches_the_upstream_bodiless() {
    use http_body_util::StreamBody;
    type Chunks =
        futures_util::stream::Empty<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>;
    let (up, gw) = public_and_api().await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, StreamBody<Chunks>>(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = StreamBody::new(futures_util::stream::empty());
    let req = http::Request::get("http://app.test/public/h2").body(body).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("transfer-encoding"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("content-length"), None);
    assert!(seen.body.is_empty());
}

/// HTTP/1.0 clients reach the upstream over the pooled HTTP/1.1 connections.
#[tokio::test]
async fn http10_requests_go_upstream_as_http11_on_a_kept_connection() {
    let (up, gw) = public_and_api().await;
    for _ in 0..2 {
        let resp = send_raw(gw.addr, "GET /public/a HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
        assert_eq!(resp.status, 200);
        let seen = up.last();
        assert_eq!(seen.version, http::Version::HTTP_11);
        assert_eq!(seen.conn, 0, "the upstream connection is kept");
    }
}

/// RFC 9113 §8.3.1: an HTTP/2 request may carry its host in `host` instead
/// of `:authority`; exactly one, as in HTTP/1.1, and it decides the route.
#[tokio::test]
async fn http2_requests_without_authority_use_their_one_host_field() {
    use http_body_util::Empty;
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(FALL_THROUGH), up.addr, None).await;
    let (mut sender, _conn) = common::client::h2_connect(gw.addr).await;
    let mut send = async |hosts: &[&str]| {
        let mut req = http::Request::get("/public/h2").body(Empty::<bytes::Bytes>::new()).unwrap();
        for host in hosts {
            req.headers_mut().append("host", host.parse().unwrap());
        }
        assert!(req.uri().authority().is_none(), "no :authority is sent");
        sender.send_request(req).await.unwrap().status()
    };
    assert_eq!(send(&["app.test"]).await, 200, "the host-less public route");
    assert_eq!(up.last().header("host"), Some("app.test"));
    assert_eq!(send(&["admin.example.com"]).await, 401, "the admin host's access route decides");
    assert_eq!(send(&[]).await, 400, "no host at all");
    assert_eq!(send(&["app.test", "admin.example.com"]).await, 400, "two host fields");
    assert_eq!(up.count(), 1, "only the first reached the upstream");
}

/// A method route beside a broader public one, and a host route beside a
/// host-less public one: what an attacker would try to fall through.
const FALL_THROUGH: &str = r#"
[[routes]]
path = "/api/items"
methods = ["POST", "PUT", "DELETE"]
policy = "access"
upstream = "app"

[[routes]]
host = "admin.example.com"
path = "/**"
policy = "access"
upstream = "app"

[[routes]]
host = "10.0.0.5"
path = "/**"
policy = "access"
upstream = "app"

[[routes]]
path = "/**"
policy = "public"
upstream = "app"
"#;

/// Literal routes whose paths hold characters apps decode from escapes
/// before routing (Google-style `:verb`s, `@me`, OData's `$metadata`).
const RESERVED_CHARS: &str = r#"
[[routes]]
path = "/api/users:purge"
policy = "fresh"
upstream = "app"

[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"

[[routes]]
path = "/@me/**"
policy = "access"
upstream = "app"

[[routes]]
path = "/**"
policy = "public"
upstream = "app"
"#;

#[tokio::test]
async fn an_escaped_colon_or_at_sign_cannot_reach_a_route_under_weaker_rules() {
    // Flask, Express, Rails and Spring decode %3A and %40 before routing: the
    // escaped spelling would run the fresh or access view under /api/**'s or
    // /**'s rules.
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(RESERVED_CHARS), up.addr, None).await;
    let access = mint(&gw, jwtgate::token::TokenType::Access, false, unix_now(), &Default::default());
    let bearer = format!("Bearer {access}");
    let auth = [("Authorization", bearer.as_str())];
    get(gw.addr, "/api/users:purge", &auth).await.assert_problem(401, "fresh_token_required");
    for path in ["/api/users%3Apurge", "/api/users%3apurge", "/api/USERS%3APURGE"] {
        get(gw.addr, path, &auth).await.assert_problem(400, "bad_request");
    }
    get(gw.addr, "/%40me/settings", &[]).await.assert_problem(400, "bad_request");
    get(gw.addr, "/@me/settings", &[]).await.assert_problem(401, "missing_token");
    assert_eq!(up.count(), 0, "nothing reached the upstream");

    // An escape that leads nowhere else is forwarded as sent.
    assert_eq!(get(gw.addr, "/api/users/bob%40example.com", &auth).await.status, 200);
    assert_eq!(up.last().target, "/api/users/bob%40example.com");
}

#[tokio::test]
async fn head_takes_the_route_that_lists_get_not_a_broader_public_one() {
    // Werkzeug, Express, Rails and Go answer HEAD with the GET view: a HEAD
    // falling to the public /** would run it (and its side effects) unauthenticated.
    let routes = "[[routes]]\npath = \"/admin/**\"\nmethods = [\"GET\", \"POST\"]\npolicy = \"access\"\n\
                  upstream = \"app\"\n\n[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n";
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(routes), up.addr, None).await;
    let head = common::raw::request(gw.addr, "HEAD", "/admin/secret", &[], "").await;
    assert_eq!(head.status, 401, "{head:?}");
    assert_eq!(up.count(), 0, "nothing reached the upstream");

    let access = mint(&gw, jwtgate::token::TokenType::Access, false, unix_now(), &Default::default());
    let bearer = format!("Bearer {access}");
    let head =
        common::raw::request(gw.addr, "HEAD", "/admin/secret", &[("Authorization", &bearer)], "").await;
    assert_eq!(head.status, 200);
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.header("x-auth-subject")), ("HEAD", Some("alice")));
    // Methods the route leaves out still fall to the broader route, as configured.
    assert_eq!(common::raw::request(gw.addr, "PUT", "/admin/secret", &[], "").await.status, 200);
}

#[tokio::test]
async fn a_lower_case_method_cannot_fall_to_a_broader_route() {
    // Werkzeug and others upper-case the method: `post` would run the POST
    // handler under the public route's policy.
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(FALL_THROUGH), up.addr, None).await;
    common::raw::request(gw.addr, "POST", "/api/items", &[], "").await.assert_problem(401, "missing_token");
    for method in ["post", "Post", "delete", "pUT"] {
        common::raw::request(gw.addr, method, "/api/items", &[], "").await.assert_problem(400, "bad_request");
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    assert_eq!(get(gw.addr, "/api/items", &[]).await.status, 200, "GET is the public route's");
}

#[tokio::test]
async fn a_host_spelled_as_an_upstream_would_normalise_it_gets_that_hosts_policy_or_400() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(FALL_THROUGH), up.addr, None).await;
    let with_host =
        |host: &str| format!("GET /dashboard HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    for host in
        ["admin.example.com", "ADMIN.example.com.", "admin.example.com.:443", "10.0.0.5", "10.0.0.5.:80"]
    {
        send_raw(gw.addr, &with_host(host)).await.assert_problem(401, "missing_token");
    }
    // The other spellings of 10.0.0.5 that browsers and WHATWG URL parsers
    // accept would match as names, under the host-less public route.
    let ipv4 = ["10.5", "0xa.0.0.5", "167772165", "10.0.0.05", "0x0A000005:80"];
    for host in ["admin.example.com:x:80", "admin.example.com:80:80", "admin.example.com..", "[::1]junk"]
        .into_iter()
        .chain(ipv4)
    {
        send_raw(gw.addr, &with_host(host)).await.assert_problem(400, "bad_request");
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    assert_eq!(send_raw(gw.addr, &with_host("www.example.com")).await.status, 200);
}

/// `issuer` and `audience` at the gateway: minted tokens carry both, and a
/// token is refused (401, nothing upstream) for a wrong or missing `iss`, or
/// an `aud` that names none of the configured audiences, as a string or in
/// an array. The unit tests check the rules; this checks the gateway applies
/// them, through the verified-token cache too.
#[tokio::test]
async fn issuer_and_audience_are_enforced_at_the_gateway() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let config = base_config(PUBLIC_AND_API)
        .replace("[tokens]\n", "[tokens]\nissuer = \"https://gw.example\"\naudience = [\"api\", \"web\"]\n");
    let gw = start_gateway(&config, up.addr, None).await;
    let minted = mint(&gw, jwtgate::token::TokenType::Access, false, unix_now(), &serde_json::Map::new());
    let payload = B64.decode(minted.split('.').nth(1).unwrap()).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["iss"], "https://gw.example", "{payload}");
    assert_eq!(payload["aud"], serde_json::json!(["api", "web"]), "{payload}");
    for _ in 0..2 {
        // Twice: the second is a cache hit.
        assert_eq!(bearer(&gw, &minted).await.status, 200);
    }
    assert_eq!(up.count(), 2);

    let n = now();
    let with = |extra: &str| {
        let payload = format!(r#"{{"sub":"alice","jti":"j","iat":{n},"exp":{}{extra}}}"#, n + 300);
        hs256_with_header(r#"{"alg":"HS256"}"#, &payload)
    };
    let accepted = [
        r#","iss":"https://gw.example","aud":"web""#,
        r#","iss":"https://gw.example","aud":["other","api"]"#,
    ];
    for extra in accepted {
        assert_eq!(bearer(&gw, &with(extra)).await.status, 200, "{extra}");
    }
    assert_eq!(up.count(), 4);
    let refused = [
        r#","aud":"api""#,
        r#","iss":"https://other.example","aud":"api""#,
        r#","iss":"https://gw.example/","aud":"api""#,
        r#","iss":["https://gw.example"],"aud":"api""#,
        r#","iss":"https://gw.example""#,
        r#","iss":"https://gw.example","aud":"other""#,
        r#","iss":"https://gw.example","aud":["other","API"]"#,
        r#","iss":"https://gw.example","aud":[]"#,
        r#","iss":"https://gw.example","aud":null"#,
    ];
    for extra in refused {
        let resp = bearer(&gw, &with(extra)).await;
        assert_eq!(resp.status, 401, "{extra}: {}", resp.body);
        resp.assert_problem(401, "invalid_token");
    }
    assert_eq!(up.count(), 4, "no refused token reached the upstream");
}

/// The verified-token cache belongs to one config snapshot: a token cached
/// under one issuer is refused once a reload names another.
#[tokio::test]
async fn a_reload_that_changes_the_issuer_is_not_bypassed_by_the_cache() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let config = |issuer: &str| {
        base_config(PUBLIC_AND_API)
            .replace("[tokens]\n", &format!("[tokens]\nissuer = \"{issuer}\"\n"))
            .replace("{upstream}", &up.addr.to_string())
    };
    let gw = start_gateway(&config("https://a.example"), up.addr, None).await;
    let token = mint(&gw, jwtgate::token::TokenType::Access, false, unix_now(), &serde_json::Map::new());
    assert_eq!(bearer(&gw, &token).await.status, 200);
    assert_eq!(bearer(&gw, &token).await.status, 200, "a cache hit");
    let runtime = jwtgate::config::parse(&config("https://b.example"), std::path::Path::new(".")).unwrap();
    gw.gateway.swap(runtime);
    bearer(&gw, &token).await.assert_problem(401, "invalid_token");
    assert_eq!(up.count(), 2);
}

/// A client that goes away while its request waits on the upstream ends
/// that request: the upstream connection is closed then, as nginx does by
/// default (`proxy_ignore_client_abort off`), not held until the upstream
/// `timeout`. Over HTTP/1.1 hyper notices the close by reading on mid-request
/// (which is why `half_close` stays off: BENCHMARKS.md); over HTTP/2 the
/// client resets the stream.
#[tokio::test]
async fn a_client_that_goes_away_ends_its_upstream_request() {
    use std::sync::atomic::Ordering;
    let hung = Upstream::start(UpstreamBehavior::Hang).await;
    let cfg = base_config(PUBLIC_AND_API).replace("timeout = \"2s\"", "timeout = \"30s\"");
    let gw = start_gateway(&cfg, hung.addr, None).await;

    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(b"GET /public/h1 HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    assert!(
        within(Duration::from_secs(5), || async { hung.count() == 1 }).await,
        "never reached the upstream"
    );
    assert_eq!(hung.closed.load(Ordering::SeqCst), 0);
    drop(client);
    let closed = within(Duration::from_secs(3), || async { hung.closed.load(Ordering::SeqCst) == 1 }).await;
    assert!(closed, "the upstream request outlived its client");

    let (mut send, _conn) = common::client::h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test/public/h2").body(http_body_util::Empty::new()).unwrap();
    let pending = send.send_request(req);
    let pending = tokio::spawn(pending);
    assert!(
        within(Duration::from_secs(5), || async { hung.count() == 2 }).await,
        "never reached the upstream"
    );
    pending.abort();
    let closed = within(Duration::from_secs(3), || async { hung.closed.load(Ordering::SeqCst) == 2 }).await;
    assert!(closed, "the upstream request outlived its reset stream");
    assert_eq!(hung.targets(), ["/public/h1", "/public/h2"]);
}

/// A refused HEAD gets its status and headers and no content, over HTTP/2 as
/// over HTTP/1.1 (RFC 9110 §9.3.2). hyper's HTTP/2 server sends whatever body
/// it is given, and a HEAD response with DATA is a protocol error to the
/// client, which then never sees the 401 or 404. Content-Length is a GET's.
#[tokio::test]
async fn a_refused_head_has_no_body_over_http2_or_http11() {
    use http_body_util::{BodyExt, Empty};
    let (up, gw) = public_and_api().await;
    let (mut h2, _conn) = common::client::h2_connect(gw.addr).await;
    for (path, status) in [("/api/x", 401), ("/nowhere", 404)] {
        let get = common::raw::request(gw.addr, "GET", path, &[], "").await;
        assert_eq!(get.status, status, "{get:?}");
        let get_length = get.body.len().to_string();

        let req =
            http::Request::head(format!("http://app.test{path}")).body(Empty::<bytes::Bytes>::new()).unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        assert_eq!(resp.headers()["content-length"], get_length.as_str(), "a GET's length");
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        assert!(matches!(&body, Ok(b) if b.is_empty()), "HTTP/2 HEAD {path}: {body:?}");

        let head = common::raw::request(gw.addr, "HEAD", path, &[], "").await;
        assert_eq!(head.status, status, "{head:?}");
        assert_eq!(head.header("content-length"), Some(get_length.as_str()), "{head:?}");
        assert!(head.body.is_empty(), "HTTP/1.1 HEAD {path}: {head:?}");
    }
    assert_eq!(up.count(), 0, "nothing forwarded");
}
