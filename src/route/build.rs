//! Compiling `[[routes]]` (DESIGN.md §3, §4, §6): every entry is checked on its
//! own, then every pair for overlap. All errors are collected, each with its key
//! path and the fix, so `jwtgate check` can list them at once.

use std::time::Duration;

use http::Method;

use super::canonical::canonicalize;
use super::pattern::Pattern;
use super::table::{Entry, Handler, Policy, Route, RouteTable};
use crate::config::raw::RawRoute;
use crate::config::{whole_seconds, ConfigErrors};

impl RouteTable {
    /// Compiles the `[[routes]]` of one config load against the names of its
    /// `[[upstreams]]`. Returns `None` when any route is invalid, after pushing every
    /// problem found (not just the first) to `errs`.
    pub fn build(raw: &[RawRoute], upstreams: &[String], errs: &mut ConfigErrors) -> Option<RouteTable> {
        let before = errs.0.len();
        let entries: Vec<Entry> =
            raw.iter().enumerate().filter_map(|(i, r)| compile(&Field::new(i), r, upstreams, errs)).collect();
        check_overlaps(&entries, errs);
        if errs.0.len() > before {
            return None;
        }
        let upper_patterns = entries.iter().any(|e| e.pattern.has_ascii_uppercase());
        let routes = entries.iter().map(|e| e.route.clone()).collect();
        Some(RouteTable { entries, routes, upper_patterns })
    }
}

/// Builds the key paths of one route, e.g. `routes[3].policy`.
struct Field(usize);

impl Field {
    fn new(index: usize) -> Field {
        Field(index)
    }

    fn key(&self, name: &str) -> String {
        format!("routes[{}].{name}", self.0)
    }
}

/// One route, or `None` after pushing its errors.
fn compile(at: &Field, raw: &RawRoute, upstreams: &[String], errs: &mut ConfigErrors) -> Option<Entry> {
    let before = errs.0.len();
    let pattern = Pattern::parse(&raw.path).map_err(|msg| errs.push(at.key("path"), msg)).ok();
    let host = raw.host.as_deref().map(|h| check_host(at, h, errs));
    let methods = raw.methods.as_deref().map(|m| check_methods(at, m, errs));
    let kind = policy_and_handler(at, raw, errs);
    // Whether an upstream is needed depends on the handler alone (unknown name: unknown).
    let handler = match raw.handler.as_deref() {
        None => Some(None),
        Some(name) => Handler::parse(name).map(Some),
    };
    let upstream = check_upstream(at, raw.upstream.as_deref(), handler, upstreams, errs);
    let max_age = check_max_age(at, raw.max_age.as_deref(), kind.map(|k| k.0), errs);
    let require = check_require(at, raw, kind.map(|k| k.0), errs);
    let strip_prefix =
        raw.strip_prefix.as_deref().and_then(|s| check_strip_prefix(at, s, pattern.as_ref(), errs));
    if errs.0.len() > before {
        return None;
    }
    let (pattern, (policy, handler)) = (pattern?, kind?);
    let mut methods = methods.flatten();
    // A proxied route listing GET answers HEAD too: apps answer HEAD with
    // their GET view (Flask, Express, Rails, Go's `ServeMux`), so a HEAD left
    // out would fall to a broader route and run that view under its rules,
    // as nginx's `limit_except GET` knows. A handler route keeps exactly its
    // list (DESIGN §6): HEAD /refresh would rotate and drop the new tokens.
    if let Some(list) = methods.as_mut().filter(|_| handler.is_none()) {
        if list.contains(&Method::GET) && !list.contains(&Method::HEAD) {
            list.push(Method::HEAD);
        }
    }
    let route = Route {
        index: at.0,
        pattern: raw.path.clone(),
        host: host.flatten(),
        methods,
        policy,
        handler,
        upstream,
        max_age,
        require,
        strip_prefix,
    };
    Some(Entry::new(route, pattern))
}

