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
//!
//! What it holds: the bounds below count entries and token bytes; the decoded
//! claims take about as much again as the token (more for a payload of many
//! tiny claims; the issuer decides the claims, and only verified tokens get
//! in). Unlike a digest, a held token is a live credential in memory until its
//! entry goes, which is why nothing here prints one (`Debug` shows no entry).

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
/// A longer token is verified every time rather than cached: one token must
/// not take a shard's whole budget (`max_token_bytes` allows up to the header
/// limit).
const MAX_CACHED_TOKEN: usize = BYTES_PER_SHARD / 64;

struct Entry {
    token: Box<str>,
    claims: Arc<Claims>,
}

#[derive(Default)]
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

pub(crate) struct VerifiedCache {
    /// Seeded per cache, so a user minting many tokens cannot aim them at one
    /// bucket.
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

/// Neither the seed nor any entry: entries are live credentials.
impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

/// hashbrown picks a bucket by the hash's low bits (at most 13 here: 4096
/// entries) and tags it by the top seven; bits 32..36 choose the shard, so the
/// shard says nothing about either.
fn shard_index(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl VerifiedCache {
    pub(crate) fn new() -> VerifiedCache {
        VerifiedCache {
            hasher: RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The token's hash and its shard.
    fn locate(&self, token: &str) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.hasher.hash_one(token);
        let shard = &self.shards[shard_index(hash)];
        (hash, shard.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn get(&self, token: &str) -> Option<Arc<Claims>> {
        let (hash, shard) = self.locate(token);
        shard.find(hash, token).map(|e| e.claims.clone())
    }

    /// Remembers a verified token (again: a second insert replaces the first),
    /// unless it is longer than [`MAX_CACHED_TOKEN`].
    pub(crate) fn insert(&self, token: &str, claims: Arc<Claims>, now: i64) {
        if token.len() > MAX_CACHED_TOKEN {
            return;
        }
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
        self.shard_bytes().iter().sum()
    }

    #[cfg(test)]
    fn shard_bytes(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes).collect()
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
        // 30 KiB tokens: 2 000 of them would be 59 MiB; each shard holds 2 MiB.
        let cache = VerifiedCache::new();
        let pad = "x".repeat(30 << 10);
        for i in 0..2_000 {
            cache.insert(&format!("{i:04}.{pad}"), claims("u"), 0);
        }
        let (held, bytes) = (cache.len(), cache.bytes());
        assert!(held > 0, "tokens under the per-token cap are cached");
        for (i, b) in cache.shard_bytes().into_iter().enumerate() {
            assert!(b <= BYTES_PER_SHARD, "shard {i}: {b} bytes");
        }
        assert_eq!(bytes, held * (pad.len() + 5), "bytes are the held tokens' lengths");
    }

    #[test]
    fn a_token_over_the_per_token_cap_is_not_cached() {
        let cache = VerifiedCache::new();
        let huge = "x".repeat(MAX_CACHED_TOKEN + 1);
        cache.insert(&huge, claims("u"), 0);
        assert!(cache.get(&huge).is_none());
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
        let largest = "y".repeat(MAX_CACHED_TOKEN);
        cache.insert(&largest, claims("u"), 0);
        assert!(cache.get(&largest).is_some(), "the cap itself is allowed");
    }

    #[test]
    fn a_full_shard_of_live_entries_is_emptied() {
        let mut shard = Shard::default();
        for i in 0..PER_SHARD {
            let token = format!("token-{i}");
            shard.bytes += token.len();
            shard.table.insert_unique(0, Entry { token: token.into(), claims: claims("live") }, |_| 0);
        }
        shard.make_room(10, 0);
        assert_eq!((shard.table.len(), shard.bytes), (0, 0));
    }

    #[test]
    fn a_shard_makes_room_before_an_insert_would_pass_its_byte_budget() {
        let mut shard = Shard::default();
        let token = "x".repeat(BYTES_PER_SHARD - 10);
        shard.bytes = token.len();
        shard.table.insert_unique(0, Entry { token: token.into(), claims: claims("live") }, |_| 0);
        shard.make_room(10, 0);
        assert_eq!(shard.table.len(), 1, "exactly the budget fits");
        shard.make_room(11, 0);
        assert_eq!((shard.table.len(), shard.bytes), (0, 0), "one byte more does not");
    }

    #[test]
    fn the_shard_index_shares_no_bits_with_bucket_or_tag() {
        for hash in [0u64, 0x0123_4567_89ab_cdef, u64::MAX, 0xdead_beef_0000_0001] {
            let shard = shard_index(hash);
            // Bucket bits (the low 16, more than 4096 entries use) and the
            // tag's top seven, flipped: the shard stays.
            assert_eq!(shard_index(hash ^ 0xffff), shard, "{hash:x}");
            assert_eq!(shard_index(hash ^ (0x7f << 57)), shard, "{hash:x}");
        }
        let spread: std::collections::HashSet<usize> = (0..64u64).map(|i| shard_index(i << 32)).collect();
        assert_eq!(spread.len(), SHARDS, "bits 32.. reach every shard");
    }

    #[test]
    fn a_poisoned_shard_still_serves() {
        let cache = Arc::new(VerifiedCache::new());
        cache.insert("token", claims("alice"), 0);
        let poisoner = cache.clone();
        let _ = std::thread::spawn(move || {
            let (_, _guard) = poisoner.locate("token");
            panic!("poison the shard");
        })
        .join();
        assert!(cache.shards.iter().any(|s| s.is_poisoned()));
        assert_eq!(cache.get("token").unwrap().sub, "alice");
        cache.insert("token-2", claims("bob"), 0);
        cache.remove("token");
        assert!(cache.get("token").is_none());
        assert_eq!(cache.get("token-2").unwrap().sub, "bob");
    }

    #[test]
    fn debug_shows_no_token() {
        let cache = VerifiedCache::new();
        cache.insert("eyJsecret.token.value", claims("alice"), 0);
        let shown = format!("{cache:?}");
        assert!(!shown.contains("eyJsecret") && !shown.contains("alice"), "{shown}");
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
