//! Transfers that stop moving are cut after `idle_timeout` (src/stall.rs):
//! a client that stops reading its response (nginx's `send_timeout`) and an
//! upstream that stops in the middle of its body (`proxy_read_timeout`).
//! Either would otherwise hold the client's connection and the upstream
//! connection behind it for ever. Transfers that are slow but keep moving
//! are never cut, and a cut response never looks complete.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::app::{client_config, self_signed, write_leaf};
use common::*;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The stall limit under test: the server's `idle_timeout`.
const LIMIT: Duration = Duration::from_secs(1);
/// How long past the limit a cut may come (the runtime is shared with the test).
const SLACK: Duration = Duration::from_secs(3);
const CHUNK: usize = 64 * 1024;

fn config() -> String {
    base_config("[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n")
        .replace("header_read_timeout = \"2s\"", "header_read_timeout = \"2s\"\nidle_timeout = \"1s\"")
}

/// What an upstream saw: requests, and connections that ended.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    closed: AtomicUsize,
}

impl Seen {
    async fn wait(&self, what: &str, counter: &AtomicUsize, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while counter.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the upstream saw no {what} within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An upstream (hyper) answering every request with `len` bytes, streamed in
/// 64 KiB chunks as fast as they are taken.
async fn big_upstream(len: usize) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            let svc = {
                let record = record.clone();
                service_fn(move |_req: http::Request<Incoming>| {
                    record.requests.fetch_add(1, Ordering::SeqCst);
                    let chunks = futures_util::stream::iter((0..len.div_ceil(CHUNK)).map(move |i| {
                        let n = CHUNK.min(len - i * CHUNK);
                        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; n])))
                    }));
                    let resp = http::Response::builder()
                        .header("content-length", len)
                        .body(StreamBody::new(chunks))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                })
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                record.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// An upstream that accepts one connection, reads a request head from it,
/// and hands the socket, the head and its record to `serve`.
async fn one_connection_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<Seen>)
where
    F: FnOnce(TcpStream, Vec<u8>, Arc<Seen>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed before sending a head");
            head.extend_from_slice(&buf[..n]);
        }
        serve(stream, head, record).await;
    });
    (addr, seen)
}

/// A raw upstream: reads one request head, writes `answer` (spaced by `every`
/// when there is more than one piece), then holds the connection until the
/// gateway closes it.
async fn raw_upstream(answer: Vec<&'static str>, every: Duration) -> (SocketAddr, Arc<Seen>) {
    one_connection_upstream(move |mut stream, _head, record| async move {
        record.requests.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 1024];
        for (i, piece) in answer.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            stream.write_all(piece.as_bytes()).await.unwrap();
        }
        // Until the gateway closes (EOF or reset).
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        record.closed.fetch_add(1, Ordering::SeqCst);
    })
    .await
}

fn active(gw: &TestGateway) -> i64 {
    gw.gateway.metrics.connections_active.get()
}

/// Waits until the gateway has no connection left, failing once `within`
/// of `since` has passed; how long that took from `since`.
async fn wait_closed(gw: &TestGateway, since: Instant, within: Duration) -> Duration {
    while active(gw) != 0 {
        assert!(since.elapsed() < within, "the stalled connection is still open after {:?}", since.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    since.elapsed()
}

/// Reads to EOF (or a reset, which also ends a cut connection); the bytes.
async fn drain(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let read_all = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all).await.expect("the connection was not closed");
    got
}

fn body_len(response: &[u8]) -> usize {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    response.len() - end
}

/// A client whose receive buffer stays small, so the gateway must wait on it.
async fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

const GET: &[u8] = b"GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n";

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_idle_timeout_and_so_is_the_upstream() {
    let len = 64 << 20;
    let (up, seen) = big_upstream(len).await;
    let gw = start_gateway(&config(), up, None).await;
    let mut client = small_window_client(gw.addr).await;
    let sent = Instant::now();
    client.write_all(GET).await.unwrap();
    seen.wait("request", &seen.requests, 1, Duration::from_secs(3)).await;
    // The gateway's writes stop within milliseconds (the buffers fill); not
    // cut before the limit, measured from the request, which is earlier.
    tokio::time::sleep(LIMIT * 8 / 10).await;
    assert_eq!(active(&gw), 1, "cut before idle_timeout");
    assert_eq!(seen.closed.load(Ordering::SeqCst), 0, "the upstream connection was closed early");
    let cut = wait_closed(&gw, sent, LIMIT + SLACK).await;
    assert!(cut >= LIMIT, "cut after {cut:?}");
    seen.wait("closed connection", &seen.closed, 1, SLACK).await;
    let got = drain(&mut client).await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got[..got.len().min(200)]));
    assert!(body_len(&got) < len, "the whole body arrived: the transfer was not cut");
}

