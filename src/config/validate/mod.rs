//! Raw → validated. Every section is checked by its own function, every error
//! collected with its key path; nothing is opened but the files the config
//! names (checked to exist, keys loaded by the token module).
//!
//! Choices where DESIGN.md is silent: enum-like strings (`pretty | json`, …)
//! compare ASCII case-insensitively; timeouts must be greater than zero, while
//! grace periods (`shutdown_grace`, `reuse_grace`, `refresh_ahead`,
//! `max_staleness`) may be `"0s"`.

mod forward;
mod server;
mod session;
mod upstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use super::raw::RawConfig;
use super::{parse_duration, resolve_path, ConfigErrors, Runtime};
use crate::route::RouteTable;
use crate::token::TokenSettings;

/// Validates every section of `raw`; relative paths resolve against `base_dir`.
/// `config_path` is left empty for [`super::load`] to fill in.
pub fn validate(raw: &RawConfig, base_dir: &Path) -> Result<Runtime, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let e = &mut errs;
    let server = server::server(&raw.server, base_dir, e);
    let admin = raw.admin.as_ref().map(|a| server::admin(a, e));
    if let (Some(Some(admin)), Some(server)) = (&admin, &server) {
        server::admin_apart_from_server(admin, server, e);
    }
    let log = server::log(&raw.log, e);
    let tokens = TokenSettings::build(&raw.tokens, base_dir, e);
    let cookies = session::cookies(&raw.cookies, e);
    let csrf = session::csrf(&raw.csrf, e);
    let sessions = session::sessions(&raw.sessions, &raw.tokens, e);
    let store = session::store(&raw.store, base_dir, e);
    let forward = forward::forward(&raw.forward, &raw.sessions.identity_header, e);
    let errors = forward::errors(&raw.errors, e);
    let upstreams = upstream::upstreams(&raw.upstreams, base_dir, e);
    let names = upstream::names(&raw.upstreams);
    let routes = RouteTable::build(&raw.routes, &names, e);
    let admin = admin.map(|a| a.ok_or(())).transpose();
    let (
        Some(server),
        Ok(admin),
        Some(log),
        Some(tokens),
        Some(cookies),
        Some(csrf),
        Some(sessions),
        Some(store),
        Some(forward),
        Some(errors),
        Some(upstreams),
        Some(routes),
    ) = (server, admin, log, tokens, cookies, csrf, sessions, store, forward, errors, upstreams, routes)
    else {
        if errs.is_empty() {
            errs.push("(config)", "a section was rejected without a reason; please report this as a bug");
        }
        return Err(errs);
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let config_path = PathBuf::new();
    Ok(Runtime {
        config_path,
        server,
        admin,
        log,
        tokens,
        cookies,
        csrf,
        sessions,
        store,
        forward,
        errors,
        upstreams,
        routes,
    })
}

/// `Some(value)` when no error was pushed since `before` (= `errs.0.len()` then).
fn clean<T>(errs: &ConfigErrors, before: usize, value: T) -> Option<T> {
    (errs.0.len() == before).then_some(value)
}

/// One of a fixed set of words, compared ASCII case-insensitively.
fn one_of<T: Copy>(key: &str, value: &str, choices: &[(&str, T)], errs: &mut ConfigErrors) -> Option<T> {
    let found = choices.iter().find(|(word, _)| word.eq_ignore_ascii_case(value.trim()));
    if found.is_none() {
        let words: Vec<String> = choices.iter().map(|(w, _)| format!("\"{w}\"")).collect();
        errs.push(key, format!("{value:?} is not allowed; write one of {}", words.join(", ")));
    }
    found.map(|(_, v)| *v)
}

/// A duration that must be greater than zero (a timeout).
fn timeout(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<Duration> {
    positive_of(key, value, parse_duration(key, value, errs)?, errs)
}

/// [`timeout`] in whole seconds ([`crate::config::whole_seconds`]).
fn whole_timeout(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<Duration> {
    positive_of(key, value, crate::config::whole_seconds(key, value, errs)?, errs)
}

fn positive_of(key: &str, value: &str, d: Duration, errs: &mut ConfigErrors) -> Option<Duration> {
    if d.is_zero() {
        errs.push(key, format!("{value:?} is zero; a timeout must be greater than 0, e.g. \"10s\""));
        return None;
    }
    Some(d)
}

/// A count that must be greater than zero.
fn positive(key: &str, value: usize, errs: &mut ConfigErrors) -> Option<usize> {
    if value == 0 {
        errs.push(key, "must be greater than 0; write a positive number or remove the key for its default");
        return None;
    }
    Some(value)
}

/// An HTTP header name (case-insensitive; stored lower-cased).
fn header_name(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<HeaderName> {
    match HeaderName::from_bytes(value.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            errs.push(
                key,
                format!("{value:?} is not a valid header name; write letters, digits and '-', e.g. \"X-Auth-Subject\""),
            );
            None
        }
    }
}

/// A header name as jwtgate compares names: lower-cased, `_` read as `-`.
fn fold_header(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// A file the config names: resolved against `base_dir`, it must exist.
fn existing_file(key: &str, base_dir: &Path, value: &str, errs: &mut ConfigErrors) -> Option<PathBuf> {
    let path = resolve_path(base_dir, value);
    if path.is_file() {
        return Some(path);
    }
    errs.push(
        key,
        format!(
            "file {} does not exist; write its path (relative paths start at the config file's directory)",
            path.display()
        ),
    );
    None
}

/// A `tls_ca` (`[[upstreams]]`, `[store]`): an existing file of PEM
/// certificates usable as trust roots, read the way the client will read it.
pub(super) fn tls_ca(key: &str, base_dir: &Path, value: &str, errs: &mut ConfigErrors) -> Option<PathBuf> {
    let path = existing_file(key, base_dir, value, errs)?;
    match crate::tls::trust_roots(Some(&path)) {
        Ok(_) => Some(path),
        Err(e) => {
            errs.push(key, format!("{e}; give a PEM file of CA certificates"));
            None
        }
    }
}

#[cfg(test)]
mod tests;
