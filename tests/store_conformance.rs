//! One conformance suite for every store backend (DESIGN.md §10). Each backend
//! module below runs the same scenarios; time is passed in, never slept.
//!
//! Memory and embedded decide with the `now` they are given. Redis decides
//! with its own clock (`TIME`, so instances agree), which the suite moves to
//! the same instant through [`Subject::at`] before each call.

#[path = "common/redis.rs"]
mod redis_server;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use jwtgate::config::{StoreBackend, StoreSettings};
use jwtgate::store::{Family, RedisStore, RenewOutcome, RotateOutcome, RotateRequest, Store, TokenPair};

const GRACE: i64 = 30;
const LEEWAY: i64 = 5;
const IDLE: i64 = 7 * 86400;
const MAX_SESSION: i64 = 30 * 86400;
const T0: i64 = 1_800_000_000;

fn pair(jti: &str) -> TokenPair {
    TokenPair {
        access_token: format!("access-{jti}"),
        access_exp: T0 + 900,
        refresh_token: format!("refresh-{jti}"),
        refresh_jti: jti.into(),
        refresh_exp: T0 + MAX_SESSION,
    }
}

fn req(fid: &str, presented: &str, candidate: &str) -> RotateRequest {
    RotateRequest {
        fid: fid.into(),
        presented_jti: presented.into(),
        candidate: pair(candidate),
        reuse_grace: GRACE,
        idle_timeout: IDLE,
        leeway: LEEWAY,
    }
}

/// A backend under test and how to set its clock.
pub struct Subject {
    store: Arc<dyn Store>,
    set_clock: Box<dyn Fn(i64) + Send + Sync>,
    /// Whatever must live as long as the store (a redis-server).
    _guard: Option<Box<dyn Any + Send>>,
}

impl Subject {
    /// A backend that takes time from the `now` it is given.
    fn caller_clock(store: Arc<dyn Store>) -> Subject {
        Subject { store, set_clock: Box::new(|_| {}), _guard: None }
    }

    /// `t`, after moving the backend's own clock (if it has one) to `t`.
    fn at(&self, t: i64) -> i64 {
        (self.set_clock)(t);
        t
    }
}

async fn login(store: &dyn Store, fid: &str) {
    store.start_family(&Family::new(fid, "alice", "r0", T0, MAX_SESSION)).await.unwrap();
}

pub async fn rotation_rules(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "f1").await;
    assert_eq!(store.family("f1").await.unwrap().unwrap().sub, "alice");
    assert_eq!(
        store.rotate(&req("f1", "r0", "r1"), s.at(T0 + 10)).await.unwrap(),
        RotateOutcome::Rotated(pair("r1"))
    );
    assert_eq!(
        store.rotate(&req("f1", "r0", "rX"), s.at(T0 + 20)).await.unwrap(),
        RotateOutcome::Replayed(pair("r1"))
    );
    assert_eq!(store.family("f1").await.unwrap().unwrap().current_jti, "r1", "a replay never forks");
    assert!(!store.is_revoked(None, Some("f1"), s.at(T0 + 20)).await.unwrap());
    assert_eq!(
        store.rotate(&req("f1", "r0", "rY"), s.at(T0 + 10 + GRACE)).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
    assert!(store.is_revoked(None, Some("f1"), s.at(T0 + 41)).await.unwrap(), "reuse revokes the family");
    assert_eq!(store.rotate(&req("f1", "r1", "r2"), s.at(T0 + 42)).await.unwrap(), RotateOutcome::Dead);
}

pub async fn older_jti_and_unknown_family(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "f2").await;
    store.rotate(&req("f2", "r0", "r1"), s.at(T0 + 1)).await.unwrap();
    store.rotate(&req("f2", "r1", "r2"), s.at(T0 + 2)).await.unwrap();
    // r0 was rotated away 1 s before r1: still inside the grace → current pair.
    assert_eq!(
        store.rotate(&req("f2", "r0", "rZ"), s.at(T0 + 3)).await.unwrap(),
        RotateOutcome::Replayed(pair("r2"))
    );
    assert_eq!(
        store.rotate(&req("f2", "bogus", "rZ"), s.at(T0 + 4)).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
    assert_eq!(store.rotate(&req("nope", "r0", "r1"), s.at(T0)).await.unwrap(), RotateOutcome::Dead);
    // An older jti's grace runs from its own rotation, not the latest one:
    // r0 rotated away at T0 + 1 is reuse at T0 + 1 + GRACE, though the
    // family's answer (from T0 + 11) is still kept.
    s.at(T0);
    login(&**store, "f2b").await;
    store.rotate(&req("f2b", "r0", "r1"), s.at(T0 + 1)).await.unwrap();
    store.rotate(&req("f2b", "r1", "r2"), s.at(T0 + 11)).await.unwrap();
    assert_eq!(
        store.rotate(&req("f2b", "r0", "rZ"), s.at(T0 + 1 + GRACE)).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
}

pub async fn family_limits(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "idle").await;
    assert_eq!(
        store.rotate(&req("idle", "r0", "r1"), s.at(T0 + IDLE + 1)).await.unwrap(),
        RotateOutcome::Dead
    );
    // max_session alone (idle_timeout out of the way): alive through its
    // last second before expires_at, dead at it.
    let unhurried = |fid: &str, presented: &str, candidate: &str| {
        let mut r = req(fid, presented, candidate);
        r.idle_timeout = 2 * MAX_SESSION;
        r
    };
    s.at(T0);
    login(&**store, "old").await;
    assert_eq!(
        store.rotate(&unhurried("old", "r0", "r1"), s.at(T0 + MAX_SESSION)).await.unwrap(),
        RotateOutcome::Dead
    );
    assert_eq!(store.family("old").await.unwrap().unwrap().current_jti, "r0", "a dead family is not rotated");
    s.at(T0);
    login(&**store, "nearly-old").await;
    assert!(matches!(
        store.rotate(&unhurried("nearly-old", "r0", "r1"), s.at(T0 + MAX_SESSION - 1)).await.unwrap(),
        RotateOutcome::Rotated(_)
    ));
    // Idle for exactly idle_timeout: still alive (one second more is dead, above).
    s.at(T0);
    login(&**store, "lazy").await;
    assert_eq!(
        store.rotate(&req("lazy", "r0", "r1"), s.at(T0 + IDLE)).await.unwrap(),
        RotateOutcome::Rotated(pair("r1"))
    );
}

