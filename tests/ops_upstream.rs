//! DESIGN.md §3 [[upstreams]]: round-robin over `urls`, a target that refuses
//! connections is skipped for a while and used again once it is back; a
//! request whose connect failed goes to the next target; https with `tls_ca`.

mod common;

use std::time::{Duration, Instant};

use common::app::{write_leaf, App, TestCa};
use common::client::get_once;
use common::process::free_addr;
use common::raw::request;
use common::*;
use tokio::net::TcpListener;

fn config(urls: &str, upstream_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[log]
access_log = false

[tokens]
secret = "{SECRET}"

[store]
backend = "memory"

[[upstreams]]
name = "app"
urls = {urls}
connect_timeout = "500ms"
timeout = "3s"
{upstream_extra}

[[routes]]
path = "/**"
policy = "public"
upstream = "app"
"#
    )
}

/// The paused targets, each with its count of connect failures in a row.
fn paused(gw: &TestGateway) -> Vec<(String, u32)> {
    gw.gateway.snapshot().upstreams.get("app").unwrap().paused_targets()
}

#[tokio::test]
async fn a_refusing_target_is_skipped_and_used_again_once_it_is_back() {
    let live = App::start("live", Duration::ZERO).await;
    let dead = free_addr();
    // The dead target comes first: the very first request meets it.
    let gw =
        start_gateway(&config(&format!(r#"["http://{dead}", "http://{{upstream}}"]"#), ""), live.addr, None)
            .await;

    // A POST with a body: its connect failed, nothing was sent, the unread body
    // goes whole to the next target.
    let resp = request(gw.addr, "POST", "/form", &[], "name=value&n=1").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, "live");
    let posted = live.seen().pop().unwrap();
    assert_eq!((posted.method.as_str(), &posted.body[..]), ("POST", &b"name=value&n=1"[..]));
    assert_eq!(paused(&gw), [(dead.to_string(), 1)]);

    for i in 0..20 {
        let answer = get_once(gw.addr, &format!("/get/{i}")).await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "live"));
    }
    assert_eq!(live.hits(), 21, "every request reached the live target");
    // Not tried again during its pause: a connect to it would have failed and
    // counted (a refused connect is instant, so timing could not show it).
    assert_eq!(paused(&gw), [(dead.to_string(), 1)], "the paused target was tried");

    // The target comes back on the same port; once its pause (1 s) is over it
    // is probed and gets its share again.
    let revived = App::serve(TcpListener::bind(dead).await.unwrap(), "revived", Duration::ZERO, None);
    let back = Instant::now();
    while revived.hits() == 0 {
        assert!(back.elapsed() < Duration::from_secs(8), "the revived target got no request in 8 s");
        let answer = get_once(gw.addr, "/probe").await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(paused(&gw).is_empty());
    let (live_before, revived_before) = (live.hits(), revived.hits());
    for _ in 0..10 {
        assert_eq!(get_once(gw.addr, "/rr").await.unwrap().status, 200);
    }
    assert_eq!(live.hits() - live_before, 5, "round-robin over both targets again");
    assert_eq!(revived.hits() - revived_before, 5);
}

#[tokio::test]
async fn every_target_down_is_a_502_and_a_single_target_is_tried_again_later() {
    let dead = free_addr();
    let gw = start_gateway(&config(&format!(r#"["http://{dead}"]"#), ""), dead, None).await;
    let resp = request(gw.addr, "GET", "/x", &[], "").await;
    resp.assert_problem(502, "upstream_unavailable");
    assert_eq!(paused(&gw), [(dead.to_string(), 1)]);
    // Paused, but the only target: tried anyway rather than refused outright.
    let app = App::serve(TcpListener::bind(dead).await.unwrap(), "back", Duration::ZERO, None);
    let answer = get_once(gw.addr, "/y").await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "back"));
    assert!(paused(&gw).is_empty());
    assert_eq!(app.hits(), 1);
}

/// An upstream that accepts the connection and never answers the TLS
/// handshake is a hung upstream: 504 after `timeout`, not a wait for
/// `connect_timeout` and not a 502.
#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_504_after_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let cfg = config(&format!("[\"https://{addr}\"]"), "").replace(
        "connect_timeout = \"500ms\"\ntimeout = \"3s\"",
        "connect_timeout = \"10s\"\ntimeout = \"1s\"",
    );
    assert!(cfg.contains("connect_timeout = \"10s\""), "{cfg}");
    let gw = start_gateway(&cfg, addr, None).await;
    let started = Instant::now();
    request(gw.addr, "GET", "/x", &[], "").await.assert_problem(504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert!(!held.lock().unwrap().is_empty(), "the gateway never connected");
}

#[tokio::test]
async fn https_upstream_trusted_through_tls_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
    write_leaf(dir.path(), "upstream", &leaf);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::serve(listener, "tls app", Duration::ZERO, Some(common::app::acceptor(&leaf)));

    let trusted = config(
        r#"["https://{upstream}"]"#,
        &format!("tls_ca = \"{}\"", ca_path.display().to_string().replace('\\', "/")),
    );
    let gw = start_gateway(&trusted, app.addr, None).await;
    for i in 0..3 {
        let answer = get_once(gw.addr, &format!("/secure/{i}")).await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "tls app"));
    }
    let seen = app.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].target, "/secure/2");
    assert_eq!(seen[2].host.as_deref(), Some("app.test"), "the client's Host travels unchanged");

    // Without tls_ca the test CA is unknown: verification fails, nothing is sent.
    let untrusted = start_gateway(&config(r#"["https://{upstream}"]"#, ""), app.addr, None).await;
    let resp = request(untrusted.addr, "GET", "/secure/x", &[], "").await;
    resp.assert_problem(502, "upstream_unavailable");
    assert_eq!(app.hits(), 3);
}
