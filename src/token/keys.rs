//! Signing and verification keys: loading, the per-algorithm rules of
//! DESIGN.md §3, and `jwtgate keygen`.
