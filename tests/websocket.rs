//! WebSocket upgrades through the gateway: authenticated at the handshake,
//! tunnelled both ways, closed when the session is revoked.

#![allow(clippy::result_large_err)] // tungstenite's handshake callback signature

mod common;

use std::time::Duration;

use common::raw::{answering_upstream, get, request};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ROUTES: &str = r#"
[[routes]]
path = "/login"
handler = "login"
upstream = "ws"

[[routes]]
path = "/logout"
handler = "logout"

[[routes]]
path = "/ws"
policy = "access"
upstream = "ws"

[[routes]]
path = "/public-ws"
policy = "public"
upstream = "ws"

[[upstreams]]
name = "ws"
urls = ["http://{ws}"]
"#;

/// An echo WebSocket server that also answers the identity header on any
/// plain HTTP request (so it doubles as the login app) — and records the
/// handshake headers it saw.
async fn echo_upstream() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<http::HeaderMap>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let cb = |req: &http::Request<()>, resp| {
                    let _ = tx.send(req.headers().clone());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn login_app() -> Upstream {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    up
}

async fn setup(
) -> (TestGateway, tokio::sync::mpsc::UnboundedReceiver<http::HeaderMap>, Upstream, std::net::SocketAddr) {
    let (ws, seen) = echo_upstream().await;
    let app = login_app().await;
    let routes = ROUTES.replace("{ws}", &ws.to_string()).replace(
        "upstream = \"ws\"\n\n[[routes]]\npath = \"/logout\"",
        "upstream = \"app\"\n\n[[routes]]\npath = \"/logout\"",
    );
    let cfg = base_config(&routes).replace("[store]\n", "[cookies]\nsecure = false\n\n[store]\n");
    let gw = start_gateway(&cfg, app.addr, None).await;
    (gw, seen, app, ws)
}

async fn connect(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://app.test{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    tokio_tungstenite::client_async(req, stream).await.map(|(ws, _)| ws)
}

#[tokio::test]
async fn handshake_without_a_token_is_refused() {
    let (gw, _seen, _app, _ws) = setup().await;
    let err = connect(&gw, "/ws", &[]).await.expect_err("no token, no tunnel");
    let text = err.to_string();
    assert!(text.contains("401"), "{text}");
}

#[tokio::test]
async fn tunnel_carries_messages_both_ways_with_claims_at_the_handshake() {
    let (gw, mut seen, _app, _ws) = setup().await;
    let login = request(gw.addr, "POST", "/login", &[], "").await;
    let token = login.json()["access_token"].as_str().unwrap().to_owned();
    let mut ws =
        connect(&gw, &format!("/ws?token={token}"), &[("X-Auth-Subject", "root")]).await.expect("handshake");
    ws.send(Message::text("ping")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping");
    let headers = seen.recv().await.unwrap();
    assert_eq!(headers.get("x-auth-subject").unwrap(), "alice", "claims, not the spoofed header");
    assert_eq!(headers.get_all("x-auth-subject").iter().count(), 1);
}

#[tokio::test]
async fn cookie_handshake_from_another_site_is_refused() {
    let (gw, _seen, _app, _ws) = setup().await;
    let login = request(gw.addr, "POST", "/login", &[], "").await;
    let token = login.json()["access_token"].as_str().unwrap().to_owned();
    let cookie = format!("access_token_cookie={token}");
    let err = connect(&gw, "/ws", &[("Cookie", &cookie), ("Origin", "https://evil.test")])
        .await
        .expect_err("CSWSH");
    assert!(err.to_string().contains("403"), "{err}");
    let ok = connect(&gw, "/ws", &[("Cookie", &cookie), ("Origin", "http://app.test")]).await;
    assert!(ok.is_ok(), "same-origin cookie handshake works");
}

/// A fresh login's `access` or `refresh` token as its cookie, `name_token_cookie=…`.
async fn login_cookie(gw: &TestGateway, kind: &str) -> String {
    let login = request(gw.addr, "POST", "/login", &[], "").await;
    format!("{kind}_token_cookie={}", login.json()[format!("{kind}_token")].as_str().unwrap())
}

#[tokio::test]
async fn refresh_cookie_handshake_from_another_site_is_refused() {
    let (gw, _seen, _app, _ws) = setup().await;
    // No access cookie: the refresh cookie carries the session (an implicit refresh).
    let cookie = login_cookie(&gw, "refresh").await;
    let err = connect(&gw, "/ws", &[("Cookie", &cookie), ("Origin", "https://evil.test")])
        .await
        .expect_err("CSWSH through the refresh cookie");
    let tokio_tungstenite::tungstenite::Error::Http(refused) = err else { panic!("{err}") };
    assert_eq!(refused.status(), 403);
    // Refused before the refresh: a cross-site page cannot make the session rotate.
    assert!(refused.headers().get("set-cookie").is_none(), "{:?}", refused.headers());
    let cookie = login_cookie(&gw, "refresh").await;
    let ok = connect(&gw, "/ws", &[("Cookie", &cookie), ("Origin", "http://app.test")]).await;
    assert!(ok.is_ok(), "a same-origin refresh-cookie handshake works: {:?}", ok.err());
}

#[tokio::test]
async fn a_public_tunnel_still_refuses_a_cross_site_handshake_carrying_the_access_cookie() {
    // The access cookie travels to the upstream (`token = "keep"`), which
    // may read it: the handshake must come from us.
    let (gw, _seen, _app, _ws) = setup().await;
    let cookie = login_cookie(&gw, "access").await;
    let err = connect(&gw, "/public-ws", &[("Cookie", &cookie), ("Origin", "https://evil.test")])
        .await
        .expect_err("CSWSH on a public route");
    assert!(err.to_string().contains("403"), "{err}");
    // Without our cookies a public tunnel is anyone's.
    let ok = connect(&gw, "/public-ws", &[("Origin", "https://evil.test")]).await;
    assert!(ok.is_ok(), "a cookie-less cross-site handshake on a public route: {:?}", ok.err());
    let ok = connect(&gw, "/public-ws", &[("Cookie", &cookie), ("Origin", "http://app.test")]).await;
    assert!(ok.is_ok(), "same-origin: {:?}", ok.err());
}

#[tokio::test]
async fn an_upgrade_with_an_unsafe_method_still_needs_the_double_submit() {
    let (gw, _seen, _app, _ws) = setup().await;
    let cookie = login_cookie(&gw, "access").await;
    let post = format!(
        "POST /ws HTTP/1.1\r\nHost: app.test\r\nOrigin: http://app.test\r\nCookie: {cookie}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n"
    );
    common::raw::send_raw(gw.addr, &post).await.assert_problem(403, "csrf_failed");
}

#[tokio::test]
async fn h2c_upgrade_is_never_forwarded() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(
        &base_config("[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n"),
        up.addr,
        None,
    )
    .await;
    let resp = get(
        gw.addr,
        "/x",
        &[
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ("Connection", "Upgrade, HTTP2-Settings"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert!(seen.headers.get("upgrade").is_none());
    assert!(seen.headers.get("http2-settings").is_none());
}

#[tokio::test]
/// Logged out with the handshake's own token, or with the session's refresh
/// token: the second revokes the family, not the handshake token's `jti`, so
/// the tunnel must watch the family too.
async fn an_open_tunnel_closes_when_its_session_is_revoked() {
    let (gw, _seen, _app, _ws) = setup().await;
    for logout_with in ["access_token", "refresh_token"] {
        let login = request(gw.addr, "POST", "/login", &[], "").await;
        let token = login.json()["access_token"].as_str().unwrap().to_owned();
        let ended_by = login.json()[logout_with].as_str().unwrap().to_owned();
        let mut ws = connect(&gw, &format!("/ws?token={token}"), &[]).await.expect("handshake");
        ws.send(Message::text("before")).await.unwrap();
        assert!(ws.next().await.unwrap().is_ok());
        let out =
            request(gw.addr, "POST", "/logout", &[("Authorization", &format!("Bearer {ended_by}"))], "")
                .await;
        assert_eq!(out.status, 204, "{}", out.body);
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the tunnel stayed open after logout with the {logout_with}");
    }
}

/// Either transport a test tunnel may run on.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A tunnel on `/public-ws`, over TLS when `tls` is given.
async fn tunnel(
    gw: &TestGateway,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(gw.addr).await?;
    let stream: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            Box::new(connector.connect(name, tcp).await?)
        }
    };
    let req = "ws://app.test/public-ws".into_client_request().unwrap();
    Ok(tokio_tungstenite::client_async(req, stream).await?.0)
}

/// Sends `text` and expects it back within a few seconds.
async fn echoes<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    text: &str,
) {
    ws.send(Message::text(text)).await.unwrap();
    let echoed =
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("no echo").unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
}

/// Whether the gateway closes `ws` within `limit`.
async fn closes_within<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    limit: Duration,
) -> bool {
    let closed = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

/// An open tunnel is still its client connection, plain or over TLS: it
/// counts against `max_connections` and in `jwtgate_connections_active` until
/// it closes. The connection's task used to end at the upgrade and let go of
/// both, so a client could hold any number of tunnels (each with an upstream
/// connection) past the cap, uncounted.
#[tokio::test]
async fn a_tunnel_keeps_its_connections_place_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = common::app::self_signed(&["localhost"]);
    let (cert, key) = common::app::write_leaf(dir.path(), "server", &leaf);
    let tls_keys = format!("tls_cert = \"{}\"\ntls_key = \"{}\"\n", cert.display(), key.display());
    let connector =
        tokio_rustls::TlsConnector::from(common::app::client_config(&leaf.cert_pem, &[b"http/1.1"]));
    for tls in [false, true] {
        let (ws, _seen) = echo_upstream().await;
        let server = format!("[server]\nmax_connections = 2\n{}", if tls { tls_keys.as_str() } else { "" });
        let cfg = base_config(&ROUTES.replace("{ws}", &ws.to_string())).replace("[server]\n", &server);
        let gw = start_gateway(&cfg, ws, None).await;
        let connector = tls.then_some(&connector);
        let mut first = tunnel(&gw, connector).await.expect("the first tunnel");
        let mut second = tunnel(&gw, connector).await.expect("the second tunnel");
        echoes(&mut first, "one").await;
        echoes(&mut second, "two").await;
        assert_eq!(gw.gateway.metrics.connections_active.get(), 2, "tls {tls}");
        assert!(tunnel(&gw, connector).await.is_err(), "tls {tls}: a third tunnel past max_connections = 2");
        first.close(None).await.unwrap();
        drop(first);
        let freed = within(Duration::from_secs(5), || async { tunnel(&gw, connector).await.is_ok() }).await;
        assert!(freed, "tls {tls}: a closed tunnel never gave its place back");
        echoes(&mut second, "still open").await;
    }
}

