//! The Lua scripts behind the redis store, the keys they touch, and how they
//! are called (EVALSHA, falling back to EVAL when Redis has lost its script
//! cache, e.g. after a restart).
//!
//! Every script reads its clock from Redis `TIME` (plus an offset that is 0
//! outside tests, see `RedisStore::set_clock_offset`), never from the caller:
//! gateway instances whose clocks disagree by a few seconds still agree on
//! whether a replay is inside `reuse_grace`. TTLs are computed against that
//! same clock, so records expire when the rules say they are dead.
//!
//! Scripts touch keys they compute (purge), so this store needs a standalone
//! Redis (or a primary with replicas), not Redis Cluster. Redis ≥ 5 (scripts
//! replicate their effects, which `TIME` requires).

use redis::aio::ConnectionManager;
use redis::{ErrorKind, FromRedisValue, RedisResult, ServerErrorKind};

// Every key and the channel start with `jwtgate:`.

/// The pub/sub channel every revocation is published on.
pub const CHANNEL: &str = "jwtgate:revocations";
/// `jwtgate:family:<fid>`: a hash with the fields of [`crate::store::Family`].
pub const FAMILY: &str = "jwtgate:family:";
/// `jwtgate:revoked:jti:<jti>` = exp; what the revocation feed loads at sync.
pub const REVOKED_JTI: &str = "jwtgate:revoked:jti:";
/// `jwtgate:revoked:fid:<fid>` = until; a revoked family, for the same load.
pub const REVOKED_FID: &str = "jwtgate:revoked:fid:";
/// What the feed's SCAN matches: both kinds above.
pub const REVOKED_MATCH: &str = "jwtgate:revoked:*";
/// zset: key → the time it is dead on the script clock. `purge` deletes by it
/// (TTLs do the same on Redis's own clock; this index makes `purge` exact).
pub const EXPIRY: &str = "jwtgate:expiry";
/// zset: fid → last_rotated_at, so `purge` can erase stale `prev_result`s.
pub const PREV: &str = "jwtgate:prev";

