//! DESIGN.md §11: the admin listener of the real binary — `/healthz`,
//! `/readyz`, and `/metrics` in Prometheus text with every listed series,
//! counting exactly the traffic sent.

mod common;

use std::time::Duration;

use common::app::App;
use common::client::{get_once, metrics, parse_metrics, wait_metric, KeepAlive};
use common::process::{GatewayProc, ProcConfig};

#[test]
fn the_metrics_reader_is_strict() {
    let good =
        "# HELP x y\nx_total{a=\"1\",b=\"q\\\"}\"} 3\nup 1\nh_bucket{le=\"+Inf\"} 2 1700000000\n# EOF\n";
    let s = parse_metrics(good).unwrap();
    assert_eq!(s["x_total{a=\"1\",b=\"q\\\"}\"}"], 3.0);
    assert_eq!(s["up"], 1.0);
    for bad in ["x{a=1} 2", "x 2 3 4", "{a=\"1\"} 2", "x{a=\"1\" 2", "x two", "1x 2", "x{a=\"1\"}2"] {
        assert!(parse_metrics(bad).is_err(), "{bad:?} accepted");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_after_traffic() {
    let app = App::start("app", Duration::ZERO).await;
    let gw = GatewayProc::start(ProcConfig { api_policy: "access", ..ProcConfig::new(app.addr) }).await;
    let admin = gw.config.admin;

    let health = get_once(admin, "/healthz").await.unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(get_once(admin, "/readyz").await.unwrap().status, 200);
    assert_eq!(get_once(admin, "/nope").await.unwrap().status, 404);

    // Every series exists before any traffic.
    let before = metrics(admin).await;
    for series in [
        r#"jwtgate_auth_failures_total{reason="missing_token"}"#,
        r#"jwtgate_refresh_total{mode="implicit",outcome="rotated"}"#,
        // `renewed`: an explicit refresh under rotate_refresh = false.
        r#"jwtgate_refresh_total{mode="explicit",outcome="renewed"}"#,
        r#"jwtgate_config_reloads_total{result="ok"}"#,
        r#"jwtgate_config_reloads_total{result="error"}"#,
        "jwtgate_request_duration_seconds_count",
        "jwtgate_upstream_duration_seconds_count",
        "jwtgate_connections_active",
    ] {
        assert_eq!(before.get(series), Some(&0.0), "{series} at startup; log:\n{}", gw.log());
    }

    // 3 × 401 missing_token, 2 × 200 public, 1 × 404 no_route.
    for _ in 0..3 {
        assert_eq!(get_once(gw.config.listen, "/api/data").await.unwrap().status, 401);
    }
    for _ in 0..2 {
        assert_eq!(get_once(gw.config.listen, "/public/page").await.unwrap().status, 200);
    }
    assert_eq!(get_once(gw.config.listen, "/elsewhere").await.unwrap().status, 404);
    // One connection stays open while /metrics is read.
    let mut held = KeepAlive::connect(gw.config.listen).await.unwrap();
    assert_eq!(held.get("/public/held").await.unwrap().status, 200);

    wait_metric(admin, "jwtgate_request_duration_seconds_count", 7.0, Duration::from_secs(3)).await;
    let after = metrics(admin).await;
    let expect = [
        (r#"jwtgate_requests_total{route="/api/**",policy="access",status="401"}"#, 3.0),
        (r#"jwtgate_requests_total{route="/public/**",policy="public",status="200"}"#, 3.0),
        (r#"jwtgate_requests_total{route="-",policy="-",status="404"}"#, 1.0),
        (r#"jwtgate_auth_failures_total{reason="missing_token"}"#, 3.0),
        (r#"jwtgate_auth_failures_total{reason="invalid_token"}"#, 0.0),
        (r#"jwtgate_refresh_total{mode="implicit",outcome="rotated"}"#, 0.0),
        (r#"jwtgate_refresh_total{mode="explicit",outcome="reuse"}"#, 0.0),
        ("jwtgate_request_duration_seconds_count", 7.0),
        ("jwtgate_upstream_duration_seconds_count", 3.0),
        (r#"jwtgate_config_reloads_total{result="ok"}"#, 0.0),
        (r#"jwtgate_config_reloads_total{result="error"}"#, 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(after.get(series), Some(&value), "{series}");
    }
    assert!(after["jwtgate_connections_active"] >= 1.0, "the held connection is counted");
    assert!(after.contains_key(r#"jwtgate_request_duration_seconds_bucket{le="+Inf"}"#));
    assert!(after["jwtgate_request_duration_seconds_sum"] > 0.0);
    assert_eq!(app.hits(), 3);

    drop(held);
    wait_metric(admin, "jwtgate_connections_active", 0.0, Duration::from_secs(3)).await;
}

/// `/readyz` follows the store: 503 while it cannot be reached, 200 once it
/// is back; `/healthz` says only that the process is up.
#[tokio::test]
async fn readyz_is_503_while_the_store_is_unreachable() {
    use common::flaky::Flaky;
    use common::raw::get;
    use common::*;
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let memory = std::sync::Arc::new(jwtgate::store::MemoryStore::new());
    let store = std::sync::Arc::new(Flaky::new(memory.clone()));
    let gw = start_gateway_with(&base_config(PUBLIC_AND_API), up.addr, None, memory, store.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(jwtgate::admin::serve(listener, gw.gateway.clone()));
    assert_eq!(get(admin, "/readyz", &[]).await.status, 200);
    store.set_down(true);
    let ready = get(admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "ready with the store down: {}", ready.body);
    assert_eq!(get(admin, "/healthz", &[]).await.status, 200, "the process is still up");
    store.set_down(false);
    assert_eq!(get(admin, "/readyz", &[]).await.status, 200, "ready again");
}

/// The admin paths exist on the admin listener only: on the main one they
/// are no route (404), or the app's own paths where a route takes them.
#[tokio::test]
async fn admin_paths_are_not_served_on_the_main_listener() {
    use common::raw::get;
    use common::*;
    let (up, gw) = public_and_api().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        get(gw.addr, path, &[]).await.assert_problem(404, "no_route");
    }
    assert_eq!(up.count(), 0);
    let everything = "[[routes]]\npath = \"/**\"\npolicy = \"public\"\nupstream = \"app\"\n";
    let gw = start_gateway(&base_config(everything), up.addr, None).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let resp = get(gw.addr, path, &[]).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(!resp.body.contains("jwtgate_"), "{path} answered by the gateway: {}", resp.body);
        assert_eq!(up.last().target, path, "{path} belongs to the app");
    }
}
