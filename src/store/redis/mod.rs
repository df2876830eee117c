//! The redis store (DESIGN.md §10): several gateway instances share session
//! families and revocations.
//!
//! - Rotation is one Lua script ([`scripts::ROTATE`]) implementing the same
//!   rules as [`crate::store::family::decide`]; it runs atomically in Redis, so
//!   a refresh stampede spread over any number of instances rotates once.
//! - Every write is a script too: it reads the time from Redis `TIME`, sets
//!   TTLs (a family lives until `expires_at`, a revoked jti until its `exp`)
//!   and publishes revocations on `jwtgate:revocations`.
//! - `is_revoked` answers from a local set fed by that channel
//!   ([`feed`]); a feed down longer than `max_staleness` fails closed.
//!
//! Time: the `now` the trait passes is ignored by rotation, revocation and
//! purge. Their decisions and TTLs use the script clock, Redis `TIME`, so
//! instances whose clocks drift apart still agree on `reuse_grace`. Only
//! `is_revoked` uses the caller's `now`: it compares against a token's own
//! `exp`, which the same caller checked a moment ago with the same clock.
//! Tests move the script clock with [`RedisStore::set_clock_offset`], as they
//! move the gateway's with a `ManualClock`.

mod feed;
mod scripts;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    AsyncCommands, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, ServerErrorKind, TlsCertificates,
};

use self::feed::{Feed, Kind};
use self::scripts::{Scripts, CHANNEL, EXPIRY, FAMILY, PREV, REVOKED_FID, REVOKED_JTI};
use super::family::{Family, RenewOutcome, RotateOutcome, RotateRequest, RotatedJti, ROTATED_KEPT};
use super::{Store, StoreError, StoreFuture};
use crate::config::StoreSettings;

/// How long `connect` waits for the first revocation sync.
const FIRST_SYNC: Duration = Duration::from_secs(10);
/// Records per purge script call: bounds how long one call blocks Redis.
const PURGE_BATCH: usize = 500;

/// A store shared through Redis. Dropping it stops its feed task.
pub struct RedisStore {
    primary: Arc<Primary>,
    scripts: Scripts,
    feed: Arc<Feed>,
    feed_task: tokio::task::JoinHandle<()>,
    clock_offset: AtomicI64,
}

impl std::fmt::Debug for RedisStore {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.feed_task.abort();
    }
}

impl RedisStore {
    /// Connects to `settings.url` (`redis://` or `rediss://`, with password and
    /// db number as the URL gives them) and waits for the first revocation
    /// sync. Every command is bounded by `settings.timeout`; a lost connection
    /// is re-established in the background. `rediss://` trusts the system
    /// roots plus `settings.tls_ca` (see the `client` module).
    pub async fn connect(settings: &StoreSettings) -> Result<RedisStore, StoreError> {
        let url = settings.url.as_deref().ok_or_else(|| StoreError::new("backend \"redis\" needs a url"))?;
        // Errors from here on never echo the URL: it may hold a password.
        let client = client(url, settings.tls_ca.as_deref())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(400))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await.map_err(|e| {
            let hint = if untrusted_certificate(&e) {
                "; trust the CA that signed the redis server's certificate with store.tls_ca"
            } else {
                ""
            };
            StoreError::new(format!("cannot reach redis: {e}{hint}"))
        })?;
        let feed = Arc::new(Feed::new(settings.max_staleness));
        let feed_task = tokio::spawn(feed::run(feed.clone(), client.clone(), conn.clone(), settings.timeout));
        let primary =
            Arc::new(Primary { conn: RwLock::new(conn), client, config, replacing: AtomicBool::new(false) });
        let store =
            RedisStore { primary, scripts: Scripts::new(), feed, feed_task, clock_offset: AtomicI64::new(0) };
        warn_if_evicting(&mut store.conn()).await;
        if !store.feed.wait_synced(FIRST_SYNC).await {
            return Err(StoreError::new("the redis revocation feed did not sync"));
        }
        Ok(store)
    }

    /// Shifts the clock every script reads (Redis `TIME` + `secs`). Tests
    /// only, to move time without sleeping; 0 (the default) in production.
    pub fn set_clock_offset(&self, secs: i64) {
        self.clock_offset.store(secs, Ordering::SeqCst);
    }

    fn offset(&self) -> String {
        self.clock_offset.load(Ordering::SeqCst).to_string()
    }

    fn conn(&self) -> ConnectionManager {
        self.primary.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A failed command's error, as the store reports it; see [`Primary`].
    fn failed(&self, e: redis::RedisError) -> StoreError {
        if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
            self.primary.replace();
        }
        redis_err(e)
    }
}

