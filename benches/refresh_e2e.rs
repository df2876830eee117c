//! The implicit-refresh path end to end (issue 3, DESIGN.md §12: p99 ≤ 2 ms
//! with the embedded store, its fsync per rotation included).
//!
//! One gateway in process (embedded redb store in a temp dir, a manual clock),
//! one upstream, one keep-alive HTTP/1.1 connection. Each measured request
//! carries an EXPIRED access cookie and a valid refresh cookie, so each one
//! rotates the family for real; the next request uses the rotated cookies.
//! Prints p50 / p90 / p99 / max. Run: `cargo bench --bench refresh_e2e`.

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
const T0: i64 = 1_900_000_000;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream().await;
    let runtime = jwtgate::config::parse(&CONFIG.replace("{upstream}", &up.to_string()), dir.path()).unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("bench.redb")).unwrap());
    let clock = Arc::new(ManualClock::new(T0));
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

    let measuring = std::env::args().any(|a| a == "--bench");
    let (warmup, iterations) = if measuring { (WARMUP, ITERATIONS) } else { (0, SMOKE) };
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        clock.advance(61); // the access cookie has expired: this request rotates
        let req = Request::get("/api/x")
            .header("host", "bench")
            .header("cookie", cookie_header(&jar))
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.expect("the gateway kept the connection open");
        let started = Instant::now();
        let resp = send.send_request(req).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(resp.status(), 200, "iteration {i}");
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 4, "iteration {i} did not rotate");
        absorb(&mut jar, &resp);
        resp.into_body().collect().await.unwrap();
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    if !measuring {
        println!("refresh_e2e smoke: {iterations} implicit refreshes, each rotated (run `cargo bench --bench refresh_e2e` to measure)");
        return;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "implicit refresh, embedded store (redb, fsync per rotation), {ITERATIONS} requests, each rotating:"
    );
    println!(
        "  p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1])
    );
}
