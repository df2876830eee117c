//! The forwarding half of the pipeline: header hygiene, claim headers, and the
//! pooled upstream client.

pub mod claims;
pub mod client;
pub mod headers;
pub mod pool;
