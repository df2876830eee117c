//! The verified-token cache (DESIGN.md §12): a browser sends the same token
//! many times, and verifying costs ~5 µs (HS256, mostly parsing) to ~50 µs
//! (RS256/ES256) against a fraction of a microsecond for a hit. An entry is
//! the signature-checked, decoded claims of one token, keyed by the token
//! itself: a hit means these exact bytes were verified before, compared in
//! constant time, so no hash collision, however found, lets one token pass as
//! another. The hash only picks a shard and a bucket; a seeded fast hash does
//! that for a tenth of what a SHA-256 of the token costs. Only tokens that
//! passed every check are inserted. The cache belongs to one
//! [`super::Verifier`], so to one config snapshot and its fixed claim rules: a
//! hit re-runs only the checks the clock moves (nbf, iat, lifetime, exp), so an
//! entry is never served past `exp`; type, freshness, `require` and revocation
//! are the pipeline's, checked on every request too.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::claims::Claims;

const SHARDS: usize = 16;
/// Entries per shard: 16 × 4096 = 65 536 tokens at most.
const PER_SHARD: usize = 4096;
/// Token bytes per shard: 16 × 2 MiB = 32 MiB at most, whatever the tokens'
/// size (4096 of jwtgate's own ~300-byte tokens take 1.2 MiB).
const BYTES_PER_SHARD: usize = 2 << 20;

struct Entry {
    token: Box<str>,
    claims: Arc<Claims>,
}

/// Redacting: the key is a live credential.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entry(<redacted>)")
    }
}

#[derive(Debug, Default)]
struct Shard {
    table: HashTable<Entry>,
    /// The sum of the held tokens' lengths.
    bytes: usize,
}

impl Shard {
    fn find(&self, hash: u64, token: &str) -> Option<&Entry> {
        self.table.find(hash, |e| same(&e.token, token))
    }

    /// Makes room for `incoming` more token bytes: drops what has expired,
    /// then (still full) everything. Bounded memory beats a perfect hit rate.
    fn make_room(&mut self, incoming: usize, now: i64) {
        let full = |s: &Shard| s.table.len() >= PER_SHARD || s.bytes + incoming > BYTES_PER_SHARD;
        if !full(self) {
            return;
        }
        self.table.retain(|e| e.claims.exp.is_none_or(|exp| exp >= now as f64));
        self.bytes = self.table.iter().map(|e| e.token.len()).sum();
        if full(self) {
            self.table.clear();
            self.bytes = 0;
        }
    }
}

/// Token equality in constant time for equal lengths: a lookup must not time
/// how much of a held token a presented one shares. aws-lc's `CRYPTO_memcmp`
/// rather than `subtle`, whose byte-at-a-time loop took 0.7 µs on a 500-byte
/// RS256 token, more than the SHA-256 this cache key replaced.
fn same(held: &str, token: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(held.as_bytes(), token.as_bytes()).is_ok()
}

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    /// Seeded per cache, so a user minting many tokens cannot aim them at one
    /// bucket.
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

impl VerifiedCache {
    pub(crate) fn new() -> VerifiedCache {
        VerifiedCache {
            hasher: RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The token's hash and its shard. hashbrown picks buckets by the low
    /// bits and tags by the top seven; bits 32.. choose the shard.
    fn locate(&self, token: &str) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.hasher.hash_one(token);
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        (hash, shard.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn get(&self, token: &str) -> Option<Arc<Claims>> {
        let (hash, shard) = self.locate(token);
        shard.find(hash, token).map(|e| e.claims.clone())
    }

    /// Remembers a verified token (again: a second insert replaces the first).
    pub(crate) fn insert(&self, token: &str, claims: Arc<Claims>, now: i64) {
        let (hash, mut shard) = self.locate(token);
        let shard = &mut *shard;
        if let Ok(held) = shard.table.find_entry(hash, |e| same(&e.token, token)) {
            held.into_mut().claims = claims;
            return;
        }
        shard.make_room(token.len(), now);
        shard.bytes += token.len();
        let hasher = &self.hasher;
        shard
            .table
            .insert_unique(hash, Entry { token: token.into(), claims }, |e| hasher.hash_one(&*e.token));
    }

    /// Drops a token (it was found revoked).
    pub(crate) fn remove(&self, token: &str) {
        let (hash, mut shard) = self.locate(token);
        if let Ok(held) = shard.table.find_entry(hash, |e| same(&e.token, token)) {
            let (entry, _) = held.remove();
            shard.bytes -= entry.token.len();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().table.len()).sum()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().bytes).sum()
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
    fn tokens_with_the_same_hash_stay_apart() {
        // A collision, forced: the same hash for two tokens, and a third that
        // was never inserted. Only the exact bytes find an entry.
        let mut shard = Shard::default();
        for (token, sub) in [("token-a", "alice"), ("token-b", "bob")] {
            shard.table.insert_unique(7, Entry { token: token.into(), claims: claims(sub) }, |_| 7);
        }
        assert_eq!(shard.find(7, "token-a").map(|e| e.claims.sub.as_str()), Some("alice"));
        assert_eq!(shard.find(7, "token-b").map(|e| e.claims.sub.as_str()), Some("bob"));
        assert!(shard.find(7, "token-c").is_none(), "a token never inserted is not found by its hash");
        assert!(shard.find(7, "token-").is_none(), "nor by a prefix of one");
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
        let held: usize = (0..10_000).filter(|&i| i != 5).map(|i| format!("token-{i}").len()).sum();
        assert_eq!(cache.bytes(), held, "the byte count follows inserts and removals");
    }

    #[test]
    fn a_second_insert_replaces_the_first() {
        let cache = VerifiedCache::new();
        cache.insert("token", claims("first"), 0);
        cache.insert("token", claims("second"), 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), "token".len());
        assert_eq!(cache.get("token").unwrap().sub, "second");
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
    fn large_tokens_are_bounded_by_bytes() {
        // 64 KiB tokens: 2 000 of them would be 125 MiB; the budget is 32 MiB.
        let cache = VerifiedCache::new();
        let pad = "x".repeat(64 << 10);
        for i in 0..2_000 {
            cache.insert(&format!("{i:04}.{pad}"), claims("u"), 0);
        }
        let (held, bytes) = (cache.len(), cache.bytes());
        assert!(held > 0 && bytes <= SHARDS * BYTES_PER_SHARD, "{held} entries, {bytes} bytes");
        assert_eq!(bytes, held * (pad.len() + 5), "bytes are the held tokens' lengths");
    }

    #[test]
    fn a_full_shard_drops_the_expired_first() {
        let mut shard = Shard::default();
        let expired = Arc::new(
            Claims::from_map(json!({"sub": "old", "exp": 100}).as_object().unwrap().clone()).unwrap(),
        );
        for i in 0..PER_SHARD {
            let claims = if i == 0 { claims("live") } else { expired.clone() };
            let token = format!("token-{i}");
            shard.bytes += token.len();
            shard.table.insert_unique(0, Entry { token: token.into(), claims }, |_| 0);
        }
        shard.make_room(10, 200);
        assert_eq!(shard.table.len(), 1, "only the live entry stays");
        assert_eq!(shard.bytes, "token-0".len());
        assert!(shard.find(0, "token-0").is_some());
    }

    #[test]
    fn each_cache_gets_its_own_seed() {
        let (a, b) = (VerifiedCache::new(), VerifiedCache::new());
        assert_ne!(a.hasher.hash_one("token"), b.hasher.hash_one("token"));
    }
}
