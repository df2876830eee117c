//! The default store: a redb file. Every rotation and revocation commits with
//! `Durability::Immediate` (one fsync), so it survives `kill -9`.
//!
//! Revocations are also mirrored in memory, so the access path (one
//! `is_revoked` per request) is a hash lookup, not a read transaction plus
//! a JSON parse. The mirror is loaded at open and updated after each commit;
//! redb locks its file to one process, so nothing else can write behind it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::family::{decide, Family, RotateOutcome, RotateRequest};
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

impl EmbeddedStore {
    /// Opens (or creates) the file and its tables.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::new(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(StoreError::new)?;
        txn.open_table(FAMILIES).map_err(StoreError::new)?;
        txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?;
        txn.commit().map_err(StoreError::new)?;
        let revoked = Revoked::load(&db)?;
        Ok(EmbeddedStore { db: Arc::new(db), revoked: Arc::new(RwLock::new(revoked)) })
    }

    /// Updates the revocation mirror; called only after a commit succeeded.
    fn mirror(&self, f: impl FnOnce(&mut Revoked)) {
        // A panic elsewhere cannot leave the maps half-updated: every update is one insert or retain.
        f(&mut self.revoked.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// Runs `f` in one durable write transaction on the blocking pool; `f`
    /// returns whether to commit (false = abort, no fsync).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<(T, bool), StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(StoreError::new)?;
            txn.set_durability(Durability::Immediate).map_err(StoreError::new)?;
            let (value, commit) = f(&txn)?;
            if commit {
                txn.commit().map_err(StoreError::new)?;
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
        Box::pin(self.write(move |txn| put(txn, &family).map(|()| ((), true))))
    }

    fn rotate<'a>(&'a self, req: &'a RotateRequest, now: i64) -> StoreFuture<'a, RotateOutcome> {
        let owned = req.clone();
        Box::pin(async move {
            let (outcome, expires_at) = self
                .write(move |txn| {
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
                })
                .await?;
            if outcome == RotateOutcome::ReuseDetected {
                self.mirror(|r| {
                    r.families.insert(req.fid.clone(), expires_at);
                });
            }
            Ok(outcome)
        })
    }

    fn revoke_family<'a>(&'a self, fid: &'a str, until: i64, now: i64) -> StoreFuture<'a, ()> {
        let owned = fid.to_owned();
        Box::pin(async move {
            let expires_at = self
                .write(move |txn| {
                    let mut family = get(txn, &owned)?.unwrap_or_else(|| tombstone(&owned, until, now));
                    family.revoked = true;
                    family.prev_result = None;
                    put(txn, &family).map(|()| (family.expires_at, true))
                })
                .await?;
            self.mirror(|r| {
                r.families.insert(fid.to_owned(), expires_at);
            });
            Ok(())
        })
    }

    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, _now: i64) -> StoreFuture<'a, ()> {
        let owned = jti.to_owned();
        Box::pin(async move {
            self.write(move |txn| {
                let mut table = txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?;
                table.insert(owned.as_str(), exp).map_err(StoreError::new)?;
                Ok(((), true))
            })
            .await?;
            self.mirror(|r| {
                r.jtis.insert(jti.to_owned(), exp);
            });
            Ok(())
        })
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
            let dropped = self.write(move |txn| purge(txn, now, reuse_grace)).await?;
            self.mirror(|r| {
                r.jtis.retain(|_, exp| *exp >= now);
                r.families.retain(|_, expires_at| *expires_at > now);
            });
            Ok(dropped)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.db.begin_read().map(|_| ()).map_err(StoreError::new) })
    }
}

/// Drops expired revocations and families, and stale `prev_result`s.
fn purge(txn: &redb::WriteTransaction, now: i64, reuse_grace: i64) -> Result<(usize, bool), StoreError> {
    let mut dropped = 0;
    {
        let mut jtis = txn.open_table(REVOKED_JTIS).map_err(StoreError::new)?;
        dropped += jtis.extract_if(|_, exp| exp < now).map_err(StoreError::new)?.count();
    }
    let mut families = txn.open_table(FAMILIES).map_err(StoreError::new)?;
    let mut keep = Vec::new();
    for entry in families.extract_if(|_, _| true).map_err(StoreError::new)? {
        let (_, raw) = entry.map_err(StoreError::new)?;
        let mut family = parse(raw.value())?;
        if family.expires_at > now {
            family.expire_prev_result(now, reuse_grace);
            keep.push(family);
        } else {
            dropped += 1;
        }
    }
    drop(families);
    for family in &keep {
        put(txn, family)?;
    }
    Ok((dropped, true))
}