/// Each rotation is a use: a family used more often than idle_timeout lives
/// on, however long ago its login was.
pub async fn activity_keeps_a_family_alive(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "busy").await;
    let t1 = T0 + IDLE - 10;
    assert_eq!(
        store.rotate(&req("busy", "r0", "r1"), s.at(t1)).await.unwrap(),
        RotateOutcome::Rotated(pair("r1"))
    );
    // Idle since the login: 2 × IDLE − 15 s; since the rotation: IDLE − 5 s.
    let t2 = t1 + IDLE - 5;
    assert_eq!(
        store.rotate(&req("busy", "r1", "r2"), s.at(t2)).await.unwrap(),
        RotateOutcome::Rotated(pair("r2"))
    );
    assert_eq!(
        store.rotate(&req("busy", "r2", "r3"), s.at(t2 + IDLE)).await.unwrap(),
        RotateOutcome::Rotated(pair("r3"))
    );
}

/// An explicit refresh that keeps its refresh token (`rotate_refresh =
/// false`) renews the family: the current jti is a use, as a rotation is;
/// a jti rotated away is left to the rotation rules; a dead family stays dead.
pub async fn renewal_is_a_use(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "kept").await;
    let end = RenewOutcome::Renewed { expires_at: T0 + MAX_SESSION };
    let t1 = T0 + IDLE - 10;
    assert_eq!(store.renew("kept", "r0", IDLE, s.at(t1)).await.unwrap(), end);
    assert_eq!(store.family("kept").await.unwrap().unwrap().last_used, t1);
    // IDLE - 5 after the renewal, 2 × IDLE - 15 after the login.
    let t2 = t1 + IDLE - 5;
    assert_eq!(store.renew("kept", "r0", IDLE, s.at(t2)).await.unwrap(), end);
    assert_eq!(
        store.rotate(&req("kept", "r0", "r1"), s.at(t2 + 10)).await.unwrap(),
        RotateOutcome::Rotated(pair("r1"))
    );
    assert_eq!(store.renew("kept", "r0", IDLE, s.at(t2 + 11)).await.unwrap(), RenewOutcome::NotCurrent);
    assert_eq!(store.family("kept").await.unwrap().unwrap().last_used, t2 + 10, "not current: no use");
    assert_eq!(store.renew("kept", "r1", IDLE, s.at(t2 + 10 + IDLE + 1)).await.unwrap(), RenewOutcome::Dead);
    assert_eq!(store.renew("never", "r0", IDLE, s.at(T0)).await.unwrap(), RenewOutcome::Dead);
    s.at(T0);
    login(&**store, "gone").await;
    store.revoke_family("gone", T0 + 100, LEEWAY, s.at(T0 + 1)).await.unwrap();
    assert_eq!(store.renew("gone", "r0", IDLE, s.at(T0 + 2)).await.unwrap(), RenewOutcome::Dead);
}

/// A replay inside the grace is a use too, in memory and Redis. The embedded
/// store does not write it (an fsync per racing request is not worth the at
/// most `reuse_grace` it adds to the idle time), so it is not in the
/// conformance set.
pub async fn a_replay_counts_as_a_use(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "busy").await;
    store.rotate(&req("busy", "r0", "r1"), s.at(T0 + 10)).await.unwrap();
    let replay = T0 + 10 + GRACE - 1;
    assert_eq!(
        store.rotate(&req("busy", "r0", "rX"), s.at(replay)).await.unwrap(),
        RotateOutcome::Replayed(pair("r1"))
    );
    assert_eq!(
        store.rotate(&req("busy", "r1", "r2"), s.at(replay + IDLE)).await.unwrap(),
        RotateOutcome::Rotated(pair("r2")),
        "IDLE after the replay, IDLE + GRACE - 1 after the rotation"
    );
}

