//! The in-memory store: tests and `jwtgate demo`. Lost on restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::family::{decide, renew, Family, RenewOutcome, RotateOutcome, RotateRequest};
use super::{Store, StoreFuture};

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    families: HashMap<String, Family>,
    /// jti → exp
    revoked_jtis: HashMap<String, i64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied rotation:
        // `decide` mutates a clone-free record in one step.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn start_family<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.lock().families.insert(family.fid.clone(), family.clone());
            Ok(())
        })
    }

    fn rotate<'a>(&'a self, req: &'a RotateRequest, now: i64) -> StoreFuture<'a, RotateOutcome> {
        Box::pin(async move {
            let mut inner = self.lock();
            let Some(family) = inner.families.get_mut(&req.fid) else { return Ok(RotateOutcome::Dead) };
            Ok(decide(family, req, now))
        })
    }

    fn renew<'a>(
        &'a self,
        fid: &'a str,
        presented_jti: &'a str,
        idle_timeout: i64,
        now: i64,
    ) -> StoreFuture<'a, RenewOutcome> {
        Box::pin(async move {
            let mut inner = self.lock();
            let Some(family) = inner.families.get_mut(fid) else { return Ok(RenewOutcome::Dead) };
            Ok(renew(family, presented_jti, idle_timeout, now))
        })
    }

    /// `leeway` needs nothing here: the gateway purges at `now - MAX_LEEWAY`, so the
    /// record outlives `expires_at` by as much.
    fn revoke_family<'a>(&'a self, fid: &'a str, until: i64, _leeway: i64, now: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.lock();
            let family = inner.families.entry(fid.to_owned()).or_insert_with(|| tombstone(fid, until, now));
            family.revoked = true;
            family.prev_result = None;
            // Revoked until `until` at least, as on every backend.
            family.expires_at = family.expires_at.max(until);
            Ok(())
        })
    }

    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, _now: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            super::revoke_until(&mut self.lock().revoked_jtis, jti.to_owned(), exp);
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
            let inner = self.lock();
            let jti_revoked = jti.and_then(|j| inner.revoked_jtis.get(j)).is_some_and(|&exp| exp >= now);
            let fid_revoked = fid.and_then(|f| inner.families.get(f)).is_some_and(|f| f.revoked);
            Ok(jti_revoked || fid_revoked)
        })
    }

    fn family<'a>(&'a self, fid: &'a str) -> StoreFuture<'a, Option<Family>> {
        Box::pin(async move { Ok(self.lock().families.get(fid).cloned()) })
    }

    fn purge<'a>(&'a self, now: i64, reuse_grace: i64) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let mut inner = self.lock();
            let before = inner.families.len() + inner.revoked_jtis.len();
            inner.revoked_jtis.retain(|_, exp| *exp >= now);
            // Through its last second, like a jti: a token of `exp = expires_at`
            // is still accepted at `expires_at + leeway`, the `now` purge gets.
            inner.families.retain(|_, f| f.expires_at >= now);
            for family in inner.families.values_mut() {
                family.expire_prev_result(now, reuse_grace);
            }
            Ok(before - inner.families.len() - inner.revoked_jtis.len())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// The record left by revoking a family this store never saw.
pub(super) fn tombstone(fid: &str, until: i64, now: i64) -> Family {
    let mut f = Family::new(fid, "", "", now, until.saturating_sub(now));
    f.revoked = true;
    f
}
