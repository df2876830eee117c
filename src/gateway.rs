//! Process-wide state: the current config snapshot (swapped whole on reload),
//! the state store and the clock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;

use crate::clock::Clock;
use crate::config::Runtime;
use crate::forward::client::{Upstream, Upstreams};
use crate::forward::headers::StripRules;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::token::MAX_LEEWAY;

/// One config generation and everything built from it. A request holds its
/// snapshot from start to end, so a reload never changes the rules mid-request.
#[derive(Debug)]
pub struct Snapshot {
    pub runtime: Runtime,
    pub upstreams: Upstreams,
    pub strip: StripRules,
    /// Per route, in table order, resolved once rather than looked up by
    /// name on every request: the route's upstream (`None` for a route with
    /// none)...
    pub route_upstreams: Vec<Option<Arc<Upstream>>>,
    /// ...and its `jwtgate_requests_total{status="200"}` counter.
    pub route_served: Vec<Counter>,
}

impl Snapshot {
    /// A snapshot after `previous`: unchanged upstreams keep their pools.
    fn succeeding(runtime: Runtime, metrics: &Metrics, previous: Option<&Snapshot>) -> Snapshot {
        let upstreams = Upstreams::rebuild(
            &runtime.upstreams,
            runtime.server.idle_timeout,
            previous.map(|p| &p.upstreams),
        );
        let strip = StripRules::new(&runtime.forward, &runtime.sessions.identity_header);
        let routes = runtime.routes.routes();
        let route_upstreams = routes
            .iter()
            .map(|r| r.upstream.as_deref().and_then(|name| upstreams.get(name)).cloned())
            .collect();
        let route_served = metrics
            .register_routes(routes.iter().map(|r| (r.pattern.as_str(), crate::pipeline::policy_name(r))));
        Snapshot { runtime, upstreams, strip, route_upstreams, route_served }
    }
}

/// What every connection shares.
pub struct Gateway {
    current: ArcSwap<Snapshot>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Process-wide: survives reloads.
    pub metrics: Metrics,
    /// Shutting down (SIGTERM): `/readyz` answers 503 so that load balancers
    /// stop sending while requests in flight finish.
    pub draining: std::sync::atomic::AtomicBool,
    /// The values read at start, which a reload cannot change.
    pub start_only: crate::config::StartOnly,
}

impl Gateway {
    pub fn new(runtime: Runtime, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Gateway> {
        let metrics = Metrics::new();
        let start_only = crate::config::StartOnly::of(&runtime);
        let snapshot = Snapshot::succeeding(runtime, &metrics, None);
        Arc::new(Gateway {
            current: ArcSwap::from_pointee(snapshot),
            store,
            clock,
            metrics,
            draining: std::sync::atomic::AtomicBool::new(false),
            start_only,
        })
    }

    /// The snapshot a new request runs on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Drops what the store no longer needs (the periodic purge): families
    /// past their end and revocations past theirs, by a cutoff that leaves
    /// [`MAX_LEEWAY`] for tokens accepted after their `exp` (a reload may raise
    /// the leeway up to it), and `prev_result`s older than `reuse_grace`.
    pub async fn purge_store(&self) -> Result<usize, StoreError> {
        let grace = self.snapshot().runtime.sessions.reuse_grace.as_secs() as i64;
        let cutoff = self.clock.now().saturating_sub(MAX_LEEWAY.as_secs() as i64);
        self.store.purge(cutoff, grace).await
    }

    /// Installs a validated config; in-flight requests finish on their own snapshot.
    pub fn swap(&self, runtime: Runtime) {
        let previous = self.current.load();
        self.current.store(Arc::new(Snapshot::succeeding(runtime, &self.metrics, Some(&previous))));
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}