#[tokio::test]
async fn memory_counts_a_replay_as_a_use() {
    a_replay_counts_as_a_use(Subject::caller_clock(Arc::new(jwtgate::store::MemoryStore::new()))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counts_a_replay_as_a_use() {
    a_replay_counts_as_a_use(redis().await).await
}

/// A family remembers the last 8 jtis rotated away (DESIGN.md §7), no more:
/// inside the grace the 8th one back is still a replay, the 9th is reuse.
/// A longer list would serve the current pair to tokens long rotated away;
/// a shorter one would revoke families of users whose tabs raced.
pub async fn only_the_last_eight_rotations_are_remembered(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "many").await;
    for i in 0..10 {
        let (presented, candidate) = (format!("r{i}"), format!("r{}", i + 1));
        assert_eq!(
            store.rotate(&req("many", &presented, &candidate), s.at(T0 + 1 + i)).await.unwrap(),
            RotateOutcome::Rotated(pair(&candidate))
        );
    }
    let family = store.family("many").await.unwrap().unwrap();
    let kept: Vec<&str> = family.rotated.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(kept, ["r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"], "the oldest two are dropped");
    // r2 was rotated away at T0 + 3, r1 at T0 + 2: both well inside the grace.
    assert_eq!(
        store.rotate(&req("many", "r2", "rX"), s.at(T0 + 11)).await.unwrap(),
        RotateOutcome::Replayed(pair("r10"))
    );
    assert_eq!(
        store.rotate(&req("many", "r1", "rY"), s.at(T0 + 12)).await.unwrap(),
        RotateOutcome::ReuseDetected,
        "a jti no longer remembered is reuse, grace or not"
    );
}

/// A purge keeps a rotation's answer for the whole grace: a racing request
/// that arrives late in it still gets the pair.
pub async fn purge_waits_for_the_grace(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "slow").await;
    store.rotate(&req("slow", "r0", "r1"), s.at(T0 + 1)).await.unwrap();
    store.purge(s.at(T0 + GRACE), GRACE).await.unwrap();
    assert!(store.family("slow").await.unwrap().unwrap().prev_result.is_some(), "one second of grace left");
    assert_eq!(
        store.rotate(&req("slow", "r0", "rX"), s.at(T0 + GRACE)).await.unwrap(),
        RotateOutcome::Replayed(pair("r1"))
    );
    store.purge(s.at(T0 + 1 + GRACE), GRACE).await.unwrap();
    assert!(store.family("slow").await.unwrap().unwrap().prev_result.is_none());
}

pub async fn revocations(s: Subject) {
    let store = &s.store;
    store.revoke_jti("j1", T0 + 100, s.at(T0)).await.unwrap();
    assert!(store.is_revoked(Some("j1"), None, s.at(T0 + 50)).await.unwrap());
    assert!(!store.is_revoked(Some("j2"), None, s.at(T0 + 50)).await.unwrap());
    assert!(
        !store.is_revoked(None, Some("unknown"), s.at(T0)).await.unwrap(),
        "unknown family is not revoked"
    );
    store.revoke_family("never-seen", T0 + 500, LEEWAY, s.at(T0)).await.unwrap();
    assert!(store.is_revoked(None, Some("never-seen"), s.at(T0 + 1)).await.unwrap());
    s.at(T0);
    login(&**store, "f3").await;
    store.revoke_family("f3", T0 + 500, LEEWAY, s.at(T0)).await.unwrap();
    assert!(store.is_revoked(Some("other"), Some("f3"), s.at(T0 + 1)).await.unwrap());
    assert_eq!(store.rotate(&req("f3", "r0", "r1"), s.at(T0 + 2)).await.unwrap(), RotateOutcome::Dead);
    // Asked to outlast the family (its tokens are accepted for the leeway
    // past their exp), the revocation does, purge or not.
    s.at(T0);
    login(&**store, "f4").await;
    store.revoke_family("f4", T0 + MAX_SESSION + 100, LEEWAY, s.at(T0 + 1)).await.unwrap();
    store.purge(s.at(T0 + MAX_SESSION + 1), GRACE).await.unwrap();
    assert!(store.is_revoked(None, Some("f4"), s.at(T0 + MAX_SESSION + 50)).await.unwrap());
    // Through its last second: a token of exp + leeway = until is still
    // accepted at `until`, the instant the gateway's purge is given.
    store.revoke_family("edge", T0 + MAX_SESSION + 200, LEEWAY, s.at(T0 + MAX_SESSION + 100)).await.unwrap();
    store.purge(s.at(T0 + MAX_SESSION + 200), GRACE).await.unwrap();
    assert!(store.is_revoked(None, Some("edge"), s.at(T0 + MAX_SESSION + 200)).await.unwrap());
    // A jti revocation alike.
    let t = T0 + MAX_SESSION + 300;
    store.revoke_jti("jedge", t + 100, s.at(t)).await.unwrap();
    store.purge(s.at(t + 100), GRACE).await.unwrap();
    assert!(store.is_revoked(Some("jedge"), None, s.at(t + 100)).await.unwrap());
}

