//! What each `jwtgate` subcommand does (DESIGN.md §2). `main.rs` only parses
//! the command line and calls these.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, ConfigErrors, LogFormat, LogSettings, Runtime};
use crate::gateway::Gateway;
use crate::route::{canonicalize, PathError, RouteMiss};
use crate::token::{MintSpec, TokenType};

/// `println!` for the commands' output, except that a stdout closed early
/// (`jwtgate check | head -1`) is an error the command returns, not a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{path}: the config has errors:\n{errors}")]
    Config { path: String, errors: ConfigErrors },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("could not mint: {0}")]
    Mint(#[from] crate::token::TokenError),
}

fn load(path: &Path) -> Result<Runtime, CommandError> {
    config::load(path).map_err(|errors| CommandError::Config { path: path.display().to_string(), errors })
}

/// `jwtgate check`: every error with its key path, or the route table.
pub fn check(path: &Path) -> Result<ExitCode, CommandError> {
    match config::load(path) {
        Ok(rt) => {
            say!("{}: ok", path.display());
            say!("{}", rt.routes.describe());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            // A closed stderr cannot be told anything: exit 1 says it all.
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}: {} error(s)", path.display(), errors.0.len());
            for e in errors.iter() {
                let _ = writeln!(err, "  {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `jwtgate explain METHOD URL`.
pub fn explain(path: &Path, method: &str, url: &str) -> Result<ExitCode, CommandError> {
    let rt = load(path)?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| CommandError::Usage(format!("{method:?} is not an HTTP method")))?;
    let (host, target) = split_url(url)?;
    // Judged in the gateway's order: method, host, path.
    if let Err(refused) = crate::pipeline::inbound::method(&method) {
        return explained(&format!("rejected: {} {} ({refused})", refused.status().as_u16(), refused.code()));
    }
    let host = match host {
        None => String::new(),
        Some(raw) => match crate::pipeline::inbound::match_host(raw) {
            Some(host) => host,
            None => return explained(&format!("rejected: 400 bad_request (malformed Host {raw:?})")),
        },
    };
    let canonical = match canonicalize(&target, rt.server.allow_semicolon) {
        Ok(c) => c,
        Err(PathError::TooLong) => return explained("rejected: 414 (request target longer than 8 KiB)"),
        Err(PathError::Ambiguous(why)) => return explained(&format!("rejected: 400 bad_request ({why})")),
    };
    say!("canonical path: {}", canonical.path);
    match rt.routes.lookup(&host, &method, &canonical.path) {
        Ok(route) => {
            say!("route:          routes[{}] {}", route.index, route.pattern);
            // The config's own spelling (`access`, `login`), as `check` prints it.
            match route.handler {
                Some(h) => say!("handler:        {}", h.as_str()),
                None => say!("policy:         {}", route.policy.as_str()),
            }
            if let Some(age) = route.max_age {
                say!("max_age:        {}", humantime::format_duration(age));
            }
            for (claim, value) in &route.require {
                say!("require:        {claim} = {value}");
            }
            if let Some(up) = &route.upstream {
                // The upstream receives the canonical path plus the query verbatim (DESIGN §4 rule 8).
                let query = canonical.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
                say!("upstream:       {up} {}{query}", route.upstream_path(&canonical.path));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(RouteMiss::NotFound) => explained("no route: 404 no_route"),
        Err(RouteMiss::MethodNotAllowed { allow }) => {
            let allow: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
            explained(&format!("method not allowed: 405 (Allow: {})", allow.join(", ")))
        }
        Err(RouteMiss::CaseConflict) => {
            explained("rejected: 400 (case-folded path matches a route with other rules)")
        }
        Err(RouteMiss::EscapeConflict) => {
            explained("rejected: 400 (the path with %3A, %40, … decoded matches a route with other rules)")
        }
    }
}

fn explained(line: &str) -> Result<ExitCode, CommandError> {
    say!("{line}");
    Ok(ExitCode::FAILURE)
}

/// An origin-form target (no host) or an absolute URL: its host as sent
/// (port included), and its target.
fn split_url(url: &str) -> Result<(Option<&str>, String), CommandError> {
    if url.starts_with('/') {
        return Ok((None, url.to_owned()));
    }
    let usage = || CommandError::Usage(format!("{url:?}: give /path?query or http(s)://host/path"));
    let (scheme, rest) = url.split_once("://").ok_or_else(usage)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(usage());
    }
    // A browser never sends the fragment; the authority ends at the first `/`, `?` or `#`.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let target = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    Ok((Some(host), target))
}

/// `jwtgate token mint`.
pub fn mint(
    path: &Path,
    sub: &str,
    fresh: bool,
    token_type: &str,
    claims: &[String],
) -> Result<ExitCode, CommandError> {
    let rt = load(path)?;
    let token_type = match token_type {
        "access" => TokenType::Access,
        "refresh" => TokenType::Refresh,
        other => return Err(CommandError::Usage(format!("--type {other:?}: use access or refresh"))),
    };
    if fresh && token_type == TokenType::Refresh {
        // DESIGN §5: freshness belongs to an access token minted at a credential
        // login; a refresh token never carries it. Silently dropping the flag
        // would hand the operator something other than what was asked for.
        return Err(CommandError::Usage(
            "--fresh with --type refresh: refresh tokens are never fresh; drop --fresh, \
             or mint an access token"
                .into(),
        ));
    }
    let mut extra = serde_json::Map::new();
    for pair in claims {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| CommandError::Usage(format!("--claim {pair:?}: write name=value")))?;
        // The minter sets these itself and would drop them: refuse rather than
        // hand back a token without what was asked for.
        if k == "sub" {
            return Err(CommandError::Usage(format!("--claim {k}=…: use --sub for the subject")));
        }
        if crate::token::is_reserved(k) {
            return Err(CommandError::Usage(format!(
                "--claim {k}=…: {k} is set by jwtgate itself (reserved: iss aud exp nbf iat jti type \
                 fresh csrf fid auth_time); use --fresh / --type, or another claim name"
            )));
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
        extra.insert(k.to_owned(), value);
    }
    // DESIGN §5: a minted token carries `csrf` when cookies are a location,
    // so one set as a cookie can pass the double-submit check on POST. (No
    // `fid`: `token mint` never opens the store, so there is no family.)
    let csrf = rt
        .tokens
        .locations
        .contains(&crate::token::Location::Cookies)
        .then(|| uuid::Uuid::new_v4().to_string());
    let spec = MintSpec {
        sub,
        token_type,
        fresh,
        csrf: csrf.as_deref(),
        fid: None,
        auth_time: None,
        exp: None,
        extra: &extra,
    };
    let minted = rt.tokens.minter.mint(&spec, SystemClock.now())?;
    say!("{}", minted.token);
    Ok(ExitCode::SUCCESS)
}

/// tokio's multi-thread scheduler, or its current-thread one when a single
/// worker would run (`TOKIO_WORKER_THREADS=1`, or one CPU): with nothing to
/// steal or hand between threads, one core serves about a third more requests
/// (BENCHMARKS.md). Blocking work (redb commits) still has its own pool.
fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = worker_threads(std::env::var("TOKIO_WORKER_THREADS").ok().as_deref(), cpus)?;
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        // Set explicitly, so tokio never reads (and panics on) the variable itself.
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    Ok(runtime?)
}

/// Worker threads: `TOKIO_WORKER_THREADS` (tokio's own variable, so operators
/// who know tokio find it) or one per CPU. A value that is not a whole number
/// of at least 1 is refused with the fix, where tokio would panic.
fn worker_threads(env: Option<&str>, cpus: usize) -> Result<usize, CommandError> {
    let Some(value) = env else { return Ok(cpus.max(1)) };
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(CommandError::Usage(format!(
            "TOKIO_WORKER_THREADS={value:?}: set a whole number of worker threads (1 or more), \
             or unset it for one per CPU"
        ))),
    }
}

/// `jwtgate run`: serve until SIGTERM/SIGINT; SIGHUP reloads.
pub fn run(path: &Path) -> Result<ExitCode, CommandError> {
    // The bytes the config came from are the file watcher's starting point:
    // an edit made while the store opens is then seen as one.
    let config_error = |errors| CommandError::Config { path: path.display().to_string(), errors };
    let bytes = config::read(path).map_err(config_error)?;
    let rt = config::load_bytes(path, &bytes).map_err(config_error)?;
    init_tracing(&rt.log);
    let tokio = runtime()?;
    tokio.block_on(serve(rt, path, bytes))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(rt: Runtime, path: &Path, loaded: Vec<u8>) -> Result<(), CommandError> {
    // Before anything that can take time (a Redis store's connect may take
    // seconds): until a handler is installed, SIGHUP's default action kills
    // the process, and `systemctl reload` right after a start would.
    let mut signals = Signals::install()?;
    let listen = rt.server.listen.clone();
    let admin = rt.admin.clone();
    let store = tokio::select! {
        store = crate::store::open(&rt.store) => store.map_err(|e| CommandError::Usage(format!("the store did not open: {}", e.reason)))?,
        () = signals.stopped() => return Ok(()),
    };
    let gw = Gateway::new(rt, store, Arc::new(SystemClock));
    tokio::spawn(purge_loop(gw.clone()));
    if gw.snapshot().runtime.server.watch_config {
        tokio::spawn(watch_loop(gw.clone(), path.to_path_buf(), loaded));
    }
    // Ports an IPv4 address listens on: an IPv6 listener of the same port
    // takes IPv6 only, or Linux would give it IPv4's port too.
    let v4_ports: Vec<u16> = listen
        .iter()
        .chain(admin.as_ref().map(|a| &a.listen))
        .filter(|a| a.is_ipv4())
        .map(|a| a.port())
        .collect();
    if let Some(admin) = admin {
        let listener = bind("admin.listen", admin.listen, &v4_ports).await?;
        tracing::info!(addr = %listener.local_addr()?, "admin listening");
        tokio::spawn(crate::admin::serve(listener, gw.clone()));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for addr in listen {
        let listener = bind("server.listen", addr, &v4_ports).await?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        let (gw, mut stop) = (gw.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            crate::run(listener, gw, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        }));
    }
    signals.serve(&gw, path).await;
    gw.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Binds a listener; a failure names the key and the address ("address
/// already in use" alone does not say which of several).
async fn bind(
    key: &str,
    addr: SocketAddr,
    v4_ports: &[u16],
) -> Result<tokio::net::TcpListener, CommandError> {
    let v6_only = addr.is_ipv6() && addr.port() != 0 && v4_ports.contains(&addr.port());
    listen_on(addr, v6_only).map_err(|e| CommandError::Usage(format!("{key}: cannot listen on {addr}: {e}")))
}

/// A listener as tokio's `TcpListener::bind` makes one (`SO_REUSEADDR`, but
/// not on Windows, where it would let another process take the port), with
/// two differences:
/// - a backlog of 1024, not std's 128 (nginx uses 511): a burst of connects
///   past the backlog waits for a SYN retransmit, a second or more;
/// - `v6_only` (`IPV6_V6ONLY`) for an IPv6 address whose port an IPv4 one
///   also listens on. On Linux `[::]:P` alone takes IPv4 as well, as
///   operators of containers expect; beside `0.0.0.0:P` (the example's
///   dual-stack pair, accepted by the config as two families) it would
///   claim IPv4's port too, and the pair could not both bind.
fn listen_on(addr: SocketAddr, v6_only: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if v6_only {
        socket2::SockRef::from(&socket).set_only_v6(true)?;
    }
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// `watch_config`: reloads when the file's bytes change. Polling (1 s) sees
/// in-place writes and editors' rename-over alike, with no platform watcher.
/// `loaded` is what the running config was read from. A change is applied
/// once two polls a second apart read the same bytes ([`Settle`]), so a file
/// caught half-written in place is never applied. A file that cannot be read
/// (removed, its mount gone) keeps the running config, with one warning until
/// it can be read again.
async fn watch_loop(gw: Arc<Gateway>, path: std::path::PathBuf, loaded: Vec<u8>) {
    let mut settle = Settle::new(loaded);
    let mut unreadable = false;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // A late tick must not be followed by catch-up ticks at once: two polls
    // that agree must be a second apart.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match std::fs::read(&path) {
            Ok(now) => {
                if std::mem::take(&mut unreadable) {
                    tracing::info!(path = %path.display(), "watch_config: the config file can be read again");
                }
                if let Some(bytes) = settle.observe(now) {
                    apply(&gw, &path, config::load_bytes(&path, bytes));
                }
            }
            Err(error) if !unreadable => {
                unreadable = true;
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    "watch_config: the config file cannot be read; the running config stays until it can"
                );
            }
            Err(_) => {}
        }
    }
}

/// The watcher's rule for when a changed file is ready: the same new bytes
/// on two polls in a row. A writer that rewrites the file in place in pieces
/// (`cp`, `cat >`, an editor without atomic saves) leaves, between pieces, a
/// file that may parse and route differently, a route missing, say; it is
/// not applied unless it stays that way for a whole poll interval.
struct Settle {
    /// The bytes last loaded, whether they made a valid config or not (an
    /// invalid file is reported once, not at every poll).
    loaded: Vec<u8>,
    seen: Option<Vec<u8>>,
}

impl Settle {
    fn new(loaded: Vec<u8>) -> Settle {
        Settle { loaded, seen: None }
    }

    /// The bytes to load now, if this poll's read makes a settled change.
    fn observe(&mut self, now: Vec<u8>) -> Option<&[u8]> {
        if now == self.loaded {
            self.seen = None;
            return None;
        }
        if self.seen.as_ref() == Some(&now) {
            self.seen = None;
            self.loaded = now;
            return Some(&self.loaded);
        }
        self.seen = Some(now);
        None
    }
}

/// Drops dead families, expired revocations and stale `prev_result`s once a minute.
async fn purge_loop(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        match gw.purge_store().await {
            Ok(n) if n > 0 => tracing::debug!(dropped = n, "store purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store purge failed"),
        }
    }
}

/// The process's signals: SIGTERM and SIGINT stop it, SIGHUP reloads. A
/// signal that arrives before it is waited for is kept: a SIGHUP during
/// startup reloads once startup is done.
struct Signals {
    #[cfg(unix)]
    streams: [tokio::signal::unix::Signal; 3],
}

impl Signals {
    /// Fails the start if a handler cannot be installed: a gateway that
    /// could not be stopped or reloaded cleanly is not one to run.
    #[cfg(unix)]
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = [
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ];
        Ok(Signals { streams })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    /// Resolves on SIGTERM or SIGINT (a SIGHUP meanwhile waits for `serve`).
    #[cfg(unix)]
    async fn stopped(&mut self) {
        let [term, int, _] = &mut self.streams;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn stopped(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Waits for SIGTERM/SIGINT; reloads on SIGHUP (validate, then swap; an
    /// invalid file keeps the old config and logs every error).
    #[cfg(unix)]
    async fn serve(&mut self, gw: &Gateway, path: &Path) {
        let [term, int, hup] = &mut self.streams;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(gw, path),
            }
        }
        tracing::info!("shutting down");
    }

    #[cfg(not(unix))]
    async fn serve(&mut self, _gw: &Gateway, _path: &Path) {
        self.stopped().await;
    }
}

/// Loads and validates `path`, swapping it in only when it is valid.
pub fn reload(gw: &Gateway, path: &Path) {
    apply(gw, path, config::load(path));
}

/// Swaps in a config that loaded, or logs every error of one that did not
/// and keeps the running one; counts the attempt either way.
fn apply(gw: &Gateway, path: &Path, loaded: Result<Runtime, ConfigErrors>) {
    match loaded {
        Ok(rt) => {
            // Against what runs, not the last file: a value set back to what
            // runs needs no restart, one changed earlier still does.
            let kept = gw.start_only.differences(&config::StartOnly::of(&rt));
            gw.swap(rt);
            gw.metrics.reload(true);
            tracing::info!(config = %path.display(), "config reloaded");
            if !kept.is_empty() {
                tracing::warn!(
                    keys = %kept.join(", "),
                    "changed in the file but read at start only: the running values stay until a restart"
                );
            }
        }
        Err(errors) => {
            gw.metrics.reload(false);
            for e in errors.iter() {
                tracing::error!(key = %e.key, "{}", e.message);
            }
            tracing::error!("config reload failed; keeping the previous config");
        }
    }
}

fn init_tracing(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: logs piped to a file or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    let _ = match log.format {
        // Fields at the top level of each line (`{"status":401,"route":…}`), as
        // log shippers index them, not under a "fields" object.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// `jwtgate token inspect`: header, claims and verdict; exit 1 if invalid.
pub fn inspect(path: &Path, token: &str) -> Result<ExitCode, CommandError> {
    let rt = load(path)?;
    let report = rt.tokens.verifier.inspect(token, SystemClock.now());
    let pretty = |v: &Option<serde_json::Value>| {
        v.as_ref().map_or("(not decodable)".into(), |v| serde_json::to_string_pretty(v).unwrap_or_default())
    };
    say!("header: {}", pretty(&report.header));
    say!("claims: {}", pretty(&report.claims));
    match &report.verdict {
        Ok(c) => say!("verdict: valid ({} token for {})", c.token_type.as_str(), c.sub),
        Err(e) => say!("verdict: INVALID: {e}"),
    }
    Ok(if report.is_valid() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `jwtgate keygen --alg A [--out DIR]`: HS* → `secret.txt`; others →
/// `signing.pem` (PKCS#8) and `signing.pub.pem` (SPKI). Without `--out`, printed.
pub fn keygen(alg: &str, out: Option<&Path>) -> Result<ExitCode, CommandError> {
    let algorithm = crate::token::keys::parse_algorithm(alg).ok_or_else(|| {
        CommandError::Usage(format!("--alg {alg:?}: use ES256, ES384, RS256, PS256, EdDSA, HS256, …"))
    })?;
    let key = crate::token::generate(algorithm)
        .map_err(|e| CommandError::Usage(format!("keygen failed: {e:?}")))?;
    let files: Vec<(&str, String)> = match key {
        crate::token::GeneratedKey::Secret { secret } => vec![("secret.txt", secret + "\n")],
        crate::token::GeneratedKey::KeyPair { private_pem, public_pem } => {
            vec![("signing.pem", private_pem), ("signing.pub.pem", public_pem)]
        }
    };
    let Some(dir) = out else {
        for (_, text) in &files {
            std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir)?;
    // Check every file before writing any: a leftover signing.pub.pem must not
    // leave a new signing.pem behind that matches no public key.
    if let Some(existing) = files.iter().map(|(name, _)| dir.join(name)).find(|p| p.exists()) {
        return Err(CommandError::Usage(format!(
            "{} exists; refusing to overwrite a key",
            existing.display()
        )));
    }
    for (name, text) in &files {
        let path = dir.join(name);
        write_private(&path, text, name.ends_with(".pub.pem"))?;
        say!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes key material; private keys and secrets get mode 0600.
fn write_private(path: &Path, text: &str, public: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mode = if public { 0o644 } else { 0o600 };
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        let _ = public;
        std::fs::write(path, text)
    }
}

/// `jwtgate demo`: the gateway plus a built-in app on http://127.0.0.1:8080
/// (another free port when 8080 is taken).
pub fn demo(listen: std::net::SocketAddr, access_ttl: &str) -> Result<ExitCode, CommandError> {
    init_tracing(&LogSettings { format: LogFormat::Pretty, level: "info".into(), access_log: true });
    let tokio = runtime()?;
    tokio.block_on(crate::demo::run(listen, access_ttl))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{worker_threads, CommandError, Settle};

    /// The watcher applies a change only when two polls in a row read it: a
    /// file caught between two pieces of an in-place write is never loaded,
    /// and the finished file is, one poll later.
    #[test]
    fn a_changed_file_is_loaded_once_two_polls_agree() {
        let mut settle = Settle::new(b"v1".to_vec());
        assert_eq!(settle.observe(b"v1".to_vec()), None, "unchanged");
        assert_eq!(settle.observe(b"v2-half".to_vec()), None, "first sight of a change");
        assert_eq!(settle.observe(b"v2-whole".to_vec()), None, "changed again since");
        assert_eq!(settle.observe(b"v2-whole".to_vec()), Some(&b"v2-whole"[..]), "the same on two polls");
        assert_eq!(settle.observe(b"v2-whole".to_vec()), None, "loaded once");

        // A change that is undone before it settles is never loaded.
        assert_eq!(settle.observe(b"v3-half".to_vec()), None);
        assert_eq!(settle.observe(b"v2-whole".to_vec()), None);
        assert_eq!(settle.observe(b"v3-half".to_vec()), None, "seen again, but not on consecutive polls");
        assert_eq!(settle.observe(b"v3-half".to_vec()), Some(&b"v3-half"[..]));
    }

    #[test]
    fn workers_come_from_the_variable_or_the_cpu_count() {
        assert_eq!(worker_threads(Some("1"), 8).unwrap(), 1);
        assert_eq!(worker_threads(Some(" 3 "), 1).unwrap(), 3, "the override wins over the CPU count");
        assert_eq!(worker_threads(None, 2).unwrap(), 2);
        assert_eq!(worker_threads(None, 0).unwrap(), 1);
    }

    #[test]
    fn a_bad_worker_count_is_a_usage_error_not_a_panic() {
        for bad in ["lots", "0", "-2", ""] {
            match worker_threads(Some(bad), 4) {
                Err(CommandError::Usage(msg)) => {
                    assert!(msg.contains("TOKIO_WORKER_THREADS") && msg.contains("unset"), "{msg}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
