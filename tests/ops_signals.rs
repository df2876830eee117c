//! DESIGN.md §3/§11 on the real binary: SIGTERM drains in-flight requests and
//! refuses new connections; SIGHUP and `watch_config` reload the file, and an
//! invalid file keeps the old config and is counted.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::app::App;
use common::client::{get_once, metrics, wait_metric, KeepAlive};
use common::process::{GatewayProc, ProcConfig};
use common::SECRET;
use nix::sys::signal::Signal;
use tokio::net::TcpStream;

const RELOAD_OK: &str = r#"jwtgate_config_reloads_total{result="ok"}"#;
const RELOAD_ERROR: &str = r#"jwtgate_config_reloads_total{result="error"}"#;

/// Polls `/api/x` until it answers `status`; returns how long that took.
async fn wait_status(gw: &GatewayProc, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let answer = get_once(gw.config.listen, "/api/x").await.unwrap();
        if answer.status == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "still {answer:?} after {within:?}; log:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    sigterm_drains(None).await;
}

/// One worker runs tokio's current-thread scheduler (`commands::runtime`):
/// the same 20 concurrent requests, drain and exit on that one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_on_a_single_worker_runtime() {
    sigterm_drains(Some(1)).await;
}

async fn sigterm_drains(workers: Option<usize>) {
    let app = App::start("slow", Duration::from_secs(2)).await;
    let mut gw = GatewayProc::start(ProcConfig { workers, ..ProcConfig::new(app.addr) }).await;
    let listen = gw.config.listen;

    // 4 connections kept alive after a first answer (the app answers each
    // request after 2 s, so these come first, not beside the rest)...
    let mut warmed = Vec::new();
    for _ in 0..4 {
        warmed.push(tokio::spawn(async move {
            let mut conn = KeepAlive::connect(listen).await?;
            conn.get("/public/warm").await.map(|_| conn)
        }));
    }
    let mut kept = Vec::new();
    for task in warmed {
        kept.push(task.await.unwrap().expect("warm-up request answered"));
    }
    // ...then 16 requests on their own connections and 4 on those, all in flight.
    let mut inflight = Vec::new();
    for i in 0..20 {
        let conn = if i % 5 == 0 { kept.pop() } else { None };
        inflight.push(tokio::spawn(async move {
            match conn {
                Some(mut conn) => conn.get(&format!("/public/slow/{i}")).await,
                None => get_once(listen, &format!("/public/slow/{i}")).await,
            }
        }));
    }
    let started = Instant::now();
    while app.hits() < 24 {
        assert!(started.elapsed() < Duration::from_secs(10), "only {} requests reached the app", app.hits());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal(Signal::SIGTERM);
    let signalled = Instant::now();

    // The listener closes at once, long before the slow answers are due.
    let refused = loop {
        if TcpStream::connect(listen).await.is_err() {
            break signalled.elapsed();
        }
        assert!(signalled.elapsed() < Duration::from_millis(1500), "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(gw.child.try_wait().unwrap().is_none(), "exited before draining");
    // Not ready while it drains: a load balancer stops sending.
    let ready = get_once(gw.config.admin, "/readyz").await.expect("admin answers while draining");
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining\n"));

    // Each answer in flight at SIGTERM tells its client the connection ends.
    for (i, task) in inflight.into_iter().enumerate() {
        let answer = task.await.unwrap().unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(
            (answer.status, answer.body.as_str(), answer.closing),
            (200, "slow", true),
            "request {i}: {}",
            gw.log()
        );
    }
    let status = gw.wait_exit(Duration::from_secs(10)).await.expect("exited within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", gw.log());
    eprintln!("refused after {refused:?}, exited after {:?}", signalled.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_an_invalid_file_keeps_the_old_config() {
    let app = App::start("app", Duration::ZERO).await;
    let gw = GatewayProc::start(ProcConfig::new(app.addr)).await;
    let admin = gw.config.admin;
    assert_eq!(get_once(gw.config.listen, "/api/x").await.unwrap().status, 200);

    let access = ProcConfig { api_policy: "access", ..gw.config.clone() };
    gw.write_config(&access.text());
    gw.signal(Signal::SIGHUP);
    let took = wait_status(&gw, 401, Duration::from_secs(3)).await;
    wait_metric(admin, RELOAD_OK, 1.0, Duration::from_secs(1)).await;
    eprintln!("SIGHUP applied within {took:?}");

    // A policy that does not exist: rejected whole, the access policy stays.
    gw.write_config(&access.text().replace(r#"policy = "access""#, r#"policy = "sometimes""#));
    gw.signal(Signal::SIGHUP);
    wait_metric(admin, RELOAD_ERROR, 1.0, Duration::from_secs(3)).await;
    for _ in 0..5 {
        assert_eq!(get_once(gw.config.listen, "/api/x").await.unwrap().status, 401);
    }
    assert_eq!(get_once(gw.config.listen, "/public/p").await.unwrap().status, 200);
    assert_eq!(metrics(admin).await[RELOAD_OK], 1.0);
    // Each error with its key and the fix (the bad value alone is in the
    // message either way).
    let log = gw.log();
    assert!(log.contains("routes[0].policy"), "the error's key is not logged:\n{log}");
    assert!(log.contains("write public, access, fresh or refresh"), "the fix is not logged:\n{log}");

    // A second `secret = …` left in while rotating is a syntax error; the
    // log gives its line, never the line itself.
    let rotated = "RotatedSecret-9b7e5c3a1f0d2e4c6a8b-0123";
    let twice = format!("secret = \"{SECRET}\"\nsecret = \"{rotated}\"");
    gw.write_config(&access.text().replace(&format!("secret = \"{SECRET}\""), &twice));
    gw.signal(Signal::SIGHUP);
    wait_metric(admin, RELOAD_ERROR, 2.0, Duration::from_secs(3)).await;
    let log = gw.log();
    assert!(log.contains("duplicate key"), "{log}");
    assert!(!log.contains(rotated) && !log.contains(SECRET), "the reload error quoted a secret:\n{log}");

    // Fixed file, another SIGHUP: back to public.
    gw.write_config(&gw.config.text());
    gw.signal(Signal::SIGHUP);
    wait_status(&gw, 200, Duration::from_secs(3)).await;
    wait_metric(admin, RELOAD_OK, 2.0, Duration::from_secs(1)).await;
    assert_eq!(metrics(admin).await[RELOAD_ERROR], 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_an_edited_file_without_a_signal() {
    let app = App::start("app", Duration::ZERO).await;
    let gw = GatewayProc::start(ProcConfig { watch_config: true, ..ProcConfig::new(app.addr) }).await;
    assert_eq!(get_once(gw.config.listen, "/api/x").await.unwrap().status, 200);

    let access = ProcConfig { api_policy: "access", ..gw.config.clone() };
    gw.write_config(&access.text());
    let took = wait_status(&gw, 401, Duration::from_secs(5)).await;
    wait_metric(gw.config.admin, RELOAD_OK, 1.0, Duration::from_secs(1)).await;
    eprintln!("file change applied within {took:?}");

    // An invalid edit is counted and changes nothing.
    gw.write_config("[server\n");
    wait_metric(gw.config.admin, RELOAD_ERROR, 1.0, Duration::from_secs(5)).await;
    assert_eq!(get_once(gw.config.listen, "/api/x").await.unwrap().status, 401);
}

/// A config file that disappears (a ConfigMap's link swapped, a mount gone)
/// keeps the running config, with one warning, not one per poll; when it is
/// back, its content is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_warns_once_while_the_file_cannot_be_read() {
    let app = App::start("app", Duration::ZERO).await;
    let gw = GatewayProc::start(ProcConfig { watch_config: true, ..ProcConfig::new(app.addr) }).await;
    assert_eq!(get_once(gw.config.listen, "/api/x").await.unwrap().status, 200);
    const WARNING: &str = "the config file cannot be read";

    std::fs::remove_file(gw.config_path()).unwrap();
    let started = Instant::now();
    while !gw.log().contains(WARNING) {
        assert!(started.elapsed() < Duration::from_secs(5), "no warning; log:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await; // two more polls
    assert_eq!(gw.log().matches(WARNING).count(), 1, "{}", gw.log());
    assert_eq!(get_once(gw.config.listen, "/api/x").await.unwrap().status, 200, "the running config stays");

    let access = ProcConfig { api_policy: "access", ..gw.config.clone() };
    gw.write_config(&access.text());
    wait_status(&gw, 401, Duration::from_secs(5)).await;
    wait_metric(gw.config.admin, RELOAD_OK, 1.0, Duration::from_secs(1)).await;
}

/// An edit made while the gateway starts (here, while a frozen Redis keeps
/// the store from opening) is applied once it is up: the watcher starts from
/// the bytes the running config was read from, not from the file as it is
/// when the watcher starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_applies_an_edit_made_while_the_store_opened() {
    let app = App::start("app", Duration::ZERO).await;
    let redis = redis_server::RedisServer::start();
    let config = ProcConfig { watch_config: true, ..ProcConfig::new(app.addr) };
    let with_redis = |config: &ProcConfig| {
        let store = format!("backend = \"redis\"\nurl = \"{}\"\ntimeout = \"20s\"", redis.url());
        config.text().replace("backend = \"memory\"", &store)
    };
    let dir = tempfile::tempdir().unwrap();
    redis.freeze(true);
    let child = common::process::spawn_jwtgate(dir.path(), &with_redis(&config), &[]);
    let gw = GatewayProc { child, config: config.clone(), dir };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        TcpStream::connect(gw.config.listen).await.is_err(),
        "the store is frozen, so the gateway should still be starting; log:\n{}",
        gw.log()
    );
    gw.write_config(&with_redis(&ProcConfig { api_policy: "access", ..config }));
    redis.freeze(false);
    common::client::wait_listening(gw.config.listen, Duration::from_secs(20)).await;
    wait_status(&gw, 401, Duration::from_secs(5)).await;
    wait_metric(gw.config.admin, RELOAD_OK, 1.0, Duration::from_secs(1)).await;
}

/// Signals that arrive while the gateway starts, here waiting on a Redis that
/// accepts and never answers: a SIGHUP (`systemctl reload` just after a
/// start) must not kill it, as SIGHUP's default action would; a SIGTERM
/// stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_startup_reload_or_stop_it_cleanly() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redis = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().flatten().collect();
        drop(held);
    });
    let config = ProcConfig::new(redis);
    let text = config.text().replace(
        "backend = \"memory\"",
        &format!("backend = \"redis\"\nurl = \"redis://{redis}/0\"\ntimeout = \"3s\""),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::process::spawn_jwtgate(dir.path(), &text, &[]);
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let send = |child: &std::process::Child, signal| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(child.try_wait().unwrap().is_none(), "still starting, waiting for the store:\n{}", log());
    send(&child, Signal::SIGHUP);
    let after_hup = common::process::wait_exit(&mut child, Duration::from_millis(500)).await;
    assert!(after_hup.is_none(), "a SIGHUP during startup ended the gateway: {after_hup:?}\n{}", log());
    send(&child, Signal::SIGTERM);
    let status = common::process::wait_exit(&mut child, Duration::from_secs(5)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "SIGTERM during startup: {status:?}\n{}", log());
}

/// Some keys are read at start only (README, Reload). A reload that changes
/// them is applied in everything else and says, by key, what it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_the_start_only_keys_it_could_not_apply() {
    let app = App::start("app", Duration::ZERO).await;
    let gw = GatewayProc::start(ProcConfig::new(app.addr)).await;
    let access = ProcConfig { api_policy: "access", ..gw.config.clone() };
    let text =
        access.text().replace("shutdown_grace = \"10s\"", "shutdown_grace = \"20s\"\nmax_connections = 5");
    gw.write_config(&text);
    gw.signal(Signal::SIGHUP);
    wait_status(&gw, 401, Duration::from_secs(3)).await;
    wait_metric(gw.config.admin, RELOAD_OK, 1.0, Duration::from_secs(1)).await;
    let log = gw.log();
    let warning = log.lines().find(|l| l.contains("read at start only")).unwrap_or_else(|| panic!("{log}"));
    assert!(
        warning.contains("server.max_connections") && warning.contains("server.shutdown_grace"),
        "{warning}"
    );
    assert!(!warning.contains("store") && !warning.contains("listen"), "{warning}");

    // Judged against what runs, not the last file: the same values with
    // another edit still differ; the file set back to what runs does not.
    let warnings = |log: &str| log.matches("read at start only").count();
    gw.write_config(&text.replace("policy = \"access\"", "policy = \"public\""));
    gw.signal(Signal::SIGHUP);
    wait_metric(gw.config.admin, RELOAD_OK, 2.0, Duration::from_secs(3)).await;
    assert_eq!(warnings(&gw.log()), 2, "{}", gw.log());
    gw.write_config(&gw.config.text());
    gw.signal(Signal::SIGHUP);
    wait_metric(gw.config.admin, RELOAD_OK, 3.0, Duration::from_secs(3)).await;
    assert_eq!(warnings(&gw.log()), 2, "set back, nothing is kept:\n{}", gw.log());
}
