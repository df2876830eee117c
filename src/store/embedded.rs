//! The default store: a redb file. Every rotation and revocation commits with
//! `Durability::Immediate` (one fsync), so it survives `kill -9`.
//!
//! Revocations are also mirrored in memory, so the access path (one
//! `is_revoked` per request) is a hash lookup, not a read transaction plus
//! a JSON parse. The mirror is loaded at open and updated by the thread that
//! wrote, right after its commit (even a failed one, which redb says may
//! still have reached the disk): a caller that timed out or was dropped
//! cannot leave the file revoked and the mirror not. Updates only ever
//! lengthen a revocation, so two writers' updates landing out of order agree
//! with the file. redb locks its file to one process, so nothing else can
//! write behind it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::family::{decide, renew, Family, RenewOutcome, RotateOutcome, RotateRequest};
use super::memory::tombstone;
use super::{Store, StoreError, StoreFuture};

/// fid → Family as JSON.
const FAMILIES: TableDefinition<&str, &[u8]> = TableDefinition::new("families");
/// jti → exp.
const REVOKED_JTIS: TableDefinition<&str, i64> = TableDefinition::new("revoked_jtis");

pub struct EmbeddedStore {
    db: Arc<Database>,
    revoked: Arc<RwLock<Revoked>>,
}

/// What the file says is revoked, for the access path.
#[derive(Debug, Default)]
struct Revoked {
    /// jti → exp.
    jtis: HashMap<String, i64>,
    /// fid → the family's `expires_at` (when purge drops it).
    families: HashMap<String, i64>,
}

impl Revoked {
    /// Revoked until `until` at least (never shortened: see the module doc).
    fn family(&mut self, fid: String, until: i64) {
        super::revoke_until(&mut self.families, fid, until);
    }

    fn jti(&mut self, jti: String, exp: i64) {
        super::revoke_until(&mut self.jtis, jti, exp);
    }

    /// Forgets what a purge at `now` drops from the file: a revocation holds
    /// through its last second.
    fn purge(&mut self, now: i64) {
        self.jtis.retain(|_, exp| *exp >= now);
        self.families.retain(|_, expires_at| *expires_at >= now);
    }

    fn load(db: &Database) -> Result<Revoked, StoreError> {
        let txn = db.begin_read().map_err(StoreError::new)?;
        let mut revoked = Revoked::default();
        for entry in txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?.iter().map_err(StoreError::new)? {
            let (jti, exp) = entry.map_err(StoreError::new)?;
            revoked.jtis.insert(jti.value().to_owned(), exp.value());
        }
        for entry in txn.open_table(FAMILIES).map_err(StoreError::new)?.iter().map_err(StoreError::new)? {
            let (_, raw) = entry.map_err(StoreError::new)?;
            let family = parse(raw.value())?;
            if family.revoked {
                revoked.families.insert(family.fid, family.expires_at);
            }
        }
        Ok(revoked)
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

/// What an operator can do about a store file that did not open.
fn open_hint(e: &redb::DatabaseError) -> &'static str {
    use std::io::ErrorKind;
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            "; another process (a second jwtgate?) has it open: stop that one, or give each gateway \
             its own store.path (several gateways share one store through backend = \"redis\")"
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => match io.kind() {
            ErrorKind::NotFound => "; create its directory, or point store.path into one that exists",
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                "; let jwtgate's user write it and its directory, or point store.path somewhere it may"
            }
            _ => "",
        },
        _ => "",
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the file and its tables.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::new(format!("store.path {}: {e}{}", path.display(), open_hint(&e))))?;
        let txn = db.begin_write().map_err(StoreError::new)?;
        txn.open_table(FAMILIES).map_err(StoreError::new)?;
        txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?;
        txn.commit().map_err(StoreError::new)?;
        let revoked = Revoked::load(&db)?;
        Ok(EmbeddedStore { db: Arc::new(db), revoked: Arc::new(RwLock::new(revoked)) })
    }

    /// Runs `f` in one durable write transaction on the blocking pool; `f`
    /// returns whether to commit (false = abort, no fsync). After the commit,
    /// `mirror` brings the revocation mirror up to date on the same thread.
    /// (After the `await` it would be skipped whenever the caller gave up
    /// first, the store `timeout` or a dropped request, while the commit went
    /// through: the file would say revoked, and `is_revoked`, which reads only
    /// the mirror, would not, until a restart.) It runs after a failed commit
    /// too, since redb cannot say whether that reached the disk: `mirror` only
    /// adds revocations, and one too many fails closed.
    async fn write<T, F, M>(&self, f: F, mirror: M) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<(T, bool), StoreError> + Send + 'static,
        M: FnOnce(&T, &mut Revoked) + Send + 'static,
    {
        let db = self.db.clone();
        let revoked = self.revoked.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(StoreError::new)?;
            txn.set_durability(Durability::Immediate).map_err(StoreError::new)?;
            let (value, commit) = f(&txn)?;
            if commit {
                let committed = txn.commit();
                // A panic elsewhere cannot leave the maps half-updated: every
                // update is one insert.
                mirror(&value, &mut revoked.write().unwrap_or_else(|p| p.into_inner()));
                committed.map_err(StoreError::new)?;
            } else {
                txn.abort().map_err(StoreError::new)?;
            }
            Ok(value)
        })
        .await
        .map_err(StoreError::new)?
    }

    fn read_family(&self, fid: &str) -> Result<Option<Family>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::new)?;
        let table = txn.open_table(FAMILIES).map_err(StoreError::new)?;
        let Some(raw) = table.get(fid).map_err(StoreError::new)? else { return Ok(None) };
        parse(raw.value()).map(Some)
    }
}

