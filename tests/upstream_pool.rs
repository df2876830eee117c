//! The upstream keep-alive pool (`src/forward/pool.rs`), through the real
//! gateway: connections are reused, an upstream's close is honoured, a
//! connection the upstream dropped while idle is never used again, and idle
//! connections are closed after `idle_timeout`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{get_once, KeepAlive};
use common::raw::get;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Public routes only: the pool is what is under test, not the token.
async fn gateway(upstream: SocketAddr, extra_server: &str) -> TestGateway {
    let config = base_config(PUBLIC_AND_API)
        .replace("header_read_timeout = \"2s\"", &format!("header_read_timeout = \"2s\"\n{extra_server}"));
    start_gateway(&config, upstream, None).await
}

/// Waits until `cond` holds, or fails after `within`.
async fn until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = gateway(up.addr, "").await;
    // Separate client connections: reuse is the gateway's, not the client's.
    for i in 0..5 {
        let answer = get_once(gw.addr, &format!("/public/{i}")).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "upstream ok");
    }
    let conns: Vec<usize> = up.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0; 5], "all five on the first upstream connection");
    assert_eq!(up.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_upstream_connection_close_is_honoured_and_the_next_request_opens_another() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with.lock().unwrap().push(("connection".into(), "close".into()));
    let gw = gateway(up.addr, "").await;
    let mut client = KeepAlive::connect(gw.addr).await.unwrap();
    for i in 0..3 {
        let answer = client.get(&format!("/public/{i}")).await.unwrap();
        assert_eq!(answer.status, 200, "request {i}");
    }
    let conns: Vec<usize> = up.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 1, 2], "a new upstream connection after each close");
}

/// An upstream that answers one request per connection and then closes the
/// socket without saying so (no `Connection: close`), as a server whose
/// keep-alive timeout just ran out does. Counts the connections it accepted.
async fn silent_closer() -> (SocketAddr, Arc<AtomicUsize>) {
    counting_upstream(|mut stream| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        // Dropped here: the socket closes with no warning.
    })
    .await
}

/// An upstream serving each accepted connection with `serve`; counts them.
async fn counting_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