/// A revocation that ends sooner than the family never shortens it (the
/// family's tokens are accepted until its end plus the leeway), a second
/// revocation with a later end lengthens the first, and the record says
/// revoked.
pub async fn revocations_are_never_shortened(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "live").await;
    login(&**store, "out").await;
    store.revoke_family("out", T0 + 100, LEEWAY, s.at(T0 + 1)).await.unwrap();
    assert!(store.family("out").await.unwrap().unwrap().revoked);
    assert!(!store.family("live").await.unwrap().unwrap().revoked);
    store.purge(s.at(T0 + 1000), GRACE).await.unwrap();
    assert!(store.is_revoked(None, Some("out"), s.at(T0 + 1000)).await.unwrap(), "kept to the family's end");
    assert!(store.is_revoked(None, Some("out"), s.at(T0 + MAX_SESSION + LEEWAY)).await.unwrap());
    store.revoke_family("twice", T0 + 100, LEEWAY, s.at(T0)).await.unwrap();
    store.revoke_family("twice", T0 + 1000, LEEWAY, s.at(T0 + 1)).await.unwrap();
    assert!(store.is_revoked(None, Some("twice"), s.at(T0 + 500)).await.unwrap(), "the later end wins");
    store.revoke_jti("j-twice", T0 + 100, s.at(T0)).await.unwrap();
    store.revoke_jti("j-twice", T0 + 1000, s.at(T0 + 1)).await.unwrap();
    assert!(store.is_revoked(Some("j-twice"), None, s.at(T0 + 500)).await.unwrap(), "the later end wins");
    // The other order: a second revocation with an earlier end (a logout
    // after a revocation that outlasts the family) does not shorten the first.
    let far = T0 + 10 * MAX_SESSION;
    s.at(T0);
    login(&**store, "kept").await;
    store.revoke_family("kept", far, LEEWAY, s.at(T0 + 1)).await.unwrap();
    store.revoke_family("kept", T0 + 100, LEEWAY, s.at(T0 + 2)).await.unwrap();
    store.revoke_jti("j-kept", far, s.at(T0 + 1)).await.unwrap();
    store.revoke_jti("j-kept", T0 + 100, s.at(T0 + 2)).await.unwrap();
    store.purge(s.at(T0 + 2 * MAX_SESSION), GRACE).await.unwrap();
    assert!(
        store.is_revoked(None, Some("kept"), s.at(T0 + 2 * MAX_SESSION)).await.unwrap(),
        "never shortened"
    );
    assert!(
        store.is_revoked(Some("j-kept"), None, s.at(T0 + 2 * MAX_SESSION)).await.unwrap(),
        "never shortened"
    );
}

