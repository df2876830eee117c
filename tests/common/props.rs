//! proptest run against a live gateway: each case is one or more requests
//! over the network, from inside a multi-thread tokio test.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Runs `check` on `cases` values of `strategy` (or `PROPTEST_CASES`), each
/// on the current multi-thread runtime; panics with the shrunk failing case.
/// No regression file is written: the failure message holds the request.
pub fn run<S: Strategy>(
    label: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let result = tokio::task::block_in_place(|| TestRunner::new(config).run(&strategy, check));
    if let Err(e) = result {
        panic!("{label}: {e}");
    }
}

/// Runs `fut` to completion from inside [`run`]'s `check`.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(fut)
}
