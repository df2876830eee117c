//! The Python side of the compatibility suites: tokens minted by AuthX and
//! flask-jwt-extended, and their apps as real upstreams. Needs the virtualenv
//! `scripts/python-env.sh` builds; without it the tests FAIL saying so.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SECRET;

/// The virtualenv's python: `$JWTGATE_PYTHON`, else `target/pyenv/bin/python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("JWTGATE_PYTHON") {
        return PathBuf::from(p);
    }
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    assert!(
        default.exists(),
        "AuthX / flask-jwt-extended are not installed: run `bash scripts/python-env.sh` \
         (or the test command `bash scripts/test.sh`, which does) and retry"
    );
    default
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

/// Every case `mint.py` produces, minted for real by the libraries at `now`.
pub fn mint_all(now: i64) -> serde_json::Value {
    let out = Command::new(python())
        .arg(script("mint.py"))
        .args(["--secret", SECRET, "--now", &now.to_string()])
        .output()
        .expect("run tests/python/mint.py");
    assert!(out.status.success(), "mint.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("mint.py prints JSON")
}

/// A Python app (`authx_app.py` / `flask_app.py`) on a free loopback port.
pub struct PyApp {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for PyApp {
    /// Kills the app's whole process group: gunicorn's worker is a child of
    /// the process started here and would outlive it.
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl PyApp {
    pub async fn start(app: &str) -> PyApp {
        PyApp::start_with(app, &[]).await
    }

    /// [`PyApp::start`] with more arguments (`--server gunicorn`).
    pub async fn start_with(app: &str, args: &[&str]) -> PyApp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python())
            .arg(script(app))
            .args(["--port", &port.to_string(), "--secret", SECRET])
            .args(args)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {app}: {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if super::raw::get(addr, "/health", &[]).await.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{app} did not answer /health within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        PyApp { addr, child }
    }
}