/// A reload raised max_session: the rotation's tokens end after the family
/// began to. The family then lasts as long as they do, and so does a reuse
/// revocation of it; a rotation whose tokens end sooner never shortens it.
pub async fn rotation_past_the_family_end(s: Subject) {
    let store = &s.store;
    let later = T0 + MAX_SESSION + 3600;
    let with_end = |presented: &str, candidate: &str, end: i64| {
        let mut r = req("long", presented, candidate);
        r.candidate.refresh_exp = end;
        r.idle_timeout = 2 * MAX_SESSION;
        r
    };
    s.at(T0);
    login(&**store, "long").await;
    store.rotate(&with_end("r0", "r1", later), s.at(T0 + 10)).await.unwrap();
    assert_eq!(store.family("long").await.unwrap().unwrap().expires_at, later);
    store.rotate(&with_end("r1", "r2", T0 + 100), s.at(T0 + 20)).await.unwrap();
    assert_eq!(store.family("long").await.unwrap().unwrap().expires_at, later, "never shortened");
    assert!(matches!(
        store.rotate(&with_end("r2", "r3", later), s.at(T0 + MAX_SESSION + 10)).await.unwrap(),
        RotateOutcome::Rotated(_)
    ));
    store.purge(s.at(T0 + MAX_SESSION + 15), GRACE).await.unwrap();
    assert!(store.family("long").await.unwrap().is_some(), "purge keeps it past the end it began with");
    assert_eq!(
        store.rotate(&with_end("r1", "rX", later), s.at(T0 + MAX_SESSION + 20)).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
    // The purge the gateway runs at `now - leeway` keeps it through the end
    // of the tokens the family issued, plus the leeway they are accepted for.
    store.purge(s.at(later), GRACE).await.unwrap();
    assert!(store.is_revoked(None, Some("long"), s.at(later + LEEWAY)).await.unwrap());
}

pub async fn purge(s: Subject) {
    let store = &s.store;
    store.revoke_jti("short", T0 + 10, s.at(T0)).await.unwrap();
    s.at(T0);
    login(&**store, "p1").await;
    store.rotate(&req("p1", "r0", "r1"), s.at(T0 + 1)).await.unwrap();
    let dropped = store.purge(s.at(T0 + 1 + GRACE), GRACE).await.unwrap();
    assert_eq!(dropped, 1, "the expired jti revocation is dropped, the live family kept");
    let fam = store.family("p1").await.unwrap().unwrap();
    assert!(fam.prev_result.is_none(), "prev_result erased after the grace");
    assert!(!store.is_revoked(Some("short"), None, s.at(T0 + 11)).await.unwrap());
    store.revoke_family("gone-later", T0 + 20, LEEWAY, s.at(T0 + 11)).await.unwrap();
    assert!(store.is_revoked(None, Some("gone-later"), s.at(T0 + 12)).await.unwrap());
    let dropped = store.purge(s.at(T0 + MAX_SESSION + 1), GRACE).await.unwrap();
    assert_eq!(dropped, 2, "the family past max_session and the revoked one past its until are dropped");
    assert!(store.family("p1").await.unwrap().is_none());
    assert!(store.family("gone-later").await.unwrap().is_none());
}

/// 50 racing refreshes of the same token: exactly one rotation, and all 50
/// answers carry the same pair.
pub async fn concurrent_rotation_is_single(s: Subject) {
    let store = &s.store;
    s.at(T0);
    login(&**store, "race").await;
    let now = s.at(T0 + 5);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.rotate(&req("race", "r0", &format!("c{i}")), now).await.unwrap()
        }));
    }
    let mut rotated = 0;
    let mut pairs = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            RotateOutcome::Rotated(p) => {
                rotated += 1;
                pairs.push(p)
            }
            RotateOutcome::Replayed(p) => pairs.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1);
    assert!(pairs.windows(2).all(|w| w[0] == w[1]), "every racer got the same pair");
    assert_eq!(store.family("race").await.unwrap().unwrap().current_jti, pairs[0].refresh_jti);
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rotation_rules() {
                super::rotation_rules($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn older_jti_and_unknown_family() {
                super::older_jti_and_unknown_family($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn family_limits() {
                super::family_limits($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn revocations() {
                super::revocations($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rotation_past_the_family_end() {
                super::rotation_past_the_family_end($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn purge() {
                super::purge($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn activity_keeps_a_family_alive() {
                super::activity_keeps_a_family_alive($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn renewal_is_a_use() {
                super::renewal_is_a_use($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn purge_waits_for_the_grace() {
                super::purge_waits_for_the_grace($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn revocations_are_never_shortened() {
                super::revocations_are_never_shortened($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn only_the_last_eight_rotations_are_remembered() {
                super::only_the_last_eight_rotations_are_remembered($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_rotation_is_single() {
                super::concurrent_rotation_is_single($make).await
            }
        }
    };
}

fn embedded() -> Subject {
    let dir = tempfile::tempdir().unwrap().keep();
    Subject::caller_clock(Arc::new(jwtgate::store::EmbeddedStore::open(&dir.join("s.redb")).unwrap()))
}

/// A private redis-server per test (so `purge` counts only this test's
/// records); the script clock is moved with the store's clock offset.
async fn redis() -> Subject {
    let server = redis_server::RedisServer::start();
    let store = Arc::new(RedisStore::connect(&redis_settings(&server)).await.unwrap());
    let clock = store.clone();
    Subject {
        store,
        set_clock: Box::new(move |t| clock.set_clock_offset(redis_server::clock_offset_to(t))),
        _guard: Some(Box::new(server)),
    }
}

fn redis_settings(server: &redis_server::RedisServer) -> StoreSettings {
    StoreSettings {
        backend: StoreBackend::Redis,
        path: Default::default(),
        url: Some(server.url()),
        tls_ca: None,
        timeout: Duration::from_secs(2),
        max_staleness: Duration::from_secs(5),
    }
}

/// Moves `store`'s script clock to `t`; returns `t`.
fn at(store: &RedisStore, t: i64) -> i64 {
    store.set_clock_offset(redis_server::clock_offset_to(t));
    t
}

/// A redis-server and a store on it, its clock at T0, with family `f` logged in.
async fn redis_with_a_family() -> (redis_server::RedisServer, RedisStore) {
    let server = redis_server::RedisServer::start();
    let first = RedisStore::connect(&redis_settings(&server)).await.unwrap();
    at(&first, T0);
    login(&first, "f").await;
    (server, first)
}

/// Whether an instance that (re)loads the revocations from Redis at `t`
/// finds family `f` revoked.
async fn revoked_for_a_later_instance(server: &redis_server::RedisServer, t: i64) -> bool {
    let later = RedisStore::connect(&redis_settings(server)).await.unwrap();
    later.is_revoked(None, Some("f"), at(&later, t)).await.unwrap()
}

/// A logged-out family's tokens are accepted for the leeway after its end,
/// so logout asks for the revocation to outlast the family by as much. An
/// instance that (re)loads the revocations from Redis after a purge at the
/// family's end must still find it.
#[tokio::test]
async fn redis_keeps_a_family_revocation_past_the_family_for_instances_loading_later() {
    let (server, first) = redis_with_a_family().await;
    first.revoke_family("f", T0 + MAX_SESSION + 5, LEEWAY, at(&first, T0)).await.unwrap();
    first.purge(at(&first, T0 + MAX_SESSION + 2), GRACE).await.unwrap();
    assert!(revoked_for_a_later_instance(&server, T0 + MAX_SESSION + 3).await);
}

/// A reuse revocation too: the family's last access tokens are accepted for
/// the leeway past its end.
#[tokio::test]
async fn redis_keeps_a_reuse_revocation_for_the_leeway_past_the_family() {
    let (server, first) = redis_with_a_family().await;
    first.rotate(&req("f", "r0", "r1"), at(&first, T0 + 1)).await.unwrap();
    let reuse = first.rotate(&req("f", "r0", "rX"), at(&first, T0 + 1 + GRACE)).await.unwrap();
    assert_eq!(reuse, RotateOutcome::ReuseDetected);
    // The gateway's purge at the revocation's last second keeps it.
    first.purge(at(&first, T0 + MAX_SESSION + LEEWAY), GRACE).await.unwrap();
    assert!(revoked_for_a_later_instance(&server, T0 + MAX_SESSION + LEEWAY).await);
}

/// A logout's `until` may end before the family's own end (a reload raised
/// max_session, a rotation moved the end, a reload lowered it again): the
/// family's last tokens are still accepted for the leeway past that end, so
/// the revocation lasts that long for instances loading it later.
#[tokio::test]
async fn redis_keeps_a_logout_revocation_for_the_leeway_past_the_family_end() {
    let (server, first) = redis_with_a_family().await;
    let end = T0 + MAX_SESSION + 3600;
    let mut longer = req("f", "r0", "r1");
    longer.candidate.refresh_exp = end;
    first.rotate(&longer, at(&first, T0 + 1)).await.unwrap();
    first.revoke_family("f", T0 + MAX_SESSION, LEEWAY, at(&first, T0 + 2)).await.unwrap();
    first.purge(at(&first, end + LEEWAY), GRACE).await.unwrap();
    assert!(revoked_for_a_later_instance(&server, end + LEEWAY).await);
}

/// Redis drops a family by its key's TTL too: a rotation that lengthens the
/// family lengthens the TTL, or the family would vanish at the end it began
/// with.
#[tokio::test]
async fn redis_lengthens_the_family_key_ttl_with_the_family() {
    let (server, first) = redis_with_a_family().await;
    let mut longer = req("f", "r0", "r1");
    longer.candidate.refresh_exp = T0 + 2 * MAX_SESSION;
    first.rotate(&longer, at(&first, T0 + 1)).await.unwrap();
    let mut conn =
        ::redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = ::redis::cmd("TTL").arg("jwtgate:family:f").query_async(&mut conn).await.unwrap();
    assert!(ttl > MAX_SESSION, "the key outlives the end the family began with: TTL {ttl}");
}

/// Every key Redis holds for a session ends by itself: a new family's key at
/// the family's end, a revoked `jti`'s after the token's `exp`, an unseen
/// family's tombstone after its revocation. Without a TTL
/// they would stay until a purge, or for ever.
#[tokio::test]
async fn redis_keys_expire_from_login_and_from_a_jti_revocation() {
    let (server, first) = redis_with_a_family().await;
    let mut conn =
        ::redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = ::redis::cmd("TTL").arg("jwtgate:family:f").query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= MAX_SESSION, "a new family's key expires at its end: TTL {ttl}");
    first.revoke_jti("gone", T0 + 100, at(&first, T0)).await.unwrap();
    let ttl: i64 = ::redis::cmd("TTL").arg("jwtgate:revoked:jti:gone").query_async(&mut conn).await.unwrap();
    assert!((1..=101).contains(&ttl), "a revoked jti's key expires after its exp: TTL {ttl}");
    // A family never seen here (another instance's, or purged): its
    // tombstone and its revocation index key expire with the revocation.
    first.revoke_family("unseen", T0 + 200, LEEWAY, at(&first, T0)).await.unwrap();
    for key in ["jwtgate:family:unseen", "jwtgate:revoked:fid:unseen"] {
        let ttl: i64 = ::redis::cmd("TTL").arg(key).query_async(&mut conn).await.unwrap();
        assert!((1..=201).contains(&ttl), "{key} expires after the revocation: TTL {ttl}");
    }
}

/// The trim happens inside the rotate script, on what Redis stores: the
/// family hash's `rotated` field holds the last 8 jtis however many rotations
/// there were, so a long-lived, busy session never grows its record.
#[tokio::test]
async fn redis_stores_only_the_last_eight_rotated_jtis() {
    let (server, first) = redis_with_a_family().await;
    let mut conn =
        ::redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for i in 0..20 {
        let (presented, candidate) = (format!("r{i}"), format!("r{}", i + 1));
        let outcome = first.rotate(&req("f", &presented, &candidate), at(&first, T0 + 1 + i)).await.unwrap();
        assert_eq!(outcome, RotateOutcome::Rotated(pair(&candidate)));
        let raw: String =
            ::redis::cmd("HGET").arg("jwtgate:family:f").arg("rotated").query_async(&mut conn).await.unwrap();
        let stored: Vec<serde_json::Value> = serde_json::from_str(&raw).unwrap();
        // r0 ..= r{i} rotated away so far; the newest 8 of them stay.
        let expected: Vec<String> = ((i - 7).max(0)..=i).map(|j| format!("r{j}")).collect();
        let jtis: Vec<&str> = stored.iter().map(|r| r["jti"].as_str().unwrap()).collect();
        assert_eq!(jtis, expected, "after {} rotations Redis holds {raw}", i + 1);
    }
}

/// More than two of the redis purge's batches (`PURGE_BATCH`, 500 records
/// per script call, so that one call never blocks Redis for long).
const MANY: i64 = 1100;

/// A purge goes on until a batch comes back short, for the dead records and
/// for the stale `prev_result`s alike (each phase below fills only one of
/// the two, so the loop must watch both counts): stopping after one batch
/// would leave the rest to pile up from purge to purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_purge_works_through_more_than_one_batch() {
    let server = redis_server::RedisServer::start();
    let store = RedisStore::connect(&redis_settings(&server)).await.unwrap();
    let mut conn =
        ::redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let fids: Vec<String> = (0..MANY).map(|i| format!("f{i}")).collect();
    // Stale prev_results only: every family is alive, none of them is dropped.
    at(&store, T0);
    for fid in &fids {
        login(&store, fid).await;
    }
    for fid in &fids {
        store.rotate(&req(fid, "r0", "r1"), at(&store, T0 + 1)).await.unwrap();
    }
    // Well past the grace: `at` can land a second late (a second boundary
    // passing before Redis reads TIME), and over this many calls one will.
    assert_eq!(store.purge(at(&store, T0 + 10 + GRACE), GRACE).await.unwrap(), 0);
    for fid in &fids {
        assert!(
            store.family(fid).await.unwrap().unwrap().prev_result.is_none(),
            "{fid} kept its prev_result"
        );
    }
    let indexed: i64 = ::redis::cmd("ZCARD").arg("jwtgate:prev").query_async(&mut conn).await.unwrap();
    assert_eq!(indexed, 0, "prev_results left in the purge index");
    // Dead records only: MANY jti revocations past their end.
    for i in 0..MANY {
        store.revoke_jti(&format!("j{i}"), T0 + 100, at(&store, T0)).await.unwrap();
    }
    assert_eq!(store.purge(at(&store, T0 + 200), GRACE).await.unwrap(), MANY as usize);
    let left: Vec<String> =
        ::redis::cmd("KEYS").arg("jwtgate:revoked:jti:*").query_async(&mut conn).await.unwrap();
    assert!(left.is_empty(), "{} expired revocations survived the purge", left.len());
    let dead: i64 = ::redis::cmd("ZCOUNT")
        .arg("jwtgate:expiry")
        .arg("-inf")
        .arg(T0 + 200)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead, 0, "dead records left in the purge index");
}

conformance!(memory, Subject::caller_clock(Arc::new(jwtgate::store::MemoryStore::new())));
conformance!(embedded, embedded());
conformance!(redis, redis().await);

/// Polls `f` once and drops it, as the store timeout drops a call it gave
/// up on; whether it was still pending then. (A zero `tokio::time::timeout`
/// would not do: its timer fires on the next millisecond tick, by which time
/// the write may be done.)
async fn gave_up<T>(f: impl std::future::Future<Output = T>) -> bool {
    let mut f = std::pin::pin!(f);
    futures_util::poll!(f.as_mut()).is_pending()
}

/// A store call the gateway gave up on (its `timeout`, a dropped request)
/// still commits on the blocking pool; the revocation mirror, which the
/// access path reads, must learn of it all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_revocations_whose_caller_gave_up_still_reach_the_access_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = jwtgate::store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
    login(&store, "reused").await;
    login(&store, "logged-out").await;
    store.rotate(&req("reused", "r0", "r1"), T0 + 1).await.unwrap();
    assert!(gave_up(store.rotate(&req("reused", "r0", "rX"), T0 + 100)).await, "reuse, given up");
    assert!(gave_up(store.revoke_family("logged-out", T0 + 500, LEEWAY, T0 + 100)).await);
    assert!(gave_up(store.revoke_jti("j1", T0 + 900, T0 + 100)).await);
    let started = std::time::Instant::now();
    loop {
        let file = store.family("reused").await.unwrap().unwrap().revoked
            && store.family("logged-out").await.unwrap().unwrap().revoked;
        let mirror = store.is_revoked(None, Some("reused"), T0 + 101).await.unwrap()
            && store.is_revoked(None, Some("logged-out"), T0 + 101).await.unwrap()
            && store.is_revoked(Some("j1"), None, T0 + 101).await.unwrap();
        if file && mirror {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "file revoked: {file}, access path: {mirror}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn embedded_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let store = jwtgate::store::EmbeddedStore::open(&path).unwrap();
        login(&store, "durable").await;
        store.rotate(&req("durable", "r0", "r1"), T0 + 1).await.unwrap();
        store.revoke_jti("gone", T0 + 100, T0).await.unwrap();
    }
    let store = jwtgate::store::EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.family("durable").await.unwrap().unwrap().current_jti, "r1");
    assert!(store.is_revoked(Some("gone"), None, T0 + 2).await.unwrap());
    assert_eq!(
        store.rotate(&req("durable", "r0", "x"), T0 + 60).await.unwrap(),
        RotateOutcome::ReuseDetected
    );
    store.revoke_family("logged-out", T0 + 500, LEEWAY, T0 + 61).await.unwrap();
    drop(store);
    // The access path reads revocations from memory: they must be reloaded from the file.
    let store = jwtgate::store::EmbeddedStore::open(&path).unwrap();
    assert!(store.is_revoked(None, Some("durable"), T0 + 62).await.unwrap(), "reuse revocation reloaded");
    assert!(store.is_revoked(None, Some("logged-out"), T0 + 62).await.unwrap(), "logout reloaded");
    assert!(store.is_revoked(Some("gone"), None, T0 + 62).await.unwrap());
    assert!(!store.is_revoked(Some("other"), Some("other"), T0 + 62).await.unwrap());
    // The in-memory mirror forgets what purge drops from the file (no leak).
    store.purge(T0 + 501, GRACE).await.unwrap();
    assert!(!store.is_revoked(None, Some("logged-out"), T0 + 502).await.unwrap(), "mirror purged");
    assert!(!store.is_revoked(Some("gone"), None, T0 + 502).await.unwrap());
}

/// A jti revocation (a logout's access token) reaches an instance that is
/// running, through the feed, and one that starts later, from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_jti_revocations_reach_running_and_later_instances() {
    let server = redis_server::RedisServer::start();
    let first = RedisStore::connect(&redis_settings(&server)).await.unwrap();
    let running = RedisStore::connect(&redis_settings(&server)).await.unwrap();
    first.revoke_jti("j-out", T0 + 900, at(&first, T0)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !running.is_revoked(Some("j-out"), None, at(&running, T0 + 1)).await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "the running instance never learnt of the revocation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let later = RedisStore::connect(&redis_settings(&server)).await.unwrap();
    assert!(later.is_revoked(Some("j-out"), None, at(&later, T0 + 1)).await.unwrap());
    assert!(!later.is_revoked(Some("j-other"), None, at(&later, T0 + 1)).await.unwrap());
}

/// A family revocation that outlasts the family, then a logout with an
/// earlier end (and a jti revoked twice alike): Redis keeps the later end, for this instance and for one that
/// loads the revocations afterwards (it used to keep the last one written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_shortens_a_family_revocation() {
    let (server, first) = redis_with_a_family().await;
    let far = T0 + 10 * MAX_SESSION;
    first.revoke_family("f", far, LEEWAY, at(&first, T0 + 1)).await.unwrap();
    first.revoke_family("f", T0 + 100, LEEWAY, at(&first, T0 + 2)).await.unwrap();
    first.revoke_jti("j", far, at(&first, T0 + 1)).await.unwrap();
    first.revoke_jti("j", T0 + 100, at(&first, T0 + 2)).await.unwrap();
    first.purge(at(&first, T0 + 2 * MAX_SESSION), GRACE).await.unwrap();
    assert!(first.is_revoked(None, Some("f"), at(&first, T0 + 2 * MAX_SESSION)).await.unwrap());
    assert!(revoked_for_a_later_instance(&server, T0 + 2 * MAX_SESSION).await);
    let later = RedisStore::connect(&redis_settings(&server)).await.unwrap();
    assert!(
        later.is_revoked(Some("j"), None, at(&later, T0 + 2 * MAX_SESSION)).await.unwrap(),
        "the jti too"
    );
}

/// A TCP forwarder whose target for new connections can be switched, as a
/// DNS name or a virtual IP moves at a failover; open connections stay.
async fn switchable_proxy(target: Arc<std::sync::Mutex<u16>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = *target.lock().unwrap();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    port
}

/// A failover that demotes the old primary without closing its clients
/// (`REPLICAOF`, Redis's `FAILOVER`) answers every write on the old
/// connection with READONLY, while the address leads to the new primary.
/// The store opens a new connection and writes again: it used to fail every
/// login, rotation and logout until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_writes_again_after_a_failover_that_kept_the_old_connection() {
    let old = redis_server::RedisServer::start();
    let new = redis_server::RedisServer::start();
    let target = Arc::new(std::sync::Mutex::new(old.port));
    let proxy = switchable_proxy(target.clone()).await;
    let mut settings = redis_settings(&old);
    settings.url = Some(format!("redis://127.0.0.1:{proxy}/0"));
    let store = RedisStore::connect(&settings).await.unwrap();
    login(&store, "before").await;

    let mut to_old = connection_to(&old).await;
    let _: String =
        ::redis::cmd("REPLICAOF").arg("127.0.0.1").arg(new.port).query_async(&mut to_old).await.unwrap();
    *target.lock().unwrap() = new.port;

    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    let written = loop {
        match store.start_family(&Family::new("after", "alice", "r0", T0, MAX_SESSION)).await {
            Ok(()) => break true,
            Err(e) if started.elapsed() < Duration::from_secs(5) => failures.push(e.reason),
            Err(_) => break false,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(written, "still failing 5 s after the failover: {failures:?}");
    assert!(failures.iter().any(|r| r.contains("read only")), "no READONLY seen: {failures:?}");
    let on_new: bool = ::redis::cmd("EXISTS")
        .arg("jwtgate:family:after")
        .query_async(&mut connection_to(&new).await)
        .await
        .unwrap();
    assert!(on_new, "written to the new primary");
}

async fn connection_to(server: &redis_server::RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// A revocation key whose value is not a number (written by hand or by
/// another tool) used to fail every load of the revocation set: no instance
/// could start. It now loads, and its id stays revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_loads_past_a_revocation_key_without_a_number_and_keeps_it_revoked() {
    let server = redis_server::RedisServer::start();
    let mut conn = connection_to(&server).await;
    let _: () = ::redis::cmd("SET")
        .arg("jwtgate:revoked:jti:by-hand")
        .arg("forever")
        .query_async(&mut conn)
        .await
        .unwrap();
    let store =
        RedisStore::connect(&redis_settings(&server)).await.expect("one odd key must not stop the load");
    assert!(store.is_revoked(Some("by-hand"), None, T0 + MAX_SESSION).await.unwrap());
    assert!(!store.is_revoked(Some("other"), None, T0).await.unwrap());
}

/// `max_staleness` bounds how long a frozen feed is trusted even when the
/// store's `timeout` is longer: a PING used to be given the whole `timeout`
/// (3 s here), so the instance answered from its set for 3 s, not 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fails_closed_on_a_frozen_feed_within_max_staleness_whatever_the_timeout() {
    let server = redis_server::RedisServer::start();
    let mut settings = redis_settings(&server);
    (settings.timeout, settings.max_staleness) = (Duration::from_secs(3), Duration::from_secs(1));
    let store = RedisStore::connect(&settings).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // a heartbeat: a recent proof of life
    server.freeze(true);
    let frozen = std::time::Instant::now();
    while store.is_revoked(Some("x"), None, T0).await.is_ok() && frozen.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trusted = frozen.elapsed();
    server.freeze(false);
    // Due by 1 s after the last proof of life (at most a 250 ms heartbeat
    // before the freeze); slack for a loaded machine.
    assert!(
        trusted <= Duration::from_millis(1500),
        "a frozen feed trusted for {trusted:?}, max_staleness 1s"
    );
}
