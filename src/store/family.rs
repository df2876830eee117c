//! A session family and the one rotation decision of DESIGN.md §7, as a pure
//! function every backend applies inside its own atomic step.

use serde::{Deserialize, Serialize};

/// How many rotated-away refresh jtis a family remembers.
pub const ROTATED_KEPT: usize = 8;

/// An access + refresh pair as handed to a client. Debug never prints tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub access_exp: i64,
    pub refresh_token: String,
    pub refresh_jti: String,
    pub refresh_exp: i64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("refresh_jti", &self.refresh_jti)
            .field("access_exp", &self.access_exp)
            .field("refresh_exp", &self.refresh_exp)
            .finish_non_exhaustive()
    }
}

/// A refresh jti rotated away, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedJti {
    pub jti: String,
    pub rotated_at: i64,
}

/// The family record: one login's chain of refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub fid: String,
    pub sub: String,
    /// Login time; carried unchanged through rotations.
    pub auth_time: i64,
    pub current_jti: String,
    /// Newest last, at most [`ROTATED_KEPT`].
    pub rotated: Vec<RotatedJti>,
    /// The pair the last rotation produced, served to in-grace replays.
    pub prev_result: Option<TokenPair>,
    pub last_rotated_at: Option<i64>,
    pub revoked: bool,
    pub last_used: i64,
    /// auth_time + max_session when the family began: it cannot rotate after
    /// it. A rotation whose tokens end later (a reload raised `max_session`)
    /// moves it to their end, so the family, and a reuse revocation of it,
    /// lasts as long as any token it issued. A revoked family's record is kept
    /// until then or the end its revocation asked for, whichever is later
    /// (logout asks for the leeway past it), and dropped after.
    pub expires_at: i64,
}

impl Family {
    /// A fresh family for a login at `now`.
    pub fn new(fid: &str, sub: &str, current_jti: &str, now: i64, max_session: i64) -> Family {
        Family {
            fid: fid.to_owned(),
            sub: sub.to_owned(),
            auth_time: now,
            current_jti: current_jti.to_owned(),
            rotated: Vec::new(),
            prev_result: None,
            last_rotated_at: None,
            revoked: false,
            last_used: now,
            expires_at: now.saturating_add(max_session),
        }
    }

    /// Dead: revoked, idle too long, or past its absolute cap.
    pub fn is_dead(&self, now: i64, idle_timeout: i64) -> bool {
        self.revoked || now >= self.expires_at || now.saturating_sub(self.last_used) > idle_timeout
    }

    /// Drops `prev_result` once `reuse_grace` has passed since the last rotation.
    pub fn expire_prev_result(&mut self, now: i64, reuse_grace: i64) {
        if self.prev_result_expired(now, reuse_grace) {
            self.prev_result = None;
        }
    }

    /// Whether there is a `prev_result` that [`Family::expire_prev_result`] would drop.
    pub fn prev_result_expired(&self, now: i64, reuse_grace: i64) -> bool {
        self.prev_result.is_some()
            && self.last_rotated_at.is_some_and(|t| now.saturating_sub(t) >= reuse_grace)
    }
}

/// One refresh attempt: the presented refresh jti and a pre-minted candidate
/// pair that becomes current if (and only if) the presented jti is current.
#[derive(Debug, Clone)]
pub struct RotateRequest {
    pub fid: String,
    pub presented_jti: String,
    pub candidate: TokenPair,
    pub reuse_grace: i64,
    pub idle_timeout: i64,
    /// How long past their `exp` tokens may be accepted (the gateway passes
    /// [`crate::token::MAX_LEEWAY`], as a reload may raise `[tokens] leeway`),
    /// so a reuse revocation outlasts the family's `expires_at` by as much (on
    /// Redis, whose revocation keys expire; memory and embedded purge at
    /// `now - MAX_LEEWAY` and keep it anyway).
    pub leeway: i64,
}

/// What the atomic step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented jti was current: the candidate is now the current pair.
    Rotated(TokenPair),
    /// A replay within the grace: the current pair, unchanged (nothing forks).
    Replayed(TokenPair),
    /// An older or out-of-grace jti: the family is now revoked.
    ReuseDetected,
    /// Unknown, revoked, idle or past max_session: nothing changed.
    Dead,
}

/// What [`renew`] found, for an explicit refresh that keeps its refresh
/// token (`rotate_refresh = false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The presented jti is current: the family was used now. Its end, which
    /// the new access token may not outlast.
    Renewed { expires_at: i64 },
    /// Alive, but the presented jti is not current (implicit refresh rotated
    /// it away): the rotation rules ([`decide`]) judge it.
    NotCurrent,
    /// Unknown, revoked, idle or past its end: nothing changed.
    Dead,
}

/// A use of the family's current refresh token without rotating it: the
/// family must be alive, and it counts as a use (`last_used = now`), as a
/// rotation does, so a client refreshing more often than `idle_timeout` is
/// not cut off `idle_timeout` after its login. The caller persists `family`
/// on `Renewed`.
pub fn renew(family: &mut Family, presented_jti: &str, idle_timeout: i64, now: i64) -> RenewOutcome {
    if family.is_dead(now, idle_timeout) {
        return RenewOutcome::Dead;
    }
    if family.current_jti != presented_jti {
        return RenewOutcome::NotCurrent;
    }
    family.last_used = now;
    RenewOutcome::Renewed { expires_at: family.expires_at }
}