/// The connection the store's commands go through, and what it takes to
/// open another. The connection manager reconnects by itself when the
/// connection breaks, but not when Redis answers on it as a replica: a
/// failover that demotes the old primary without closing its clients
/// (`FAILOVER`, `REPLICAOF`) would leave every write failing with READONLY
/// for as long as the TCP connection lives, while the address (a DNS name,
/// a virtual IP) already leads to the new primary. On READONLY a new
/// connection is opened in the background and replaces this one.
struct Primary {
    conn: RwLock<ConnectionManager>,
    client: Client,
    config: ConnectionManagerConfig,
    /// One replacement at a time, however many commands failed.
    replacing: AtomicBool,
}

impl Primary {
    fn replace(self: &Arc<Self>) {
        if self.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        let primary = self.clone();
        tokio::spawn(async move {
            match ConnectionManager::new_with_config(primary.client.clone(), primary.config.clone()).await {
                Ok(conn) => {
                    *primary.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
                    tracing::warn!("redis answered READONLY (a replica now): reconnected to the address");
                }
                Err(e) => {
                    tracing::warn!(error = %redis_err(e), "redis answered READONLY; reconnecting failed")
                }
            }
            primary.replacing.store(false, Ordering::Release);
        });
    }
}

/// Logs a warning when Redis may evict jwtgate's keys: under `maxmemory`
/// with an eviction policy, and every jwtgate key has a TTL, so even the
/// `volatile-*` policies take them. A revocation key is written once and
/// read only when an instance loads the set, so LRU takes it early: an
/// instance started afterwards accepts the logged-out token. A Redis that
/// refuses `CONFIG` (managed services often do) is not judged.
async fn warn_if_evicting(conn: &mut ConnectionManager) {
    let config = |key: &'static str| redis::cmd("CONFIG").arg("GET").arg(key).clone();
    let policy: redis::RedisResult<Vec<String>> = config("maxmemory-policy").query_async(conn).await;
    let limit: redis::RedisResult<Vec<String>> = config("maxmemory").query_async(conn).await;
    let (Ok([_, policy]), Ok([_, limit])) = (policy.as_deref(), limit.as_deref()) else {
        tracing::debug!("redis does not answer CONFIG GET: its eviction policy is not checked");
        return;
    };
    if let Some(warning) = eviction_risk(policy, limit) {
        tracing::warn!(policy, maxmemory = limit, "{warning}");
    }
}

/// Why a Redis with this `maxmemory-policy` and `maxmemory` may lose
/// revocations, or `None` when it never evicts (`noeviction`, or no limit).
fn eviction_risk(policy: &str, maxmemory: &str) -> Option<&'static str> {
    let unlimited = maxmemory.trim() == "0";
    (!unlimited && policy != "noeviction").then_some(
        "redis evicts keys when it reaches maxmemory: revocations and sessions can be lost \
         (an instance started later accepts a logged-out token); set maxmemory-policy noeviction, \
         or give jwtgate a Redis of its own",
    )
}

/// The client for `url`. Over TLS (`rediss://`) it trusts what an https
/// upstream trusts: the system roots plus `tls_ca` ([`crate::tls::roots_pem`]).
/// The redis crate trusts only the roots it is given once given any, so the
/// system roots are handed over too, always, so that "system roots" means
/// the same set as for upstreams.
///
/// The crate builds its rustls config per connection from the process-wide
/// default provider, which rustls picks by itself only while aws-lc-rs is the
/// one provider compiled in; installing it here keeps that true should a
/// dependency ever enable another (Err = one is installed already: fine).
fn client(url: &str, tls_ca: Option<&Path>) -> Result<Client, StoreError> {
    let info = url.into_connection_info().map_err(|_| StoreError::new("bad redis url"))?;
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Client::open(info).map_err(|_| StoreError::new("bad redis url"));
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let roots = crate::tls::roots_pem(tls_ca).map_err(|e| StoreError::new(format!("store.tls_ca: {e}")))?;
    let certs = TlsCertificates { client_tls: None, root_cert: Some(roots) };
    Client::build_with_tls(info, certs)
        .map_err(|e| StoreError::new(format!("cannot set up TLS to redis: {e}")))
}

/// Did a TLS handshake fail on the server's certificate (e.g. a private CA
/// without `tls_ca`)? The redis crate keeps the I/O error, which keeps the
/// rustls error; any other shape answers false, costing only the hint.
fn untrusted_certificate(e: &redis::RedisError) -> bool {
    type Inner = Arc<dyn std::error::Error + Send + Sync>;
    let Some(source) = std::error::Error::source(e) else { return false };
    let io = source
        .downcast_ref::<std::io::Error>()
        .or_else(|| source.downcast_ref::<Inner>().and_then(|inner| inner.downcast_ref::<std::io::Error>()));
    io.and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)))
}

