//! The real `jwtgate` binary as a child process, for what only a process has:
//! signals, exit codes, the admin listener, config files changing on disk.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::client::wait_listening;
use super::SECRET;

/// Writes `config` to `dir/gateway.toml` and starts `jwtgate run` on it,
/// stdout and stderr into `dir/gateway.log`, with extra environment `env`.
pub fn spawn_jwtgate(dir: &Path, config: &str, env: &[(&str, String)]) -> Child {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["run", "-c"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start jwtgate")
}

/// A port that was free a moment ago (bind :0, read, release). The config
/// needs a concrete port; another process taking it in between is a small race.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// What varies between the process suites' configs.
#[derive(Debug, Clone)]
pub struct ProcConfig {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub upstream: SocketAddr,
    /// Policy of `/api/**` (`/public/**` is always public).
    pub api_policy: &'static str,
    pub watch_config: bool,
    /// `TOKIO_WORKER_THREADS` for the process (None: tokio's default, one per CPU).
    pub workers: Option<usize>,
}

impl ProcConfig {
    pub fn new(upstream: SocketAddr) -> ProcConfig {
        ProcConfig {
            listen: free_addr(),
            admin: free_addr(),
            upstream,
            api_policy: "public",
            watch_config: false,
            workers: None,
        }
    }

    pub fn text(&self) -> String {
        let ProcConfig { listen, admin, upstream, api_policy, watch_config, .. } = self;
        format!(
            r#"
[server]
listen = "{listen}"
header_read_timeout = "5s"
shutdown_grace = "10s"
watch_config = {watch_config}

[admin]
listen = "{admin}"

[log]
level = "warn"
access_log = false

[tokens]
secret = "{SECRET}"

[store]
backend = "memory"

[[upstreams]]
name = "app"
urls = ["http://{upstream}"]
connect_timeout = "500ms"
timeout = "5s"

[[routes]]
path = "/api/**"
policy = "{api_policy}"
upstream = "app"

[[routes]]
path = "/public/**"
policy = "public"
upstream = "app"
"#
        )
    }
}

/// A running `jwtgate run`; killed on drop if it is still running.
pub struct GatewayProc {
    pub child: Child,
    pub config: ProcConfig,
    pub dir: TempDir,
}

impl GatewayProc {
    /// Writes the config, starts the binary and waits until both listeners accept.
    pub async fn start(config: ProcConfig) -> GatewayProc {
        let dir = tempfile::tempdir().unwrap();
        let workers: Vec<(&str, String)> =
            config.workers.map(|w| ("TOKIO_WORKER_THREADS", w.to_string())).into_iter().collect();
        let child = spawn_jwtgate(dir.path(), &config.text(), &workers);
        let proc = GatewayProc { child, config, dir };
        wait_listening(proc.config.listen, Duration::from_secs(10)).await;
        wait_listening(proc.config.admin, Duration::from_secs(10)).await;
        proc
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Replaces the config file whole (write + rename), so a watcher never
    /// reads half a file.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join("gateway.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("send signal");
    }

    /// The exit status, or None if still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, within).await
    }

    /// What the gateway logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `child`'s exit status, or None if it is still running after `within`.
pub async fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