/// For writes that revoke nothing.
fn no_mirror<T>(_: &T, _: &mut Revoked) {}

fn parse(raw: &[u8]) -> Result<Family, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::new(format!("corrupt family record: {e}")))
}

fn put(txn: &redb::WriteTransaction, family: &Family) -> Result<(), StoreError> {
    let json = serde_json::to_vec(family).map_err(StoreError::new)?;
    let mut table = txn.open_table(FAMILIES).map_err(StoreError::new)?;
    table.insert(family.fid.as_str(), json.as_slice()).map_err(StoreError::new)?;
    Ok(())
}

fn get(txn: &redb::WriteTransaction, fid: &str) -> Result<Option<Family>, StoreError> {
    let table = txn.open_table(FAMILIES).map_err(StoreError::new)?;
    let raw = table.get(fid).map_err(StoreError::new)?;
    raw.map(|r| parse(r.value())).transpose()
}

impl Store for EmbeddedStore {
    fn start_family<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        let family = family.clone();
        Box::pin(self.write(move |txn| put(txn, &family).map(|()| ((), true)), no_mirror))
    }

    fn rotate<'a>(&'a self, req: &'a RotateRequest, now: i64) -> StoreFuture<'a, RotateOutcome> {
        let owned = req.clone();
        let fid = req.fid.clone();
        Box::pin(async move {
            let write = move |txn: &redb::WriteTransaction| {
                let Some(mut family) = get(txn, &owned.fid)? else {
                    return Ok(((RotateOutcome::Dead, 0), false));
                };
                let outcome = decide(&mut family, &owned, now);
                // A replay only bumps last_used: not worth an fsync per racing request.
                let commit = matches!(outcome, RotateOutcome::Rotated(_) | RotateOutcome::ReuseDetected);
                if commit {
                    put(txn, &family)?;
                }
                Ok(((outcome, family.expires_at), commit))
            };
            let mirror = move |(outcome, expires_at): &(RotateOutcome, i64), r: &mut Revoked| {
                if *outcome == RotateOutcome::ReuseDetected {
                    r.family(fid, *expires_at);
                }
            };
            Ok(self.write(write, mirror).await?.0)
        })
    }

    /// Commits (one fsync) only when `last_used` moves: repeated renewals
    /// within the same second write nothing.
    fn renew<'a>(
        &'a self,
        fid: &'a str,
        presented_jti: &'a str,
        idle_timeout: i64,
        now: i64,
    ) -> StoreFuture<'a, RenewOutcome> {
        let (fid, presented) = (fid.to_owned(), presented_jti.to_owned());
        let write = move |txn: &redb::WriteTransaction| {
            let Some(mut family) = get(txn, &fid)? else { return Ok((RenewOutcome::Dead, false)) };
            let used_before = family.last_used;
            let outcome = renew(&mut family, &presented, idle_timeout, now);
            let commit = matches!(outcome, RenewOutcome::Renewed { .. }) && family.last_used != used_before;
            if commit {
                put(txn, &family)?;
            }
            Ok((outcome, commit))
        };
        Box::pin(self.write(write, no_mirror))
    }

    /// `leeway` needs nothing here, as in memory: the gateway purges at
    /// `now - MAX_LEEWAY`.
    fn revoke_family<'a>(&'a self, fid: &'a str, until: i64, _leeway: i64, now: i64) -> StoreFuture<'a, ()> {
        let owned = fid.to_owned();
        let mirrored = fid.to_owned();
        let write = move |txn: &redb::WriteTransaction| {
            let mut family = get(txn, &owned)?.unwrap_or_else(|| tombstone(&owned, until, now));
            family.revoked = true;
            family.prev_result = None;
            // Kept (and so revoked) until `until` at least, as on Redis: the
            // tokens it was asked to stop may outlive the family's own end
            // (by the leeway).
            family.expires_at = family.expires_at.max(until);
            put(txn, &family).map(|()| (family.expires_at, true))
        };
        let mirror = move |expires_at: &i64, r: &mut Revoked| r.family(mirrored, *expires_at);
        Box::pin(async move { self.write(write, mirror).await.map(|_| ()) })
    }

    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, _now: i64) -> StoreFuture<'a, ()> {
        let owned = jti.to_owned();
        let mirrored = jti.to_owned();
        let write = move |txn: &redb::WriteTransaction| {
            let mut table = txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?;
            table.insert(owned.as_str(), exp).map_err(StoreError::new)?;
            Ok(((), true))
        };
        Box::pin(self.write(write, move |_, r| r.jti(mirrored, exp)))
    }

    fn is_revoked<'a>(
        &'a self,
        jti: Option<&'a str>,
        fid: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
            let jti_revoked = jti.and_then(|j| revoked.jtis.get(j)).is_some_and(|&exp| exp >= now);
            // A family stays revoked until purged, like in the file.
            Ok(jti_revoked || fid.is_some_and(|f| revoked.families.contains_key(f)))
        })
    }

    fn family<'a>(&'a self, fid: &'a str) -> StoreFuture<'a, Option<Family>> {
        Box::pin(async move { self.read_family(fid) })
    }

    fn purge<'a>(&'a self, now: i64, reuse_grace: i64) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            // The scan reads a snapshot, so rotations and logins go on beside
            // it; only what it found to drop or trim is written, and nothing
            // at all (no fsync) when it found nothing.
            let db = self.db.clone();
            let stale = tokio::task::spawn_blocking(move || stale(&db, now, reuse_grace))
                .await
                .map_err(StoreError::new)??;
            // In batches, each its own transaction: one writer at a time, so a
            // rotation waits for at most one batch, not for the whole purge.
            let mut dropped = 0;
            for batch in stale.batches(PURGE_BATCH) {
                let write = move |txn: &redb::WriteTransaction| purge(txn, &batch, now, reuse_grace);
                dropped += self.write(write, no_mirror).await?;
            }
            // Once, not per batch: each pass holds the lock `is_revoked`
            // waits on. Skipped when the caller gives up first, it only
            // leaves expired revocations for the next purge.
            self.revoked.write().unwrap_or_else(|p| p.into_inner()).purge(now);
            Ok(dropped)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.db.begin_read().map(|_| ()).map_err(StoreError::new) })
    }
}

