//! A store that fails on demand, for the store-failure paths.

use std::sync::Arc;

/// A store that fails on demand, wrapping a real one.
pub struct Flaky {
    inner: Arc<jwtgate::store::MemoryStore>,
    down: std::sync::atomic::AtomicBool,
}

impl Flaky {
    pub fn new(inner: Arc<jwtgate::store::MemoryStore>) -> Flaky {
        Flaky { inner, down: false.into() }
    }

    /// Every call but `purge` fails while down.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), jwtgate::store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(jwtgate::store::StoreError::new("test: store down"));
        }
        Ok(())
    }
}

impl jwtgate::store::Store for Flaky {
    fn start_family<'a>(&'a self, f: &'a jwtgate::store::Family) -> jwtgate::store::StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.inner.start_family(f).await
        })
    }
    fn rotate<'a>(
        &'a self,
        req: &'a jwtgate::store::RotateRequest,
        now: i64,
    ) -> jwtgate::store::StoreFuture<'a, jwtgate::store::RotateOutcome> {
        Box::pin(async move {
            self.check()?;
            self.inner.rotate(req, now).await
        })
    }
    fn renew<'a>(
        &'a self,
        fid: &'a str,
        jti: &'a str,
        idle_timeout: i64,
        now: i64,
    ) -> jwtgate::store::StoreFuture<'a, jwtgate::store::RenewOutcome> {
        Box::pin(async move {
            self.check()?;
            self.inner.renew(fid, jti, idle_timeout, now).await
        })
    }
    fn revoke_family<'a>(
        &'a self,
        fid: &'a str,
        until: i64,
        leeway: i64,
        now: i64,
    ) -> jwtgate::store::StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.inner.revoke_family(fid, until, leeway, now).await
        })
    }
    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, now: i64) -> jwtgate::store::StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.inner.revoke_jti(jti, exp, now).await
        })
    }
    fn is_revoked<'a>(
        &'a self,
        jti: Option<&'a str>,
        fid: Option<&'a str>,
        now: i64,
    ) -> jwtgate::store::StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            self.inner.is_revoked(jti, fid, now).await
        })
    }
    fn family<'a>(&'a self, fid: &'a str) -> jwtgate::store::StoreFuture<'a, Option<jwtgate::store::Family>> {
        Box::pin(async move {
            self.check()?;
            self.inner.family(fid).await
        })
    }
    fn purge<'a>(&'a self, now: i64, grace: i64) -> jwtgate::store::StoreFuture<'a, usize> {
        Box::pin(async move { self.inner.purge(now, grace).await })
    }
    fn ping(&self) -> jwtgate::store::StoreFuture<'_, ()> {
        Box::pin(async move { self.check() })
    }
}
