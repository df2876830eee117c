//! Shared integration-test harness: a real upstream that records what it
//! received, the real gateway on port 0 in front of it, and clients.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod client;
pub mod flaky;
pub mod process;
pub mod props;
pub mod python;
pub mod raw;
pub mod session;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use jwtgate::clock::{Clock, ManualClock, SystemClock};
use jwtgate::store::{MemoryStore, Store};
use jwtgate::Gateway;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use raw::{send_raw, RawResponse};
pub use upstream::{Recorded, Upstream, UpstreamBehavior};

/// A 32-byte HS256 secret shared by the tests (and the Python fixtures).
pub const SECRET: &str = "jwtgate-test-secret-0123456789abcdef";

/// A running gateway; dropping it shuts it down.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub store: Arc<MemoryStore>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the gateway from config text; `{upstream}` in the text is replaced by
/// the upstream's address. Uses the wall clock unless `clock` is given.
pub async fn start_gateway(
    config: &str,
    upstream: SocketAddr,
    clock: Option<Arc<ManualClock>>,
) -> TestGateway {
    let store = Arc::new(MemoryStore::new());
    start_gateway_with(config, upstream, clock, store.clone(), store).await
}

/// [`start_gateway`] with a chosen store (e.g. one that fails on purpose).
pub async fn start_gateway_with(
    config: &str,
    upstream: SocketAddr,
    clock: Option<Arc<ManualClock>>,
    memory: Arc<MemoryStore>,
    store: Arc<dyn Store>,
) -> TestGateway {
    let text = config.replace("{upstream}", &upstream.to_string());
    let runtime = jwtgate::config::parse(&text, Path::new(".")).unwrap_or_else(|e| panic!("config:\n{e}"));
    let clock: Arc<dyn Clock> = match clock {
        Some(c) => c,
        None => Arc::new(SystemClock),
    };
    let gateway = Gateway::new(runtime, store, clock);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let gw = gateway.clone();
    tokio::spawn(async move {
        jwtgate::run(listener, gw, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestGateway { addr, gateway, store: memory, stop: Some(tx) }
}

/// A public route and an access route, both to the one upstream.
pub const PUBLIC_AND_API: &str = r#"
[[routes]]
path = "/public/**"
policy = "public"
upstream = "app"

[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"
"#;

/// A recording upstream behind a gateway with [`PUBLIC_AND_API`].
pub async fn public_and_api() -> (Upstream, TestGateway) {
    let up = Upstream::start(UpstreamBehavior::Ok).await;
    let gw = start_gateway(&base_config(PUBLIC_AND_API), up.addr, None).await;
    (up, gw)
}

/// The `[tokens]` + upstream + listen boilerplate most tests share.
pub fn base_config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
header_read_timeout = "2s"

[log]
access_log = false

[tokens]
secret = "{SECRET}"
locations = ["headers", "cookies", "query"]

[store]
backend = "memory"

[[upstreams]]
name = "app"
urls = ["http://{{upstream}}"]
connect_timeout = "500ms"
timeout = "2s"

{extra}
"#
    )
}

/// Mints a token for `alice` with the running gateway's key, as of `at`.
pub fn mint(
    gw: &TestGateway,
    token_type: jwtgate::token::TokenType,
    fresh: bool,
    at: i64,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let spec = jwtgate::token::MintSpec {
        sub: "alice",
        token_type,
        fresh,
        csrf: None,
        fid: None,
        auth_time: None,
        exp: None,
        extra,
    };
    gw.gateway.snapshot().runtime.tokens.minter.mint(&spec, at).expect("mint").token
}

/// A token with an arbitrary header and payload, HMAC-signed with the test
/// secret: what another issuer (AuthX, flask-jwt-extended) or an attacker
/// holding the key would send.
pub fn hs256_with_header(header: &str, payload: &str) -> String {
    hmac_with_header(aws_lc_rs::hmac::HMAC_SHA256, header, payload)
}

/// mallory's token of `kind` (`access` / `refresh`), fresh, with `csrf` as
/// its double-submit value: signed with the test secret, so AuthX and
/// flask-jwt-extended (which do not check `iss`) accept it, but issued by
/// `evil`, which a gateway with `issuer = "jwtgate"` refuses. The stand-in
/// for any token an app cannot know is bad (revoked, too old, failing
/// `require`).
pub fn mallory_token(kind: &str, csrf: &str, now: i64) -> String {
    let claims = serde_json::json!({
        "sub": "mallory", "iss": "evil", "type": kind, "fresh": true, "csrf": csrf,
        "jti": format!("m-{kind}"), "iat": now, "nbf": now, "exp": now + 30 * 86_400,
    });
    hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &claims.to_string())
}

/// [`hs256_with_header`] with another HMAC algorithm, keyed with the same secret.
pub fn hmac_with_header(alg: aws_lc_rs::hmac::Algorithm, header: &str, payload: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let key = aws_lc_rs::hmac::Key::new(alg, SECRET.as_bytes());
    let sig = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig.as_ref()))
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Polls `check` until it holds; false if `limit` passes first.
pub async fn within<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
