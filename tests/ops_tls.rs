//! DESIGN.md §3/§11: TLS termination with ALPN h2 and http/1.1 in front of a
//! plain HTTP/1.1 upstream, and the handshake bounded by header_read_timeout.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::app::{client_config, self_signed, write_leaf, Leaf, TestCa};
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

struct Env {
    up: Upstream,
    gw: TestGateway,
    leaf: Leaf,
    /// The config text as loaded (`{upstream}` filled in), for reloads.
    config: String,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    env_serving(self_signed(&["localhost", "127.0.0.1"])).await
}

/// The gateway serving `leaf` (its `cert_pem` is the chain written to `tls_cert`).
async fn env_serving(leaf: Leaf) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_leaf(dir.path(), "server", &leaf);
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "{}"
tls_key = "{}"
header_read_timeout = "1s"

[log]
access_log = false

[tokens]
secret = "{SECRET}"

[store]
backend = "memory"

[[upstreams]]
name = "app"
urls = ["http://{{upstream}}"]

[[routes]]
path = "/public/**"
policy = "public"
upstream = "app"
"#,
        cert.display(),
        key.display()
    );
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&config, up.addr, None).await;
    let config = config.replace("{upstream}", &up.addr.to_string());
    Env { up, gw, leaf, config, _dir: dir }
}

async fn tls_connect(addr: SocketAddr, leaf: &Leaf, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(client_config(&leaf.cert_pem, alpn));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake")
}

/// `tls_cert` is the full chain, and all of it is served: a client that
/// trusts only the root verifies the leaf through the intermediate jwtgate
/// sends with it.
#[tokio::test]
async fn the_configured_certificate_chain_is_served_whole() {
    let root = TestCa::new();
    let intermediate = root.intermediate();
    let leaf = intermediate.leaf(&["localhost"]);
    let chain =
        Leaf { cert_pem: format!("{}{}", leaf.cert_pem, intermediate.cert_pem), key_pem: leaf.key_pem };
    let env = env_serving(chain).await;
    let connector = TlsConnector::from(client_config(&root.cert_pem, &[b"h2", b"http/1.1"]));
    let tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a client trusting only the root verifies the chain");
    let (_, session) = tls.get_ref();
    assert_eq!(session.peer_certificates().map(<[_]>::len), Some(2), "leaf and intermediate");
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn alpn_h2_serves_http2_and_the_upstream_gets_http1_with_the_authority_as_host() {
    let env = env().await;
    let tls = tls_connect(env.gw.addr, &env.leaf, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let authority = format!("localhost:{}", env.gw.addr.port());
    for i in 0..3 {
        let req = http::Request::get(format!("https://{authority}/public/h2/{i}?q=1"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"upstream ok");
    }
    let seen = env.up.requests();
    assert_eq!(seen.len(), 3, "three streams on one connection, three upstream requests");
    for (i, r) in seen.iter().enumerate() {
        assert_eq!(r.version, http::Version::HTTP_11);
        assert_eq!(r.target, format!("/public/h2/{i}?q=1"));
        assert_eq!(r.header("host"), Some(authority.as_str()), "Host = the client's :authority");
        assert_eq!(r.header("x-forwarded-proto"), Some("https"));
    }
}

#[tokio::test]
async fn alpn_http1_serves_http1() {
    let env = env().await;
    let tls = tls_connect(env.gw.addr, &env.leaf, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = http::Request::get("/public/one")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_11);
        assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"upstream ok");
    }
    assert_eq!(env.up.count(), 2);
    assert_eq!(env.up.last().header("host"), Some("localhost"));
}

#[tokio::test]
async fn no_alpn_falls_back_to_http1() {
    let env = env().await;
    let tls = tls_connect(env.gw.addr, &env.leaf, &[]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req =
        http::Request::get("/public/x").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_header_read_timeout() {
    let env = env().await;
    let mut tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    // The start of a ClientHello record, then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "the gateway kept a stalled handshake open for 5 s");
    assert!(waited >= Duration::from_millis(800), "closed after {waited:?}, before the 1 s timeout");
    // The listener itself is unharmed.
    let tls = tls_connect(env.gw.addr, &env.leaf, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// A client that trusts another certificate refuses the one the gateway
/// presents: the handshake fails on certificate verification (not on a
/// connection the gateway dropped), and the same listener then serves a client
/// that trusts it.
#[tokio::test]
async fn an_untrusted_client_gets_no_session() {
    let env = env().await;
    let other = self_signed(&["localhost"]);
    let connector = TlsConnector::from(client_config(&other.cert_pem, &[b"h2"]));
    let tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    let result = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await;
    let err = result.expect_err("a client trusting another certificate must fail the handshake");
    let cause = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(cause, Some(rustls::Error::InvalidCertificate(_))),
        "the handshake must fail on the certificate, not on the connection: {err:?}"
    );
    assert_eq!(env.up.count(), 0);
    let tls = tls_connect(env.gw.addr, &env.leaf, &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req =
        http::Request::get("/public/x").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    assert_eq!(env.up.count(), 1);
}

/// curl `--http2 --cacert` negotiates h2 through the gateway (scripts/test.sh
/// installs curl; without it this test fails saying so, it never skips).
#[tokio::test]
async fn curl_http2_with_cacert() {
    assert!(
        std::process::Command::new("curl").arg("--version").output().is_ok(),
        "curl is not installed: apt-get install curl (scripts/test.sh does)"
    );
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &env.leaf.cert_pem).unwrap();
    let port = env.gw.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(format!("https://localhost:{port}/public/curl"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "upstream ok\n200 2", "body, status and HTTP version");
    assert_eq!(env.up.last().target, "/public/curl");
}

#[tokio::test]
async fn a_reload_serves_the_renewed_certificate_to_new_connections() {
    let env = env().await;
    let renewed = self_signed(&["localhost", "127.0.0.1"]);
    write_leaf(env._dir.path(), "server", &renewed);
    let runtime =
        jwtgate::config::parse(&env.config, std::path::Path::new(".")).expect("renewed config loads");
    env.gw.gateway.swap(runtime);
    let connector = TlsConnector::from(client_config(&renewed.cert_pem, &[b"http/1.1"]));
    let tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    let ok = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await;
    assert!(ok.is_ok(), "the renewed certificate is served after the reload");
    let old = TlsConnector::from(client_config(&env.leaf.cert_pem, &[b"http/1.1"]));
    let tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    let stale = old.connect(ServerName::try_from("localhost").unwrap(), tcp).await;
    assert!(stale.is_err(), "the old certificate is no longer served");
}

#[tokio::test]
async fn an_unusable_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let text = format!(
        "[server]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n[tokens]\nsecret = \"{SECRET}\"\n"
    );
    let errs = jwtgate::config::parse(&text, dir.path()).unwrap_err();
    assert!(errs.iter().any(|e| e.key == "server.tls_cert"), "{errs}");
}
