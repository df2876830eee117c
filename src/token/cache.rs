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
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::claims::Claims;

const SHARDS: usize = 16;
/// Entries per shard: 16 × 4096 = 65 536 tokens at most.
const PER_SHARD: usize = 4096;

/// The SHA-256 of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key([u8; 32]);

/// A SHA-256 is already uniform, so the map's hash is eight of its bytes
/// (not the first, which picks the shard) rather than SipHash over all 32.
/// Only tokens whose signature verified are inserted, so nobody can choose
/// keys to crowd one bucket.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[8..16]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// Passes [`Key`]'s eight bytes through as the hash.
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }

    /// Not reached ([`Key`] writes one `u64`); folds bytes in anyway.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Shard = HashMap<Key, Arc<Claims>, BuildHasherDefault<DigestHasher>>;

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    shards: Vec<Mutex<Shard>>,
}

impl VerifiedCache {
    pub(crate) fn new() -> VerifiedCache {
        VerifiedCache { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect() }
    }

    fn key(token: &str) -> Key {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        Key(key)
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        // The first byte of a SHA-256 is uniform: a fine shard index.
        let shard = &self.shards[usize::from(key.0[0]) % SHARDS];
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
