//! The verified-token cache (DESIGN.md §12): a browser sends the same token
//! many times, and verifying costs ~5 µs (HS256, mostly parsing) to ~50 µs
//! (RS256/ES256) against ~1.5 µs for a hit. An entry is
//! the signature-checked, decoded claims of one token, keyed by the SHA-256 of
//! the whole token (never a short or non-cryptographic hash: a collision would
//! let one token pass as another). Only tokens that passed every check are
//! inserted. The cache belongs to one [`super::Verifier`], so to one config
//! snapshot and its fixed claim rules: a hit re-runs only the checks the clock
//! moves (nbf, iat, lifetime, exp), so an entry is never served past `exp`;
//! type, freshness, `require` and revocation are the pipeline's, checked on
//! every request too.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::claims::Claims;

const SHARDS: usize = 16;
/// Entries per shard: 16 × 4096 = 65 536 tokens at most.
const PER_SHARD: usize = 4096;

/// The SHA-256 of a token. Equality is all 32 bytes; the hash only picks a
/// bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key([u8; 32]);

/// A SHA-256 is already uniform, so the map's hash is eight of its bytes
/// (not the first, which picks the shard) rather than SipHash over all 32.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[8..16]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// Builds [`DigestHasher`]s with a per-process random seed. Only tokens whose
/// signature verified are inserted, so keys are hard to choose anyway; the
/// seed means a user minting many tokens cannot even aim them at one bucket.
#[derive(Debug, Clone)]
struct Seeded(u64);

impl Seeded {
    fn random() -> Seeded {
        Seeded(RandomState::new().hash_one(0u8))
    }
}

impl BuildHasher for Seeded {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(self.0)
    }
}

/// Passes [`Key`]'s eight bytes through as the hash, mixed with the seed.
#[derive(Debug)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write_u64(&mut self, word: u64) {
        self.0 ^= word;
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

type Shard = HashMap<Key, Arc<Claims>, Seeded>;

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    shards: Vec<Mutex<Shard>>,
}

impl VerifiedCache {
    pub(crate) fn new() -> VerifiedCache {
        let seed = Seeded::random();
        VerifiedCache { shards: (0..SHARDS).map(|_| Mutex::new(Shard::with_hasher(seed.clone()))).collect() }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(sub: &str) -> Arc<Claims> {
        let map = json!({"sub": sub, "exp": 4_000_000_000u64}).as_object().unwrap().clone();
        Arc::new(Claims::from_map(map).unwrap())
    }

    #[test]
    fn keys_that_share_the_hashed_bytes_stay_apart() {
        // Same shard byte, same bytes 8..16: the same bucket, different keys.
        let mut a = [7u8; 32];
        let mut b = a;
        a[20] = 1;
        b[20] = 2;
        let mut shard = Shard::with_hasher(Seeded::random());
        shard.insert(Key(a), claims("alice"));
        shard.insert(Key(b), claims("bob"));
        assert_eq!(shard.len(), 2);
        assert_eq!(shard[&Key(a)].sub, "alice");
        assert_eq!(shard[&Key(b)].sub, "bob");
        assert!(!shard.contains_key(&Key([7u8; 32])), "a key never inserted is not found by its hash");
    }

    #[test]
    fn every_token_finds_its_own_claims() {
        let cache = VerifiedCache::new();
        for i in 0..10_000 {
            cache.insert(&format!("token-{i}"), claims(&format!("user-{i}")), 0);
        }
        assert_eq!(cache.len(), 10_000);
        for i in 0..10_000 {
            let hit = cache.get(&format!("token-{i}")).unwrap_or_else(|| panic!("token-{i} missing"));
            assert_eq!(hit.sub, format!("user-{i}"));
        }
        assert!(cache.get("token-10000").is_none());
        cache.remove("token-5");
        assert!(cache.get("token-5").is_none());
        assert!(cache.get("token-6").is_some());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = VerifiedCache::new();
        for i in 0..SHARDS * PER_SHARD * 2 {
            cache.insert(&format!("token-{i}"), claims("u"), 0);
        }
        let held = cache.len();
        assert!(held > 0 && held <= SHARDS * PER_SHARD, "{held} entries");
    }

    #[test]
    fn each_cache_gets_its_own_seed() {
        let (a, b) = (Seeded::random(), Seeded::random());
        assert_ne!(a.0, b.0, "RandomState keys differ per instance");
        let key = Key([9u8; 32]);
        assert_ne!(a.hash_one(key), b.hash_one(key));
    }
}
