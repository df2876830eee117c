//! The revocation feed: every instance keeps the revoked jtis and families in
//! memory, so `is_revoked` on the access path never leaves the process.
//!
//! The set is filled by a SCAN of `jwtgate:revoked:*` and kept current by a
//! subscription to [`CHANNEL`]. Order matters: subscribe first, then scan, so a
//! revocation published during the scan is never missed (applying one twice is
//! harmless). A PING on the subscription connection every heartbeat proves it
//! is alive (a frozen Redis or a dead network path does not close the socket).
//!
//! Staleness: while the subscription is live the set is complete. A frozen
//! connection is noticed within one heartbeat plus one PING timeout
//! ([`Feed::ping_limit`]: `timeout`, cut so that the two stay inside
//! `max_staleness`). When it is
//! lost, answers come from the set as it was for at most `max_staleness` past
//! the last proof of life; after that [`Feed::check`] fails and the gateway
//! answers 503 until the feed has resubscribed AND rescanned. Resync is a
//! union: a revocation this instance knows stays known even if Redis (without
//! persistence) forgot it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::{AsyncCommands, Client};
use tokio::sync::watch;

use super::scripts::{CHANNEL, REVOKED_FID, REVOKED_JTI, REVOKED_MATCH};
use crate::store::StoreError;

/// Retry delays while Redis is unreachable: short, so recovery is prompt.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(400);
/// Keys per SCAN step (and per MGET).
const SCAN_COUNT: usize = 1000;

/// id → until (Unix seconds): revoked while `until >= now`.
#[derive(Debug, Default)]
struct Revoked {
    jtis: HashMap<String, i64>,
    fids: HashMap<String, i64>,
}

/// What kind of id a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jti,
    Fid,
}

/// The local set and the feed's health, shared by the store and its task.
#[derive(Debug)]
pub struct Feed {
    revoked: RwLock<Revoked>,
    /// The subscription is up and the set has been rescanned since.
    live: AtomicBool,
    /// Milliseconds since `epoch` of the last proof the set was complete.
    alive_ms: AtomicU64,
    epoch: Instant,
    max_staleness: Duration,
    /// true once the first sync finished (the store waits for it at connect).
    synced: watch::Sender<bool>,
}

impl Feed {
    pub fn new(max_staleness: Duration) -> Feed {
        Feed {
            revoked: RwLock::default(),
            live: AtomicBool::new(false),
            alive_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            max_staleness,
            synced: watch::channel(false).0,
        }
    }

