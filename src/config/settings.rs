//! The validated configuration the gateway serves from. One [`Runtime`] is one
//! snapshot: a reload builds a new one and swaps it in whole.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::route::RouteTable;
use crate::token::TokenSettings;

/// Everything one config file says, validated.
#[derive(Debug)]
pub struct Runtime {
    pub config_path: PathBuf,
    pub server: ServerSettings,
    pub admin: Option<AdminSettings>,
    pub log: LogSettings,
    pub tokens: TokenSettings,
    pub cookies: CookieSettings,
    pub csrf: CsrfSettings,
    pub sessions: SessionSettings,
    pub store: StoreSettings,
    pub forward: ForwardSettings,
    pub errors: ErrorSettings,
    pub upstreams: Vec<UpstreamSettings>,
    pub routes: RouteTable,
}

/// What a reload cannot change, because it is read once at start: the
/// listeners, the store's connection, the connection cap and the shutdown
/// drain, the watcher, the log subscriber. (The store's `timeout` is applied
/// per request too, so it is not among them.)
#[derive(Debug, Clone, PartialEq)]
pub struct StartOnly {
    listen: Vec<SocketAddr>,
    max_connections: usize,
    shutdown_grace: Duration,
    watch_config: bool,
    admin_listen: Option<SocketAddr>,
    log_format: LogFormat,
    log_level: String,
    store: (StoreBackend, PathBuf, Option<String>, Option<PathBuf>, Duration),
    store_timeout: Duration,
}

impl StartOnly {
    pub fn of(rt: &Runtime) -> StartOnly {
        let s = &rt.store;
        StartOnly {
            listen: rt.server.listen.clone(),
            max_connections: rt.server.max_connections,
            shutdown_grace: rt.server.shutdown_grace,
            watch_config: rt.server.watch_config,
            admin_listen: rt.admin.as_ref().map(|a| a.listen),
            log_format: rt.log.format,
            log_level: rt.log.level.clone(),
            store: (s.backend, s.path.clone(), s.url.clone(), s.tls_ca.clone(), s.max_staleness),
            store_timeout: s.timeout,
        }
    }

    /// The keys whose value in `file` differs from the running one.
    pub fn differences(&self, file: &StartOnly) -> Vec<&'static str> {
        [
            ("server.listen", self.listen != file.listen),
            ("server.max_connections", self.max_connections != file.max_connections),
            ("server.shutdown_grace", self.shutdown_grace != file.shutdown_grace),
            ("server.watch_config", self.watch_config != file.watch_config),
            ("admin.listen", self.admin_listen != file.admin_listen),
            ("log.format", self.log_format != file.log_format),
            ("log.level", self.log_level != file.log_level),
            ("store", self.store != file.store),
            // Every store call is bounded by the running value, but a Redis
            // connection's own response timeout is set when it opens: a
            // lower value applies at once, a higher one only after a restart.
            (
                "store.timeout (raised above its value at start, with redis)",
                self.store == file.store
                    && file.store.0 == StoreBackend::Redis
                    && file.store_timeout > self.store_timeout,
            ),
        ]
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
    }
}

/// The validated `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<IpNet>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub watch_config: bool,
    pub allow_semicolon: bool,
}

/// `tls_cert` + `tls_key`, resolved and checked to exist.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Loaded at config load, so a reload picks up renewed certificates and a
    /// bad certificate is a config error, not a failure at the first handshake.
    pub config: std::sync::Arc<rustls::ServerConfig>,
}

/// The validated `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The validated `[log]`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive, validated at load.
    pub level: String,
    pub access_log: bool,
}

/// `[cookies] same_site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// The validated `[cookies]`: names are RFC 6265 tokens and pairwise distinct.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub access: String,
    pub refresh: String,
    pub csrf_access: String,
    pub csrf_refresh: String,
    pub secure: bool,
    pub same_site: SameSite,
    /// None = host-only.
    pub domain: Option<String>,
    pub path: String,
}

/// The validated `[csrf]`.
#[derive(Debug, Clone)]
pub struct CsrfSettings {
    pub enabled: bool,
    pub header: HeaderName,
    pub check_origin: bool,
    /// Origins as `scheme://host[:port]`, lower-cased.
    pub allowed_origins: Vec<String>,
}

/// `[sessions] login_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResponse {
    Tokens,
    Upstream,
}

