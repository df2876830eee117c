//! Configuration in two layers: [`raw`] is `gateway.toml` as written (serde,
//! defaults), [`Runtime`] is the validated form the gateway serves from
//! (durations, enums, compiled routes, loaded keys). Loading collects every
//! error with its key path and never touches the network.

pub mod raw;

mod errors;
mod interp;
mod keypath;
mod settings;
mod unknown;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use errors::{ConfigError, ConfigErrors};
pub use settings::*;

/// Reads, interpolates and validates one config file. Relative paths inside it
/// resolve against the file's directory.
pub fn load(path: &Path) -> Result<Runtime, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push("(file)", format!("cannot read {}: {e}; pass the config with -c FILE", path.display()));
        errs
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new(".")).to_path_buf();
    let mut runtime = parse(&text, &base)?;
    runtime.config_path = path.to_path_buf();
    Ok(runtime)
}

/// [`load`] for text already in memory; `base_dir` resolves relative paths.
pub fn parse(text: &str, base_dir: &Path) -> Result<Runtime, ConfigErrors> {
    let value = interp::parse_and_interpolate(text, &|name| std::env::var(name).ok())?;
    let raw = interp::deserialize_collecting_unknown(value)?;
    validate::validate(&raw, base_dir)
}

/// Parses a humantime duration (`"15m"`, `"30d"`), recording an error naming `key`.
pub fn parse_duration(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<Duration> {
    match humantime::parse_duration(value.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(
                key,
                format!("{value:?} is not a duration ({e}); write e.g. \"250ms\", \"15m\", \"30d\""),
            );
            None
        }
    }
}

/// A path from the config, relative to the config file's directory.
pub fn resolve_path(base_dir: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}
