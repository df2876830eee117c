//! Key rotation by reload, the connection cap, and logs that never carry a
//! credential.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::client::h2_connect;
use common::raw::{get, request};
use common::*;
use jwtgate::token::TokenType;
use serde_json::Map;

const SECRET_2: &str = "second-secret-second-secret-second-secret-00";

fn config(tokens: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[log]
access_log = false
{tokens}
[store]
backend = "memory"
[[upstreams]]
name = "app"
urls = ["http://{{upstream}}"]
[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"
"#
    )
}

fn reload(gw: &TestGateway, up: &Upstream, tokens: &str) {
    let text = config(tokens).replace("{upstream}", &up.addr.to_string());
    gw.gateway.swap(jwtgate::config::parse(&text, std::path::Path::new(".")).expect("valid reload"));
}

#[tokio::test]
async fn key_rotation_by_reload_accepts_the_new_kid_at_once_and_the_old_until_removed() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&config(&format!("[tokens]\nsecret = \"{SECRET}\"\nkid = \"k1\"")), up.addr, None)
        .await;
    let old = mint(&gw, TokenType::Access, false, unix_now(), &Map::new());
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(get(gw.addr, "/api/x", &[("Authorization", &bearer(&old))]).await.status, 200);
    // Rotate: k2 signs, k1 still verifies.
    reload(
        &gw,
        &up,
        &format!(
            "[tokens]\nsecret = \"{SECRET_2}\"\nkid = \"k2\"\n[[tokens.accept]]\nkid = \"k1\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\""
        ),
    );
    let new = mint(&gw, TokenType::Access, false, unix_now(), &Map::new());
    assert_eq!(
        get(gw.addr, "/api/x", &[("Authorization", &bearer(&new))]).await.status,
        200,
        "new kid at once"
    );
    assert_eq!(get(gw.addr, "/api/x", &[("Authorization", &bearer(&old))]).await.status, 200, "old kid kept");
    // Retire k1.
    reload(&gw, &up, &format!("[tokens]\nsecret = \"{SECRET_2}\"\nkid = \"k2\""));
    get(gw.addr, "/api/x", &[("Authorization", &bearer(&old))]).await.assert_problem(401, "invalid_token");
    assert_eq!(get(gw.addr, "/api/x", &[("Authorization", &bearer(&new))]).await.status, 200);
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let cfg = config(&format!("[tokens]\nsecret = \"{SECRET}\""))
        .replace("[server]\n", "[server]\nmax_connections = 2\n");
    let gw = start_gateway(&cfg, up.addr, None).await;
    // Two idle connections hold both permits (wait until the gateway has them).
    let a = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let b = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut metric = 0;
    while metric < 2 && std::time::Instant::now() < deadline {
        metric = gw.gateway.metrics.connections_active.get();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric, 2, "both connections accepted");
    let third = get(gw.addr, "/api/x", &[]).await;
    assert_eq!(third.status, 0, "the third connection is closed without a response: {third:?}");
    drop((a, b));
    // Capacity is back once they close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = get(gw.addr, "/api/x", &[]).await;
        if resp.status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "capacity never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn json_access_logs_never_carry_a_token_or_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nwatch_config = false\n[log]\nformat = \"json\"\nlevel = \"debug\"\n\
         [tokens]\nsecret = \"{SECRET}\"\nlocations = [\"headers\", \"cookies\", \"query\"]\n[store]\nbackend = \"memory\"\n\
         [[upstreams]]\nname = \"app\"\nurls = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\npath = \"/api/**\"\npolicy = \"access\"\nupstream = \"app\"\n"
    );
    std::fs::write(dir.path().join("gateway.toml"), cfg).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["run", "-c"])
        .arg(dir.path().join("gateway.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "gateway did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A forged token in every location, plus a secret-looking query value.
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLXRoYXQtaXMtbm90LXJlYWw";
    for req in [
        format!("GET /api/a HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/b HTTP/1.1\r\nHost: t\r\nCookie: access_token_cookie={token}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/c?token={token}&q=hunter2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        // In the path: a magic link's or an e-mail check's segment, alone or
        // inside a segment.
        format!("GET /api/verify/{token} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        format!("GET /api/link-{token}.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    }
    // A valid token to an upstream that refuses: 502, and a warning naming
    // the address it could not reach.
    let n = unix_now();
    let valid = hs256_with_header(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &format!(r#"{{"sub":"alice","jti":"j1","iat":{n},"exp":{}}}"#, n + 60),
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!(
        "GET /api/d HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {valid}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Flattened JSON: an event's own fields must not repeat the line's keys
    // (a field named `target` would hide which module spoke, or the reverse).
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        for key in ["\"target\":", "\"level\":", "\"timestamp\":"] {
            assert_eq!(line.matches(key).count(), 1, "{key} once: {line}");
        }
    }
    let failed = logs.lines().find(|l| l.contains("upstream target unreachable"));
    let failed = failed.unwrap_or_else(|| panic!("the refused connect is not logged:\n{logs}"));
    assert!(failed.contains("\"addr\":\"127.0.0.1:9\""), "{failed}");
    let access: Vec<&str> =
        logs.lines().filter(|l| l.contains("jwtgate::access") && !l.contains("\"status\":502")).collect();
    assert_eq!(access.len(), 5, "one access event per request:\n{logs}");
    for line in &access {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        // DESIGN §11's fields, at the top level of the line.
        assert_eq!(event["status"], 401, "{line}");
        assert_eq!(
            (event["route"].as_str(), event["policy"].as_str()),
            (Some("/api/**"), Some("access")),
            "{line}"
        );
        assert!(event["decision"].as_str().is_some_and(|d| d.ends_with("_token")), "{line}");
        assert!(event["latency"].as_f64().is_some_and(|s| s > 0.0 && s < 10.0), "latency in seconds: {line}");
        assert!(event["path"].as_str().is_some_and(|p| p.starts_with("/api/")), "{line}");
    }
    let paths: Vec<&str> =
        access.iter().filter_map(|l| l.split("\"path\":\"").nth(1)?.split('"').next()).collect();
    for marked in ["/api/verify/[token]", "/api/link-[token].html"] {
        assert!(paths.contains(&marked), "the path's token is marked, the rest kept: {paths:?}");
    }
    for secret in [token, "eyJzdWIiOiJtYWxsb3J5In0", "hunter2", SECRET] {
        assert!(!logs.contains(secret), "a credential reached the logs: {secret}\n{logs}");
    }
}

/// The session paths handle real tokens: a login, an explicit refresh, a
/// replay inside the grace, an access call and a logout, all logged at
/// debug, leave no token in the log.
#[tokio::test]
async fn no_minted_or_presented_token_reaches_the_log_at_debug() {
    use common::process::{free_addr, spawn_jwtgate, wait_exit};
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    let listen = free_addr();
    let cfg = format!(
        "[server]\nlisten = \"{listen}\"\nwatch_config = false\n[log]\nformat = \"json\"\nlevel = \"debug\"\n\
         [tokens]\nsecret = \"{SECRET}\"\n[cookies]\nsecure = false\n[store]\nbackend = \"memory\"\n\
         [[upstreams]]\nname = \"app\"\nurls = [\"http://{}\"]\n{}",
        up.addr,
        common::session::SESSION_ROUTES
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_jwtgate(dir.path(), &cfg, &[]);
    common::client::wait_listening(listen, Duration::from_secs(10)).await;
    let bearer = |token: &str| format!("Bearer {token}");
    let login = request(listen, "POST", "/login", &[("Content-Type", "application/json")], "{}").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let (access, refresh) =
        (login.json()["access_token"].to_string(), login.json()["refresh_token"].to_string());
    let (access, refresh) = (access.trim_matches('"').to_owned(), refresh.trim_matches('"').to_owned());
    let rotated = get(listen, "/refresh", &[("Authorization", &bearer(&refresh))]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_access = rotated.json()["access_token"].as_str().unwrap().to_owned();
    let new_refresh = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(get(listen, "/api/x", &[("Authorization", &bearer(&new_access))]).await.status, 200);
    let replay = get(listen, "/refresh", &[("Authorization", &bearer(&refresh))]).await;
    assert_eq!(replay.status, 200, "a replay inside the grace: {}", replay.body);
    let out = request(listen, "POST", "/logout", &[("Authorization", &bearer(&new_access))], "").await;
    assert_eq!(out.status, 204, "{}", out.body);
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    wait_exit(&mut child, Duration::from_secs(10)).await.expect("exited after SIGTERM");
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
    assert!(log.lines().count() > 5, "too little logged at debug to judge:\n{log}");
    for (what, token) in [
        ("access", &access),
        ("refresh", &refresh),
        ("new access", &new_access),
        ("new refresh", &new_refresh),
    ] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "the {what} token reached the log:\n{log}");
    }
}

#[tokio::test]
async fn idle_http2_connections_close_after_idle_timeout_but_busy_ones_do_not() {
    let hung = Upstream::start(UpstreamBehavior::Hang).await;
    let cfg = base_config("[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n")
        .replace("[server]\n", "[server]\nidle_timeout = \"1s\"\n");
    let gw = start_gateway(&cfg, hung.addr, None).await;
    // Busy: a request that takes 2 s (upstream timeout → 504) outlives idle_timeout.
    let (mut send, conn) = h2_connect(gw.addr).await;
    let req = http::Request::get("http://app.test/slow").body(http_body_util::Empty::new()).unwrap();
    let started = std::time::Instant::now();
    let resp = send.send_request(req).await.expect("a busy connection is not closed as idle");
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // Idle: closed (GOAWAY) about idle_timeout after the last response.
    tokio::time::timeout(Duration::from_secs(5), conn).await.expect("idle h2 connection still open").unwrap();
}

#[tokio::test]
async fn a_reload_keeps_the_pool_of_an_unchanged_upstream() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let tokens = format!("[tokens]\nsecret = \"{SECRET}\"");
    let gw = start_gateway(&config(&tokens), up.addr, None).await;
    let before = gw.gateway.snapshot().upstreams.get("app").unwrap().clone();
    reload(&gw, &up, &tokens.replace("[tokens]", "[tokens]\nleeway = \"10s\""));
    let after = gw.gateway.snapshot().upstreams.get("app").unwrap().clone();
    assert!(std::sync::Arc::ptr_eq(&before, &after), "same settings: same pool");
    let text = config(&tokens)
        .replace("{upstream}", &up.addr.to_string())
        .replace("urls = [", "timeout = \"9s\"\nurls = [");
    gw.gateway.swap(jwtgate::config::parse(&text, std::path::Path::new(".")).unwrap());
    let changed = gw.gateway.snapshot().upstreams.get("app").unwrap().clone();
    assert!(!std::sync::Arc::ptr_eq(&after, &changed), "changed settings: a new pool");
    assert_eq!(get(gw.addr, "/api/x", &[]).await.status, 401, "still serving");
}

#[tokio::test]
async fn http2_rapid_reset_floods_cause_no_upstream_work_and_others_are_still_served() {
    let up = Upstream::start(UpstreamBehavior::Hang).await;
    let gw = start_gateway(
        &base_config("[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n"),
        up.addr,
        None,
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    // CVE-2023-44487: open a stream and reset it at once, over and over.
    let mut sent = 0;
    for _ in 0..10_000 {
        let Ok(ready) = client.clone().ready().await else { break };
        client = ready;
        let req = http::Request::get("http://app.test/x").body(()).unwrap();
        let Ok((_resp, mut stream)) = client.send_request(req, false) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    drop(client);
    let _ =
        tokio::time::timeout(Duration::from_secs(5), driver).await.expect("the flood connection winds down");
    // The attack works by making the server start work it then abandons; here
    // a reset stream is cancelled before it reaches the upstream (at most the
    // 100-stream cap could ever be in flight).
    assert!(sent > 1000, "the flood ran ({sent} resets)");
    assert!(up.count() <= 100, "{sent} resets caused {} upstream requests", up.count());
    // Other clients are unaffected.
    let (mut send, _c) = h2_connect(gw.addr).await;
    let slow = http::Request::get("http://app.test/y").body(http_body_util::Empty::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(slow)).await;
    assert!(resp.is_ok(), "a well-behaved client still gets an answer (504 from the hung upstream)");
}

/// Each snapshot resolves its routes' upstreams and 200-counters by route
/// index once; a reload that inserts a route in front and moves a path to
/// another upstream must send traffic, and count it, by the new table.
#[tokio::test]
async fn a_reload_that_reorders_routes_routes_and_counts_by_the_new_table() {
    let (a, b) = (Upstream::start(UpstreamBehavior::Ok).await, Upstream::start(UpstreamBehavior::Ok).await);
    let config = |routes: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n[tokens]\nsecret = \"{SECRET}\"\n\
             [store]\nbackend = \"memory\"\n\
             [[upstreams]]\nname = \"a\"\nurls = [\"http://{}\"]\n\
             [[upstreams]]\nname = \"b\"\nurls = [\"http://{}\"]\n{routes}",
            a.addr, b.addr
        )
    };
    let before = "[[routes]]\npath = \"/api/**\"\npolicy = \"public\"\nupstream = \"a\"\n";
    let gw = start_gateway(&config(before), a.addr, None).await;
    assert_eq!(get(gw.addr, "/api/one", &[]).await.status, 200);
    assert_eq!((a.count(), b.count()), (1, 0));

    let after = "[[routes]]\npath = \"/new/**\"\npolicy = \"public\"\nupstream = \"a\"\n\
                 [[routes]]\npath = \"/api/**\"\npolicy = \"public\"\nupstream = \"b\"\n";
    gw.gateway.swap(jwtgate::config::parse(&config(after), std::path::Path::new(".")).expect("valid reload"));
    assert_eq!(get(gw.addr, "/api/two", &[]).await.status, 200);
    assert_eq!(get(gw.addr, "/new/three", &[]).await.status, 200);
    assert_eq!(get(gw.addr, "/api/four", &[]).await.status, 200);
    assert_eq!((a.count(), b.count()), (2, 2), "/api/** now goes to b, /new/** to a");
    assert_eq!(b.last().target, "/api/four");

    let text = gw.gateway.metrics.encode();
    for (series, count) in [
        (r#"jwtgate_requests_total{route="/api/**",policy="public",status="200"}"#, 3),
        (r#"jwtgate_requests_total{route="/new/**",policy="public",status="200"}"#, 1),
    ] {
        let line =
            text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} in:\n{text}"));
        assert_eq!(line, format!("{series} {count}"), "{text}");
    }
}

/// The process's CPU time so far, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, a pending connection fails every accept at once.
/// Each listener pauses before it retries; the admin listener used to retry
/// at once and spun a whole core while a Prometheus scrape waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_do_not_spin_when_out_of_file_descriptors() {
    use common::client::wait_listening;
    use common::process::free_addr;
    let (listen, admin) = (free_addr(), free_addr());
    let text = format!(
        "[server]\nlisten = \"{listen}\"\nwatch_config = false\nheader_read_timeout = \"60s\"\n\
         idle_timeout = \"60s\"\n\n[admin]\nlisten = \"{admin}\"\n\n[log]\nlevel = \"error\"\n\n\
         [tokens]\nsecret = \"{SECRET}\"\n\n[store]\nbackend = \"memory\"\n\n\
         [[upstreams]]\nname = \"app\"\nurls = [\"http://127.0.0.1:9\"]\n\n\
         [[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_jwtgate");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 48 && exec {bin} run -c {}", cfg.display()))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(listen, Duration::from_secs(10)).await;
    wait_listening(admin, Duration::from_secs(10)).await;
    // More connections than descriptors: the main listener runs out.
    let held: Vec<_> = (0..64).map(|_| std::net::TcpStream::connect(listen).unwrap()).collect();
    let _scrape = std::net::TcpStream::connect(admin).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = cpu_ticks(pid) - before;
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
    // A spinning loop takes all 200 ticks of 2 s; pausing 20 ms between tries, a few.
    assert!(busy < 50, "out of descriptors, the gateway burned {busy} clock ticks in 2 s");
}

/// A client that sends half an HTTP/2 preface and holds it keeps the socket
/// readable, so the protocol sniff polls for the rest. At a fixed 1 ms, 300
/// such connections (cheap to hold, until header_read_timeout) kept a core
/// busy; the pause now grows, so they cost next to nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_an_http2_preface_held_open_costs_no_cpu() {
    use common::process::{GatewayProc, ProcConfig};
    use std::io::Write;
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let config = ProcConfig::new(up.addr);
    // header_read_timeout 5 s: long enough to measure within it.
    let gw = GatewayProc::start(config).await;
    let held: Vec<_> = (0..300)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(gw.config.listen).unwrap();
            s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = gw.child.id();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = cpu_ticks(pid) - before;
    drop(held);
    assert!(busy < 40, "300 half prefaces burned {busy} clock ticks of 200 in 2 s");
}

/// ...and a preface that does arrive in pieces is still HTTP/2: the server
/// answers with its SETTINGS frame.
#[tokio::test]
async fn an_http2_preface_split_across_a_pause_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_up, gw) = public_and_api().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The rest of the preface, then an empty SETTINGS frame.
    s.write_all(b"\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head)).await.expect("an answer").unwrap();
    assert_eq!(head[3], 0x04, "the server's first frame is SETTINGS: {head:?}");
}
