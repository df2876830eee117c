//! The admin listener (DESIGN.md §11): `/healthz` (process up), `/readyz`
//! (config loaded, store reachable, not shutting down), `/metrics`
//! (Prometheus text format).
//! Kept off the main listener so its routes can never shadow an app's.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::gateway::Gateway;

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) {
    loop {
        let (stream, _) = crate::server::accept(&listener).await;
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(gw.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn answer(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let resp = match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n", PLAIN),
        "/readyz" if gw.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n", PLAIN)
        }
        "/readyz" => {
            let timeout = gw.snapshot().runtime.store.timeout;
            match tokio::time::timeout(timeout, gw.store.ping()).await {
                Ok(Ok(())) => text(StatusCode::OK, "ready\n", PLAIN),
                Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n"), PLAIN),
                Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "store: timed out\n", PLAIN),
            }
        }
        "/metrics" => text(StatusCode::OK, gw.metrics.encode(), "text/plain; version=0.0.4; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "not found\n", PLAIN),
    };
    Ok(resp)
}
