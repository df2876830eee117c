//! The first config layer: `gateway.toml` exactly as written, with DESIGN.md §3's
//! defaults. Nothing here is validated; `config::validate` turns it into a
//! [`crate::config::Runtime`]. Durations stay strings so errors can name their key.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A string or an array of strings (`listen = "…"` or `listen = ["…", "…"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, one or many.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The whole file; every table is optional and defaults as in DESIGN.md §3.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub admin: Option<RawAdmin>,
    pub log: RawLog,
    pub tokens: RawTokens,
    pub cookies: RawCookies,
    pub csrf: RawCsrf,
    pub sessions: RawSessions,
    pub store: RawStore,
    pub forward: RawForward,
    pub errors: RawErrors,
    pub upstreams: Vec<RawUpstream>,
    pub routes: Vec<RawRoute>,
}

/// `[server]`: listeners, TLS, limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub listen: OneOrMany,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub header_read_timeout: String,
    pub idle_timeout: String,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub shutdown_grace: String,
    pub watch_config: bool,
    pub allow_semicolon: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: OneOrMany::One("0.0.0.0:8080".into()),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            header_read_timeout: "10s".into(),
            idle_timeout: "75s".into(),
            max_header_bytes: 65536,
            max_headers: 100,
            max_connections: 10000,
            shutdown_grace: "30s".into(),
            watch_config: true,
            allow_semicolon: false,
        }
    }
}

/// `[admin]`: present = an admin listener (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin { listen: "127.0.0.1:9901".into() }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
    pub access_log: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { format: "pretty".into(), level: "info".into(), access_log: true }
    }
}

/// `[tokens]`: the signing key, lifetimes and where tokens are read; validated by the token module.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawTokens {
    pub algorithm: String,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub private_key: Option<String>,
    pub kid: Option<String>,
    pub issuer: String,
    pub audience: Vec<String>,
    pub access_ttl: String,
    pub refresh_ttl: String,
    pub leeway: String,
    pub max_token_bytes: usize,
    pub locations: Vec<String>,
    pub query_param: String,
    pub required_claims: Vec<String>,
    pub accept: Vec<RawAcceptKey>,
}

impl Default for RawTokens {
    fn default() -> Self {
        RawTokens {
            algorithm: "HS256".into(),
            secret: None,
            secret_file: None,
            private_key: None,
            kid: None,
            issuer: String::new(),
            audience: Vec::new(),
            access_ttl: "15m".into(),
            refresh_ttl: "30d".into(),
            leeway: "5s".into(),
            max_token_bytes: 8192,
            locations: vec!["headers".into(), "cookies".into()],
            query_param: "token".into(),
            required_claims: vec!["exp".into(), "iat".into(), "jti".into()],
            accept: Vec::new(),
        }
    }
}

/// One `[[tokens.accept]]` entry: an extra verification key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawAcceptKey {
    pub kid: Option<String>,
    pub algorithm: String,
    pub public_key: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
}

/// `[cookies]`: the four cookie names and their attributes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawCookies {
    pub access: String,
    pub refresh: String,
    pub csrf_access: String,
    pub csrf_refresh: String,
    pub secure: bool,
    pub same_site: String,
    pub domain: String,
    pub path: String,
}

impl Default for RawCookies {
    fn default() -> Self {
        RawCookies {
            access: "access_token_cookie".into(),
            refresh: "refresh_token_cookie".into(),
            csrf_access: "csrf_access_token".into(),
            csrf_refresh: "csrf_refresh_token".into(),
            secure: true,
            same_site: "lax".into(),
            domain: String::new(),
            path: "/".into(),
        }
    }
}

/// `[csrf]`: double submit and Origin checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawCsrf {
    pub enabled: bool,
    pub header: String,
    pub check_origin: bool,
    pub allowed_origins: Vec<String>,
}

impl Default for RawCsrf {
    fn default() -> Self {
        RawCsrf {
            enabled: true,
            header: "X-CSRF-TOKEN".into(),
            check_origin: true,
            allowed_origins: Vec::new(),
        }
    }
}

/// `[sessions]`: login, implicit refresh and rotation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawSessions {
    pub identity_header: String,
    pub login_response: String,
    pub implicit_refresh: bool,
    /// Absent = min(60s, access_ttl / 4).
    pub refresh_ahead: Option<String>,
    pub rotate_refresh: bool,
    pub reuse_grace: String,
    pub max_session: String,
    pub idle_timeout: String,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            identity_header: "X-Jwtgate-Identity".into(),
            login_response: "tokens".into(),
            implicit_refresh: true,
            refresh_ahead: None,
            rotate_refresh: true,
            reuse_grace: "30s".into(),
            max_session: "30d".into(),
            idle_timeout: "7d".into(),
        }
    }
}

/// `[store]`: where families and revocations live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawStore {
    pub backend: String,
    pub path: String,
    pub url: Option<String>,
    /// `rediss://` only: a PEM file of extra trust roots (relative to the config file).
    pub tls_ca: Option<String>,
    pub timeout: String,
    pub max_staleness: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: "embedded".into(),
            path: "jwtgate.redb".into(),
            url: None,
            tls_ca: None,
            timeout: "250ms".into(),
            max_staleness: "5s".into(),
        }
    }
}

/// `[forward]`: header hygiene and claim headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawForward {
    pub strip_prefixes: Vec<String>,
    /// claim name → header name
    pub claims: BTreeMap<String, String>,
    pub claims_json_header: String,
    pub token: String,
    pub refresh_cookie: String,
}

impl Default for RawForward {
    fn default() -> Self {
        RawForward {
            strip_prefixes: vec!["X-Auth-".into()],
            claims: BTreeMap::from([
                ("sub".to_string(), "X-Auth-Subject".to_string()),
                ("fresh".to_string(), "X-Auth-Fresh".to_string()),
            ]),
            claims_json_header: String::new(),
            token: "keep".into(),
            refresh_cookie: "strip".into(),
        }
    }
}

/// `[errors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawErrors {
    pub login_url: String,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub name: String,
    pub urls: Vec<String>,
    pub connect_timeout: String,
    pub timeout: String,
    pub tls_ca: Option<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            name: String::new(),
            urls: Vec::new(),
            connect_timeout: "2s".into(),
            timeout: "30s".into(),
            tls_ca: None,
        }
    }
}

/// One `[[routes]]` entry; validated by the route module.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawRoute {
    pub path: String,
    pub policy: Option<String>,
    pub upstream: Option<String>,
    pub handler: Option<String>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub max_age: Option<String>,
    /// claim → required value (claim equals it, or an array claim contains it)
    pub require: BTreeMap<String, toml::Value>,
    pub strip_prefix: Option<String>,
}
