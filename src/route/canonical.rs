//! Request-target canonicalization (DESIGN.md §4 rules 2–5).

/// A canonical origin-form target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// Decoded unreserved escapes, upper-cased other escapes; never ambiguous.
    pub path: String,
    /// Everything after the first `?`, verbatim (None when there is no `?`).
    pub query: Option<String>,
}

/// Why a target was refused; every variant is a 400 except [`PathError::TooLong`] (414).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request target longer than 8 KiB")]
    TooLong,
    #[error("{0}")]
    Ambiguous(&'static str),
}

pub fn canonicalize(target: &str, allow_semicolon: bool) -> Result<Canonical, PathError> {
    let _ = (target, allow_semicolon);
    todo!("route helper")
}
