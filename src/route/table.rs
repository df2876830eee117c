//! The compiled route table and its most-specific match (DESIGN.md §4 rules 6–9).
//!
//! Built once per config load by [`RouteTable::build`] (in `build.rs`), then only
//! read: every request does one [`RouteTable::lookup`] on its canonical path.

use std::time::Duration;

use http::Method;

use super::canonical::fold_case;
use super::pattern::{path_segments, Pattern, Specificity};
use crate::error::GatewayError;

/// What a route demands of the request's credentials (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Nothing; claim headers are still stripped.
    Public,
    /// A valid access token, fresh or not.
    Access,
    /// A valid fresh access token, within the route's `max_age`.
    Fresh,
    /// A valid refresh token.
    Refresh,
}

impl Policy {
    /// The config spelling, e.g. `"fresh"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Public => "public",
            Policy::Access => "access",
            Policy::Fresh => "fresh",
            Policy::Refresh => "refresh",
        }
    }

    /// Parses the config spelling; `None` for anything else.
    pub fn parse(name: &str) -> Option<Policy> {
        [Policy::Public, Policy::Access, Policy::Fresh, Policy::Refresh]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

/// Built-in handlers answered by jwtgate itself (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Login,
    Refresh,
    Logout,
    Jwks,
}

static POST_ONLY: [Method; 1] = [Method::POST];
static GET_ONLY: [Method; 1] = [Method::GET];

impl Handler {
    /// The config spelling, e.g. `"login"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Login => "login",
            Handler::Refresh => "refresh",
            Handler::Logout => "logout",
            Handler::Jwks => "jwks",
        }
    }

    /// Parses the config spelling; `None` for anything else.
    pub fn parse(name: &str) -> Option<Handler> {
        [Handler::Login, Handler::Refresh, Handler::Logout, Handler::Jwks]
            .into_iter()
            .find(|h| h.as_str() == name)
    }

    /// The methods a handler route accepts when it has no `methods` (DESIGN.md §6):
    /// POST for login, refresh and logout; GET for jwks.
    pub fn default_methods(self) -> &'static [Method] {
        match self {
            Handler::Login | Handler::Refresh | Handler::Logout => &POST_ONLY,
            Handler::Jwks => &GET_ONLY,
        }
    }
}

/// One compiled `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the config file, `routes[index]`.
    pub index: usize,
    /// The pattern as written, for logs and metrics.
    pub pattern: String,
    /// Lower-cased; `None` matches every host.
    pub host: Option<String>,
    /// The `methods` key as written (upper-case tokens), plus HEAD where a
    /// route without a handler lists GET; `None` = not set. Use
    /// [`Route::effective_methods`] / [`Route::allows`], which apply handler defaults.
    pub methods: Option<Vec<Method>>,
    /// Handler routes: `Public` (the handler authenticates by itself).
    pub policy: Policy,
    pub handler: Option<Handler>,
    /// Name of an `[[upstreams]]` entry; `None` only on handlers other than login.
    pub upstream: Option<String>,
    /// `fresh` routes only: the login (`auth_time`) must be this recent.
    pub max_age: Option<Duration>,
    /// claim → value the token must carry (equal, or contained in an array claim); sorted by claim.
    pub require: Vec<(String, serde_json::Value)>,
    /// Segment-boundary prefix removed before forwarding (no trailing `/`).
    pub strip_prefix: Option<String>,
}

impl Route {
    /// The methods this route accepts: its `methods`, else its handler's defaults;
    /// `None` means every method.
    pub fn effective_methods(&self) -> Option<&[Method]> {
        match (&self.methods, self.handler) {
            (Some(list), _) => Some(list),
            (None, Some(handler)) => Some(handler.default_methods()),
            (None, None) => None,
        }
    }

    /// Whether this route accepts `method` (a proxied route's `methods` with GET has HEAD).
    pub fn allows(&self, method: &Method) -> bool {
        self.effective_methods().is_none_or(|list| list.contains(method))
    }

    /// The path the upstream receives for a canonical request path this route
    /// matched (DESIGN.md §4 rule 8): `strip_prefix` removed on a segment boundary,
    /// always starting with `/` (stripping everything leaves `/`). A trailing `/`
    /// is kept, since `/p/` is forwarded as `/p/`.
    pub fn upstream_path(&self, canonical_path: &str) -> String {
        let Some(prefix) = self.strip_prefix.as_deref() else {
            return canonical_path.to_owned();
        };
        match canonical_path.strip_prefix(prefix) {
            Some("") => "/".to_owned(),
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            // Not on a segment boundary: cannot happen for a path this route matched
            // (build checks the prefix against the pattern), so forward it unchanged.
            _ => canonical_path.to_owned(),
        }
    }

    /// Whether two routes apply the same rules to a request (case guard, rule 9).
    fn same_rules(&self, other: &Route) -> bool {
        self.policy == other.policy && self.require == other.require && self.max_age == other.max_age
    }
}

/// Why no route answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    /// No route matches host and path → 404.
    NotFound,
    /// Routes match host and path but not the method → 405 with `Allow: allow`.
    MethodNotAllowed { allow: Vec<Method> },
    /// The ASCII-lower-cased path would reach a route with other rules → 400.
    CaseConflict,
    /// The path with its escapes of sub-delims, `:` and `@` decoded would
    /// reach a route with other rules → 400.
    EscapeConflict,
}

