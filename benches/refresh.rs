//! The store half of an implicit refresh (DESIGN.md §7): one atomic
//! compare-and-rotate of a session family, per backend.
//!
//! One family is started in setup; every iteration then presents the current
//! refresh jti with a fresh candidate pair, so each one is a real `Rotated`
//! (never a replay, which skips the commit). The candidate for iteration n is
//! `j{n}` presenting `j{n-1}`: criterion runs a batch's setups and then its
//! routines in order, so the chain holds without reading the store back.
//!
//! Times are per rotation as the gateway awaits it: for `EmbeddedStore` that is
//! the `spawn_blocking` hop, the redb write transaction and its fsync
//! (`Durability::Immediate`).

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion};
use jwtgate::store::{EmbeddedStore, Family, MemoryStore, RotateOutcome, RotateRequest, Store, TokenPair};
use tokio::runtime::Runtime;

const T0: i64 = 1_800_000_000;
/// Every rotation happens at the same instant: the family never goes idle or
/// reaches max_session however long the bench runs.
const NOW: i64 = T0 + 60;
const GRACE: i64 = 30;
const IDLE: i64 = 7 * 86400;
const MAX_SESSION: i64 = 30 * 86400;
const FID: &str = "0b7d4a52-bench-family";

fn main() {
    let rt = Runtime::new().expect("tokio runtime");
    // Not /tmp: it may be tmpfs, where an fsync costs nothing and the embedded
    // number would flatter the store. Cargo's per-target tmp dir is on the build disk.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir for the redb file");
    let embedded = EmbeddedStore::open(&dir.path().join("bench.redb")).expect("open redb");

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench_rotate(&mut c, &rt, "embedded", Arc::new(embedded));
    bench_rotate(&mut c, &rt, "memory", Arc::new(MemoryStore::new()));
    c.final_summary();
}

/// A token-sized placeholder: the family record (which embedded serializes to
/// JSON on every rotation) carries the previous pair, so its size matters.
fn pair(jti: String) -> TokenPair {
    TokenPair {
        access_token: "a".repeat(420),
        access_exp: NOW + 900,
        refresh_token: "r".repeat(380),
        refresh_jti: jti,
        refresh_exp: T0 + MAX_SESSION,
    }
}

fn bench_rotate(c: &mut Criterion, rt: &Runtime, name: &str, store: Arc<dyn Store>) {
    let family = Family::new(FID, "alice", "j0", T0, MAX_SESSION);
    rt.block_on(store.start_family(&family)).expect("start family");
    let mut n: u64 = 0;
    let mut next_request = move || {
        n += 1;
        RotateRequest {
            fid: FID.to_owned(),
            presented_jti: format!("j{}", n - 1),
            candidate: pair(format!("j{n}")),
            reuse_grace: GRACE,
            idle_timeout: IDLE,
            leeway: 0,
        }
    };
    let mut g = c.benchmark_group("refresh_rotate");
    g.bench_function(name, |b| {
        b.iter_batched(
            &mut next_request,
            |req| {
                let outcome = rt.block_on(store.rotate(&req, NOW)).expect("store answers");
                assert!(matches!(outcome, RotateOutcome::Rotated(_)), "chain broken: {outcome:?}");
                (req, outcome)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}
