//! `[store] url = "rediss://…"` with `tls_ca` (DESIGN.md §3, §10): the real
//! `jwtgate` binary against a real redis-server that listens on TLS only,
//! with a certificate from a private CA.
//!
//! - Trusted through `tls_ca`: login, refresh and a replay inside the grace
//!   work, and the family record and the revocation-feed subscription are in
//!   that Redis, which has no plain-text port, so they went over TLS.
//! - Without `tls_ca` the CA is not trusted: the gateway does not start, says
//!   the store cannot be reached and why, and never prints the URL's password.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::Duration;

use base64::Engine;
use common::app::{write_leaf, TestCa};
use common::process::{free_addr, spawn_jwtgate};
use common::raw::{get, request};
use common::*;
use redis_server::{RedisServer, TlsFiles};
use tokio::net::TcpStream;

const PASSWORD: &str = "tls-s3cret-pw";

/// A TLS-only redis-server with a certificate for 127.0.0.1 from a fresh CA;
/// `ca.pem` is written into `dir`, next to where the gateway config goes.
fn tls_redis(dir: &Path) -> RedisServer {
    let ca = TestCa::new();
    let (cert, key) = write_leaf(dir, "redis", &ca.leaf(&["127.0.0.1", "localhost"]));
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    RedisServer::start_tls(TlsFiles { cert, key, ca: dir.join("ca.pem") }, Some(PASSWORD))
}

/// Session routes in front of `upstream`, state in the Redis at `url`;
/// `tls_ca` is written as given (a path relative to the config file).
fn config(listen: SocketAddr, upstream: SocketAddr, url: &str, tls_ca: Option<&str>) -> String {
    let tls_ca = tls_ca.map(|ca| format!("tls_ca = \"{ca}\"\n")).unwrap_or_default();
    format!(
        r#"
[server]
listen = "{listen}"

[log]
level = "warn"
access_log = false

[tokens]
secret = "{SECRET}"

[cookies]
secure = false

[store]
backend = "redis"
url = "{url}"
timeout = "2s"
{tls_ca}
[[upstreams]]
name = "app"
urls = ["http://{upstream}"]

{}"#,
        common::session::SESSION_ROUTES
    )
}

/// `jwtgate run` on `config` (written into `dir`), output kept in `dir/gateway.log`.
struct Gateway {
    child: Child,
    log: std::path::PathBuf,
}

impl Gateway {
    fn spawn(dir: &Path, config: &str) -> Gateway {
        let child = spawn_jwtgate(dir, config, &[]);
        Gateway { child, log: dir.join("gateway.log") }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `addr` accepts; panics with the log if the process exits first.
    async fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).await.is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("jwtgate exited ({status}) before listening:\n{}", self.log());
            }
            assert!(tokio::time::Instant::now() < deadline, "not listening on {addr}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status, or None if it is still running after `within`.
    async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        common::process::wait_exit(&mut self.child, within).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A claim of a token the gateway minted (the payload, unverified: the
/// gateway checked it; this only reads it).
fn claim(token: &str, name: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims[name].as_str().unwrap_or_else(|| panic!("no {name} in {claims}")).to_owned()
}

/// A connection of the test's own to the TLS Redis, trusting only the test CA.
async fn redis_conn(redis: &RedisServer, ca: &Path) -> redis::aio::MultiplexedConnection {
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(ca).unwrap()) };
    let client = redis::Client::build_with_tls(redis.url(), certs).unwrap();
    client.get_multiplexed_async_connection().await.expect("the test connects to the TLS redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_refresh_rotation_go_over_tls_to_a_redis_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let redis = tls_redis(dir.path());
    assert!(redis.url().starts_with("rediss://"));
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice"}"#.into()));
    let listen = free_addr();
    let mut gw = Gateway::spawn(dir.path(), &config(listen, up.addr, &redis.url(), Some("ca.pem")));
    gw.wait_listening(listen).await;

    let login = request(listen, "POST", "/login", &[("Content-Type", "application/json")], "{}").await;
    assert_eq!(login.status, 200, "{}\n{}", login.body, gw.log());
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let rotated = get(listen, "/refresh", &[("Authorization", &format!("Bearer {refresh}"))]).await;
    assert_eq!(rotated.status, 200, "{}\n{}", rotated.body, gw.log());
    let pair = rotated.json();
    let (access, new_refresh) =
        (pair["access_token"].as_str().unwrap(), pair["refresh_token"].as_str().unwrap());
    assert_ne!(new_refresh, refresh, "the refresh token rotated");
    // Inside reuse_grace the old token gets the pair the store kept for it.
    let replay = get(listen, "/refresh", &[("Authorization", &format!("Bearer {refresh}"))]).await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.json()["refresh_token"].as_str(), Some(new_refresh), "the same pair, from Redis");
    let api = get(listen, "/api/x", &[("Authorization", &format!("Bearer {access}"))]).await;
    assert_eq!(api.status, 200, "{}", api.body);

    // That Redis listens on TLS only: what it holds came over TLS.
    let mut conn = redis_conn(&redis, &dir.path().join("ca.pem")).await;
    let fid = claim(new_refresh, "fid");
    let family: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(format!("jwtgate:family:{fid}")).query_async(&mut conn).await.unwrap();
    assert_eq!(family.get("sub").map(String::as_str), Some("alice"), "{family:?}");
    assert_eq!(family.get("current_jti"), Some(&claim(new_refresh, "jti")), "the rotation is recorded");
    let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("jwtgate:revocations")
        .query_async::<Vec<(String, i64)>>(&mut conn)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(subscribers, 1, "the gateway's revocation feed is subscribed over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_ca_the_private_ca_is_not_trusted_and_the_gateway_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let redis = tls_redis(dir.path());
    assert!(redis.url().contains(PASSWORD), "the url carries the password");
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let listen = free_addr();
    let mut gw = Gateway::spawn(dir.path(), &config(listen, up.addr, &redis.url(), None));

    let status = gw.wait_exit(Duration::from_secs(30)).await;
    let log = gw.log();
    assert!(status.is_some_and(|s| !s.success()), "jwtgate must refuse to start ({status:?}):\n{log}");
    assert!(log.contains("store") && log.contains("cannot reach redis"), "says what failed:\n{log}");
    assert!(log.contains("certificate"), "says why (the certificate):\n{log}");
    assert!(log.contains("store.tls_ca"), "names the fix:\n{log}");
    assert!(!log.contains(PASSWORD), "the url's password is never printed:\n{log}");
    assert!(TcpStream::connect(listen).await.is_err(), "nothing listens");
}