/// What a purge at `now` has to touch, found in a read snapshot.
#[derive(Debug, Default)]
struct Stale {
    /// Revoked jtis past their `exp`.
    jtis: Vec<String>,
    /// Families past their `expires_at`, or holding a `prev_result` past
    /// `reuse_grace`.
    families: Vec<String>,
}

/// Records a purge transaction touches at most.
const PURGE_BATCH: usize = 512;

impl Stale {
    /// `self` cut into parts of at most `size` records each; none when empty.
    fn batches(self, size: usize) -> Vec<Stale> {
        let ids =
            self.jtis.into_iter().map(|j| (true, j)).chain(self.families.into_iter().map(|f| (false, f)));
        let mut out: Vec<Stale> = Vec::new();
        for (i, (jti, id)) in ids.enumerate() {
            if i % size == 0 {
                out.push(Stale::default());
            }
            let batch = out.last_mut().expect("pushed above");
            if jti {
                batch.jtis.push(id);
            } else {
                batch.families.push(id);
            }
        }
        out
    }
}

fn stale(db: &Database, now: i64, reuse_grace: i64) -> Result<Stale, StoreError> {
    let txn = db.begin_read().map_err(StoreError::new)?;
    let mut found = Stale::default();
    for entry in txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?.iter().map_err(StoreError::new)? {
        let (jti, exp) = entry.map_err(StoreError::new)?;
        if exp.value() < now {
            found.jtis.push(jti.value().to_owned());
        }
    }
    for entry in txn.open_table(FAMILIES).map_err(StoreError::new)?.iter().map_err(StoreError::new)? {
        let (fid, raw) = entry.map_err(StoreError::new)?;
        let family = parse(raw.value())?;
        if family.expires_at < now || family.prev_result_expired(now, reuse_grace) {
            found.families.push(fid.value().to_owned());
        }
    }
    Ok(found)
}

