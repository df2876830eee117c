//! Plaintext HTTP/1.1 keep-alive when an idle connection is parked (its
//! socket taken back from hyper, its buffers released) and later served by a
//! new hyper connection: the next request, pipelined and split heads, and
//! the attacks the parking could open (a smuggled body, a trickled head,
//! idle and shutdown limits that must still hold).

mod common;

use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::*;
use tokio::io::AsyncWriteExt;

fn parked(gw: &TestGateway) -> i64 {
    gw.gateway.metrics.connections_parked.get()
}

/// Waits until `n` connections are parked (about a second after their last
/// request); panics after 5 s.
async fn wait_parked(gw: &TestGateway, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while parked(gw) != n {
        assert!(Instant::now() < deadline, "parked connections: {}, want {n}", parked(gw));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request with a small body, which the upstream reads.
const POST_WITH_BODY: &str = "POST /public/form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello";

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}

/// Serves one request on a new connection and waits until it is parked.
async fn parked_connection(gw: &TestGateway) -> RawConn {
    let before = parked(gw);
    let mut client = RawConn::connect(gw.addr).await;
    assert_eq!(client.exchange(&get("/public/first")).await.0, 200);
    wait_parked(gw, before + 1).await;
    client
}

/// Sends one more header byte every `every` until a write fails (the
/// gateway closed the connection) or 6 s pass; then whether it is closed.
async fn trickle_until_cut(client: &mut RawConn, every: Duration) -> bool {
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(every).await;
            if client.stream.write_all(b"X").await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(6), trickle).await;
    client.closed_within(Duration::from_secs(1)).await.is_ok()
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests() {
    let (up, gw) = public_and_api().await;
    let mut client = parked_connection(&gw).await;
    assert_eq!(client.exchange(&get("/public/second")).await, (200, "upstream ok".to_string()));
    // Parked again after the second request, and served a third time.
    wait_parked(&gw, 1).await;
    assert_eq!(client.exchange(&get("/public/third")).await.0, 200);
    assert_eq!(up.targets(), ["/public/first", "/public/second", "/public/third"]);
}

#[tokio::test]
async fn pipelined_requests_on_a_parked_connection_are_answered_in_order() {
    let (up, gw) = public_and_api().await;
    let mut client = parked_connection(&gw).await;
    let both = format!("{}{}", get("/public/a"), get("/api/b"));
    assert_eq!(client.exchange(&both).await.0, 200);
    assert_eq!(client.response().await.0, 401, "the second request is answered, and refused");
    assert_eq!(up.targets(), ["/public/first", "/public/a"]);
}

#[tokio::test]
async fn a_head_split_across_a_pause_is_one_request() {
    let (up, gw) = public_and_api().await;
    let mut client = parked_connection(&gw).await;
    client.send("GET /public/split HTTP/1.1\r\nHo").await;
    // Longer than a connection needs to be parked: the partial head must not
    // be dropped, or replayed twice, on the way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(client.exchange("st: app.test\r\n\r\n").await.0, 200);
    assert_eq!(client.exchange(&get("/public/after")).await.0, 200);
    assert_eq!(up.targets(), ["/public/first", "/public/split", "/public/after"]);
}

#[tokio::test]
async fn a_head_begun_before_parking_survives_it() {
    let (up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    // The next head's first bytes right behind the first request: hyper has
    // them buffered when the connection is parked, and they must come back.
    assert_eq!(
        client.exchange(&format!("{}GET /public/early HTTP/1.1\r\nHo", get("/public/first"))).await.0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(client.exchange("st: app.test\r\n\r\n").await.0, 200);
    assert_eq!(up.targets(), ["/public/first", "/public/early"]);
}

#[tokio::test]
async fn a_head_trickled_into_a_parked_connection_is_cut_at_header_read_timeout() {
    let (up, gw) = public_and_api().await;
    let mut client = parked_connection(&gw).await;
    // One header byte every 600 ms, slower than a connection is parked: if
    // parking restarted hyper's header timer, this would never be cut.
    let started = Instant::now();
    client.send("GET /public/slow HTTP/1.1\r\n").await;
    let cut = trickle_until_cut(&mut client, Duration::from_millis(600)).await;
    let elapsed = started.elapsed();
    // header_read_timeout is 2 s in the test config.
    assert!(cut && elapsed < Duration::from_millis(4500), "still open after {elapsed:?}");
    assert_eq!(up.count(), 1, "only the first request reached the upstream");
}

#[tokio::test]
async fn an_unread_body_is_never_parsed_as_a_request() {
    let (up, gw) = public_and_api().await;
    let smuggled = get("/public/smuggled");
    // The head alone: the gateway refuses it (no token) without reading a
    // body that has not arrived yet.
    let mut client = RawConn::connect(gw.addr).await;
    let head =
        format!("POST /api/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n", smuggled.len());
    assert_eq!(client.exchange(&head).await.0, 401);
    // Time enough for the connection to be parked, were that allowed after a
    // request with a body; then the "body", which reads as a request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(parked(&gw), 0, "a connection with an unread body was parked");
    client.try_send(&smuggled).await;
    let rest = client.closed_within(Duration::from_secs(5)).await.expect("connection left open");
    assert!(!rest.contains("200"), "the body was answered as a request: {rest}");

    // The same with the body sent along: still refused unread, then closed or drained.
    let mut client = RawConn::connect(gw.addr).await;
    assert_eq!(client.exchange(&format!("{head}{smuggled}")).await.0, 401);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.try_send(&get("/public/next")).await;
    let _ = client.closed_within(Duration::from_millis(500)).await;
    assert!(
        up.requests().iter().all(|r| r.target != "/public/smuggled"),
        "the body reached the upstream as a request: {:?}",
        up.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_request_body_that_was_read_keeps_the_connection_usable() {
    let (up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    assert_eq!(client.exchange(POST_WITH_BODY).await.0, 200);
    assert_eq!(client.exchange(&get("/public/next")).await.0, 200);
    // The GET had no body: now the connection parks.
    wait_parked(&gw, 1).await;
    assert_eq!(client.exchange(&get("/public/last")).await.0, 200);
    let seen = up.requests();
    assert_eq!(seen[0].body, "hello");
    assert_eq!(
        seen.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
        ["/public/form", "/public/next", "/public/last"]
    );
}

#[tokio::test]
async fn a_parked_connection_closes_after_header_read_timeout() {
    let (_up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    assert_eq!(client.exchange(&get("/public/first")).await.0, 200);
    let answered = Instant::now();
    wait_parked(&gw, 1).await;
    let rest = client.closed_within(Duration::from_secs(6)).await.expect("idle connection left open");
    assert!(rest.is_empty(), "{rest}");
    // min(idle_timeout 75 s, header_read_timeout 2 s) after the last response,
    // give or take the half second a connection waits before it is parked.
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(1900) && idle < Duration::from_millis(3500),
        "closed after {idle:?} idle"
    );
    wait_parked(&gw, 0).await;
}

#[tokio::test]
async fn a_connection_that_cannot_be_parked_still_closes_after_header_read_timeout() {
    let (up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    // After a request with a body the connection stays with hyper, unparked;
    // the wait for the next head is timed all the same.
    assert_eq!(client.exchange(POST_WITH_BODY).await.0, 200);
    let answered = Instant::now();
    // Long enough to have been parked, were that allowed; still open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(parked(&gw), 0, "a connection was parked after a request with a body");
    let rest = client.closed_within(Duration::from_secs(6)).await.expect("idle connection left open");
    let idle = answered.elapsed();
    assert!(rest.is_empty(), "{rest}");
    // header_read_timeout is 2 s in the test config: never sooner, and at
    // most one LINGER (0.5 s) of the gateway's ticks later, plus slack.
    assert!(
        idle >= Duration::from_millis(1950) && idle < Duration::from_millis(3500),
        "closed after {idle:?} idle"
    );
    assert_eq!(up.targets(), ["/public/form"]);
}

#[tokio::test]
async fn the_wait_for_a_head_counts_from_the_end_of_a_slow_exchange() {
    let (up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    // A body sent in two parts, the second after the gateway's first tick
    // (0.5 s), which so finds the exchange still in flight.
    client.send("POST /public/slow-body HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\nhello").await;
    tokio::time::sleep(Duration::from_millis(950)).await;
    assert_eq!(client.exchange("world").await.0, 200);
    // The next head 1.8 s after that response: inside header_read_timeout
    // (2 s) counted from the response, though not from that first tick.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(client.exchange(&get("/public/next")).await.0, 200);
    assert_eq!(up.targets(), ["/public/slow-body", "/public/next"]);
    assert_eq!(up.requests()[0].body, "helloworld");
}

#[tokio::test]
async fn a_head_trickled_right_after_a_response_is_cut_after_header_read_timeout() {
    let (up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    assert_eq!(client.exchange(&get("/public/first")).await.0, 200);
    let answered = Instant::now();
    // The next head starts at once and never ends. The socket still goes
    // back about a second later (hyper lets go of a partial head, and it is
    // replayed into the next connection), which must not restart the limit
    // more than once.
    client.send("GET /public/slow HTTP/1.1\r\n").await;
    let cut = trickle_until_cut(&mut client, Duration::from_millis(200)).await;
    let elapsed = answered.elapsed();
    assert!(cut, "still open after {elapsed:?}");
    // header_read_timeout (2 s) after the response, plus at most the second
    // before the socket goes back and the trickle's 0.2 s; never sooner.
    assert!(
        elapsed >= Duration::from_millis(1950) && elapsed < Duration::from_millis(4500),
        "cut after {elapsed:?}"
    );
    assert_eq!(up.targets(), ["/public/first"], "only the first request reached the upstream");
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let (_up, gw) = public_and_api().await;
    let mut client = parked_connection(&gw).await;
    drop(gw);
    let closed = client.closed_within(Duration::from_millis(500)).await;
    assert!(closed.is_ok(), "a parked connection outlived the shutdown");
}

#[tokio::test]
async fn connection_close_is_honoured_and_never_parked() {
    let (_up, gw) = public_and_api().await;
    let mut client = RawConn::connect(gw.addr).await;
    assert_eq!(
        client.exchange("GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await.0,
        200
    );
    client.closed_within(Duration::from_secs(1)).await.expect("Connection: close left the connection open");
    assert_eq!(parked(&gw), 0);
}

/// A request that asked for an upgrade and got none (a handshake refused
/// 401, an `Upgrade: h2c` that is stripped and answered 200, a CONNECT
/// refused) leaves hyper a pending upgrade for the rest of the connection.
/// Taken back to be parked, such a connection hands back no socket, so it
/// was closed idle after about a second; it stays with hyper instead, open
/// until header_read_timeout like any connection that cannot be parked.
#[tokio::test]
async fn a_connection_that_asked_for_an_upgrade_stays_open_while_idle() {
    let (_up, gw) = public_and_api().await;
    let asks = [
        "GET /api/ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: app.test\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n",
    ];
    for ask in asks {
        let mut client = RawConn::connect(gw.addr).await;
        let (status, _) = client.exchange(ask).await;
        assert_ne!(status, 101, "{ask}");
        assert_eq!(client.exchange(&get("/public/after")).await.0, 200, "{ask}");
        // Long enough to have been parked (and so closed), within header_read_timeout (2 s).
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(parked(&gw), 0, "{ask}");
        assert_eq!(client.exchange(&get("/public/later")).await.0, 200, "idle after {ask}");
    }
}
