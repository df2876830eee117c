//! HTTP/1.1 clients for the operations suites (one request per connection, or
//! one keep-alive connection reused), and a strict reader of Prometheus text.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Status and body of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The gateway said `Connection: close`: it ends the connection after this answer.
    pub closing: bool,
}

/// Every exchange is bounded: a hung gateway fails the test instead of stalling it.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

/// One keep-alive HTTP/1.1 connection to the gateway.
pub struct KeepAlive {
    sender: SendRequest<Empty<Bytes>>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> Result<KeepAlive, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(KeepAlive { sender })
    }

    /// GET `path` with `Host: app.test` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        let exchange = async {
            self.sender.ready().await.map_err(|e| format!("connection closed: {e}"))?;
            let req = Request::get(path).header("host", "app.test").body(Empty::new()).unwrap();
            let resp = self.sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let closing = resp
                .headers()
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
            Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned(), closing })
        };
        tokio::time::timeout(EXCHANGE_LIMIT, exchange)
            .await
            .map_err(|_| "no answer within 10 s".to_string())?
    }
}

/// GET `path` on a new connection, closed afterwards.
pub async fn get_once(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    KeepAlive::connect(addr).await?.get(path).await
}

/// Polls `addr` until it accepts a TCP connection; panics after `within`.
pub async fn wait_listening(addr: SocketAddr, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{addr} not accepting after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A sample: `name{labels}` (labels sorted) → value.
pub type Samples = BTreeMap<String, f64>;

/// Parses Prometheus / OpenMetrics text: every line must be a `#` comment or
/// `name{k="v",…} value [timestamp]`. Keys are `name{k="v",…}` with labels in
/// the order written (`name` alone without labels).
pub fn parse_metrics(text: &str) -> Result<Samples, String> {
    let mut out = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = parse_sample(line).ok_or_else(|| format!("not a sample line: {line:?}"))?;
        out.insert(series, value);
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Option<(String, f64)> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut series = name.to_owned();
    if let Some(labels) = rest.strip_prefix('{') {
        let close = labels_end(labels)?;
        series.push('{');
        series.push_str(&labels[..close]);
        series.push('}');
        rest = &labels[close + 1..];
    }
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = fields.next()?.parse::<f64>().ok()?;
    if let Some(ts) = fields.next() {
        ts.parse::<f64>().ok()?;
    }
    fields.next().is_none().then_some((series, value))
}

/// Index of the `}` closing a label set that starts right after `{`; checks
/// each `name="value"` (with `\"`, `\\`, `\n` escapes) on the way.
fn labels_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'}') {
            return Some(i);
        }
        let eq = i + s[i..].find('=')?;
        let label = &s[i..eq];
        if label.is_empty() || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        i = eq + 1;
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        loop {
            match bytes.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        i += 1;
        match bytes.get(i)? {
            b',' => i += 1,
            b'}' => return Some(i),
            _ => return None,
        }
    }
}

/// GET the admin `/metrics` and parse it.
pub async fn metrics(admin: SocketAddr) -> Samples {
    let answer = get_once(admin, "/metrics").await.expect("GET /metrics");
    assert_eq!(answer.status, 200, "{answer:?}");
    parse_metrics(&answer.body).unwrap_or_else(|e| panic!("{e}\n{}", answer.body))
}

/// Polls `/metrics` until `series` has `value`; panics with the last text after `within`.
pub async fn wait_metric(admin: SocketAddr, series: &str, value: f64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let samples = metrics(admin).await;
        if samples.get(series) == Some(&value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {:?}, want {value}, after {within:?}",
            samples.get(series)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP/2 (prior knowledge) connection to the gateway: its sender, and
/// the task driving the connection.
pub async fn h2_connect(
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}
