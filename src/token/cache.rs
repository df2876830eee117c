//! The verified-token cache (DESIGN.md §12): a browser sends the same token
//! many times, and verifying costs ~5 µs (HS256, mostly parsing) to ~50 µs
//! (RS256/ES256) against ~1.5 µs for a hit. An entry is
//! the signature-checked, decoded claims of one token, keyed by the SHA-256 of
//! the whole token (never a short or non-cryptographic hash: a collision would
//! let one token pass as another). The time, issuer and audience checks run on
//! every hit, so an entry is never served past `exp`; type, freshness,
//! `require` and revocation are the pipeline's, checked on every request too.
//! The cache belongs to one [`super::Verifier`], so to one config snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::claims::Claims;

const SHARDS: usize = 16;
/// Entries per shard: 16 × 4096 = 65 536 tokens at most.
const PER_SHARD: usize = 4096;

type Key = [u8; 32];

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    shards: Vec<Mutex<HashMap<Key, Arc<Claims>>>>,
}

impl VerifiedCache {
    pub(crate) fn new() -> VerifiedCache {
        VerifiedCache { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn key(token: &str) -> Key {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Claims>>> {
        // The first byte of a SHA-256 is uniform: a fine shard index.
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, token: &str) -> Option<Arc<Claims>> {
        let key = Self::key(token);
        self.shard(&key).get(&key).cloned()
    }

    /// Remembers a verified token. A full shard first drops what has expired,
    /// then (still full) everything: bounded memory beats a perfect hit rate.
    pub(crate) fn insert(&self, token: &str, claims: Arc<Claims>, now: i64) {
        let key = Self::key(token);
        let mut shard = self.shard(&key);
        if shard.len() >= PER_SHARD {
            shard.retain(|_, c| c.exp.is_none_or(|exp| exp >= now as f64));
            if shard.len() >= PER_SHARD {
                shard.clear();
            }
        }
        shard.insert(key, claims);
    }

    /// Drops a token (it was found revoked).
    pub(crate) fn remove(&self, token: &str) {
        let key = Self::key(token);
        self.shard(&key).remove(&key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}
