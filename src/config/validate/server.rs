//! `[server]`, `[admin]` and `[log]`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipnet::IpNet;

use super::{clean, existing_file, one_of, positive, timeout};
use crate::config::keypath;
use crate::config::raw::{OneOrMany, RawAdmin, RawLog, RawServer};
use crate::config::{
    parse_duration, AdminSettings, ConfigErrors, LogFormat, LogSettings, ServerSettings, TlsFiles,
};

#[cfg(test)]
mod tests;

/// Validates `[server]`.
pub(super) fn server(raw: &RawServer, base_dir: &Path, errs: &mut ConfigErrors) -> Option<ServerSettings> {
    let before = errs.0.len();
    let settings = ServerSettings {
        listen: listen(&raw.listen, errs),
        tls: tls(raw, base_dir, errs),
        trusted_proxies: trusted_proxies(&raw.trusted_proxies, errs),
        header_read_timeout: timeout("server.header_read_timeout", &raw.header_read_timeout, errs)
            .unwrap_or_default(),
        idle_timeout: timeout("server.idle_timeout", &raw.idle_timeout, errs).unwrap_or_default(),
        max_header_bytes: at_most("server.max_header_bytes", raw.max_header_bytes, MAX_HEADER_BYTES, errs),
        max_headers: at_most("server.max_headers", raw.max_headers, MAX_HEADERS, errs),
        max_connections: at_most("server.max_connections", raw.max_connections, MAX_CONNECTIONS, errs),
        shutdown_grace: parse_duration("server.shutdown_grace", &raw.shutdown_grace, errs)
            .unwrap_or_default(),
        watch_config: raw.watch_config,
        allow_semicolon: raw.allow_semicolon,
    };
    clean(errs, before, settings)
}

/// Upper bounds for the `[server]` limits. Past them the numbers stop being
/// limits: hyper keeps twice `max_headers` header slots for every request it
/// parses (a huge value is gigabytes per request, or a panic), tokio's
/// connection semaphore panics above 2^61, and shutdown's drain counts
/// connections in a `u32`.
/// - 8 MiB of headers: Envoy's ceiling for `max_request_headers_kb`.
const MAX_HEADER_BYTES: usize = 8 << 20;
/// - 1 000 fields: ten times hyper's default, far past any browser's.
const MAX_HEADERS: usize = 1_000;
/// - 2^20 connections: Linux's default `nr_open`, the most descriptors one
///   process may have.
const MAX_CONNECTIONS: usize = 1 << 20;

/// A count that must be positive and at most `max`; 0 (unusable) when not.
fn at_most(key: &str, value: usize, max: usize, errs: &mut ConfigErrors) -> usize {
    let value = positive(key, value, errs).unwrap_or_default();
    if value > max {
        errs.push(key, format!("{value} is more than this limit can mean; write at most {max}"));
    }
    value
}

/// `listen` addresses; keyed `server.listen` for a string, `server.listen[i]` for an array.
fn listen(raw: &OneOrMany, errs: &mut ConfigErrors) -> Vec<SocketAddr> {
    let entries: Vec<(String, &String)> = match raw {
        OneOrMany::One(s) => vec![("server.listen".to_string(), s)],
        OneOrMany::Many(v) => {
            v.iter().enumerate().map(|(i, s)| (keypath::index("server.listen", i), s)).collect()
        }
    };
    if entries.is_empty() {
        errs.push("server.listen", "no address to listen on; write e.g. \"0.0.0.0:8080\"");
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for (key, value) in entries {
        let Some(addr) = socket_addr(&key, value, errs) else { continue };
        if addrs.contains(&addr) {
            errs.push(key, format!("{addr} is listed twice; remove the repeat"));
        } else if let Some(other) = addrs.iter().find(|a| overlap(**a, addr)) {
            errs.push(key, format!("{}; keep one of the two", overlap_message(addr, *other)));
        } else {
            addrs.push(addr);
        }
    }
    addrs
}

/// Two listen addresses that cannot both be bound: the same port, with the
/// same address or a wildcard (`0.0.0.0`, `[::]`) of the same family, which
/// takes the port on every address of the host. (An IPv6 wildcard may also
/// hold the IPv4 port, depending on the host's `bindv6only`; that is left to
/// the bind's own error, which names the address.) Port 0 is a new port each
/// time and overlaps nothing.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn overlap_message(addr: SocketAddr, other: SocketAddr) -> String {
    format!(
        "{addr} overlaps {other}: a wildcard address takes port {} on every address of the host",
        addr.port()
    )
}

