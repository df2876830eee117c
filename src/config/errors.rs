//! Config errors: every one names the key path it is about and says how to fix it.

use std::fmt;

/// One problem in `gateway.toml`, e.g. `tokens.secret: HS256 needs at least 32 bytes …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, array entries as `routes[2].path`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
    /// Keys this error follows from, `[*]` standing for any array index: when
    /// one of them is itself in error (mistyped, misspelled, invalid), this
    /// error is a consequence, not a second mistake, and is left out. A route
    /// naming upstream "app" is not also wrong when the upstream's `name` is.
    pub follows: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every error found while loading one file; `jwtgate check` prints them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { key: key.into(), message: message.into(), follows: Vec::new() });
    }

    /// [`push`](Self::push) for an error that holds only while the keys in
    /// `follows` are right (see [`ConfigError::follows`]).
    pub fn push_following(
        &mut self,
        key: impl Into<String>,
        follows: Vec<String>,
        message: impl Into<String>,
    ) {
        self.0.push(ConfigError { key: key.into(), message: message.into(), follows });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