/// A tunnel that moves no byte either way for `idle_timeout` is closed, as
/// nginx's `proxy_read_timeout` closes a quiet one; one that keeps talking
/// stays open however long it lives. Before, a quiet tunnel stayed for ever.
#[tokio::test]
async fn a_quiet_tunnel_closes_after_idle_timeout_and_a_talking_one_stays() {
    let (ws, _seen) = echo_upstream().await;
    let cfg = base_config(&ROUTES.replace("{ws}", &ws.to_string()))
        .replace("[server]\n", "[server]\nidle_timeout = \"1s\"\n");
    let gw = start_gateway(&cfg, ws, None).await;
    let mut quiet = tunnel(&gw, None).await.expect("handshake");
    let mut talking = tunnel(&gw, None).await.expect("handshake");
    echoes(&mut quiet, "hello").await;
    let opened = std::time::Instant::now();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        echoes(&mut talking, &format!("message {i}")).await;
    }
    assert!(closes_within(&mut quiet, Duration::from_secs(1)).await, "open after {:?}", opened.elapsed());
    echoes(&mut talking, "still open").await;
    assert!(opened.elapsed() > Duration::from_secs(2), "too fast to prove anything");
}

#[tokio::test]
async fn a_parked_keep_alive_connection_can_still_upgrade() {
    let (gw, _seen, _app, _ws) = setup().await;
    // A login on a keep-alive connection, which then idles until parked.
    let mut conn = common::raw::RawConn::connect(gw.addr).await;
    conn.send("POST /login HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n").await;
    let (status, body) = conn.response().await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw.gateway.metrics.connections_parked.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the connection was never parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The handshake on the same socket, served by a new hyper connection.
    let req = format!("ws://app.test/ws?token={token}").into_client_request().unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, conn.into_stream()).await.expect("handshake");
    ws.send(Message::text("after parking")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "after parking");
    assert_eq!(gw.gateway.metrics.connections_parked.get(), 0, "a tunnel is not parked");
}