/// The validated `[sessions]`; `refresh_ahead` already holds its computed default.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub identity_header: HeaderName,
    pub login_response: LoginResponse,
    pub implicit_refresh: bool,
    pub refresh_ahead: Duration,
    pub rotate_refresh: bool,
    pub reuse_grace: Duration,
    pub max_session: Duration,
    pub idle_timeout: Duration,
}

/// `[store] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Embedded,
    Memory,
    Redis,
}

/// The validated `[store]`; `path` and `tls_ca` are resolved against the
/// config directory. `Debug` never shows the url: it may hold a password.
#[derive(Clone)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    pub path: PathBuf,
    pub url: Option<String>,
    /// Extra trust roots for a `rediss://` url, on top of the system roots;
    /// only ever set with one. Default: none.
    pub tls_ca: Option<PathBuf>,
    pub timeout: Duration,
    pub max_staleness: Duration,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let StoreSettings { backend, path, url, tls_ca, timeout, max_staleness } = self;
        f.debug_struct("StoreSettings")
            .field("backend", backend)
            .field("path", path)
            .field("url", &url.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", tls_ca)
            .field("timeout", timeout)
            .field("max_staleness", max_staleness)
            .finish()
    }
}

/// `keep` or `strip` for `[forward] token` and `refresh_cookie`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Keep,
    Strip,
}

/// The validated `[forward]`: claim headers are never reserved or framing headers.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// Lower-cased, `_` folded to `-`, so they compare against folded header names.
    pub strip_prefixes: Vec<String>,
    /// claim name → header, sorted by claim name (TOML tables keep no order).
    pub claims: Vec<(String, HeaderName)>,
    pub claims_json_header: Option<HeaderName>,
    pub token: Keep,
    pub refresh_cookie: Keep,
}

/// The validated `[errors]`.
#[derive(Debug, Clone)]
pub struct ErrorSettings {
    pub login_url: Option<String>,
}

/// One validated `[[upstreams]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub name: String,
    /// `http://` or `https://` authority-only URLs (a path is a config error).
    pub urls: Vec<http::Uri>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub tls_ca: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = crate::config::TEST_CONFIG;

    fn start_only(text: &str) -> StartOnly {
        StartOnly::of(&crate::config::parse(text, std::path::Path::new(".")).unwrap())
    }

    /// Each start-only key that changes is named, and only it: a reload says
    /// exactly what it could not apply.
    #[test]
    fn each_changed_start_only_key_is_named_alone() {
        let running = start_only(BASE);
        assert!(running.differences(&start_only(BASE)).is_empty());
        let cases = [
            ("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8081\"", "server.listen"),
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"127.0.0.1:8080\"\nmax_connections = 7",
                "server.max_connections",
            ),
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"127.0.0.1:8080\"\nshutdown_grace = \"3s\"",
                "server.shutdown_grace",
            ),
            ("backend = \"memory\"", "backend = \"embedded\"\npath = \"/tmp/jwtgate-unused.redb\"", "store"),
            ("[store]", "[log]\nlevel = \"debug\"\n\n[store]", "log.level"),
            ("[store]", "[admin]\nlisten = \"127.0.0.1:9901\"\n\n[store]", "admin.listen"),
        ];
        for (from, to, key) in cases {
            let edited = BASE.replace(from, to);
            assert_ne!(edited, BASE, "{key}: the edit did not apply");
            assert_eq!(running.differences(&start_only(&edited)), vec![key]);
        }
    }

    /// `[store] timeout` is reloadable, except that a Redis connection keeps
    /// its response timeout from the start: raising it there is named, as a
    /// start-only change; lowering it, or any change on another backend, is not.
    #[test]
    fn a_raised_redis_timeout_is_named_as_start_only() {
        let redis = |timeout: &str| {
            BASE.replace(
                "backend = \"memory\"",
                &format!("backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\ntimeout = \"{timeout}\""),
            )
        };
        let running = start_only(&redis("2s"));
        assert_eq!(
            running.differences(&start_only(&redis("5s"))),
            vec!["store.timeout (raised above its value at start, with redis)"]
        );
        assert!(running.differences(&start_only(&redis("1s"))).is_empty());
        let memory = start_only(BASE);
        let raised = BASE.replace("backend = \"memory\"", "backend = \"memory\"\ntimeout = \"30s\"");
        assert!(memory.differences(&start_only(&raised)).is_empty());
    }
}