/// A plain hostname, lower-cased, or a bracketed IPv6 literal in its
/// canonical spelling (`[::1]`, as the gateway spells a request's); no
/// scheme, port or path.
fn check_host(at: &Field, host: &str, errs: &mut ConfigErrors) -> Option<String> {
    let lower = host.to_ascii_lowercase();
    let ipv6 = lower.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(addr) = ipv6.and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok()) {
        return Some(format!("[{addr}]"));
    }
    let valid = match ipv6 {
        Some(_) => false,
        None => {
            !lower.is_empty()
                && lower.len() <= 253
                && lower.split('.').all(|label| {
                    !label.is_empty()
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        }
    };
    if valid && !crate::pipeline::inbound::ipv4_ok(&lower) {
        errs.push(
            at.key("host"),
            format!("{host:?} ends in a number, so it is an IPv4 address; write it as four decimal numbers, e.g. \"10.0.0.1\""),
        );
        return None;
    }
    if valid {
        return Some(lower);
    }
    errs.push(
        at.key("host"),
        format!("{host:?} is not a plain host name; write only the name, e.g. \"app.example.com\" (no scheme, port, path or wildcard)"),
    );
    None
}

/// Upper-case HTTP method tokens, each once, at least one.
fn check_methods(at: &Field, names: &[String], errs: &mut ConfigErrors) -> Option<Vec<Method>> {
    let before = errs.0.len();
    if names.is_empty() {
        errs.push(
            at.key("methods"),
            "an empty list allows no method; remove `methods` to allow every method",
        );
    }
    let mut methods: Vec<Method> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = at.key(&format!("methods[{i}]"));
        let upper = name.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Err(_) => errs.push(key, format!("{name:?} is not an HTTP method token; write e.g. \"GET\"")),
            // Methods are case-sensitive on the wire: "get" would never match a GET.
            Ok(_) if upper != *name => errs.push(key, format!("methods are case-sensitive; write {upper:?}")),
            Ok(m) if methods.contains(&m) => errs.push(key, format!("{name} is listed twice; remove one")),
            Ok(m) => methods.push(m),
        }
    }
    (errs.0.len() == before).then_some(methods)
}

/// Exactly one of `policy` (upstream routes) and `handler` (handler routes, which
/// get `Public`: the handler authenticates by itself). No implicit default policy.
fn policy_and_handler(
    at: &Field,
    raw: &RawRoute,
    errs: &mut ConfigErrors,
) -> Option<(Policy, Option<Handler>)> {
    let policy = raw.policy.as_deref().map(|name| {
        Policy::parse(name).ok_or_else(|| {
            errs.push(
                at.key("policy"),
                format!("unknown policy {name:?}; write public, access, fresh or refresh"),
            )
        })
    });
    let handler = raw.handler.as_deref().map(|name| {
        Handler::parse(name).ok_or_else(|| {
            errs.push(
                at.key("handler"),
                format!("unknown handler {name:?}; write login, refresh, logout or jwks"),
            )
        })
    });
    match (policy, handler) {
        (Some(Ok(p)), None) => Some((p, None)),
        (None, Some(Ok(h))) => Some((Policy::Public, Some(h))),
        (Some(_), Some(_)) => {
            errs.push(
                at.key("policy"),
                "a handler route authenticates by itself; remove `policy` (or `handler`)",
            );
            None
        }
        (None, None) => {
            errs.push_following(
                at.key("policy"),
                vec![at.key("handler")],
                "missing; every route says who may pass: policy = \"public\", \"access\", \"fresh\" or \"refresh\"",
            );
            None
        }
        _ => None,
    }
}

/// `upstream` names a configured upstream; required except on handlers other than
/// login, which answer by themselves and must not name one. `handler` is `None`
/// when the handler name is unknown: then only the upstream's name is checked.
fn check_upstream(
    at: &Field,
    upstream: Option<&str>,
    handler: Option<Option<Handler>>,
    upstreams: &[String],
    errs: &mut ConfigErrors,
) -> Option<String> {
    let needs_upstream = match handler {
        Some(Some(Handler::Login)) | Some(None) => Some(true),
        Some(Some(_)) => Some(false),
        None => None,
    };
    match (upstream, needs_upstream) {
        (None, Some(true)) => {
            let why = if handler == Some(Some(Handler::Login)) {
                "the login handler forwards to the app"
            } else {
                "a route without a handler forwards"
            };
            errs.push_following(
                at.key("upstream"),
                vec![at.key("handler")],
                format!("missing: {why}; name one of the [[upstreams]] ({})", names(upstreams)),
            );
        }
        (Some(_), Some(false)) => {
            let h = handler.flatten().map_or("this", Handler::as_str);
            errs.push(at.key("upstream"), format!("the {h} handler answers by itself; remove `upstream`"));
        }
        (Some(name), _) if !upstreams.iter().any(|u| u == name) => {
            // Perhaps the upstream meant is one whose `name` is in error.
            errs.push_following(
                at.key("upstream"),
                vec!["upstreams[*].name".into()],
                format!("no [[upstreams]] named {name:?}; known: {}", names(upstreams)),
            );
        }
        _ => {}
    }
    upstream.map(str::to_owned)
}

fn names(upstreams: &[String]) -> String {
    if upstreams.is_empty() {
        return "none are configured".to_owned();
    }
    upstreams.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ")
}