fn family_key(fid: &str) -> String {
    format!("{FAMILY}{fid}")
}

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::new(format!("redis: {e}"))
}

/// The hash fields of a family; absent options are absent fields.
fn to_fields(f: &Family) -> Result<Vec<(&'static str, String)>, StoreError> {
    let mut fields = vec![
        ("sub", f.sub.clone()),
        ("auth_time", f.auth_time.to_string()),
        ("current_jti", f.current_jti.clone()),
        ("rotated", serde_json::to_string(&f.rotated).map_err(StoreError::new)?),
        ("revoked", if f.revoked { "1" } else { "0" }.to_owned()),
        ("last_used", f.last_used.to_string()),
        ("expires_at", f.expires_at.to_string()),
    ];
    if let Some(prev) = &f.prev_result {
        fields.push(("prev_result", serde_json::to_string(prev).map_err(StoreError::new)?));
    }
    if let Some(t) = f.last_rotated_at {
        fields.push(("last_rotated_at", t.to_string()));
    }
    Ok(fields)
}

fn from_fields(fid: &str, mut h: HashMap<String, String>) -> Result<Family, StoreError> {
    fn corrupt(field: &str) -> StoreError {
        StoreError::new(format!("corrupt family record: {field}"))
    }
    fn take(h: &mut HashMap<String, String>, field: &str) -> Result<String, StoreError> {
        h.remove(field).ok_or_else(|| corrupt(field))
    }
    fn int(raw: String, field: &str) -> Result<i64, StoreError> {
        raw.parse().map_err(|_| corrupt(field))
    }
    let rotated = take(&mut h, "rotated")?;
    // Lua's cjson writes an empty table as `{}`.
    let rotated: Vec<RotatedJti> = if rotated == "{}" {
        Vec::new()
    } else {
        serde_json::from_str(&rotated).map_err(|_| corrupt("rotated"))?
    };
    Ok(Family {
        fid: fid.to_owned(),
        sub: take(&mut h, "sub")?,
        auth_time: int(take(&mut h, "auth_time")?, "auth_time")?,
        current_jti: take(&mut h, "current_jti")?,
        rotated,
        prev_result: h
            .remove("prev_result")
            .map(|p| serde_json::from_str(&p).map_err(|_| corrupt("prev_result")))
            .transpose()?,
        last_rotated_at: h.remove("last_rotated_at").map(|t| int(t, "last_rotated_at")).transpose()?,
        revoked: h.remove("revoked").is_some_and(|r| r == "1"),
        last_used: int(take(&mut h, "last_used")?, "last_used")?,
        expires_at: int(take(&mut h, "expires_at")?, "expires_at")?,
    })
}

