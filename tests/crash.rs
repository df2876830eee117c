//! kill -9 during a refresh storm (issue 3): the real binary on the embedded
//! store, restarted on the same file. Every client's last refresh token still
//! works (rotated, or replayed within the grace), no family has two live
//! successors, and reuse detection still fires after the restart.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{get, request};
use common::*;
use jwtgate::store::{EmbeddedStore, Store};

struct Gw {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(config: &std::path::Path, port: u16) -> Gw {
    let child = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["run", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start jwtgate");
    let addr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "jwtgate did not listen within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Gw { child, addr }
}

fn config(dir: &std::path::Path, port: u16, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
watch_config = false

[log]
access_log = false

[tokens]
secret = "{SECRET}"

[sessions]
reuse_grace = "2s"

[store]
backend = "embedded"
path = "state.redb"

[[upstreams]]
name = "app"
urls = ["http://{upstream}"]

[[routes]]
path = "/login"
handler = "login"
upstream = "app"

[[routes]]
path = "/refresh"
handler = "refresh"
methods = ["GET", "POST"]

[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"
"#
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// (first refresh token, last refresh token the client received, last access token)
type Chain = (String, String, String);

async fn refresh(addr: std::net::SocketAddr, token: &str) -> RawResponse {
    get(addr, "/refresh", &[("Authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_refresh_storm_loses_no_session_and_forks_none() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    let port = free_port();
    let cfg = config(dir.path(), port, up.addr);
    let gw = start(&cfg, port).await;

    // 8 sessions, each refreshing its own chain as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let login = request(gw.addr, "POST", "/login", &[], "").await;
        assert_eq!(login.status, 200, "{}", login.body);
        let first = login.json()["refresh_token"].as_str().unwrap().to_owned();
        let access = login.json()["access_token"].as_str().unwrap().to_owned();
        let (addr, stop) = (gw.addr, stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut last, mut last_access) = (first.clone(), access);
            while !stop.load(Ordering::Relaxed) {
                let resp = refresh(addr, &last).await;
                let body: Option<serde_json::Value> = serde_json::from_str(&resp.body).ok();
                let pair = body
                    .as_ref()
                    .and_then(|b| Some((b["refresh_token"].as_str()?, b["access_token"].as_str()?)));
                let (Some((r, a)), 200) = (pair, resp.status) else {
                    break; // the gateway died mid-request (or mid-response): keep what we had
                };
                (last, last_access) = (r.to_owned(), a.to_owned());
            }
            (first, last, last_access) as Chain
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut gw = gw;
    gw.child.kill().unwrap(); // SIGKILL
    gw.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut chains = Vec::new();
    for c in clients {
        chains.push(c.await.unwrap());
    }

    assert!(chains.iter().all(|(first, last, _)| first != last), "every chain rotated before the kill");

    let gw = start(&cfg, port).await;
    let mut rotations = 0;
    for (_, last, _) in &chains {
        // Within the grace: the client's last token works, rotated or replayed.
        let resp = refresh(gw.addr, last).await;
        assert_eq!(resp.status, 200, "a session was lost in the crash: {}", resp.body);
        let next = resp.json()["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(refresh(gw.addr, &next).await.status, 200, "the successor is live");
        rotations += 1;
    }
    assert_eq!(rotations, chains.len());

    // After the grace, the first token of each chain is reuse: family revoked,
    // and its newest access token stops working at once.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (first, _, access) in &chains {
        refresh(gw.addr, first).await.assert_problem(401, "refresh_reuse");
        let resp = get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {access}"))]).await;
        assert!(resp.status == 401, "{}", resp.body);
    }
    drop(gw);

    // On disk: every family revoked, one current jti never also listed as rotated.
    let store = EmbeddedStore::open(&dir.path().join("state.redb")).unwrap();
    let verifier_cfg = format!("[tokens]\nsecret = \"{SECRET}\"\n");
    let rt = jwtgate::config::parse(&verifier_cfg, dir.path()).unwrap();
    for (first, _, _) in &chains {
        let fid = rt.tokens.verifier.verify(first, now()).unwrap().fid.clone().unwrap();
        let family = store.family(&fid).await.unwrap().expect("family survived the crash");
        assert!(family.revoked);
        assert!(family.rotated.iter().all(|r| r.jti != family.current_jti), "{family:?}");
        let mut jtis: Vec<_> = family.rotated.iter().map(|r| r.jti.clone()).collect();
        jtis.sort();
        jtis.dedup();
        assert_eq!(jtis.len(), family.rotated.len(), "a jti was rotated twice: {family:?}");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
