//! The in-memory store: tests and `jwtgate demo`. Lost on restart.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Store, StoreFuture};

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// jti → exp
    revoked_jtis: HashMap<String, i64>,
    revoked_families: HashMap<String, i64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn is_revoked<'a>(
        &'a self,
        jti: Option<&'a str>,
        fid: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let jti_revoked = jti.and_then(|j| inner.revoked_jtis.get(j)).is_some_and(|&exp| exp >= now);
            let fid_revoked = fid.is_some_and(|f| inner.revoked_families.contains_key(f));
            Ok(jti_revoked || fid_revoked)
        })
    }

    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, now: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.revoked_jtis.retain(|_, e| *e >= now);
            inner.revoked_jtis.insert(jti.to_owned(), exp);
            Ok(())
        })
    }

    fn revoke_family<'a>(&'a self, fid: &'a str, now: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.revoked_families.insert(fid.to_owned(), now);
            Ok(())
        })
    }
}
