//! Two gateway instances sharing one Redis (DESIGN.md §10): rotation,
//! replays and reuse seen across instances, revocations pushed to the other
//! instance, a stampede split over both, a Redis outage (fail closed with
//! 503, recover on its own), and a revocation feed cut while Redis still
//! answers (`/readyz` 503 too).
//!
//! Time: both gateways share a ManualClock; the stores' script clock (Redis
//! `TIME`) is moved by the same amount with `set_clock_offset`, so moving time
//! never means sleeping. Waiting is only ever for a condition, with a deadline.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{get, request};
use common::session::{assert_cleared, cookie_values, Jar};
use common::*;
use jwtgate::clock::{Clock, ManualClock, SystemClock};
use jwtgate::store::{MemoryStore, RedisStore, Store};
use redis_server::RedisServer;

const ROUTES: &str = common::session::SESSION_ROUTES;

struct Instance {
    gw: TestGateway,
    store: Arc<RedisStore>,
}

struct Env {
    up: Upstream,
    clock: Arc<ManualClock>,
    a: Instance,
    b: Instance,
    // Last: the gateways and stores go before their Redis.
    redis: RedisServer,
}

async fn env(max_staleness: &str) -> Env {
    let redis = RedisServer::start();
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    up.respond_with
        .lock()
        .unwrap()
        .push(("X-Jwtgate-Identity".into(), r#"{"sub":"alice","roles":["dev"]}"#.into()));
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let store = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout = \"500ms\"\nmax_staleness = \"{max_staleness}\"\n",
        redis.url()
    );
    let cfg = base_config(ROUTES)
        .replace("[tokens]\n", "[tokens]\naccess_ttl = \"60s\"\n")
        .replace("[store]\nbackend = \"memory\"\n", &format!("[cookies]\nsecure = false\n\n{store}"));
    let a = instance(&cfg, &up, &clock).await;
    let b = instance(&cfg, &up, &clock).await;
    Env { up, clock, a, b, redis }
}

async fn instance(cfg: &str, up: &Upstream, clock: &Arc<ManualClock>) -> Instance {
    let text = cfg.replace("{upstream}", &up.addr.to_string());
    let runtime = jwtgate::config::parse(&text, Path::new(".")).unwrap_or_else(|e| panic!("config:\n{e}"));
    let store = Arc::new(RedisStore::connect(&runtime.store).await.unwrap());
    let dyn_store: Arc<dyn Store> = store.clone();
    let gw =
        start_gateway_with(cfg, up.addr, Some(clock.clone()), Arc::new(MemoryStore::new()), dyn_store).await;
    Instance { gw, store }
}

impl Env {
    /// Moves every clock: the gateways' and Redis's as the scripts see it.
    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
        let offset = redis_server::clock_offset_to(self.clock.now());
        self.a.store.set_clock_offset(offset);
        self.b.store.set_clock_offset(offset);
    }

    async fn login(&self, on: &Instance) -> (serde_json::Value, Jar) {
        let resp = request(on.gw.addr, "POST", "/login", &[("Content-Type", "application/json")], "{}").await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let mut jar = Jar::default();
        jar.absorb(&resp);
        (resp.json(), jar)
    }

    fn fid(&self, refresh: &str) -> String {
        let snap = self.a.gw.gateway.snapshot();
        snap.runtime.tokens.verifier.verify(refresh, self.clock.now()).unwrap().fid.clone().unwrap()
    }
}

