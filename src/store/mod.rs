//! Session state (DESIGN.md §10). Outside rotation the gateway only asks
//! "revoked?"; family records and atomic rotation arrive with the sessions work.

mod memory;

pub use memory::MemoryStore;

use std::future::Future;
use std::pin::Pin;

/// A store that could not answer; the gateway fails closed with 503.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {reason}")]
pub struct StoreError {
    pub reason: String,
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The revocation half of the state store.
pub trait Store: Send + Sync + 'static {
    /// Is this `jti` revoked, or this family (`fid`) revoked?
    fn is_revoked<'a>(
        &'a self,
        jti: Option<&'a str>,
        fid: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, bool>;
    /// Revoke one token id until its `exp` (after which the record may be dropped).
    fn revoke_jti<'a>(&'a self, jti: &'a str, exp: i64, now: i64) -> StoreFuture<'a, ()>;
    /// Revoke a whole session family.
    fn revoke_family<'a>(&'a self, fid: &'a str, now: i64) -> StoreFuture<'a, ()>;
}