impl Store for RedisStore {
    fn start_family<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let key = family_key(&family.fid);
            let (offset, expires_at) = (self.offset(), family.expires_at.to_string());
            let fields = to_fields(family)?;
            let mut args = vec![offset.as_str(), expires_at.as_str()];
            for (name, value) in &fields {
                args.push(name);
                args.push(value);
            }
            let _: i64 = self
                .scripts
                .start
                .call(&mut self.conn(), &[&key, EXPIRY], &args)
                .await
                .map_err(|e| self.failed(e))?;
            Ok(())
        })
    }

    fn rotate<'a>(&'a self, req: &'a RotateRequest, _now: i64) -> StoreFuture<'a, RotateOutcome> {
        Box::pin(async move {
            let (key, rkey) = (family_key(&req.fid), format!("{REVOKED_FID}{}", req.fid));
            let candidate = serde_json::to_string(&req.candidate).map_err(StoreError::new)?;
            let (offset, grace, idle, kept, leeway, tokens_end) = (
                self.offset(),
                req.reuse_grace.to_string(),
                req.idle_timeout.to_string(),
                ROTATED_KEPT.to_string(),
                req.leeway.to_string(),
                req.candidate.refresh_exp.to_string(),
            );
            let args = [
                offset.as_str(),
                &req.fid,
                &req.presented_jti,
                &req.candidate.refresh_jti,
                &candidate,
                &grace,
                &idle,
                CHANNEL,
                &kept,
                &leeway,
                &tokens_end,
            ];
            let reply: Vec<String> = self
                .scripts
                .rotate
                .call(&mut self.conn(), &[&key, &rkey, PREV, EXPIRY], &args)
                .await
                .map_err(|e| self.failed(e))?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["dead"] => Ok(RotateOutcome::Dead),
                ["rotated"] => Ok(RotateOutcome::Rotated(req.candidate.clone())),
                ["replayed", pair] => Ok(RotateOutcome::Replayed(
                    serde_json::from_str(pair).map_err(|_| StoreError::new("corrupt prev_result"))?,
                )),
                ["reuse", until] => {
                    // The feed will bring it too; this instance must not wait for it.
                    self.feed.insert(Kind::Fid, &req.fid, until.parse().unwrap_or(i64::MAX));
                    Ok(RotateOutcome::ReuseDetected)
                }
                _ => Err(StoreError::new("unexpected reply from the rotate script")),
            }
        })
    }

    fn renew<'a>(
        &'a self,
        fid: &'a str,
        presented_jti: &'a str,
        idle_timeout: i64,
        _now: i64,
    ) -> StoreFuture<'a, RenewOutcome> {
        Box::pin(async move {
            let (offset, idle) = (self.offset(), idle_timeout.to_string());
            let reply: Vec<String> = self
                .scripts
                .renew
                .call(&mut self.conn(), &[&family_key(fid)], &[&offset, presented_jti, &idle])
                .await
                .map_err(|e| self.failed(e))?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["dead"] => Ok(RenewOutcome::Dead),
                ["not_current"] => Ok(RenewOutcome::NotCurrent),
                ["renewed", end] => end
                    .parse()
                    .map(|expires_at| RenewOutcome::Renewed { expires_at })
                    .map_err(|_| StoreError::new("corrupt expires_at")),
                _ => Err(StoreError::new("unexpected reply from the renew script")),
            }
        })
    }

    fn revoke_family<'a>(&'a self, fid: &'a str, until: i64, leeway: i64, _now: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (key, rkey) = (family_key(fid), format!("{REVOKED_FID}{fid}"));
            let (offset, until, leeway) = (self.offset(), until.to_string(), leeway.to_string());
            let till: i64 = self
                .scripts
                .revoke_family
                .call(
                    &mut self.conn(),
                    &[&key, &rkey, EXPIRY, PREV],
                    &[&offset, fid, &until, CHANNEL, &leeway],
                )
                .await
                .map_err(|e| self.failed(e))?;
            self.feed.insert(Kind::Fid, fid, till);
            Ok(())
        })
    }

    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, _now: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let key = format!("{REVOKED_JTI}{jti}");
            let (offset, exp_s) = (self.offset(), exp.to_string());
            let _: i64 = self
                .scripts
                .revoke_jti
                .call(&mut self.conn(), &[&key, EXPIRY], &[&offset, jti, &exp_s, CHANNEL])
                .await
                .map_err(|e| self.failed(e))?;
            self.feed.insert(Kind::Jti, jti, exp);
            Ok(())
        })
    }

    fn is_revoked<'a>(
        &'a self,
        jti: Option<&'a str>,
        fid: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        // Local: no round trip on the access path (see `feed`).
        let answer = self.feed.check().map(|()| self.feed.contains(jti, fid, now));
        Box::pin(async move { answer })
    }

    fn family<'a>(&'a self, fid: &'a str) -> StoreFuture<'a, Option<Family>> {
        Box::pin(async move {
            let fields: HashMap<String, String> =
                self.conn().hgetall(family_key(fid)).await.map_err(|e| self.failed(e))?;
            if fields.is_empty() {
                return Ok(None);
            }
            from_fields(fid, fields).map(Some)
        })
    }

    fn purge<'a>(&'a self, now: i64, reuse_grace: i64) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            self.feed.prune(now);
            let (offset, grace, limit) = (self.offset(), reuse_grace.to_string(), PURGE_BATCH.to_string());
            let mut dropped = 0;
            loop {
                let reply: Vec<i64> = self
                    .scripts
                    .purge
                    .call(&mut self.conn(), &[EXPIRY, PREV], &[&offset, &grace, &limit, FAMILY, REVOKED_FID])
                    .await
                    .map_err(|e| self.failed(e))?;
                let [n, keys, fids] = reply[..] else {
                    return Err(StoreError::new("unexpected purge reply"));
                };
                dropped += usize::try_from(n).unwrap_or(0);
                if keys < PURGE_BATCH as i64 && fids < PURGE_BATCH as i64 {
                    return Ok(dropped);
                }
            }
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let _: String =
                redis::cmd("PING").query_async(&mut self.conn()).await.map_err(|e| self.failed(e))?;
            // Ready means able to answer `is_revoked` too.
            self.feed.check()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::eviction_risk;

    #[test]
    fn only_a_redis_that_never_evicts_is_judged_safe() {
        assert_eq!(eviction_risk("noeviction", "4000000"), None);
        assert_eq!(eviction_risk("volatile-lru", "0"), None, "no maxmemory: nothing is evicted");
        for policy in ["volatile-lru", "allkeys-lru", "volatile-ttl", "allkeys-random"] {
            assert!(eviction_risk(policy, "4000000").is_some(), "{policy}");
        }
    }
}