/// An app that sends a body with its answer to HEAD, late (a hand-written
/// HEAD handler, a server that runs the GET view and keeps its body): a full
/// response 150 ms after the head. Any other request gets `real:<path>`.
async fn late_head_body() -> (SocketAddr, Arc<AtomicUsize>) {
    counting_upstream(|mut stream| async move {
        let mut buf = Vec::new();
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                let mut more = [0u8; 1024];
                match stream.read(&mut more).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&more[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            if head.starts_with("HEAD ") {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 43\r\n\r\n").await;
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED").await;
            } else {
                let body = format!("real:{path}");
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        }
    })
    .await
}

/// A connection that answered a HEAD is not used again. hyper reads a HEAD
/// answer as bodiless, so the exchange ended with the head and the
/// connection went back to the pool; a body the app sent late was then read
/// as the answer to the next request on it, another user's, which got the
/// app's bytes (here a whole response; it could be a file someone uploaded).
#[tokio::test]
async fn a_late_body_after_a_head_answer_reaches_no_other_request() {
    let (addr, accepted) = late_head_body().await;
    let gw = gateway(addr, "").await;
    for i in 0..3 {
        let head = common::raw::send_raw(
            gw.addr,
            "HEAD /public/file HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(head.status, 200, "{}", head.body);
        assert_eq!(head.header("content-length"), Some("43"));
        let answer = get_once(gw.addr, &format!("/public/victim{i}")).await.unwrap();
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
        assert_eq!(answer.body, format!("real:/public/victim{i}"), "request {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "a new connection after each HEAD, then one for the GETs");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
    let (addr, accepted) = silent_closer().await;
    let gw = gateway(addr, "").await;
    for i in 0..4 {
        let answer = get_once(gw.addr, &format!("/public/{i}")).await.unwrap();
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
        assert_eq!(answer.body, "ok");
        // The next request must not meet the dead socket, however soon it comes.
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "one upstream connection per request");
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_idle_timeout() {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = gateway(up.addr, "idle_timeout = \"1s\"").await;
    let answer = get_once(gw.addr, "/public/x").await.unwrap();
    assert_eq!(answer.status, 200);
    // The reaper runs every idle_timeout: the connection is gone within two.
    until("the idle upstream connection closed", Duration::from_secs(4), || {
        up.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    // And the next request simply opens a new one.
    let answer = get_once(gw.addr, "/public/y").await.unwrap();
    assert_eq!(answer.status, 200);
    let conns: Vec<usize> = up.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 1]);
}

/// Answers each request head read off `stream` (requests without bodies)
/// with `answer()`'s bytes, until either side closes.
async fn answer_heads<F, Fut>(mut stream: tokio::net::TcpStream, answer: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = &'static [u8]>,
{
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 1024]);
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream.write_all(answer().await).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A keep-alive upstream that holds every answer until `together` requests
/// are waiting for one, so a burst of that many is in flight all at once.
async fn gathering_upstream(together: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let gathered = Arc::new(tokio::sync::Barrier::new(together));
    counting_upstream(move |stream| {
        let gathered = gathered.clone();
        answer_heads(stream, move || {
            let gathered = gathered.clone();
            async move {
                gathered.wait().await;
                &b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nupstream ok"[..]
            }
        })
    })
    .await
}

#[tokio::test]
async fn concurrent_requests_each_get_a_connection_and_return_it() {
    const BURST: usize = 20;
    let (up, accepted) = gathering_upstream(BURST).await;
    let gw = gateway(up, "").await;
    for round in 0..2 {
        let burst: Vec<_> = (0..BURST)
            .map(|i| {
                let addr = gw.addr;
                tokio::spawn(async move { get_once(addr, &format!("/public/{round}/{i}")).await })
            })
            .collect();
        for task in burst {
            let answer = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the upstream never had the burst's 20 requests at once")
                .unwrap()
                .unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body, "upstream ok");
        }
        // The first burst needed a connection per request; the second is
        // served by the twenty the first left idle.
        assert_eq!(accepted.load(Ordering::SeqCst), BURST, "after burst {round}");
        // Each connection goes back once its task has finished the exchange.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A keep-alive upstream that answers every request with a chunked body;
/// counts the connections it accepted.
async fn chunked_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    counting_upstream(|stream| {
        answer_heads(stream, || async {
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nupstr\r\n6\r\neam ok\r\n0\r\n\r\n"[..]
        })
    })
    .await
}

#[tokio::test]
async fn a_connection_that_ended_a_chunked_body_is_reused() {
    let (up, accepted) = chunked_upstream().await;
    let gw = gateway(up, "").await;
    for i in 0..5 {
        let answer = get_once(gw.addr, &format!("/public/{i}")).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "upstream ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "each chunked response cost a new upstream connection");
}

/// A keep-alive upstream whose answer to the `n`-th request on a connection
/// comes after `delay(n)`; `None`: never, though it keeps reading. Counts the
/// connections it accepted, and those the gateway then closed.
async fn paced_upstream(
    delay: fn(usize) -> Option<Duration>,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let closed = Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    let (addr, accepted) = counting_upstream(move |mut stream| {
        let closed = seen.clone();
        async move {
            let (mut buf, mut chunk, mut n) = (Vec::new(), [0u8; 1024], 0);
            loop {
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    let Some(pause) = delay(n) else { continue };
                    n += 1;
                    tokio::time::sleep(pause).await;
                    if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                        return;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => buf.extend_from_slice(&chunk[..read]),
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    (addr, accepted, closed)
}

/// The test config's upstream `timeout`.
const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_pooled_connection_whose_upstream_stops_answering_is_cut_at_the_timeout() {
    let (up, accepted, closed) = paced_upstream(|n| (n == 0).then_some(Duration::ZERO)).await;
    let gw = gateway(up, "").await;
    assert_eq!(get_once(gw.addr, "/public/first").await.unwrap().status, 200);
    let started = Instant::now();
    get(gw.addr, "/public/hangs", &[]).await.assert_problem(504, "upstream_timeout");
    let waited = started.elapsed();
    assert!(waited >= TIMEOUT - Duration::from_millis(50), "cut after {waited:?}, before the timeout");
    assert!(waited < TIMEOUT * 2, "cut only after {waited:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the second request went on the pooled connection");
    until("the hung upstream connection closed", Duration::from_secs(2), || {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(get_once(gw.addr, "/public/after").await.unwrap().status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection for the next request");
}

#[tokio::test]
async fn each_request_on_a_pooled_connection_gets_the_whole_timeout() {
    // Each answer takes 70 % of the timeout: the second request is still
    // waiting when a timer set for the first one's deadline fires.
    let (up, accepted, _) = paced_upstream(|_| Some(TIMEOUT * 7 / 10)).await;
    let gw = gateway(up, "").await;
    for i in 0..3 {
        let answer = get_once(gw.addr, &format!("/public/{i}")).await.unwrap();
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "all three on one upstream connection");
}