impl RouteMiss {
    /// The refusal sent to the client.
    pub fn into_error(self) -> GatewayError {
        match self {
            RouteMiss::NotFound => GatewayError::NoRoute,
            RouteMiss::MethodNotAllowed { allow } => GatewayError::MethodNotAllowed { allow },
            RouteMiss::CaseConflict => GatewayError::BadRequest(
                "the path differs only in letter case from a path under other route rules",
            ),
            RouteMiss::EscapeConflict => GatewayError::BadRequest(
                "the path's percent-escapes, decoded, would reach a path under other route rules",
            ),
        }
    }
}

/// Rank of a matching route; greater wins (DESIGN.md §4 rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    pub(super) host_specific: bool,
    pub(super) pattern: Specificity,
    pub(super) method_list: bool,
}

/// A route with its compiled patterns.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) route: Route,
    pub(super) pattern: Pattern,
    pub(super) lower: Pattern,
    pub(super) rank: Rank,
}

impl Entry {
    pub(super) fn new(route: Route, pattern: Pattern) -> Entry {
        let rank = Rank {
            host_specific: route.host.is_some(),
            pattern: pattern.specificity(),
            method_list: route.effective_methods().is_some(),
        };
        Entry { lower: pattern.case_folded(), route, pattern, rank }
    }

    fn serves_host(&self, host: &str) -> bool {
        self.route.host.as_deref().is_none_or(|h| h == host)
    }
}

/// Which patterns a reading of the path is matched against.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// As written (case-sensitive).
    AsSent,
    /// ASCII-lower-cased, for a lower-cased path (rule 9).
    Folded,
}

/// The compiled `[[routes]]`, in config order. The default is an empty table
/// (every request 404).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub(super) entries: Vec<Entry>,
    pub(super) routes: Vec<Route>,
    /// Some pattern has an upper-case letter, so the case guard runs on every path.
    pub(super) upper_patterns: bool,
}

impl RouteTable {
    /// The routes in config order (`routes()[i].index == i`).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route for a request (rules 6, 7, 9). `host` is lower-cased
    /// without port; `path` is the canonical path from [`super::canonicalize`].
    ///
    /// Beyond rule 9, the escape guard: a canonical path keeps `%3A`, `%40`,
    /// `%2B`… as sent (rule 5), while nearly every app decodes them before
    /// routing. Unless the decoded path (and, under the case guard, its
    /// lower-cased form) reaches routes with the winner's rules, the request
    /// is refused: `/api/users%3Apurge` must not pass under `/api/**` to the
    /// view an app serves for a stricter `/api/users:purge`, nor the other way
    /// round for an app that does not decode.
    pub fn lookup(&self, host: &str, method: &Method, path: &str) -> Result<&Route, RouteMiss> {
        let segments = path_segments(path);
        let Some(winner) = self.best(host, method, &segments) else {
            return Err(self.miss(host, &segments));
        };
        let guard = self.upper_patterns || path.bytes().any(|b| b.is_ascii_uppercase());
        if guard && self.conflict(host, method, &fold_case(path), Case::Folded, winner) {
            return Err(RouteMiss::CaseConflict);
        }
        if let Some(decoded) = super::canonical::decode_reserved_escapes(path) {
            if self.conflict(host, method, &decoded, Case::AsSent, winner)
                || (guard && self.conflict(host, method, &fold_case(&decoded), Case::Folded, winner))
            {
                return Err(RouteMiss::EscapeConflict);
            }
        }
        Ok(&winner.route)
    }

    /// The highest-ranked entry matching host, path and method. Build refuses equal
    /// ranks that can match one request, so the first of equals never hides a choice.
    fn best(&self, host: &str, method: &Method, segments: &[&str]) -> Option<&Entry> {
        let matching = self
            .entries
            .iter()
            .filter(|e| e.serves_host(host) && e.route.allows(method) && e.pattern.matches(segments));
        matching.fold(None, |best: Option<&Entry>, e| match best {
            Some(b) if b.rank >= e.rank => Some(b),
            _ => Some(e),
        })
    }

    /// 405 with the union of the methods of the routes matching host and path, else 404.
    fn miss(&self, host: &str, segments: &[&str]) -> RouteMiss {
        let mut allow: Vec<Method> = Vec::new();
        for e in self.entries.iter().filter(|e| e.serves_host(host) && e.pattern.matches(segments)) {
            for m in e.route.effective_methods().unwrap_or_default() {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
        }
        if allow.is_empty() {
            RouteMiss::NotFound
        } else {
            RouteMiss::MethodNotAllowed { allow }
        }
    }

    /// Whether the top-ranked routes for another reading of the request's path
    /// (all of them, since lower-casing can make distinct patterns equal) apply
    /// other rules than `winner`: rule 9 for the lower-cased path, matched
    /// against lower-cased patterns, and the escape guard for the decoded one.
    /// A reading no route matches conflicts with nothing.
    fn conflict(&self, host: &str, method: &Method, path: &str, case: Case, winner: &Entry) -> bool {
        let segments = path_segments(path);
        let mut top: Option<(Rank, bool)> = None;
        for e in self.entries.iter() {
            let pattern = match case {
                Case::AsSent => &e.pattern,
                Case::Folded => &e.lower,
            };
            if !(e.serves_host(host) && e.route.allows(method) && pattern.matches(&segments)) {
                continue;
            }
            let differs = !e.route.same_rules(&winner.route);
            top = match top {
                Some((rank, d)) if rank > e.rank => Some((rank, d)),
                Some((rank, d)) if rank == e.rank => Some((rank, d || differs)),
                _ => Some((e.rank, differs)),
            };
        }
        top.is_some_and(|(_, differs)| differs)
    }
}
