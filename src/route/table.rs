//! The compiled route table and its most-specific match (DESIGN.md §4 rules 6–9).

use std::time::Duration;

use http::Method;

use crate::config::raw::RawRoute;
use crate::config::ConfigErrors;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Public,
    Access,
    Fresh,
    Refresh,
}

/// Built-in handlers answered by jwtgate itself (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Login,
    Refresh,
    Logout,
    Jwks,
}

/// One compiled `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the config file, `routes[index]`.
    pub index: usize,
    /// The pattern as written, for logs and metrics.
    pub pattern: String,
    pub host: Option<String>,
    pub methods: Option<Vec<Method>>,
    /// Handler routes: `Public` (the handler authenticates by itself).
    pub policy: Policy,
    pub handler: Option<Handler>,
    pub upstream: Option<String>,
    pub max_age: Option<Duration>,
    pub require: Vec<(String, serde_json::Value)>,
    pub strip_prefix: Option<String>,
}

impl Route {
    pub fn upstream_path(&self, canonical_path: &str) -> String {
        let _ = canonical_path;
        todo!("route helper")
    }
}

/// Why no route answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    MethodNotAllowed { allow: Vec<Method> },
    CaseConflict,
}

#[derive(Debug, Clone)]
pub struct RouteTable {}

impl RouteTable {
    pub fn build(raw: &[RawRoute], upstreams: &[String], errs: &mut ConfigErrors) -> Option<RouteTable> {
        let _ = (raw, upstreams, errs);
        todo!("route helper")
    }

    pub fn describe(&self) -> String {
        todo!("route helper")
    }

    pub fn routes(&self) -> &[Route] {
        todo!("route helper")
    }

    pub fn lookup(&self, host: &str, method: &Method, path: &str) -> Result<&Route, RouteMiss> {
        let _ = (host, method, path);
        todo!("route helper")
    }
}