/// Shared by every script: the clock, and publishing a revoked family.
macro_rules! prelude {
    () => {
        r#"
local function clock(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(offset)
end
-- `till`, or the later end a revocation key already holds: revocations are
-- never shortened (the Rust side's `store::revoke_until`).
local function keep_later(rkey, till)
  local held = tonumber(redis.call('GET', rkey))
  if held and held > till then return held end
  return till
end
-- A revoked family: the index key the feed loads, its purge entry, and the
-- message every instance applies to its local set. Kept through the second
-- `till` (a token is still accepted AT exp + leeway), hence +1. Returns the
-- end kept.
local function revoke_fid(rkey, expiry, channel, fid, till, now)
  till = keep_later(rkey, till)
  redis.call('SET', rkey, till, 'EX', math.max(till - now + 1, 1))
  redis.call('ZADD', expiry, till + 1, rkey)
  redis.call('PUBLISH', channel, 'fid ' .. till .. ' ' .. fid)
  return till
end
"#
    };
}

/// The atomic step of DESIGN.md §7, on one family hash.
///
/// KEEP IN SYNC with `family::decide` (and `Family::is_dead`,
/// `Family::expire_prev_result`): memory and embedded run that function, this
/// script must take the same decisions, and the conformance suite checks both.
///
/// KEYS: family, revoked-fid, prev zset, expiry zset.
/// ARGV: offset, fid, presented jti, candidate jti, candidate pair (JSON),
///       reuse_grace, idle_timeout, channel, ROTATED_KEPT, leeway,
///       candidate refresh exp.
/// Returns {'dead'} | {'rotated'} | {'replayed', pair JSON} | {'reuse', until}.
pub const ROTATE: &str = concat!(
    prelude!(),
    r#"
local now = clock(ARGV[1])
local fid, presented = ARGV[2], ARGV[3]
local grace, idle = tonumber(ARGV[6]), tonumber(ARGV[7])
local f = redis.call('HMGET', KEYS[1], 'current_jti', 'rotated', 'prev_result',
  'last_rotated_at', 'revoked', 'last_used', 'expires_at')
if not f[1] then return {'dead'} end
local expires_at, last_used = tonumber(f[7]), tonumber(f[6])
-- Family::is_dead
if f[5] == '1' or now >= expires_at or now - last_used > idle then return {'dead'} end
-- Family::expire_prev_result
local prev = f[3]
if f[4] and now - tonumber(f[4]) >= grace then
  prev = false
  redis.call('HDEL', KEYS[1], 'prev_result')
  redis.call('ZREM', KEYS[3], fid)
end
local rotated = cjson.decode(f[2])
-- rule 2: the current jti rotates; the candidate becomes current and prev_result
if f[1] == presented then
  table.insert(rotated, {jti = presented, rotated_at = now})
  while #rotated > tonumber(ARGV[9]) do table.remove(rotated, 1) end
  redis.call('HSET', KEYS[1], 'current_jti', ARGV[4], 'rotated', cjson.encode(rotated),
    'prev_result', ARGV[5], 'last_rotated_at', now, 'last_used', now)
  redis.call('ZADD', KEYS[3], now, fid)
  -- the family lasts as long as its newest tokens (a raised max_session)
  local tokens_end = tonumber(ARGV[11])
  if tokens_end > expires_at then
    redis.call('HSET', KEYS[1], 'expires_at', tokens_end)
    redis.call('EXPIRE', KEYS[1], math.max(tokens_end - now, 1))
    redis.call('ZADD', KEYS[4], tokens_end, KEYS[1])
  end
  return {'rotated'}
end
-- rule 3: a jti rotated away less than reuse_grace ago gets the current pair
if prev then
  for _, r in ipairs(rotated) do
    if r.jti == presented and now - r.rotated_at < grace then
      redis.call('HSET', KEYS[1], 'last_used', now)
      return {'replayed', prev}
    end
  end
end
-- rule 4: anything else is reuse; the family is revoked, on every instance,
-- for as long as its tokens are accepted (expires_at plus the leeway)
local till = expires_at + tonumber(ARGV[10])
redis.call('HSET', KEYS[1], 'revoked', '1')
return {'reuse', revoke_fid(KEYS[2], KEYS[4], ARGV[8], fid, till, now)}
"#
);

/// An explicit refresh that keeps its refresh token.
///
/// KEEP IN SYNC with `family::renew` (and `Family::is_dead`), as ROTATE with
/// `decide`; the conformance suite checks both.
///
/// KEYS: family. ARGV: offset, presented jti, idle_timeout.
/// Returns {'dead'} | {'not_current'} | {'renewed', expires_at}.
pub const RENEW: &str = concat!(
    prelude!(),
    r#"
local now = clock(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'current_jti', 'revoked', 'last_used', 'expires_at')
if not f[1] then return {'dead'} end
local expires_at = tonumber(f[4])
if f[2] == '1' or now >= expires_at or now - tonumber(f[3]) > tonumber(ARGV[3]) then return {'dead'} end
if f[1] ~= ARGV[2] then return {'not_current'} end
redis.call('HSET', KEYS[1], 'last_used', now)
return {'renewed', f[4]}
"#
);

/// A login: the family hash, its TTL (until `expires_at`) and purge entry.
///
/// KEYS: family, expiry zset. ARGV: offset, expires_at, field, value, …
pub const START: &str = concat!(
    prelude!(),
    r#"
local now = clock(ARGV[1])
local expires_at = tonumber(ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], math.max(expires_at - now, 1))
redis.call('ZADD', KEYS[2], expires_at, KEYS[1])
return 1
"#
);

/// Logout / revocation of a family. A family this store never saw gets a
/// revoked tombstone until `until` (as `memory::tombstone`); a known one stays
/// revoked until its own `expires_at` plus the leeway (its last tokens are
/// accepted that long) or `until`, whichever is later. Returns that time.
///
/// KEYS: family, revoked-fid, expiry zset, prev zset. ARGV: offset, fid, until, channel, leeway.
pub const REVOKE_FAMILY: &str = concat!(
    prelude!(),
    r#"
local now = clock(ARGV[1])
local fid, till = ARGV[2], tonumber(ARGV[3])
local expires_at = redis.call('HGET', KEYS[1], 'expires_at')
if expires_at then
  till = math.max(tonumber(expires_at) + tonumber(ARGV[5]), till)
  redis.call('HSET', KEYS[1], 'revoked', '1')
  redis.call('HDEL', KEYS[1], 'prev_result')
  redis.call('ZREM', KEYS[4], fid)
else
  redis.call('HSET', KEYS[1], 'sub', '', 'auth_time', now, 'current_jti', '', 'rotated', '[]',
    'revoked', '1', 'last_used', now, 'expires_at', till)
  redis.call('EXPIRE', KEYS[1], math.max(till - now, 1))
  redis.call('ZADD', KEYS[3], till, KEYS[1])
end
return revoke_fid(KEYS[2], KEYS[3], ARGV[4], fid, till, now)
"#
);

/// One token id revoked until its `exp` (still revoked AT exp, hence +1).
///
/// KEYS: revoked-jti, expiry zset. ARGV: offset, jti, exp, channel.
pub const REVOKE_JTI: &str = concat!(
    prelude!(),
    r#"
local now = clock(ARGV[1])
local exp = keep_later(KEYS[1], tonumber(ARGV[3]))
redis.call('SET', KEYS[1], exp, 'EX', math.max(exp + 1 - now, 1))
redis.call('ZADD', KEYS[2], exp + 1, KEYS[1])
redis.call('PUBLISH', ARGV[4], 'jti ' .. exp .. ' ' .. ARGV[2])
return 1
"#
);

/// Deletes up to `limit` records dead on the script clock and erases up to
/// `limit` `prev_result`s older than the grace. Returns {records dropped
/// (revoked-fid index keys not counted: the family is the record), keys
/// visited, prev_results visited}; the caller repeats while a batch is full.
///
/// KEYS: expiry zset, prev zset. ARGV: offset, reuse_grace, limit, family prefix, revoked-fid prefix.
pub const PURGE: &str = concat!(
    prelude!(),
    r#"
local now = clock(ARGV[1])
local grace, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local dropped = 0
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, k in ipairs(keys) do
  local n = redis.call('DEL', k)
  if string.sub(k, 1, #ARGV[5]) ~= ARGV[5] then dropped = dropped + n end
  redis.call('ZREM', KEYS[1], k)
end
local fids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - grace, 'LIMIT', 0, limit)
for _, fid in ipairs(fids) do
  redis.call('HDEL', ARGV[4] .. fid, 'prev_result')
  redis.call('ZREM', KEYS[2], fid)
end
return {dropped, #keys, #fids}
"#
);

/// A script and its SHA1, called with EVALSHA and, on NOSCRIPT, with EVAL
/// (which also puts it back into Redis's script cache).
pub struct Lua {
    code: &'static str,
    sha: String,
}

impl Lua {
    pub fn new(code: &'static str) -> Lua {
        Lua { code, sha: redis::Script::new(code).get_hash().to_owned() }
    }

    pub async fn call<T: FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        keys: &[&str],
        args: &[&str],
    ) -> RedisResult<T> {
        let build = |verb: &str, body: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(body).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match build("EVALSHA", &self.sha).query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                build("EVAL", self.code).query_async(conn).await
            }
            other => other,
        }
    }
}

/// The scripts, hashed once per store.
pub struct Scripts {
    pub rotate: Lua,
    pub renew: Lua,
    pub start: Lua,
    pub revoke_family: Lua,
    pub revoke_jti: Lua,
    pub purge: Lua,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            rotate: Lua::new(ROTATE),
            renew: Lua::new(RENEW),
            start: Lua::new(START),
            revoke_family: Lua::new(REVOKE_FAMILY),
            revoke_jti: Lua::new(REVOKE_JTI),
            purge: Lua::new(PURGE),
        }
    }
}
