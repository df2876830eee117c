//! A raw HTTP/1.1 client: the bytes we write are the bytes the gateway reads,
//! so malformed targets and duplicate headers reach it unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names; repeated headers keep every value.
    pub headers: HashMap<String, Vec<String>>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers.get(&name.to_ascii_lowercase()).cloned().unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Asserts a problem+json refusal with this status and `error` code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let body = self.json();
        assert_eq!(body["error"], code, "{body}");
        assert_eq!(body["status"], status);
    }
}

/// Sends `request` verbatim (add `Connection: close`) and reads the response;
/// status 0 when the server is gone (refused or reset).
pub async fn send_raw(addr: SocketAddr, request: &str) -> RawResponse {
    send_bytes(addr, request.as_bytes()).await
}

/// [`send_raw`] for requests that are not UTF-8 (Latin-1 bytes in a header).
pub async fn send_bytes(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return RawResponse { status: 0, headers: HashMap::new(), body: String::new() };
    };
    let dead = RawResponse { status: 0, headers: HashMap::new(), body: String::new() };
    if stream.write_all(request).await.is_err() {
        return dead;
    }
    let mut buf = Vec::new();
    // A reset (a killed server) reads as status 0; a silent one fails the test.
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await {
        Err(_) => panic!("no response within 10 s"),
        Ok(Err(_)) if buf.is_empty() => dead,
        Ok(_) => parse(&buf),
    }
}

/// A GET with the given extra header lines.
pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(addr, "GET", target, headers, "").await
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    send_raw(addr, &req).await
}

fn parse(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.entry(k.trim().to_ascii_lowercase()).or_default().push(v.trim().to_string());
        }
    }
    let chunked = headers.get("transfer-encoding").is_some_and(|v| v.iter().any(|x| x.contains("chunked")));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    RawResponse { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A raw keep-alive client: what it writes is what the gateway reads, and
/// responses are read one at a time even when they arrive together.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    /// The socket, for a protocol that takes over (a WebSocket handshake);
    /// panics if response bytes are still unread.
    pub fn into_stream(self) -> TcpStream {
        assert!(self.buf.is_empty(), "unread: {:?}", String::from_utf8_lossy(&self.buf));
        self.stream
    }

    pub async fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Writes, ignoring a connection the gateway already closed.
    pub async fn try_send(&mut self, bytes: &str) {
        let _ = self.stream.write_all(bytes.as_bytes()).await;
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed; unparsed: {:?}", String::from_utf8_lossy(&self.buf));
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next response's status and body (the gateway's answers here all
    /// carry Content-Length).
    pub async fn response(&mut self) -> (u16, String) {
        let read = async {
            let head_end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                self.fill().await;
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            while self.buf.len() < head_end + length {
                self.fill().await;
            }
            let body = String::from_utf8_lossy(&self.buf[head_end..head_end + length]).into_owned();
            self.buf.drain(..head_end + length);
            (status, body)
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("no response within 10 s")
    }

    /// Sends `request` and reads its response.
    pub async fn exchange(&mut self, request: &str) -> (u16, String) {
        self.send(request).await;
        self.response().await
    }

    /// Reads until the gateway closes the connection: what came before the
    /// close, or `Err` if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> Result<String, ()> {
        let mut rest = std::mem::take(&mut self.buf);
        match tokio::time::timeout(within, self.stream.read_to_end(&mut rest)).await {
            Ok(_) => Ok(String::from_utf8_lossy(&rest).into_owned()),
            Err(_) => Err(()),
        }
    }
}

/// An upstream that answers every request head it reads with `answer`, bytes
/// as given however malformed, and goes on reading on the same connection;
/// the second value keeps every byte it got.
pub async fn answering_upstream(answer: String) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let (got, answer) = (kept.clone(), answer.clone());
            tokio::spawn(async move {
                let (mut buf, mut answered) = (vec![0u8; 4096], 0);
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let heads = {
                        let mut got = got.lock().unwrap();
                        got.extend_from_slice(&buf[..n]);
                        got.windows(4).filter(|w| w == b"\r\n\r\n").count()
                    };
                    for _ in answered..heads {
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                    answered = heads;
                }
            });
        }
    });
    (addr, got)
}
