//! A private `redis-server` for one test: a free loopback port, no persistence,
//! killed on drop; plain text, or TLS only ([`RedisServer::start_tls`]).
//! Include with `#[path = "common/redis.rs"] mod redis_server;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const MISSING: &str = "install redis-server (apt-get install redis-server) or run scripts/test.sh";
const NO_TLS: &str = "this redis-server cannot serve TLS: install a build with TLS support \
                      (Debian/Ubuntu's redis-server ≥ 6 has it; from source: make BUILD_TLS=yes)";

/// PEM files for a TLS-only server: its certificate and key, and the CA
/// that signed them (which the readiness check trusts).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A running redis-server; [`RedisServer::stop`] and [`RedisServer::restart`]
/// simulate an outage on the same port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
    password: Option<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::launch(None, None)
    }

    /// Starts a server that speaks TLS only (`--port 0`: no plain-text
    /// listener at all) and, with `password`, requires AUTH; waits until it
    /// answers over TLS. Clients are not asked for a certificate.
    pub fn start_tls(tls: TlsFiles, password: Option<&str>) -> RedisServer {
        RedisServer::launch(Some(tls), password)
    }

    fn launch(tls: Option<TlsFiles>, password: Option<&str>) -> RedisServer {
        // Bind to learn a free port, then hand it to redis-server.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let password = password.map(str::to_owned);
        let mut server = RedisServer { port, child: None, dir, tls, password };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://` for a TLS server; with
    /// the password when there is one.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        let auth = self.password.as_ref().map(|p| format!(":{p}@")).unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: nothing is flushed, as in a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: its sockets stay open
    /// but nothing answers, as with a hung host or a dead network path.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("redis-server is not running").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// (Re)starts the server on the same port, empty, and waits for PING.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(tls) => cmd
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        // redis-server logs to stdout; kept for the failure messages below.
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let spawned = cmd.stdout(log).stderr(Stdio::null()).spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
            Err(e) => panic!("cannot start redis-server ({e}); {MISSING}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                let hint = if self.tls.is_some() { NO_TLS } else { MISSING };
                panic!("redis-server exited ({status}); {hint}\n--- its output:\n{log}");
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(tcp) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
        match &self.tls {
            None => ping(tcp),
            Some(tls) => {
                let Ok(conn) = rustls::ClientConnection::new(client_config(&tls.ca), localhost()) else {
                    return false;
                };
                ping(rustls::StreamOwned::new(conn, tcp))
            }
        }
    }
}

/// PING answered with PONG, or with NOAUTH by a server that wants a password.
fn ping(mut s: impl Read + Write) -> bool {
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut buf).is_ok()
        && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
}

/// A rustls client config trusting only the PEM certificates in `ca`.
pub fn client_config(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn localhost() -> ServerName<'static> {
    ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The offset (`RedisStore::set_clock_offset`) that puts a store's script
/// clock, Redis `TIME` plus whole seconds, at `t`. Taken clear of a second's
/// end: an offset read just before the wall clock ticks would put the
/// script's `TIME` a second past `t`, and a test that asserts on the
/// boundary of a grace or a timeout would fail once in a while.
pub fn clock_offset_to(t: i64) -> i64 {
    let since_epoch = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let millis = since_epoch().subsec_millis();
    if millis > 800 {
        std::thread::sleep(Duration::from_millis(u64::from(1005 - millis)));
    }
    t - since_epoch().as_secs() as i64
}
