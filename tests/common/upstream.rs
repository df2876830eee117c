//! A real HTTP/1.1 upstream (hyper) that records every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the upstream saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Which accepted connection it came on (0, 1, …): keep-alive reuse shows here.
    pub conn: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamBehavior {
    /// 200 with body "upstream ok".
    Ok,
    /// Never answers.
    Hang,
    /// 200 with the request's body as its own.
    Echo,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// Extra response headers (e.g. an identity header) for every response.
    pub respond_with: Arc<Mutex<Vec<(String, String)>>>,
    /// Connections that have ended (closed by either side).
    pub closed: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(behavior: UpstreamBehavior) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond_with = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let (s, r, c) = (seen.clone(), respond_with.clone(), closed.clone());
        tokio::spawn(async move {
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (s, r, c) = (s.clone(), r.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| record(req, conn, s.clone(), r.clone(), behavior));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Upstream { addr, seen, respond_with, closed }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The request targets received so far, in order.
    pub fn targets(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|r| r.target.clone()).collect()
    }
}

async fn record(
    req: Request<Incoming>,
    conn: usize,
    seen: Arc<Mutex<Vec<Recorded>>>,
    respond_with: Arc<Mutex<Vec<(String, String)>>>,
    behavior: UpstreamBehavior,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let answer = match behavior {
        UpstreamBehavior::Echo => body.clone(),
        _ => Bytes::from_static(b"upstream ok"),
    };
    seen.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        version: parts.version,
        headers: parts.headers,
        body,
        conn,
    });
    if behavior == UpstreamBehavior::Hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let mut resp = Response::new(Full::new(answer));
    for (k, v) in respond_with.lock().unwrap().iter() {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    Ok(resp)
}