#[tokio::test]
async fn a_client_that_reads_slowly_but_steadily_gets_the_whole_body() {
    let len = 12 << 20;
    let (up, seen) = big_upstream(len).await;
    let gw = start_gateway(&config(), up, None).await;
    let mut client = small_window_client(gw.addr).await;
    client.write_all(GET).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    // 1 MiB every quarter of the limit: the gateway waits on the client
    // again and again, never for a whole limit.
    'paced: loop {
        tokio::time::sleep(LIMIT / 4).await;
        let goal = got.len() + (1 << 20);
        while got.len() < goal {
            let n = client.read(&mut buf).await.expect("the slow reader was cut");
            if n == 0 {
                break 'paced;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() > len && body_len(&got) == len {
                break 'paced;
            }
        }
    }
    assert_eq!(body_len(&got), len, "the body was cut short");
    assert!(
        started.elapsed() > LIMIT * 2,
        "the transfer took {:?}, too fast to prove anything",
        started.elapsed()
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1, "one request upstream, no retry");
}

#[tokio::test]
async fn a_client_over_tls_that_stops_reading_is_cut_after_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = self_signed(&["localhost"]);
    let (cert, key) = write_leaf(dir.path(), "server", &leaf);
    let tls =
        format!("tls_cert = \"{}\"\ntls_key = \"{}\"\nidle_timeout = \"1s\"", cert.display(), key.display());
    let len = 64 << 20;
    let (up, seen) = big_upstream(len).await;
    let config = config().replace("idle_timeout = \"1s\"", &tls);
    let gw = start_gateway(&config, up, None).await;
    let tcp = small_window_client(gw.addr).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(&leaf.cert_pem, &[b"http/1.1"]));
    let mut client =
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    let sent = Instant::now();
    client.write_all(GET).await.unwrap();
    seen.wait("request", &seen.requests, 1, Duration::from_secs(3)).await;
    tokio::time::sleep(LIMIT * 8 / 10).await;
    assert_eq!(active(&gw), 1, "cut before idle_timeout");
    let cut = wait_closed(&gw, sent, LIMIT + SLACK).await;
    assert!(cut >= LIMIT, "cut after {cut:?}");
    seen.wait("closed connection", &seen.closed, 1, SLACK).await;
    let got = drain(&mut client).await;
    assert!(body_len(&got) < len, "the whole body arrived: the transfer was not cut");
}

/// A raw upstream whose chunked answer is six "tick " pieces, one every 0.4
/// limit: the whole answer takes 2.8 limits, and never waits a whole one.
async fn ticking_upstream() -> (SocketAddr, Arc<Seen>) {
    let mut answer = vec!["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"];
    answer.extend(std::iter::repeat_n("5\r\ntick \r\n", 6));
    answer.push("0\r\n\r\n");
    raw_upstream(answer, LIMIT * 4 / 10).await
}