fn socket_addr(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<SocketAddr> {
    match value.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errs.push(
                key,
                format!("{value:?} is not an IP address with a port; write e.g. \"0.0.0.0:8080\" or \"[::]:8080\""),
            );
            None
        }
    }
}

/// `tls_cert` + `tls_key`: both or neither (an empty string counts as absent).
fn tls(raw: &RawServer, base_dir: &Path, errs: &mut ConfigErrors) -> Option<TlsFiles> {
    let set = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    match (set(&raw.tls_cert), set(&raw.tls_key)) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let (cert, key) = (
                existing_file("server.tls_cert", base_dir, &cert, errs),
                existing_file("server.tls_key", base_dir, &key, errs),
            );
            let (cert, key) = (cert?, key?);
            match crate::tls::server_config(&cert, &key) {
                Ok(config) => Some(TlsFiles { cert, key, config }),
                Err(e) => {
                    // Name the file at fault: the key file's own errors are tls_key's.
                    let key = if matches!(e, crate::tls::TlsError::Key { .. }) {
                        "server.tls_key"
                    } else {
                        "server.tls_cert"
                    };
                    errs.push(key, format!("{e}; give a PEM certificate chain and its PEM private key"));
                    None
                }
            }
        }
        (Some(_), None) => {
            errs.push("server.tls_key", "tls_cert is set but tls_key is not; write both (HTTPS) or neither");
            None
        }
        (None, Some(_)) => {
            errs.push("server.tls_cert", "tls_key is set but tls_cert is not; write both (HTTPS) or neither");
            None
        }
    }
}

/// CIDRs; a bare address is a single host (/32 or /128); host bits are dropped.
fn trusted_proxies(raw: &[String], errs: &mut ConfigErrors) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (i, value) in raw.iter().enumerate() {
        let v = value.trim();
        match v.parse::<IpNet>().map(|n| n.trunc()).or_else(|_| v.parse::<IpAddr>().map(IpNet::from)) {
            Ok(net) => nets.push(net),
            Err(_) => errs.push(
                keypath::index("server.trusted_proxies", i),
                format!(
                    "{value:?} is not a CIDR or IP address; write e.g. \"10.0.0.0/8\" or \"192.168.1.10\""
                ),
            ),
        }
    }
    nets
}

/// Validates `[admin]` (present = an admin listener).
pub(super) fn admin(raw: &RawAdmin, errs: &mut ConfigErrors) -> Option<AdminSettings> {
    socket_addr("admin.listen", &raw.listen, errs).map(|listen| AdminSettings { listen })
}

/// The admin listener cannot share an address with the gateway.
pub(super) fn admin_apart_from_server(
    admin: &AdminSettings,
    server: &ServerSettings,
    errs: &mut ConfigErrors,
) {
    if server.listen.contains(&admin.listen) {
        errs.push(
            "admin.listen",
            format!("{} is also in server.listen; give the admin listener its own port", admin.listen),
        );
    } else if let Some(other) = server.listen.iter().find(|a| overlap(**a, admin.listen)) {
        errs.push(
            "admin.listen",
            format!(
                "{} (server.listen); give the admin listener its own port",
                overlap_message(admin.listen, *other)
            ),
        );
    }
}

/// Validates `[log]`.
pub(super) fn log(raw: &RawLog, errs: &mut ConfigErrors) -> Option<LogSettings> {
    let before = errs.0.len();
    let format =
        one_of("log.format", &raw.format, &[("pretty", LogFormat::Pretty), ("json", LogFormat::Json)], errs);
    let level = raw.level.trim();
    if level.is_empty() {
        errs.push(
            "log.level",
            "is empty; write a level such as \"info\" or a filter like \"info,jwtgate=debug\"",
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        errs.push(
            "log.level",
            format!("{level:?} is not a log filter ({e}); write e.g. \"info\" or \"info,jwtgate=debug\""),
        );
    }
    let settings = LogSettings {
        format: format.unwrap_or(LogFormat::Pretty),
        level: level.to_string(),
        access_log: raw.access_log,
    };
    clean(errs, before, settings)
}
