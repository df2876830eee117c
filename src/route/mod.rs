//! Paths and routes (DESIGN.md §4): canonicalize the request target once,
//! reject anything ambiguous, then match the most specific route.

pub mod canonical;
pub mod table;

pub use canonical::{canonicalize, Canonical, PathError};
pub use table::{Handler, Policy, Route, RouteMiss, RouteTable};