/// Drops the expired revocations and families `stale` found, and trims the
/// stale `prev_result`s, each judged again on what the transaction reads (a
/// rotation may have changed it since the scan).
fn purge(
    txn: &redb::WriteTransaction,
    stale: &Stale,
    now: i64,
    reuse_grace: i64,
) -> Result<(usize, bool), StoreError> {
    let mut dropped = 0;
    {
        let mut jtis = txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?;
        for jti in &stale.jtis {
            let expired =
                jtis.get(jti.as_str()).map_err(StoreError::new)?.is_some_and(|exp| exp.value() < now);
            if expired {
                jtis.remove(jti.as_str()).map_err(StoreError::new)?;
                dropped += 1;
            }
        }
    }
    for fid in &stale.families {
        let Some(mut family) = get(txn, fid)? else { continue };
        if family.expires_at < now {
            let mut table = txn.open_table(FAMILIES).map_err(StoreError::new)?;
            table.remove(fid.as_str()).map_err(StoreError::new)?;
            dropped += 1;
        } else if family.prev_result_expired(now, reuse_grace) {
            family.prev_result = None;
            put(txn, &family)?;
        }
    }
    Ok((dropped, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenPair;

    const T0: i64 = 1_800_000_000;

    fn open() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    fn with_prev(fid: &str, rotated_at: i64, lifetime: i64) -> Family {
        let mut f = Family::new(fid, "alice", "r1", T0, lifetime);
        let pair = TokenPair {
            access_token: "a".into(),
            access_exp: T0 + 900,
            refresh_token: "r".into(),
            refresh_jti: "r1".into(),
            refresh_exp: T0 + lifetime,
        };
        f.prev_result = Some(pair);
        f.last_rotated_at = Some(rotated_at);
        f
    }

    #[test]
    fn mirror_updates_only_lengthen_a_revocation() {
        // Two writers' updates may land out of order; the later end wins.
        let mut r = Revoked::default();
        r.family("f".into(), 200);
        r.family("f".into(), 100);
        r.jti("j".into(), 50);
        r.jti("j".into(), 40);
        assert_eq!((r.families["f"], r.jtis["j"]), (200, 50));
    }

    /// The batch judges each record again as it reads it in its own
    /// transaction: what changed after the scan is not dropped or trimmed.
    #[tokio::test]
    async fn purge_rejudges_what_changed_after_its_scan() {
        let (_dir, store) = open();
        store.start_family(&with_prev("ending", T0, 100)).await.unwrap();
        store.start_family(&with_prev("rotating", T0, 10_000)).await.unwrap();
        let (now, grace) = (T0 + 200, 30);
        let found = stale(&store.db, now, grace).unwrap();
        assert_eq!(found.families.len(), 2, "past its end; prev_result past the grace");
        // After the scan: a logout keeps `ending` revoked past `now`, and a
        // new rotation gives `rotating` a fresh prev_result.
        store.revoke_family("ending", now + 50, 0, now).await.unwrap();
        store.start_family(&with_prev("rotating", now - 1, 10_000)).await.unwrap();
        for batch in found.batches(PURGE_BATCH) {
            store.write(move |txn| purge(txn, &batch, now, grace), no_mirror).await.unwrap();
        }
        assert!(store.family("ending").await.unwrap().is_some_and(|f| f.revoked), "kept for the logout");
        assert!(store.family("rotating").await.unwrap().unwrap().prev_result.is_some(), "the new one stays");
    }

    /// More stale records than one batch: every batch runs, and a family
    /// revoked through `now` survives it, in the file and in the mirror.
    #[tokio::test]
    async fn purge_runs_every_batch_and_keeps_a_revocation_through_its_last_second() {
        let (_dir, store) = open();
        let n = PURGE_BATCH * 2 + 7;
        let write = move |txn: &redb::WriteTransaction| {
            for i in 0..n {
                put(txn, &Family::new(&format!("f{i}"), "alice", "r0", T0, 10))?;
            }
            Ok(((), true))
        };
        store.write(write, no_mirror).await.unwrap();
        store.revoke_family("edge", T0 + 100, 0, T0).await.unwrap();
        assert_eq!(store.purge(T0 + 100, 30).await.unwrap(), n);
        assert!(store.family(&format!("f{}", n - 1)).await.unwrap().is_none(), "the last batch ran");
        assert!(store.is_revoked(None, Some("edge"), T0 + 100).await.unwrap(), "revoked through T0 + 100");
        assert!(store.family("edge").await.unwrap().is_some());
        store.purge(T0 + 101, 30).await.unwrap();
        assert!(!store.is_revoked(None, Some("edge"), T0 + 101).await.unwrap());
        assert!(store.family("edge").await.unwrap().is_none());
    }
}