/// A WebSocket upstream that accepts the handshake and then sends without
/// end; `closed` counts once the gateway closes the tunnel on it.
async fn flooding_websocket_upstream() -> (SocketAddr, Arc<Seen>) {
    one_connection_upstream(|mut stream, head, record| async move {
        // The key as sent: its accept is computed over its exact bytes.
        let text = String::from_utf8_lossy(&head).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key")))
            .expect("a key")
            .1
            .trim()
            .to_owned();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        record.requests.fetch_add(1, Ordering::SeqCst);
        // Unframed bytes: the tunnel carries them as they are.
        let flood = vec![b'x'; CHUNK];
        while stream.write_all(&flood).await.is_ok() {}
        record.closed.fetch_add(1, Ordering::SeqCst);
    })
    .await
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_cut_after_idle_timeout() {
    let (up, seen) = flooding_websocket_upstream().await;
    let gw = start_gateway(&config(), up, None).await;
    let mut client = small_window_client(gw.addr).await;
    let handshake = "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    // The flood, and so the stall, cannot start before the handshake is sent.
    let sent = Instant::now();
    client.write_all(handshake.as_bytes()).await.unwrap();
    seen.wait("handshake", &seen.requests, 1, Duration::from_secs(3)).await;
    tokio::time::sleep(LIMIT * 8 / 10).await;
    assert_eq!(seen.closed.load(Ordering::SeqCst), 0, "the tunnel was closed before idle_timeout");
    seen.wait("closed tunnel", &seen.closed, 1, LIMIT + SLACK).await;
    assert!(sent.elapsed() >= LIMIT, "closed after {:?}", sent.elapsed());
    let got = drain(&mut client).await;
    assert!(got.starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&got[..got.len().min(200)]));
}

#[tokio::test]
async fn an_upstream_that_stops_mid_body_is_cut_and_the_response_never_looks_complete() {
    for (framing, answer) in [
        ("content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst-part"),
        ("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nfirst-part\r\n"),
    ] {
        let (up, seen) = raw_upstream(vec![answer], Duration::ZERO).await;
        let gw = start_gateway(&config(), up, None).await;
        let mut client = TcpStream::connect(gw.addr).await.unwrap();
        let sent = Instant::now();
        client.write_all(GET).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("first-part") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "{framing}: closed before the first part");
            got.extend_from_slice(&buf[..n]);
        }
        let got = [got, drain(&mut client).await].concat();
        let cut = sent.elapsed();
        assert!(cut >= LIMIT, "{framing}: cut after {cut:?}, before idle_timeout");
        assert!(cut < LIMIT + SLACK, "{framing}: cut only after {cut:?}");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{framing}: {text}");
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{framing}: the cut response ended like a complete one: {text}"
        );
        if framing == "content-length" {
            assert!(text.to_ascii_lowercase().contains("content-length: 1000"), "{text}");
            assert!(body_len(&got) < 1000);
        }
        seen.wait("closed connection", &seen.closed, 1, SLACK).await;
        wait_closed(&gw, sent, LIMIT + SLACK).await;
    }
}