/// The head of a response, read byte by byte so nothing after it is taken.
async fn response_head(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// RFC 6455's example key and the accept it calls for.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket handshake on the public route, as a browser sends it.
fn public_handshake() -> String {
    format!(
        "GET /public-ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The identity header is the app's word to jwtgate alone: the answer to an
/// upgrade, switched or not, reaches the client without it, as every other
/// answer does.
#[tokio::test]
async fn an_upgrade_answer_never_carries_the_identity_header() {
    use tokio::io::AsyncWriteExt;
    let identity = "X-Jwtgate-Identity: {\"sub\":\"admin\"}\r\n";
    let cases = [
        (
            "switched",
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\n{identity}\r\n"
            ),
            "HTTP/1.1 101",
        ),
        ("not switched", format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{identity}\r\n"), "HTTP/1.1 200"),
    ];
    for (case, answer, status) in cases {
        let (app, _) = answering_upstream(answer).await;
        let gw = start_gateway(&base_config(&ROUTES.replace("{ws}", &app.to_string())), app, None).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(public_handshake().as_bytes()).await.unwrap();
        let head = response_head(&mut s).await;
        assert!(head.starts_with(status), "{case}: {head}");
        assert!(!head.to_ascii_lowercase().contains("x-jwtgate-identity"), "{case}: {head}");
    }
}

/// "WebSocket smuggling": a public endpoint that answers a handshake with a
/// 101 but keeps reading HTTP must not give the client a raw tunnel, or the
/// requests written into it reach the app past the policy (here `/ws`, an
/// access route, with a spoofed identity). Only the handshake's real answer
/// opens one, which the last case shows the probe would see.
#[tokio::test]
async fn a_101_that_does_not_answer_the_handshake_opens_no_tunnel() {
    use tokio::io::AsyncWriteExt;
    let cases = [
        ("a bare 101", "HTTP/1.1 101 Switching Protocols\r\n\r\n".to_owned(), false),
        (
            "a wrong accept",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
                .to_owned(),
            false,
        ),
        (
            "another protocol",
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
            false,
        ),
        (
            "the handshake's answer",
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
            true,
        ),
    ];
    for (case, answer, tunnels) in cases {
        let (app, got) = answering_upstream(answer).await;
        let gw = start_gateway(&base_config(&ROUTES.replace("{ws}", &app.to_string())), app, None).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(public_handshake().as_bytes()).await.unwrap();
        let head = response_head(&mut s).await;
        let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nX-Auth-Subject: admin\r\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
        let smuggled = seen.contains("GET /ws HTTP/1.1");
        if tunnels {
            assert!(head.starts_with("HTTP/1.1 101"), "{case}: {head}");
            assert!(smuggled, "{case}: the tunnel carried nothing, so the probe proves nothing:\n{seen}");
        } else {
            assert!(head.starts_with("HTTP/1.1 502"), "{case}: {head}");
            assert!(!smuggled, "{case}: a request reached the app through the tunnel:\n{seen}");
            assert_eq!(seen.matches("\r\n\r\n").count(), 1, "{case}: {seen}");
        }
    }
}

/// A 101 answers a WebSocket handshake and nothing else. To a GET without
/// `Upgrade`, one with `Upgrade: websocket` but no `Connection: upgrade`, a
/// POST dressed as a handshake (RFC 6455 §4.1: a handshake is a GET, so
/// this is an ordinary request and its `Upgrade` goes no further) and an
/// HTTP/2 GET, an upstream's 101 is 502, and nothing written after it
/// reaches the app. It used to be passed on: a 101 on a connection that had
/// switched to nothing, and on HTTP/2 a status RFC 9113 §8.6 forbids.
#[tokio::test]
async fn a_101_to_anything_but_a_websocket_handshake_is_502() {
    use tokio::io::AsyncWriteExt;
    let switched = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    let handshake_headers =
        format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n");
    let cases = [
        ("no upgrade", "GET /public-ws HTTP/1.1\r\nHost: app.test\r\n\r\n".to_owned()),
        (
            "no Connection: upgrade",
            format!("GET /public-ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"),
        ),
        (
            "a POST",
            format!("POST /public-ws HTTP/1.1\r\nHost: app.test\r\n{handshake_headers}Content-Length: 0\r\n\r\n"),
        ),
    ];
    for (case, request) in cases {
        let (app, got) = answering_upstream(switched.clone()).await;
        let gw = start_gateway(&base_config(&ROUTES.replace("{ws}", &app.to_string())), app, None).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let head = response_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 502"), "{case}: {head}");
        let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nX-Auth-Subject: admin\r\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = String::from_utf8_lossy(&got.lock().unwrap()).to_ascii_lowercase();
        assert_eq!(seen.matches("\r\n\r\n").count(), 1, "{case}: {seen}");
        if case == "a POST" {
            assert!(!seen.contains("upgrade"), "{case}: the upgrade was forwarded:\n{seen}");
        }
    }
    let (app, _) = answering_upstream(switched).await;
    let gw = start_gateway(&base_config(&ROUTES.replace("{ws}", &app.to_string())), app, None).await;
    let (mut send, _conn) = common::client::h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test/public-ws").body(http_body_util::Empty::new()).unwrap();
    let resp = send.send_request(req).await.expect("an answer");
    assert_eq!(resp.status(), 502, "HTTP/2");
}

#[tokio::test]
async fn a_handshake_without_one_key_is_refused_before_the_app() {
    let (app, got) = answering_upstream("HTTP/1.1 101 Switching Protocols\r\n\r\n".to_owned()).await;
    let gw = start_gateway(&base_config(&ROUTES.replace("{ws}", &app.to_string())), app, None).await;
    for keys in ["", &format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: {KEY}\r\n")] {
        let req = format!(
            "GET /public-ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
             {keys}Sec-WebSocket-Version: 13\r\n\r\n"
        );
        common::raw::send_raw(gw.addr, &req).await.assert_problem(400, "bad_request");
    }
    assert!(got.lock().unwrap().is_empty(), "the app got the handshake");
}
