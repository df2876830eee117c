//! `[cookies]`, `[csrf]`, `[sessions]` and `[store]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{clean, header_name, one_of, timeout, tls_ca, whole_timeout};
use crate::config::keypath;
use crate::config::raw::{RawCookies, RawCsrf, RawSessions, RawStore, RawTokens};
use crate::config::{
    parse_duration, resolve_path, whole_seconds, ConfigErrors, CookieSettings, CsrfSettings, LoginResponse,
    SameSite, SessionSettings, StoreBackend, StoreSettings,
};

#[cfg(test)]
mod tests;

/// Validates `[cookies]`.
pub(super) fn cookies(raw: &RawCookies, errs: &mut ConfigErrors) -> Option<CookieSettings> {
    let before = errs.0.len();
    let names = [
        ("cookies.access", &raw.access),
        ("cookies.refresh", &raw.refresh),
        ("cookies.csrf_access", &raw.csrf_access),
        ("cookies.csrf_refresh", &raw.csrf_refresh),
    ];
    for (i, (key, name)) in names.iter().enumerate() {
        cookie_name(key, name, raw.secure, errs);
        if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
            errs.push(*key, format!("{name:?} is also {other}; the four cookie names must differ"));
        }
    }
    let same_site = one_of(
        "cookies.same_site",
        &raw.same_site,
        &[("strict", SameSite::Strict), ("lax", SameSite::Lax), ("none", SameSite::None)],
        errs,
    );
    if same_site == Some(SameSite::None) && !raw.secure {
        errs.push(
            "cookies.same_site",
            "\"none\" requires secure = true (browsers drop SameSite=None cookies without Secure); \
             set secure = true or write \"lax\"",
        );
    }
    let domain = cookie_domain(&raw.domain, errs);
    if !raw.path.starts_with('/') || raw.path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        errs.push(
            "cookies.path",
            format!("{:?} is not a cookie path; write a path starting with '/', e.g. \"/\"", raw.path),
        );
    }
    let host_prefixed = names.iter().any(|(_, n)| n.starts_with("__Host-"));
    if host_prefixed && (domain.is_some() || raw.path != "/") {
        errs.push(
            "cookies.domain",
            "a \"__Host-\" cookie name needs domain = \"\" and path = \"/\" (browsers reject it otherwise)",
        );
    }
    let settings = CookieSettings {
        access: raw.access.clone(),
        refresh: raw.refresh.clone(),
        csrf_access: raw.csrf_access.clone(),
        csrf_refresh: raw.csrf_refresh.clone(),
        secure: raw.secure,
        same_site: same_site.unwrap_or(SameSite::Lax),
        domain,
        path: raw.path.clone(),
    };
    clean(errs, before, settings)
}

/// A cookie name is an RFC 6265 token: visible ASCII except separators.
fn cookie_name(key: &str, name: &str, secure: bool, errs: &mut ConfigErrors) {
    let separator = |b: u8| b"()<>@,;:\\\"/[]?={} \t".contains(&b);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && !separator(b)) {
        errs.push(
            key,
            format!("{name:?} is not a valid cookie name; write letters, digits and -_.!#$%&'*+^`|~ only"),
        );
    } else if (name.starts_with("__Host-") || name.starts_with("__Secure-")) && !secure {
        errs.push(key, format!("{name:?} needs secure = true (browsers reject the prefix otherwise)"));
    }
}

/// Empty = host-only; a leading '.' is dropped as browsers do; stored lower-cased.
fn cookie_domain(raw: &str, errs: &mut ConfigErrors) -> Option<String> {
    let domain = raw.trim().trim_start_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return None;
    }
    let valid = domain
        .split('.')
        .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !valid {
        errs.push(
            "cookies.domain",
            format!("{raw:?} is not a domain; write a host name like \"example.com\" (no scheme, port or path) or \"\""),
        );
    }
    Some(domain)
}

/// Validates `[csrf]`.
pub(super) fn csrf(raw: &RawCsrf, errs: &mut ConfigErrors) -> Option<CsrfSettings> {
    let before = errs.0.len();
    let header = header_name("csrf.header", &raw.header, errs);
    let allowed_origins = raw
        .allowed_origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| origin(&keypath::index("csrf.allowed_origins", i), o, errs))
        .collect();
    let settings = CsrfSettings {
        enabled: raw.enabled,
        header: header.unwrap_or(http::header::HOST),
        check_origin: raw.check_origin,
        allowed_origins,
    };
    clean(errs, before, settings)
}