    /// Ok while the set can be trusted: the feed is live, or was lost less
    /// than `max_staleness` ago. Never synced → Err.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.live.load(Ordering::Acquire) {
            return Ok(());
        }
        let synced_once = *self.synced.borrow();
        let since = self.elapsed_ms().saturating_sub(self.alive_ms.load(Ordering::Acquire));
        if synced_once && Duration::from_millis(since) <= self.max_staleness {
            return Ok(());
        }
        Err(StoreError::new("the redis revocation feed is stale (max_staleness exceeded)"))
    }

    /// Is `jti` or `fid` in the local set? Callers [`Feed::check`] first.
    pub fn contains(&self, jti: Option<&str>, fid: Option<&str>, now: i64) -> bool {
        let set = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let jti_revoked = jti.and_then(|j| set.jtis.get(j)).is_some_and(|&until| until >= now);
        jti_revoked || fid.is_some_and(|f| set.fids.contains_key(f))
    }

    /// Records a revocation (this instance's own, or one from the feed). One
    /// already held with a later end keeps it: revocations are never
    /// shortened, whatever order their messages arrive in.
    pub fn insert(&self, kind: Kind, id: &str, until: i64) {
        let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        let map = match kind {
            Kind::Jti => &mut set.jtis,
            Kind::Fid => &mut set.fids,
        };
        crate::store::revoke_until(map, id.to_owned(), until);
    }

    /// Forgets revocations whose tokens are all expired by `now`.
    pub fn prune(&self, now: i64) -> usize {
        let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        let before = set.jtis.len() + set.fids.len();
        set.jtis.retain(|_, until| *until >= now);
        set.fids.retain(|_, until| *until >= now);
        before - set.jtis.len() - set.fids.len()
    }

    /// Waits (up to `limit`) for the first complete sync.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| *s)).await.is_ok_and(|r| r.is_ok())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn proof_of_life(&self) {
        self.alive_ms.store(self.elapsed_ms(), Ordering::Release);
    }

    fn set_live(&self) {
        self.proof_of_life();
        self.live.store(true, Ordering::Release);
        self.synced.send_replace(true);
    }

    fn set_lost(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// How long a PING may take before the subscription counts as lost: the
    /// store's `timeout` (at least a heartbeat), but never so long that the
    /// set is trusted past `max_staleness`. A PING starts a heartbeat after
    /// the last proof of life, so it may take `max_staleness` less one
    /// heartbeat; a `timeout` above that once kept a frozen feed trusted for
    /// `timeout` plus a heartbeat, whatever `max_staleness` said.
    fn ping_limit(&self, timeout: Duration) -> Duration {
        let beat = self.heartbeat();
        timeout.max(beat).min(self.max_staleness.saturating_sub(beat).max(beat))
    }

    /// How often the subscription is pinged: often enough that a silent
    /// failure is noticed well inside `max_staleness`.
    fn heartbeat(&self) -> Duration {
        (self.max_staleness / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Parses one feed message: `jti <until> <id>` or `fid <until> <id>`.
pub fn parse_message(payload: &str) -> Option<(Kind, i64, &str)> {
    let mut parts = payload.splitn(3, ' ');
    let kind = match parts.next()? {
        "jti" => Kind::Jti,
        "fid" => Kind::Fid,
        _ => return None,
    };
    let until = parts.next()?.parse().ok()?;
    Some((kind, until, parts.next()?))
}

/// The feed task: (re)subscribe, rescan, follow, and start over whenever the
/// subscription is lost. Runs until the store drops (and aborts it).
pub async fn run(feed: Arc<Feed>, client: Client, conn: ConnectionManager, timeout: Duration) {
    let mut delay = RETRY_MIN;
    let mut failures = 0u32;
    loop {
        match subscribe_and_sync(&feed, &client, conn.clone(), timeout).await {
            Ok((sink, stream)) => {
                (delay, failures) = (RETRY_MIN, 0);
                tracing::info!("redis revocation feed synced");
                follow(&feed, sink, stream, timeout).await;
                feed.set_lost();
                tracing::warn!("redis revocation feed lost; resubscribing");
            }
            Err(e) => {
                // One warning per outage; the retries (every ≤ 400 ms) at debug.
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "redis revocation feed: cannot sync; retrying");
                } else {
                    tracing::debug!(error = %e, failures, "redis revocation feed: still cannot sync");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn subscribe_and_sync(
    feed: &Feed,
    client: &Client,
    mut conn: ConnectionManager,
    timeout: Duration,
) -> Result<(PubSubSink, PubSubStream), StoreError> {
    let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| StoreError::new("timed out connecting"))?
        .map_err(StoreError::new)?;
    let (mut sink, stream) = pubsub.split();
    tokio::time::timeout(timeout, sink.subscribe(CHANNEL))
        .await
        .map_err(|_| StoreError::new("timed out subscribing"))?
        .map_err(StoreError::new)?;
    let loaded = load(feed, &mut conn).await?;
    feed.set_live();
    tracing::debug!(loaded, "revocations loaded");
    Ok((sink, stream))
}

/// SCANs every revocation key into the local set; returns how many.
async fn load(feed: &Feed, conn: &mut ConnectionManager) -> Result<usize, StoreError> {
    let mut cursor: u64 = 0;
    let mut loaded = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(REVOKED_MATCH)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await
            .map_err(StoreError::new)?;
        if !keys.is_empty() {
            // A key may expire between SCAN and MGET: its value is then nil.
            let values: Vec<Option<String>> = conn.mget(&keys).await.map_err(StoreError::new)?;
            for (key, value) in keys.iter().zip(values) {
                let Some(value) = value else { continue };
                let until = revoked_until(key, &value);
                if let Some(jti) = key.strip_prefix(REVOKED_JTI) {
                    feed.insert(Kind::Jti, jti, until);
                } else if let Some(fid) = key.strip_prefix(REVOKED_FID) {
                    feed.insert(Kind::Fid, fid, until);
                }
                loaded += 1;
            }
        }
        if next == 0 {
            return Ok(loaded);
        }
        cursor = next;
    }
}

/// The end a revocation key holds. One that is not a number (written by
/// hand, or by another tool) keeps its id revoked for good, with a warning:
/// failing the whole load for it would keep every instance from starting,
/// and skipping it would let a revoked token through.
fn revoked_until(key: &str, value: &str) -> i64 {
    value.trim().parse().unwrap_or_else(|_| {
        tracing::warn!(key, "redis revocation key holds no end time; its id stays revoked");
        i64::MAX
    })
}

/// Applies messages until the subscription ends or stops answering pings.
async fn follow(feed: &Feed, mut sink: PubSubSink, mut stream: PubSubStream, timeout: Duration) {
    let beat = feed.heartbeat();
    let ping_limit = feed.ping_limit(timeout);
    let mut tick = tokio::time::interval(beat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Ok(payload) = msg.get_payload::<String>() else { continue };
                match parse_message(&payload) {
                    Some((kind, until, id)) => feed.insert(kind, id, until),
                    None => tracing::warn!("redis revocation feed: unreadable message ignored"),
                }
            }
            _ = tick.tick() => {
                match tokio::time::timeout(ping_limit, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => feed.proof_of_life(),
                    _ => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_ids_may_hold_spaces() {
        assert_eq!(parse_message("jti 1800000000 abc"), Some((Kind::Jti, 1_800_000_000, "abc")));
        assert_eq!(parse_message("fid 5 a b"), Some((Kind::Fid, 5, "a b")));
        assert_eq!(parse_message("xyz 5 a"), None);
        assert_eq!(parse_message("jti soon a"), None);
        assert_eq!(parse_message("jti 5"), None);
    }

    #[test]
    fn a_ping_never_outlasts_max_staleness() {
        let ms = Duration::from_millis;
        let feed = Feed::new(ms(1000)); // heartbeat 250 ms
        assert_eq!(feed.ping_limit(ms(3000)), ms(750), "a long timeout is cut to the staleness left");
        assert_eq!(feed.ping_limit(ms(250)), ms(250));
        assert_eq!(feed.ping_limit(ms(10)), ms(250), "at least a heartbeat");
        assert_eq!(Feed::new(ms(5000)).ping_limit(ms(250)), ms(1000), "the defaults: unchanged");
        assert_eq!(Feed::new(ms(0)).ping_limit(ms(250)), ms(50), "0s: the shortest heartbeat");
    }

    #[test]
    fn a_revocation_key_without_a_number_stays_revoked() {
        assert_eq!(revoked_until("jwtgate:revoked:jti:a", "1800000000"), 1_800_000_000);
        assert_eq!(revoked_until("jwtgate:revoked:jti:a", "forever"), i64::MAX);
        assert_eq!(revoked_until("jwtgate:revoked:fid:b", ""), i64::MAX);
    }

    #[test]
    fn never_synced_fails_closed_then_staleness_is_bounded() {
        let feed = Feed::new(Duration::from_millis(0));
        assert!(feed.check().is_err(), "no sync yet");
        feed.set_live();
        assert!(feed.check().is_ok());
        feed.set_lost();
        std::thread::sleep(Duration::from_millis(2));
        assert!(feed.check().is_err(), "lost longer than max_staleness (0s)");

        let feed = Feed::new(Duration::from_secs(60));
        feed.set_live();
        feed.set_lost();
        assert!(feed.check().is_ok(), "lost, but inside max_staleness");
    }

    #[test]
    fn jtis_expire_fids_stay_until_pruned() {
        let feed = Feed::new(Duration::from_secs(5));
        feed.insert(Kind::Jti, "j", 100);
        feed.insert(Kind::Fid, "f", 100);
        assert!(feed.contains(Some("j"), None, 100));
        assert!(!feed.contains(Some("j"), None, 101));
        assert!(feed.contains(None, Some("f"), 500));
        assert_eq!(feed.prune(101), 2);
        assert!(!feed.contains(None, Some("f"), 101));
    }
}
