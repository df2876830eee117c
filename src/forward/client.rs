//! The upstream side: one pooled keep-alive client per `[[upstreams]]` entry,
//! round-robin over its URLs, connect and response-header timeouts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamSettings;
use crate::error::GatewayError;

/// One named upstream and its connection pool.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    targets: Vec<(Scheme, http::uri::Authority)>,
    next: AtomicUsize,
    timeout: Duration,
    client: Client<HttpConnector, Incoming>,
}

impl Upstream {
    /// Builds the pool; no connection is opened until the first request.
    pub fn new(settings: &UpstreamSettings, idle_timeout: Duration) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let targets = settings
            .urls
            .iter()
            .filter_map(|u| Some((u.scheme()?.clone(), u.authority()?.clone())))
            .collect();
        Upstream {
            name: settings.name.clone(),
            targets,
            next: AtomicUsize::new(0),
            timeout: settings.timeout,
            client,
        }
    }

    /// Points `req` at the next target (keeping its path and query) and sends it.
    /// Connection failures → 502, no response headers within `timeout` → 504.
    pub async fn send(&self, mut req: Request<Incoming>) -> Result<Response<Incoming>, GatewayError> {
        let (scheme, authority) = self.pick().ok_or(GatewayError::UpstreamUnavailable)?;
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| GatewayError::Internal)?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.name, error = %e, connect = e.is_connect(), "upstream request failed");
                Err(GatewayError::UpstreamUnavailable)
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    fn pick(&self) -> Option<&(Scheme, http::uri::Authority)> {
        if self.targets.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        self.targets.get(i)
    }
}

/// Every upstream of one config snapshot, by name.
#[derive(Debug, Default)]
pub struct Upstreams(HashMap<String, Arc<Upstream>>);

impl Upstreams {
    pub fn new(settings: &[UpstreamSettings], idle_timeout: Duration) -> Upstreams {
        Upstreams(
            settings.iter().map(|s| (s.name.clone(), Arc::new(Upstream::new(s, idle_timeout)))).collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.0.get(name)
    }
}