#[tokio::test]
async fn an_upstream_that_sends_slowly_but_steadily_is_not_cut() {
    let (up, seen) = ticking_upstream().await;
    let gw = start_gateway(&config(), up, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(b"GET /slow HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let got = drain(&mut client).await;
    let text = String::from_utf8_lossy(&got);
    assert!(started.elapsed() > LIMIT * 2, "answered in {:?}", started.elapsed());
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("tick ").count(), 6, "{text}");
    assert!(text.ends_with("0\r\n\r\n"), "the slow body did not end properly: {text}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

/// An HTTP/2 client (prior knowledge, as the gateway's sniff allows) whose
/// streams get `window` bytes of flow-control window; hyper gives it back
/// only as the body is read.
async fn h2_client(addr: SocketAddr, window: u32) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    h2_client_windows(addr, window, window).await
}

/// [`h2_client`] with a connection window of its own.
async fn h2_client_windows(
    addr: SocketAddr,
    stream_window: u32,
    connection_window: u32,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(connection_window)
        .handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

fn h2_get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://app.test{path}")).body(Empty::new()).unwrap()
}

/// A `/big` response over HTTP/2, through a gateway in front of a `len`-byte
/// upstream, to a client granting each stream 64 KiB of window.
struct BigStream {
    seen: Arc<Seen>,
    gw: TestGateway,
    /// Just before the request was sent.
    sent: Instant,
    resp: http::Response<Incoming>,
    _client: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
}

async fn big_h2_stream(len: usize) -> BigStream {
    let (up, seen) = big_upstream(len).await;
    let gw = start_gateway(&config(), up, None).await;
    let mut client = h2_client(gw.addr, 65_535).await;
    let sent = Instant::now();
    let resp = client.send_request(h2_get("/big")).await.expect("a response head");
    BigStream { seen, gw, sent, resp, _client: client }
}

#[tokio::test]
async fn an_http2_client_that_grants_a_stream_no_window_is_cut_after_idle_timeout() {
    let BigStream { seen, gw, sent, resp, _client } = big_h2_stream(64 << 20).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    // The body is not read: after 64 KiB the stream has no window. The
    // client's connection task still runs and answers the gateway's pings.
    tokio::time::sleep(LIMIT * 8 / 10).await;
    assert_eq!(active(&gw), 1, "cut before idle_timeout");
    assert_eq!(seen.closed.load(Ordering::SeqCst), 0, "the upstream connection was closed early");
    let cut = wait_closed(&gw, sent, LIMIT + SLACK).await;
    assert!(cut >= LIMIT, "cut after {cut:?}");
    seen.wait("closed connection", &seen.closed, 1, SLACK).await;
    let body =
        tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await.expect("body ends");
    assert!(body.is_err(), "the starved stream's body ended as if complete");
}

#[tokio::test]
async fn an_http2_client_that_never_takes_the_last_byte_of_a_body_is_cut() {
    // One byte more than the client's window: hyper hands h2 the end of the
    // body and lets go of it, and h2 holds the last byte for ever. Only the
    // idle drain's own bound can close the connection.
    let BigStream { gw, sent, resp, _client, .. } = big_h2_stream(65_536).await;
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(LIMIT * 8 / 10).await;
    assert_eq!(active(&gw), 1, "cut before idle_timeout");
    let cut = wait_closed(&gw, sent, LIMIT * 2 + SLACK).await;
    // Idle after one limit, then a drain of one limit with nothing in flight.
    assert!(cut >= LIMIT * 2, "cut after {cut:?}");
    drop(resp);
}

#[tokio::test]
async fn an_http2_client_that_reads_slowly_but_steadily_gets_the_whole_body() {
    let len = 768 << 10;
    let BigStream { seen, sent: started, resp, _client, .. } = big_h2_stream(len).await;
    let mut body = resp.into_body();
    let (mut got, mut since_pause) = (0, 0);
    // A window's worth, then a pause of 0.3 limit: the stream waits on the
    // client again and again, never for a whole limit.
    while let Some(frame) = body.frame().await {
        let n = frame.expect("the slow stream was cut").into_data().map_or(0, |d| d.len());
        got += n;
        since_pause += n;
        if since_pause >= 64 << 10 {
            since_pause = 0;
            tokio::time::sleep(LIMIT * 3 / 10).await;
        }
    }
    assert_eq!(got, len);
    assert!(
        started.elapsed() > LIMIT * 2,
        "the transfer took {:?}, too fast to prove anything",
        started.elapsed()
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1, "one request upstream, no retry");
}

/// Two upstreams: `app` at `first`, and `second` behind `/ok/**`.
async fn two_upstreams(first: SocketAddr, second: SocketAddr) -> TestGateway {
    let routes = format!(
        "[[upstreams]]\nname = \"ok\"\nurls = [\"http://{second}\"]\n\n\
         [[routes]]\npath = \"/ok/**\"\npolicy = \"public\"\nupstream = \"ok\"\n"
    );
    start_gateway(&format!("{}\n{routes}", config()), first, None).await
}

/// [`two_upstreams`], the second answering 5-byte bodies.
async fn with_ok_upstream(first: SocketAddr) -> TestGateway {
    let (healthy, _) = big_upstream(5).await;
    two_upstreams(first, healthy).await
}

/// The connection still takes requests: a new stream to `/ok/` is answered.
async fn still_serves(client: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>) {
    client.ready().await.expect("the connection was closed (or sent GOAWAY)");
    let next = client.send_request(h2_get("/ok/next")).await.expect("the connection still serves");
    assert_eq!(next.status(), 200);
    assert_eq!(next.into_body().collect().await.unwrap().to_bytes().len(), 5);
}

#[tokio::test]
async fn an_http2_connection_streaming_a_slow_response_is_not_idle() {
    let (slow, _) = ticking_upstream().await;
    let gw = with_ok_upstream(slow).await;
    let mut client = h2_client(gw.addr, 1 << 20).await;
    let started = Instant::now();
    let resp = client.send_request(h2_get("/slow")).await.expect("a response head");
    let body = resp.into_body().collect().await.expect("the slow body completes").to_bytes();
    assert!(started.elapsed() > LIMIT * 2, "answered in {:?}", started.elapsed());
    assert_eq!(String::from_utf8_lossy(&body).matches("tick ").count(), 6);
    // No request was in flight for idle_timeout: the streaming one counted.
    still_serves(&mut client).await;
    assert_eq!(active(&gw), 1, "one connection throughout");
}

#[tokio::test]
async fn a_moving_http2_stream_outlives_the_goaway_a_starved_one_caused() {
    let (big, _) = big_upstream(64 << 20).await;
    let (slow, _) = ticking_upstream().await;
    let gw = two_upstreams(big, slow).await;
    // Each stream gets 64 KiB of window; the connection has room for both.
    let mut client = h2_client_windows(gw.addr, 65_535, 8 << 20).await;
    let starved = client.send_request(h2_get("/big")).await.expect("a response head");
    let started = Instant::now();
    client.ready().await.unwrap();
    let moving = client.send_request(h2_get("/ok/slow")).await.expect("a response head");
    // The starved stream gets the connection a GOAWAY after about one limit;
    // the moving one takes 2.8 limits and must still complete.
    let body = moving.into_body().collect().await.expect("the moving stream completes").to_bytes();
    assert!(started.elapsed() > LIMIT * 2, "answered in {:?}", started.elapsed());
    assert_eq!(String::from_utf8_lossy(&body).matches("tick ").count(), 6);
    // Then only the starved stream is left: the connection closes.
    wait_closed(&gw, Instant::now(), SLACK).await;
    drop(starved);
}

#[tokio::test]
async fn an_upstream_that_stops_mid_body_resets_only_its_http2_stream() {
    let (stalling, seen) =
        raw_upstream(vec!["HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst-part"], Duration::ZERO).await;
    let gw = with_ok_upstream(stalling).await;
    let mut client = h2_client(gw.addr, 1 << 20).await;
    let sent = Instant::now();
    let resp = client.send_request(h2_get("/big")).await.expect("a response head");
    let result =
        tokio::time::timeout(LIMIT + SLACK, resp.into_body().collect()).await.expect("the body ends");
    let cut = sent.elapsed();
    assert!(result.is_err(), "the stalled body ended as if complete");
    assert!(cut >= LIMIT, "cut after {cut:?}");
    seen.wait("closed connection", &seen.closed, 1, SLACK).await;
    still_serves(&mut client).await;
    assert_eq!(active(&gw), 1, "one connection throughout");
}

/// Sends a POST head for `pieces` × 4 bytes, then one piece every `every`;
/// the instant the last piece went out.
async fn upload(stream: &mut TcpStream, pieces: usize, every: Duration) -> Instant {
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        pieces * 4
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..pieces {
        tokio::time::sleep(every).await;
        stream.write_all(b"data").await.unwrap();
    }
    Instant::now()
}

/// The upstream `timeout` (2 s here) waits for a response head, and that
/// wait starts when the request body has been sent, as nginx's
/// `proxy_read_timeout` and Envoy's route timeout do: an upload that keeps
/// moving for longer is served whole.
#[tokio::test]
async fn a_steady_upload_longer_than_the_upstream_timeout_is_served() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&config(), up.addr, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    // 10 × 300 ms: 3 s in all, never a second without progress.
    upload(&mut client, 10, Duration::from_millis(300)).await;
    let answer = String::from_utf8_lossy(&drain(client).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.last().body.len(), 40, "the upstream got the whole body");
}

/// ...and the wait for the head after the body is still bounded: an
/// upstream that reads it all and never answers gets 504 `timeout` after the
/// body's end, not after the request's start.
#[tokio::test]
async fn the_response_head_is_due_timeout_after_the_upload_ends() {
    let (upstream, _seen) = raw_upstream(vec![], Duration::ZERO).await;
    let gw = start_gateway(&config(), upstream, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    let ended = upload(&mut client, 10, Duration::from_millis(300)).await;
    let answer = String::from_utf8_lossy(&drain(client).await).into_owned();
    let after = ended.elapsed();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(2) + SLACK,
        "504 {after:?} after the body"
    );
}

/// A client that stops sending its body is cut after `idle_timeout` with 408
/// (nginx's `client_body_timeout`), the upstream connection that had part
/// of it is closed, and the gateway goes on serving.
#[tokio::test]
async fn an_upload_that_stops_is_cut_with_408_after_idle_timeout() {
    stalled_upload_gets_408(&config()).await;
}

/// ...even where the upstream `timeout` is the shorter: a wait on the
/// client's body is not the upstream's, and is not answered 504.
#[tokio::test]
async fn an_upload_that_stops_is_the_clients_408_whatever_the_upstream_timeout() {
    stalled_upload_gets_408(&config().replace("\ntimeout = \"2s\"", "\ntimeout = \"300ms\"")).await;
}

async fn stalled_upload_gets_408(config: &str) {
    let (upstream, seen) = raw_upstream(vec![], Duration::ZERO).await;
    let gw = start_gateway(config, upstream, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\nConnection: close\r\n\r\nten bytes!")
        .await
        .unwrap();
    let stopped = Instant::now();
    let answer = String::from_utf8_lossy(&drain(&mut client).await).into_owned();
    let after = stopped.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"), "{answer}");
    assert!(after >= LIMIT && after < LIMIT + SLACK, "cut {after:?} after the body stopped");
    seen.wait("close", &seen.closed, 1, SLACK).await;
}

/// An upstream that stops taking the body (a hung app, once the socket
/// buffers are full) gets 504 `timeout` after the body last moved: the
/// client keeps writing, so no client stall fires, and the wait must not
/// last for ever.
#[tokio::test]
async fn an_upstream_that_stops_reading_the_body_gets_504_after_timeout() {
    let (upstream, _seen) = one_connection_upstream(|stream, _head, _record| async move {
        // Read nothing more; hold the connection.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let gw = start_gateway(&config(), upstream, None).await;
    let client = TcpStream::connect(gw.addr).await.unwrap();
    let (mut read, mut write) = client.into_split();
    let len = 64 << 20;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        let piece = vec![b'x'; CHUNK];
        while write.write_all(&piece).await.is_ok() {}
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2) + SLACK * 2, read.read_to_end(&mut answer)).await;
    writer.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 504"), "after {:?}: {answer:?}", started.elapsed());
}

/// A chunked body whose end carries trailers ends without the end-of-body
/// frame hyper's client would otherwise poll for; the wait for the head
/// still runs from that end, and ends.
#[tokio::test]
async fn a_chunked_upload_with_trailers_still_times_out_without_an_answer() {
    let (upstream, _seen) = raw_upstream(vec![], Duration::ZERO).await;
    let gw = start_gateway(&config(), upstream, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              4\r\ndata\r\n0\r\nX-Checksum: 1\r\n\r\n",
        )
        .await
        .unwrap();
    let sent = Instant::now();
    let answer = String::from_utf8_lossy(&drain(&mut client).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(sent.elapsed() < Duration::from_secs(2) + SLACK, "504 after {:?}", sent.elapsed());
}

/// The same steady upload on a kept-alive upstream connection (the pooled
/// path, not a fresh connect) is served whole too.
#[tokio::test]
async fn a_steady_upload_on_a_pooled_connection_is_served() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&config(), up.addr, None).await;
    let warm = common::raw::get(gw.addr, "/warm", &[]).await;
    assert_eq!(warm.status, 200);
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    upload(&mut client, 10, Duration::from_millis(300)).await;
    let answer = String::from_utf8_lossy(&drain(client).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].conn, seen[0].conn, "the upload went on the pooled connection");
    assert_eq!(seen[1].body.len(), 40);
}
