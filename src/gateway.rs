//! Process-wide state: the current config snapshot (swapped whole on reload),
//! the state store and the clock.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::config::Runtime;
use crate::forward::client::Upstreams;
use crate::forward::headers::StripRules;
use crate::metrics::Metrics;
use crate::store::Store;

/// One config generation and everything built from it. A request holds its
/// snapshot from start to end, so a reload never changes the rules mid-request.
#[derive(Debug)]
pub struct Snapshot {
    pub runtime: Runtime,
    pub upstreams: Upstreams,
    pub strip: StripRules,
}

impl Snapshot {
    pub fn new(runtime: Runtime) -> Snapshot {
        Snapshot::succeeding(runtime, None)
    }

    /// A snapshot after `previous`: unchanged upstreams keep their pools.
    fn succeeding(runtime: Runtime, previous: Option<&Snapshot>) -> Snapshot {
        let upstreams = Upstreams::rebuild(
            &runtime.upstreams,
            runtime.server.idle_timeout,
            previous.map(|p| &p.upstreams),
        );
        let strip = StripRules::new(&runtime.forward, &runtime.sessions.identity_header);
        Snapshot { runtime, upstreams, strip }
    }
}

/// What every connection shares.
pub struct Gateway {
    current: ArcSwap<Snapshot>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Process-wide: survives reloads.
    pub metrics: Metrics,
}

impl Gateway {
    pub fn new(runtime: Runtime, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Gateway> {
        let metrics = Metrics::new();
        register_routes(&metrics, &runtime);
        Arc::new(Gateway { current: ArcSwap::from_pointee(Snapshot::new(runtime)), store, clock, metrics })
    }

    /// The snapshot a new request runs on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Installs a validated config; in-flight requests finish on their own snapshot.
    pub fn swap(&self, runtime: Runtime) {
        register_routes(&self.metrics, &runtime);
        let previous = self.current.load();
        self.current.store(Arc::new(Snapshot::succeeding(runtime, Some(&previous))));
    }
}

fn register_routes(metrics: &Metrics, runtime: &Runtime) {
    metrics.register_routes(
        runtime.routes.routes().iter().map(|r| (r.pattern.as_str(), crate::pipeline::policy_name(r))),
    );
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}