/// Applies DESIGN.md §7 rules 2–4 to `family` at `now`; the caller persists
/// `family` when the outcome is `Rotated` or `ReuseDetected` (or on `Replayed`, for last_used).
pub fn decide(family: &mut Family, req: &RotateRequest, now: i64) -> RotateOutcome {
    if family.is_dead(now, req.idle_timeout) {
        return RotateOutcome::Dead;
    }
    family.expire_prev_result(now, req.reuse_grace);
    if family.current_jti == req.presented_jti {
        let old = std::mem::replace(&mut family.current_jti, req.candidate.refresh_jti.clone());
        family.rotated.push(RotatedJti { jti: old, rotated_at: now });
        if family.rotated.len() > ROTATED_KEPT {
            family.rotated.remove(0);
        }
        family.prev_result = Some(req.candidate.clone());
        family.last_rotated_at = Some(now);
        family.last_used = now;
        // Never shortened: a lowered max_session ends the new tokens sooner.
        family.expires_at = family.expires_at.max(req.candidate.refresh_exp);
        return RotateOutcome::Rotated(req.candidate.clone());
    }
    let in_grace = family
        .rotated
        .iter()
        .any(|r| r.jti == req.presented_jti && now.saturating_sub(r.rotated_at) < req.reuse_grace);
    match (&family.prev_result, in_grace) {
        (Some(current), true) => {
            family.last_used = now;
            RotateOutcome::Replayed(current.clone())
        }
        _ => {
            family.revoked = true;
            RotateOutcome::ReuseDetected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(jti: &str) -> TokenPair {
        TokenPair {
            access_token: format!("a-{jti}"),
            access_exp: 0,
            refresh_token: format!("r-{jti}"),
            refresh_jti: jti.into(),
            refresh_exp: 0,
        }
    }

    fn req(presented: &str, candidate: &str) -> RotateRequest {
        RotateRequest {
            fid: "f".into(),
            presented_jti: presented.into(),
            candidate: pair(candidate),
            reuse_grace: 30,
            idle_timeout: 1000,
            leeway: 0,
        }
    }

    #[test]
    fn rotates_then_replays_within_grace_then_detects_reuse() {
        let mut fam = Family::new("f", "alice", "r0", 100, 10_000);
        assert_eq!(decide(&mut fam, &req("r0", "r1"), 110), RotateOutcome::Rotated(pair("r1")));
        assert_eq!(fam.current_jti, "r1");
        // A racing request with r0 and its own candidate gets r1's pair.
        assert_eq!(decide(&mut fam, &req("r0", "rX"), 120), RotateOutcome::Replayed(pair("r1")));
        assert_eq!(fam.current_jti, "r1", "a replay never forks the family");
        // After the grace, r0 is reuse.
        assert_eq!(decide(&mut fam, &req("r0", "rY"), 141), RotateOutcome::ReuseDetected);
        assert!(fam.revoked);
        assert_eq!(decide(&mut fam, &req("r1", "r2"), 142), RotateOutcome::Dead);
    }

    #[test]
    fn unknown_jti_is_reuse() {
        let mut fam = Family::new("f", "alice", "r0", 100, 10_000);
        assert_eq!(decide(&mut fam, &req("never", "r1"), 101), RotateOutcome::ReuseDetected);
    }

    #[test]
    fn idle_and_max_session_kill_the_family() {
        let mut fam = Family::new("f", "alice", "r0", 100, 500);
        assert_eq!(decide(&mut fam, &req("r0", "r1"), 1101 + 100), RotateOutcome::Dead);
        let mut fam = Family::new("f", "alice", "r0", 100, 500);
        assert_eq!(decide(&mut fam, &req("r0", "r1"), 600), RotateOutcome::Dead);
        assert_eq!(fam.current_jti, "r0");
    }

    #[test]
    fn renewing_the_current_jti_is_a_use_and_anything_else_changes_nothing() {
        let mut fam = Family::new("f", "alice", "r0", 100, 10_000);
        assert_eq!(renew(&mut fam, "r0", 1000, 900), RenewOutcome::Renewed { expires_at: 10_100 });
        assert_eq!(fam.last_used, 900);
        // 1 900 s after the login, 1 000 after the renewal: alive.
        assert_eq!(renew(&mut fam, "r0", 1000, 1900), RenewOutcome::Renewed { expires_at: 10_100 });
        assert_eq!(renew(&mut fam, "old", 1000, 1950), RenewOutcome::NotCurrent);
        assert_eq!(fam.last_used, 1900, "a jti that is not current is not a use");
        assert_eq!(renew(&mut fam, "r0", 1000, 2901), RenewOutcome::Dead);
        assert_eq!(fam.last_used, 1900);
    }

    #[test]
    fn only_the_last_eight_rotations_are_remembered() {
        let mut fam = Family::new("f", "alice", "r0", 100, 10_000);
        for i in 0..10 {
            decide(&mut fam, &req(&format!("r{i}"), &format!("r{}", i + 1)), 100 + i);
        }
        assert_eq!(fam.rotated.len(), ROTATED_KEPT);
        assert_eq!(fam.rotated[0].jti, "r2");
    }
}
