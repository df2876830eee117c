//! Prometheus metrics (DESIGN.md §11). One [`Metrics`] per process, shared by
//! every config snapshot; every series exists from startup, counters with a
//! known label set pre-registered at 0.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub policy: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    pub mode: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Every `error` code a 401/403 can carry: `jwtgate_auth_failures_total{reason}`.
pub const AUTH_FAILURE_REASONS: &[&str] = &[
    "missing_token",
    "invalid_token",
    "token_expired",
    "wrong_token_type",
    "token_revoked",
    "refresh_reuse",
    "fresh_token_required",
    "forbidden",
    "csrf_failed",
];

/// How a refresh ended: `jwtgate_refresh_total{mode,outcome}`.
pub const REFRESH_OUTCOMES: &[&str] = &["rotated", "replayed", "renewed", "reuse", "dead", "store_error"];
pub const REFRESH_MODES: &[&str] = &["implicit", "explicit"];

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub refresh: Family<RefreshLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub connections_active: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Open plaintext HTTP/1.1 connections idle between requests with their
    /// HTTP buffers released (see `server::plain`).
    pub connections_parked: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            auth_failures: Family::default(),
            refresh: Family::default(),
            request_duration: latency_histogram(),
            upstream_duration: latency_histogram(),
            config_reloads: Family::default(),
            connections_active: Gauge::default(),
            connections_parked: Gauge::default(),
        };
        m.preregister();
        let r = &mut m.registry;
        r.register("jwtgate_requests", "Requests answered, by route, policy and status", m.requests.clone());
        r.register(
            "jwtgate_auth_failures",
            "Requests refused with 401/403, by error code",
            m.auth_failures.clone(),
        );
        r.register("jwtgate_refresh", "Refresh attempts, by mode and outcome", m.refresh.clone());
        r.register(
            "jwtgate_request_duration_seconds",
            "Time from request to response headers",
            m.request_duration.clone(),
        );
        r.register(
            "jwtgate_upstream_duration_seconds",
            "Upstream time to response headers",
            m.upstream_duration.clone(),
        );
        r.register(
            "jwtgate_config_reloads",
            "Config reload attempts, failed ones included",
            m.config_reloads.clone(),
        );
        r.register("jwtgate_connections_active", "Open client connections", m.connections_active.clone());
        r.register(
            "jwtgate_connections_parked",
            "Idle HTTP/1.1 connections holding no HTTP buffers",
            m.connections_parked.clone(),
        );
        m
    }

    fn preregister(&self) {
        for reason in AUTH_FAILURE_REASONS {
            let _ = self.auth_failures.get_or_create(&ReasonLabels { reason: (*reason).into() });
        }
        for mode in REFRESH_MODES {
            for outcome in REFRESH_OUTCOMES {
                let _ = self
                    .refresh
                    .get_or_create(&RefreshLabels { mode: (*mode).into(), outcome: (*outcome).into() });
            }
        }
        for result in ["ok", "error"] {
            let _ = self.config_reloads.get_or_create(&ResultLabels { result: result.into() });
        }
    }

    /// Pre-registers `requests_total{status="200"}` at 0 for each route of a
    /// (new) config and returns those counters in table order: the common
    /// answer is counted without building, hashing and looking up its labels.
    pub fn register_routes<'a>(&self, routes: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Counter> {
        routes
            .map(|(route, policy)| {
                let labels =
                    RequestLabels { route: route.into(), policy: policy.into(), status: "200".into() };
                self.requests.get_or_create(&labels).clone()
            })
            .collect()
    }

    pub fn refresh_outcome(&self, mode: &str, outcome: &str) {
        self.refresh.get_or_create(&RefreshLabels { mode: mode.into(), outcome: outcome.into() }).inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.config_reloads.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Holds a gauge one higher until dropped, so it stays right however a
/// connection (or a phase of one) ends. Owns a handle on the gauge (one
/// pointer) so a connection's task can carry it without borrowing the gateway.
#[derive(Debug)]
pub struct GaugeGuard(Gauge<i64, std::sync::atomic::AtomicI64>);

impl GaugeGuard {
    pub fn new(gauge: &Gauge<i64, std::sync::atomic::AtomicI64>) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_exported_from_startup() {
        let m = Metrics::new();
        let served = m.register_routes([("/api/**", "access")].into_iter());
        let text = m.encode();
        for name in [
            "jwtgate_requests_total{route=\"/api/**\",policy=\"access\",status=\"200\"} 0",
            "jwtgate_auth_failures_total{reason=\"missing_token\"} 0",
            "jwtgate_refresh_total{mode=\"implicit\",outcome=\"rotated\"} 0",
            "jwtgate_request_duration_seconds_count 0",
            "jwtgate_upstream_duration_seconds_count 0",
            "jwtgate_config_reloads_total{result=\"error\"} 0",
            "jwtgate_connections_active 0",
            "jwtgate_connections_parked 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        served[0].inc();
        let after = m.encode();
        assert!(
            after.contains("jwtgate_requests_total{route=\"/api/**\",policy=\"access\",status=\"200\"} 1"),
            "the returned counter is the exported series:\n{after}"
        );
    }
}