async fn with_jar(on: &Instance, method: &str, path: &str, jar: &Jar, extra: &[(&str, &str)]) -> RawResponse {
    let cookie = jar.header();
    let mut headers = vec![("Cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    request(on.gw.addr, method, path, &headers, "").await
}

async fn bearer(on: &Instance, path: &str, token: &str) -> RawResponse {
    get(on.gw.addr, path, &[("Authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_one_instance_is_seen_by_the_other() {
    let env = env("5s").await;
    let (_, old) = env.login(&env.a).await;
    env.advance(120); // the access cookie has expired: the next request rotates
    let first = with_jar(&env.a, "GET", "/api/a", &old, &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(cookie_values(&first).len(), 4);

    env.advance(10);
    let replay = with_jar(&env.b, "GET", "/api/b", &old, &[]).await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(cookie_values(&first), cookie_values(&replay), "B serves A's pair inside the grace");

    let mut current = old.clone();
    current.absorb(&first);
    env.advance(30); // 40 s after the rotation: past the 30 s grace
    let reuse = with_jar(&env.b, "GET", "/api/c", &old, &[]).await;
    reuse.assert_problem(401, "refresh_reuse");
    assert_cleared(&reuse);

    // B revoked the family inside the script; A hears it on the feed.
    let refused = within(Duration::from_secs(1), || async {
        with_jar(&env.a, "GET", "/api/d", &current, &[]).await.status == 401
    })
    .await;
    assert!(refused, "A still accepts the revoked family's access token");
    with_jar(&env.a, "GET", "/api/d", &current, &[]).await.assert_problem(401, "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_instance_is_refused_on_the_other_within_a_second() {
    let env = env("5s").await;
    let (body, jar) = env.login(&env.a).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer(&env.b, "/api/x", &access).await.status, 200, "B accepts A's login");

    let csrf = jar.get("csrf_access_token").unwrap().to_owned();
    let out = with_jar(&env.a, "POST", "/logout", &jar, &[("X-CSRF-TOKEN", &csrf)]).await;
    assert_eq!(out.status, 204, "{}", out.body);
    let logged_out = Instant::now();
    let refused =
        within(Duration::from_secs(1), || async { bearer(&env.b, "/api/x", &access).await.status == 401 })
            .await;
    assert!(refused, "B still accepted the token {:?} after logout on A", logged_out.elapsed());
    bearer(&env.b, "/api/x", &access).await.assert_problem(401, "token_revoked");
}

/// Redis keys its revocations to expire, so they must outlast every leeway a
/// reload may set (five minutes), not the one in force when they were
/// written: a logged-out token without family until its `exp` plus that, a
/// family revoked for reuse until its end plus that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_in_redis_outlast_the_largest_leeway() {
    const MAX_LEEWAY: i64 = 300;
    let env = env("5s").await;
    let mut redis =
        ::redis::Client::open(env.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut held =
        async |key: String| -> i64 { ::redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap() };

    let exp = env.clock.now() + 60;
    let payload = format!(r#"{{"sub":"alice","type":"access","jti":"j-1","iat":{},"exp":{exp}}}"#, exp - 60);
    let token = hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &payload);
    let auth = format!("Bearer {token}");
    let out = request(env.a.gw.addr, "POST", "/logout", &[("Authorization", &auth)], "").await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(held("jwtgate:revoked:jti:j-1".into()).await, exp + MAX_LEEWAY);

    let (body, old) = env.login(&env.a).await;
    let fid = env.fid(body["refresh_token"].as_str().unwrap());
    env.advance(120);
    assert_eq!(with_jar(&env.a, "GET", "/api/a", &old, &[]).await.status, 200);
    env.advance(40); // past reuse_grace
    with_jar(&env.a, "GET", "/api/b", &old, &[]).await.assert_problem(401, "refresh_reuse");
    let family = env.a.store.family(&fid).await.unwrap().unwrap();
    assert_eq!(held(format!("jwtgate:revoked:fid:{fid}")).await, family.expires_at + MAX_LEEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_split_over_both_instances_rotates_once() {
    let env = env("5s").await;
    let (body, jar) = env.login(&env.a).await;
    let fid = env.fid(body["refresh_token"].as_str().unwrap());
    env.advance(120);
    let before = env.up.count();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let addr = if i % 2 == 0 { env.a.gw.addr } else { env.b.gw.addr };
        let cookie = jar.header();
        tasks.push(tokio::spawn(async move {
            get(addr, &format!("/api/race/{i}"), &[("Cookie", &cookie)]).await
        }));
    }
    let mut sets = Vec::new();
    for t in tasks {
        let resp = t.await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        sets.push(cookie_values(&resp));
    }
    assert!(sets.windows(2).all(|w| w[0] == w[1]), "all 50 responses set the same cookies");
    assert_eq!(sets[0].len(), 4);
    let seen = env.up.requests()[before..].to_vec();
    assert_eq!(seen.len(), 50);
    let tokens: std::collections::HashSet<_> =
        seen.iter().map(|r| r.header("cookie").unwrap().to_owned()).collect();
    assert_eq!(tokens.len(), 1, "every upstream hit carried the same new token");
    let family = env.a.store.family(&fid).await.unwrap().unwrap();
    assert_eq!(family.rotated.len(), 1, "exactly one rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_and_recovers_on_its_own() {
    let mut env = env("1s").await;
    let (body, jar) = env.login(&env.a).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer(&env.b, "/api/x", &access).await.status, 200);

    // Traffic on both instances all along: only ever 200 or a clean 503.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (addrs, access, stop) = ([env.a.gw.addr, env.b.gw.addr], access.clone(), stop.clone());
        async move {
            let mut statuses = std::collections::BTreeMap::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for addr in addrs {
                    let resp = get(addr, "/api/bg", &[("Authorization", &format!("Bearer {access}"))]).await;
                    *statuses.entry(resp.status).or_insert(0) += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            statuses
        }
    });

    env.redis.stop();
    // An explicit refresh cannot rotate: 503, nothing set.
    let resp = bearer(&env.b, "/refresh", &refresh).await;
    resp.assert_problem(503, "store_unavailable");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(resp.all("set-cookie").is_empty(), "cookies untouched");
    // Past max_staleness the revocation feed cannot be trusted: access routes fail closed.
    for on in [&env.a, &env.b] {
        let closed =
            within(Duration::from_secs(3), || async { bearer(on, "/api/x", &access).await.status == 503 })
                .await;
        assert!(closed, "an instance kept serving on a stale revocation feed");
    }
    let forwarded = env.up.count();
    // An implicit refresh (no access cookie, a valid refresh cookie) is refused
    // the same way, and nothing reached the upstream.
    let mut jar = jar;
    jar.0.remove("access_token_cookie");
    let resp = with_jar(&env.a, "GET", "/api/y", &jar, &[]).await;
    resp.assert_problem(503, "store_unavailable");
    assert!(resp.all("set-cookie").is_empty(), "nothing rotated");
    // The background traffic sends one request at a time: one admitted
    // before the feed went stale may still be on its way to the upstream.
    let since = env.up.targets().split_off(forwarded);
    assert!(
        since.len() <= 1 && since.iter().all(|t| t == "/api/bg"),
        "requests passed while the store was down: {since:?}"
    );

    // Redis comes back empty (no persistence): new logins work everywhere.
    env.redis.restart();
    let restarted = Instant::now();
    let recovered = within(Duration::from_secs(2), || async {
        let resp = request(env.a.gw.addr, "POST", "/login", &[], "").await;
        if resp.status != 200 {
            return false;
        }
        let body = resp.json();
        let (access, refresh) =
            (body["access_token"].as_str().unwrap(), body["refresh_token"].as_str().unwrap());
        bearer(&env.b, "/refresh", refresh).await.status == 200
            && bearer(&env.a, "/api/z", access).await.status == 200
            && bearer(&env.b, "/api/z", access).await.status == 200
    })
    .await;
    assert!(recovered, "not recovered {:?} after Redis restarted", restarted.elapsed());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = traffic.await.unwrap();
    assert!(statuses.keys().all(|s| [200, 503].contains(s)), "background traffic saw {statuses:?}");
    assert!(statuses.contains_key(&503), "background traffic never failed closed: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_noticed_by_the_heartbeat() {
    let env = env("1s").await;
    let (body, _) = env.login(&env.a).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer(&env.a, "/api/x", &access).await.status, 200);

    // The subscription's socket stays open: only the missing PING replies tell.
    env.redis.freeze(true);
    let closed =
        within(Duration::from_secs(3), || async { bearer(&env.a, "/api/x", &access).await.status == 503 })
            .await;
    env.redis.freeze(false);
    assert!(closed, "a frozen Redis went unnoticed");
    let thawed = Instant::now();
    let recovered = within(Duration::from_secs(2), || async {
        bearer(&env.a, "/api/x", &access).await.status == 200
            && bearer(&env.b, "/api/x", &access).await.status == 200
    })
    .await;
    assert!(recovered, "not recovered {:?} after Redis thawed", thawed.elapsed());
}

/// Serves `on`'s admin endpoints on a port of their own; returns its address.
async fn serve_admin(on: &Instance) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(jwtgate::admin::serve(listener, on.gw.gateway.clone()));
    addr
}

/// Sets the channel rules of Redis's default user: `resetchannels` closes
/// the subscriptions it no longer allows and refuses new ones, while every
/// other command still answers; `allchannels` lets the feed subscribe again.
/// Channel rules need Redis ≥ 6.2 (this was written against 7.0).
async fn channels(redis: &RedisServer, rule: &str) {
    let mut conn =
        ::redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let set: Result<String, _> =
        ::redis::cmd("ACL").arg("SETUSER").arg("default").arg(rule).query_async(&mut conn).await;
    let set = set.unwrap_or_else(|e| panic!("ACL SETUSER default {rule}: {e} (needs redis-server >= 6.2)"));
    assert_eq!(set, "OK");
}

/// `/readyz` asks the revocation feed too, not only Redis's PING: while the
/// subscription cannot be re-established (Redis answering everything else)
/// it turns 503 once `max_staleness` has passed, as the access path does,
/// and 200 again once the feed has resubscribed and reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_revocation_feed_is_down_though_redis_answers() {
    let env = env("1s").await;
    let admin = serve_admin(&env.a).await;
    let (body, _) = env.login(&env.a).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(admin, "/readyz", &[]).await.status, 200);

    let broken = Instant::now();
    channels(&env.redis, "resetchannels").await;
    let stale =
        within(Duration::from_secs(3), || async { get(admin, "/readyz", &[]).await.status == 503 }).await;
    let unready_after = broken.elapsed();
    assert!(stale, "still ready {unready_after:?} after the feed was cut, with max_staleness 1s");
    // Its last proof of life came at most one heartbeat (250 ms) before the
    // cut: until max_staleness past it, the feed's set is still trusted.
    assert!(unready_after >= Duration::from_millis(500), "unready {unready_after:?} after the cut");
    let unready = get(admin, "/readyz", &[]).await;
    assert!(unready.body.contains("revocation feed"), "503 for another reason: {}", unready.body);
    let mut conn =
        ::redis::Client::open(env.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let pong: String = ::redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG", "Redis itself still answers");
    bearer(&env.a, "/api/x", &access).await.assert_problem(503, "store_unavailable");

    channels(&env.redis, "allchannels").await;
    let restored = Instant::now();
    let recovered = within(Duration::from_secs(2), || async {
        get(admin, "/readyz", &[]).await.status == 200
            && bearer(&env.a, "/api/x", &access).await.status == 200
    })
    .await;
    assert!(recovered, "not ready {:?} after the feed could subscribe again", restored.elapsed());
}
