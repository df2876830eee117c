//! `[[upstreams]]`.

use std::path::Path;

use super::{clean, timeout, tls_ca};
use crate::config::keypath;
use crate::config::raw::RawUpstream;
use crate::config::{ConfigErrors, UpstreamSettings};

#[cfg(test)]
mod tests;

/// Validates every `[[upstreams]]` entry; names must be unique and non-empty.
pub(super) fn upstreams(
    raw: &[RawUpstream],
    base_dir: &Path,
    errs: &mut ConfigErrors,
) -> Option<Vec<UpstreamSettings>> {
    let before = errs.0.len();
    let mut out: Vec<UpstreamSettings> = Vec::new();
    for (i, up) in raw.iter().enumerate() {
        let at = keypath::index("upstreams", i);
        let name = up.name.trim();
        if name.is_empty() {
            errs.push(
                keypath::join(&at, "name"),
                "is empty; write a name that routes refer to, e.g. \"app\"",
            );
        } else if raw[..i].iter().any(|other| other.name.trim() == name) {
            errs.push(
                keypath::join(&at, "name"),
                format!("{name:?} is used by an earlier upstream; names must be unique"),
            );
        }
        let settings = UpstreamSettings {
            name: name.to_string(),
            urls: urls(&at, &up.urls, errs),
            connect_timeout: timeout(&keypath::join(&at, "connect_timeout"), &up.connect_timeout, errs)
                .unwrap_or_default(),
            timeout: timeout(&keypath::join(&at, "timeout"), &up.timeout, errs).unwrap_or_default(),
            tls_ca: up
                .tls_ca
                .as_deref()
                .and_then(|ca| tls_ca(&keypath::join(&at, "tls_ca"), base_dir, ca, errs)),
        };
        out.push(settings);
    }
    clean(errs, before, out)
}

/// The names routes may refer to: every non-empty name, once.
pub(super) fn names(raw: &[RawUpstream]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for up in raw {
        let name = up.name.trim();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// `http://` / `https://` origins: an authority, no user info, no path but `/`, no query.
fn urls(at: &str, raw: &[String], errs: &mut ConfigErrors) -> Vec<http::Uri> {
    if raw.is_empty() {
        errs.push(keypath::join(at, "urls"), "no URL; write e.g. urls = [\"http://127.0.0.1:9000\"]");
    }
    let mut out = Vec::new();
    for (i, url) in raw.iter().enumerate() {
        let uri = url.trim().parse::<http::Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'))
                && u.path_and_query().is_none_or(|pq| pq.as_str() == "/" || pq.as_str().is_empty())
        });
        match uri {
            Some(uri) => out.push(uri),
            // Never quoted: user info or a query may carry a secret.
            None => errs.push(
                keypath::index(&keypath::join(at, "urls"), i),
                "is not an upstream origin; write http(s)://host[:port] without user, path or query, \
                 e.g. \"http://127.0.0.1:9000\" (use a route's strip_prefix to change paths)",
            ),
        }
    }
    out
}
