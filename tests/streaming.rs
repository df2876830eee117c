//! Bodies stream through the gateway in both directions: nothing is buffered
//! whole. Each test deadlocks (and times out) if the gateway waited for the
//! end of a body before passing its start on.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const ROUTES: &str = "[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n";
const LIMIT: Duration = Duration::from_secs(5);

type Chunks = mpsc::Receiver<Result<Frame<Bytes>, Infallible>>;

/// Upstream: answers with "first-chunk", then waits for `release` before "last-chunk".
async fn streaming_upstream(release: oneshot::Receiver<()>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release)));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |_req: http::Request<Incoming>| {
            let release = release.clone();
            async move {
                let (tx, rx): (_, Chunks) = mpsc::channel(4);
                tokio::spawn(async move {
                    tx.send(Ok(Frame::data(Bytes::from_static(b"first-chunk")))).await.unwrap();
                    if let Some(r) = release.lock().await.take() {
                        let _ = r.await;
                    }
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"last-chunk")))).await;
                });
                let body = StreamBody::new(tokio_stream_from(rx));
                Ok::<_, Infallible>(http::Response::new(body))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    });
    addr
}

/// A `Stream` over an mpsc receiver, without pulling in tokio-stream.
fn tokio_stream_from(mut rx: Chunks) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn the_response_body_reaches_the_client_before_the_upstream_finishes_it() {
    let (release_tx, release_rx) = oneshot::channel();
    let up = streaming_upstream(release_rx).await;
    let gw = start_gateway(&base_config(ROUTES), up, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(b"GET /stream HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        while !String::from_utf8_lossy(&seen).contains("first-chunk") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first chunk");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first chunk was held back until the upstream finished: the body was buffered");
    assert!(!String::from_utf8_lossy(&seen).contains("last-chunk"));
    release_tx.send(()).unwrap();
    tokio::time::timeout(LIMIT, client.read_to_end(&mut seen)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("last-chunk"));
}

#[tokio::test]
async fn the_request_body_reaches_the_upstream_before_the_client_finishes_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (first_tx, first_rx) = oneshot::channel::<Bytes>();
    let first_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(first_tx)));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |req: http::Request<Incoming>| {
            let first_tx = first_tx.clone();
            async move {
                let mut body = req.into_body();
                let mut all = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if let Some(tx) = first_tx.lock().unwrap().take() {
                            let _ = tx.send(data.clone());
                        }
                        all.extend_from_slice(&data);
                    }
                }
                Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(all))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    });
    let gw = start_gateway(&base_config(ROUTES), up, None).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    let head =
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(b"b\r\nfirst-chunk\r\n").await.unwrap();
    let first = tokio::time::timeout(LIMIT, first_rx)
        .await
        .expect("the upstream saw nothing before the client finished: the body was buffered")
        .unwrap();
    assert_eq!(&first[..], b"first-chunk");
    client.write_all(b"a\r\nlast-chunk\r\n0\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(LIMIT, client.read_to_end(&mut resp)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&resp).contains("first-chunklast-chunk"));
}