/// `max_age` parses as a duration and sits only on `fresh` routes.
fn check_max_age(
    at: &Field,
    value: Option<&str>,
    policy: Option<Policy>,
    errs: &mut ConfigErrors,
) -> Option<Duration> {
    let value = value?;
    let age = whole_seconds(&at.key("max_age"), value, errs);
    if age.is_some_and(|a| a.is_zero()) {
        errs.push(
            at.key("max_age"),
            "is zero: no login is recent enough for it, so the route would refuse every request; \
             write how recent a login must be, e.g. \"5m\"",
        );
        return None;
    }
    if policy.is_some_and(|p| p != Policy::Fresh) {
        errs.push(at.key("max_age"), "applies only to policy = \"fresh\"; remove it or make the route fresh");
    }
    age
}

/// `require` values are strings, integers or booleans, on routes that verify a token.
fn check_require(
    at: &Field,
    raw: &RawRoute,
    policy: Option<Policy>,
    errs: &mut ConfigErrors,
) -> Vec<(String, serde_json::Value)> {
    if !raw.require.is_empty() && policy == Some(Policy::Public) {
        let what = if raw.handler.is_some() { "a handler route" } else { "a public route" };
        errs.push(
            at.key("require"),
            format!("{what} verifies no token to check claims on; use policy access, fresh or refresh"),
        );
    }
    let mut out = Vec::with_capacity(raw.require.len());
    for (claim, value) in &raw.require {
        let value = match value {
            toml::Value::String(s) => serde_json::Value::from(s.as_str()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Boolean(b) => serde_json::Value::from(*b),
            other => {
                let msg = format!(
                    "a {} cannot be compared with a claim; write a string, integer or boolean",
                    other.type_str()
                );
                errs.push(at.key(&format!("require.{claim}")), msg);
                continue;
            }
        };
        if claim.is_empty() {
            errs.push(at.key("require"), "a claim name is empty; write e.g. { roles = \"admin\" }");
        }
        out.push((claim.clone(), value));
    }
    out
}

/// `strip_prefix` is canonical, starts with `/` and is a whole-segment prefix of
/// the pattern's literal part, so every path the route matches starts with it.
fn check_strip_prefix(
    at: &Field,
    prefix: &str,
    pattern: Option<&Pattern>,
    errs: &mut ConfigErrors,
) -> Option<String> {
    let trimmed = if prefix.len() > 1 { prefix.strip_suffix('/').unwrap_or(prefix) } else { prefix };
    let canonical = canonicalize(trimmed, false).ok().filter(|c| c.query.is_none() && c.path == trimmed);
    if !trimmed.starts_with('/') || trimmed.contains('*') || canonical.is_none() {
        errs.push(
            at.key("strip_prefix"),
            format!("{prefix:?} must be a plain canonical path starting with /, e.g. \"/static\""),
        );
        return None;
    }
    let pattern = pattern?;
    let mut literal = pattern.literal_prefix();
    let on_boundary = trimmed == "/" || trimmed[1..].split('/').all(|s| literal.next() == Some(s));
    if !on_boundary {
        errs.push(
            at.key("strip_prefix"),
            format!("{prefix:?} is not a whole-segment prefix of the literal start of path {pattern}; shorten it to segments the path always has"),
        );
        return None;
    }
    (trimmed != "/").then(|| trimmed.to_owned())
}

/// Pairs of routes that can answer the same request with equal rank (rule 6).
fn check_overlaps(entries: &[Entry], errs: &mut ConfigErrors) {
    for (j, later) in entries.iter().enumerate() {
        for earlier in &entries[..j] {
            if earlier.rank != later.rank || earlier.route.host != later.route.host {
                continue;
            }
            let Some(method) = shared_method(&earlier.route, &later.route) else { continue };
            let Some(example) = earlier.pattern.overlap(&later.pattern) else { continue };
            let fix = if method == Method::HEAD {
                "a route listing GET answers HEAD too, so HEAD needs no route of its own beside it"
            } else {
                "make one path more specific, or split them by host or methods"
            };
            errs.push(
                format!("routes[{}].path", later.route.index),
                format!(
                    "routes[{}] ({:?}) and routes[{}] ({:?}) both match e.g. {method} {example} with equal specificity; {fix}",
                    earlier.route.index, earlier.route.pattern, later.route.index, later.route.pattern
                ),
            );
        }
    }
}

/// A method both routes accept, `None` when they share none.
fn shared_method(a: &Route, b: &Route) -> Option<Method> {
    match (a.effective_methods(), b.effective_methods()) {
        (None, None) => Some(Method::GET),
        (Some(list), None) | (None, Some(list)) => list.first().cloned(),
        (Some(x), Some(y)) => x.iter().find(|m| y.contains(m)).cloned(),
    }
}
