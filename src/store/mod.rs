//! Session state (DESIGN.md §10): one small async trait, implemented by every
//! backend and checked by one conformance suite (`tests/store_conformance.rs`).
//! Time comes from the caller (`now`, Unix seconds), so tests move it; the
//! redis backend decides on Redis `TIME` instead (see `redis`), and tests
//! move that with `RedisStore::set_clock_offset`.
//!
//! Outside rotation the gateway only asks [`Store::is_revoked`]. Rotation is one
//! atomic compare-and-rotate ([`Store::rotate`]) whose decision is the pure
//! [`family::decide`], so the backends cannot disagree on the rules.

mod embedded;
pub mod family;
mod memory;
mod redis;

pub use embedded::EmbeddedStore;
pub use family::{Family, RenewOutcome, RotateOutcome, RotateRequest, TokenPair};
pub use memory::MemoryStore;
pub use redis::RedisStore;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{StoreBackend, StoreSettings};

/// Records `id` revoked until `until`, or until the later end already held:
/// a revocation is never shortened, whatever order its writes come in, on
/// every backend (the redis scripts' `keep_later` is the same rule).
fn revoke_until(held: &mut HashMap<String, i64>, id: String, until: i64) {
    held.entry(id).and_modify(|u| *u = (*u).max(until)).or_insert(until);
}

/// A store that could not answer; the gateway fails closed with 503.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {reason}")]
pub struct StoreError {
    pub reason: String,
}

impl StoreError {
    pub fn new(reason: impl std::fmt::Display) -> StoreError {
        StoreError { reason: reason.to_string() }
    }
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Families, revocations, and the atomic rotation step.
pub trait Store: Send + Sync + 'static {
    /// Records a new family (a login). Overwrites nothing: fids are fresh uuids.
    fn start_family<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()>;
    /// The atomic step of DESIGN.md §7: decide with [`family::decide`] and
    /// persist, all-or-nothing. Unknown family → [`RotateOutcome::Dead`].
    fn rotate<'a>(&'a self, req: &'a RotateRequest, now: i64) -> StoreFuture<'a, RotateOutcome>;
    /// An explicit refresh that keeps its refresh token: [`family::renew`],
    /// atomically, persisted on `Renewed`. Unknown family → `Dead`.
    fn renew<'a>(
        &'a self,
        fid: &'a str,
        presented_jti: &'a str,
        idle_timeout: i64,
        now: i64,
    ) -> StoreFuture<'a, RenewOutcome>;
    /// Revokes a family (logout, reuse). An unknown fid is remembered as
    /// revoked until `until`, so its tokens stop working too; a known one
    /// until `until` or its own `expires_at` plus `leeway` (its last tokens
    /// are accepted that long past their `exp`), whichever is later.
    fn revoke_family<'a>(&'a self, fid: &'a str, until: i64, leeway: i64, now: i64) -> StoreFuture<'a, ()>;
    /// Revokes one token id until `until` (the caller's: `exp` plus the
    /// verifier's leeway, when the token stops being accepted).
    fn revoke_jti<'a>(&'a self, jti: &'a str, until: i64, now: i64) -> StoreFuture<'a, ()>;
    /// Is this jti revoked, or this family? An unknown family is not revoked.
    fn is_revoked<'a>(
        &'a self,
        jti: Option<&'a str>,
        fid: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, bool>;
    /// The family record, for inspection and tests.
    fn family<'a>(&'a self, fid: &'a str) -> StoreFuture<'a, Option<Family>>;
    /// Drops records nothing can use any more (expired revocations, families
    /// past `expires_at`) and `prev_result`s older than `reuse_grace`.
    fn purge<'a>(&'a self, now: i64, reuse_grace: i64) -> StoreFuture<'a, usize>;
    /// Is the store reachable? (`/readyz`)
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Opens the configured backend. Async because the redis backend connects
/// and loads the revocation set before the gateway serves.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings.backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreBackend::Embedded => Ok(Arc::new(EmbeddedStore::open(&settings.path)?)),
        StoreBackend::Redis => Ok(Arc::new(RedisStore::connect(settings).await?)),
    }
}