/// An origin as browsers send it: `scheme://host[:port]`, lower-cased, the
/// scheme's default port dropped; a single trailing '/' is tolerated.
fn origin(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<String> {
    let trimmed = value.trim();
    let text = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let parsed = text.parse::<http::Uri>().ok().filter(|u| {
        u.scheme().is_some()
            && u.authority().is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'))
            && u.path_and_query().is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/")
            && !text.contains('#')
    });
    let Some(uri) = parsed else {
        errs.push(
            key,
            format!(
                "{value:?} is not an origin; write scheme://host[:port], e.g. \"https://app.example.com\""
            ),
        );
        return None;
    };
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let authority = uri.authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
    let default_port = match scheme.as_str() {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    let authority = match default_port {
        Some(port) => authority.strip_suffix(port).map(str::to_string).unwrap_or(authority),
        None => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

/// Validates `[sessions]`; `tokens` gives `access_ttl` and `locations`, whose own
/// errors the token validator reports.
pub(super) fn sessions(
    raw: &RawSessions,
    tokens: &RawTokens,
    errs: &mut ConfigErrors,
) -> Option<SessionSettings> {
    let before = errs.0.len();
    let identity_header = header_name("sessions.identity_header", &raw.identity_header, errs);
    let login_response = one_of(
        "sessions.login_response",
        &raw.login_response,
        &[("tokens", LoginResponse::Tokens), ("upstream", LoginResponse::Upstream)],
        errs,
    );
    if login_response == Some(LoginResponse::Upstream) && !cookie_location(tokens) {
        errs.push_following(
            "sessions.login_response",
            vec!["tokens.locations".into()],
            "\"upstream\" answers a login with the app's response and hands the tokens over only in \
             cookies, but tokens.locations has no \"cookies\", so no client would ever receive the \
             session; add \"cookies\" to tokens.locations or write login_response = \"tokens\"",
        );
    }
    let access_ttl = parse_duration("tokens.access_ttl", &tokens.access_ttl, &mut ConfigErrors::default());
    let refresh_ahead = refresh_ahead(raw, tokens, access_ttl, errs);
    let settings = SessionSettings {
        identity_header: identity_header.unwrap_or(http::header::HOST),
        login_response: login_response.unwrap_or(LoginResponse::Tokens),
        implicit_refresh: raw.implicit_refresh,
        refresh_ahead: refresh_ahead.unwrap_or_default(),
        rotate_refresh: raw.rotate_refresh,
        reuse_grace: whole_seconds("sessions.reuse_grace", &raw.reuse_grace, errs).unwrap_or_default(),
        max_session: whole_timeout("sessions.max_session", &raw.max_session, errs).unwrap_or_default(),
        idle_timeout: whole_timeout("sessions.idle_timeout", &raw.idle_timeout, errs).unwrap_or_default(),
    };
    clean(errs, before, settings)
}

/// Absent: min(60s, access_ttl / 4). Explicit and ≥ access_ttl: an error when
/// implicit refresh can run, since every request would then refresh.
fn refresh_ahead(
    raw: &RawSessions,
    tokens: &RawTokens,
    access_ttl: Option<Duration>,
    errs: &mut ConfigErrors,
) -> Option<Duration> {
    let Some(explicit) = &raw.refresh_ahead else {
        let minute = Duration::from_secs(60);
        return Some(access_ttl.map_or(minute, |ttl| minute.min(ttl / 4)));
    };
    let ahead = parse_duration("sessions.refresh_ahead", explicit, errs)?;
    let cookies = cookie_location(tokens);
    if let Some(ttl) = access_ttl.filter(|ttl| ahead >= *ttl && cookies && raw.implicit_refresh) {
        errs.push_following(
            "sessions.refresh_ahead",
            ["tokens.access_ttl", "tokens.locations", "sessions.implicit_refresh"].map(String::from).into(),
            format!(
                "{explicit:?} is not shorter than tokens.access_ttl ({}), so every request would refresh; \
                 write less than access_ttl or remove it for the default min(60s, access_ttl/4)",
                humantime::format_duration(ttl)
            ),
        );
        return None;
    }
    Some(ahead)
}

/// Whether `tokens.locations` lists "cookies" (a misspelled entry is the
/// token validator's to report).
fn cookie_location(tokens: &RawTokens) -> bool {
    tokens.locations.iter().any(|l| l.trim().eq_ignore_ascii_case("cookies"))
}

/// Validates `[store]`. The redis URL is never echoed: it may hold a password.
pub(super) fn store(raw: &RawStore, base_dir: &Path, errs: &mut ConfigErrors) -> Option<StoreSettings> {
    let before = errs.0.len();
    let backend = one_of(
        "store.backend",
        &raw.backend,
        &[
            ("embedded", StoreBackend::Embedded),
            ("memory", StoreBackend::Memory),
            ("redis", StoreBackend::Redis),
        ],
        errs,
    );
    let url = raw.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    match (backend, url) {
        (Some(StoreBackend::Redis), None) => errs.push(
            "store.url",
            "backend \"redis\" needs a url; write e.g. url = \"redis://127.0.0.1:6379/0\"",
        ),
        (Some(StoreBackend::Redis), Some(u)) if !redis_url(u) => errs.push(
            "store.url",
            "is not a redis URL; write \"redis://host[:port][/db]\" or \"rediss://…\" (TLS), with a \
             numbered db and no #fragment",
        ),
        (Some(StoreBackend::Embedded | StoreBackend::Memory), Some(_)) => errs.push(
            "store.url",
            "is only used with backend = \"redis\"; set backend = \"redis\" or remove url",
        ),
        _ => {}
    }
    if backend == Some(StoreBackend::Embedded) {
        embedded_path(raw.path.trim(), base_dir, errs);
    }
    let tls_ca = raw.tls_ca.as_deref().and_then(|ca| store_tls_ca(backend, url, ca, base_dir, errs));
    let settings = StoreSettings {
        backend: backend.unwrap_or(StoreBackend::Embedded),
        path: resolve_path(base_dir, raw.path.trim()),
        url: url.map(str::to_string),
        tls_ca,
        timeout: timeout("store.timeout", &raw.timeout, errs).unwrap_or_default(),
        max_staleness: parse_duration("store.max_staleness", &raw.max_staleness, errs).unwrap_or_default(),
    };
    clean(errs, before, settings)
}

/// The embedded store's file: `check` refuses a directory here, naming the
/// key, where `run` would fail opening it. (A directory that does not exist
/// yet is not an error: it may be made before the gateway starts, as
/// systemd's `StateDirectory=` does.)
fn embedded_path(path: &str, base_dir: &Path, errs: &mut ConfigErrors) {
    if path.is_empty() {
        errs.push("store.path", "is empty; write the database file, e.g. \"jwtgate.redb\"");
        return;
    }
    let file = resolve_path(base_dir, path);
    if file.is_dir() {
        errs.push(
            "store.path",
            format!(
                "{} is a directory; name the database file in it, e.g. \"{path}/jwtgate.redb\"",
                file.display()
            ),
        );
    }
}

/// `store.tls_ca` trusts a `rediss://` Redis: with any other backend or url it
/// would silently do nothing, so it is an error there. A wrong backend or url
/// is reported on its own key, not again here.
fn store_tls_ca(
    backend: Option<StoreBackend>,
    url: Option<&str>,
    value: &str,
    base_dir: &Path,
    errs: &mut ConfigErrors,
) -> Option<PathBuf> {
    match (backend, url) {
        (Some(StoreBackend::Redis), Some(u)) if u.starts_with("rediss://") => {
            tls_ca("store.tls_ca", base_dir, value, errs)
        }
        (Some(StoreBackend::Redis), Some(u)) if redis_url(u) => {
            errs.push(
                "store.tls_ca",
                "is only used with TLS to Redis; write url = \"rediss://…\" or remove tls_ca",
            );
            None
        }
        (Some(StoreBackend::Embedded | StoreBackend::Memory), _) => {
            errs.push(
                "store.tls_ca",
                "is only used with backend = \"redis\" and a rediss:// url; remove tls_ca",
            );
            None
        }
        _ => None,
    }
}

fn redis_url(url: &str) -> bool {
    use redis::IntoConnectionInfo;
    let rest = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.rsplit_once('@').map_or(r, |(_, h)| h);
        !host.is_empty() && !host.starts_with('/') && !host.bytes().any(|b| b.is_ascii_whitespace())
    });
    // As the store will read it (a numbered database, a known `protocol=`),
    // so `check` refuses what `run` would. No fragment: the crate reads
    // `#insecure` as "skip certificate checks"; `tls_ca` adds a root instead.
    host_ok && !url.contains('#') && url.into_connection_info().is_ok()
}
