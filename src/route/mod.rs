//! Paths and routes (DESIGN.md §4): canonicalize the request target once,
//! reject anything ambiguous, then match the most specific route.
//!
//! [`canonicalize`] runs first on every request; [`RouteTable::lookup`] then takes
//! its path. The table is compiled per config load by [`RouteTable::build`].

mod build;
pub mod canonical;
mod describe;
mod pattern;
pub mod table;

#[cfg(test)]
mod table_tests;

pub use canonical::{canonicalize, Canonical, PathError, MAX_TARGET_BYTES};
pub use table::{Handler, Policy, Route, RouteMiss, RouteTable};
