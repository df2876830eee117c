//! The session paths end to end, per store backend, in one run (issue 3: implicit
//! refresh p99 ≤ 2 ms on the embedded store, its fsync per rotation included;
//! issue 5: the redis store's access path within 5 % of embedded, its refresh
//! p99 ≤ 3 ms on loopback).
//!
//! One gateway in process per backend (a manual clock), one upstream, one
//! keep-alive HTTP/1.1 connection:
//! - access: requests with a valid access cookie (verify from the cache, the
//!   "revoked?" question to the store, forward);
//! - refresh: each request carries an EXPIRED access cookie and a valid refresh
//!   cookie, so each one rotates the family for real.
//!
//! Prints p50 / p90 / p99 / max. Run: `cargo bench --bench refresh_e2e` (it
//! starts a private redis-server on a free loopback port; install redis-server).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jwtgate::clock::ManualClock;
use jwtgate::store::EmbeddedStore;
use jwtgate::Gateway;
use tokio::net::{TcpListener, TcpStream};

const ITERATIONS: usize = 2000;
const WARMUP: usize = 100;
/// Under `cargo test --all-targets` (no `--bench` argument) a short smoke run.
const SMOKE: usize = 20;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
watch_config = false
[log]
access_log = false
[tokens]
secret = "bench-secret-bench-secret-bench-secret-0123"
access_ttl = "60s"
[cookies]
secure = false
[[upstreams]]
name = "app"
urls = ["http://{upstream}"]
[[routes]]
path = "/login"
handler = "login"
upstream = "app"
[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"
"#;

async fn upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                    resp.headers_mut().insert("x-jwtgate-identity", r#"{"sub":"bench"}"#.parse().unwrap());
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// name=value of every Set-Cookie, folded into the Cookie header we send next.
fn absorb(jar: &mut Vec<(String, String)>, resp: &http::Response<Incoming>) {
    for v in resp.headers().get_all("set-cookie") {
        let first = v.to_str().unwrap().split(';').next().unwrap();
        let (name, value) = first.split_once('=').unwrap();
        jar.retain(|(n, _)| n != name);
        jar.push((name.to_owned(), value.to_owned()));
    }
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A private, non-persistent redis-server on a free loopback port; its
/// working directory lives as long as it does.
struct Redis {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis() -> (Redis, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is not installed: apt-get install redis-server (scripts/test.sh does)");
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (Redis { child, _dir: dir }, format!("redis://127.0.0.1:{port}/0"))
}

struct Measured {
    access: Vec<Duration>,
    refresh: Vec<Duration>,
}

/// Starts a gateway on `store` and measures both paths.
async fn measure(
    store: Arc<dyn jwtgate::store::Store>,
    dir: &std::path::Path,
    warmup: usize,
    n: usize,
) -> Measured {
    let up = upstream().await;
    let runtime = jwtgate::config::parse(&CONFIG.replace("{upstream}", &up.to_string()), dir).unwrap();
    let clock = Arc::new(ManualClock::new(jwtgate::clock::Clock::now(&jwtgate::clock::SystemClock)));
    let gw = Gateway::new(runtime, store, clock.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(jwtgate::run(listener, gw, std::future::pending()));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/login").header("host", "bench").body(Empty::<Bytes>::new()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut jar = Vec::new();
    absorb(&mut jar, &resp);
    resp.into_body().collect().await.unwrap();
    let mut access = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let (elapsed, resp) = timed_get(&mut send, &jar).await;
        assert_eq!(resp.status(), 200, "access {i}");
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 0, "access {i} rotated");
        resp.into_body().collect().await.unwrap();
        if i >= warmup {
            access.push(elapsed);
        }
    }
    let mut refresh = Vec::with_capacity(n);
    for i in 0..warmup + n {
        clock.advance(61); // the access cookie has expired: this request rotates
        let (elapsed, resp) = timed_get(&mut send, &jar).await;
        assert_eq!(resp.status(), 200, "refresh {i}");
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 4, "refresh {i} did not rotate");
        absorb(&mut jar, &resp);
        resp.into_body().collect().await.unwrap();
        if i >= warmup {
            refresh.push(elapsed);
        }
    }
    Measured { access, refresh }
}

async fn timed_get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    jar: &[(String, String)],
) -> (Duration, http::Response<Incoming>) {
    let req = Request::get("/api/x")
        .header("host", "bench")
        .header("cookie", cookie_header(jar))
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.ready().await.expect("the gateway kept the connection open");
    let started = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    (started.elapsed(), resp)
}

fn report(name: &str, path: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name} | {path} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1])
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (warmup, n) = if measuring { (WARMUP, ITERATIONS) } else { (0, SMOKE) };
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedStore::open(&dir.path().join("bench.redb")).unwrap());
    let e = measure(embedded, dir.path(), warmup, n).await;
    let (_server, url) = redis().await;
    let settings = jwtgate::config::StoreSettings {
        backend: jwtgate::config::StoreBackend::Redis,
        path: dir.path().join("unused"),
        url: Some(url),
        tls_ca: None,
        timeout: Duration::from_millis(250),
        max_staleness: Duration::from_secs(5),
    };
    let redis_store = jwtgate::store::open(&settings).await.expect("connect to the private redis-server");
    let r = measure(redis_store, dir.path(), warmup, n).await;
    if !measuring {
        println!("refresh_e2e smoke: {n} access + {n} refresh requests per backend (run `cargo bench --bench refresh_e2e` to measure)");
        return;
    }
    println!("{n} requests per row, one keep-alive connection; refresh rows rotate on every request");
    println!("| store | path | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    report("embedded (redb, fsync)", "access", e.access);
    report("redis (loopback)", "access", r.access);
    report("embedded (redb, fsync)", "implicit refresh", e.refresh);
    report("redis (loopback)", "implicit refresh", r.refresh);
}
