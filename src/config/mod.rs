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
    load_bytes(path, &read(path)?)
}

/// The config file's bytes, or the error `check` and `run` report for a file
/// they cannot read.
pub fn read(path: &Path) -> Result<Vec<u8>, ConfigErrors> {
    std::fs::read(path).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push("(file)", format!("cannot read {}: {e}; pass the config with -c FILE", path.display()));
        errs
    })
}

/// [`load`] for the bytes already read from `path`, so that a caller who
/// watches the file knows exactly which bytes the config came from.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Runtime, ConfigErrors> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push("(file)", format!("{} is not UTF-8 text ({e}); save it as UTF-8", path.display()));
        errs
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new(".")).to_path_buf();
    let mut runtime = parse(text, &base)?;
    runtime.config_path = path.to_path_buf();
    Ok(runtime)
}

/// [`load`] for text already in memory; `base_dir` resolves relative paths.
/// Every stage collects: missing variables, unknown and mistyped keys and
/// validation errors are all reported in one run (a TOML syntax error alone).
pub fn parse(text: &str, base_dir: &Path) -> Result<Runtime, ConfigErrors> {
    let (value, mut errs) = interp::parse_and_interpolate(text, &|name| std::env::var(name).ok())?;
    // Keys that already failed: validation must not report them again (an
    // unexpanded "${JWTGATE_SECRET}" is not also "too short").
    let mut failed: Vec<String> = errs.iter().map(|e| e.key.clone()).collect();
    let (raw, more, dropped) = match interp::deserialize_collecting_unknown(value) {
        Ok(parts) => parts,
        Err(e) => {
            errs.0.extend(e.0);
            return Err(errs);
        }
    };
    errs.0.extend(more.0);
    failed.extend(dropped);
    match validate::validate(&raw, base_dir) {
        Ok(runtime) if errs.is_empty() => Ok(runtime),
        Ok(_) => Err(errs),
        Err(v) => {
            errs.0.extend(v.0.into_iter().filter(|e| !failed.iter().any(|f| covers(f, &e.key))));
            // An error that follows from a key in error is a consequence of it.
            failed.extend(errs.iter().map(|e| e.key.clone()));
            let first = errs.0.clone();
            errs.0.retain(|e| !e.follows.iter().any(|key| failed.iter().any(|f| covers(f, key))));
            if errs.is_empty() {
                errs.0 = first; // errors that follow each other: keep them all
            }
            Err(errs)
        }
    }
}

/// Is `key` the failed key `failed` or inside it? A `key` written with `[*]`
/// (see [`ConfigError::follows`]) matches every index.
fn covers(failed: &str, key: &str) -> bool {
    let any_index;
    let failed = if key.contains("[*]") {
        any_index = without_indexes(failed);
        any_index.as_str()
    } else {
        failed
    };
    key.strip_prefix(failed).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `routes[2].path` → `routes[*].path`.
fn without_indexes(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(']') {
            out.push('*');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// The longest duration any key accepts. Deadlines and expiry times are
/// `now + duration`, which overflows (a panic, on every request) for a value
/// such as `"300000000000y"` that humantime parses.
/// 100 of humantime's years (365.25 days).
const LONGEST: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a humantime duration (`"15m"`, `"30d"`) of at most 100 years,
/// recording an error naming `key`.
pub fn parse_duration(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<Duration> {
    match humantime::parse_duration(value.trim()) {
        Ok(d) if d > LONGEST => {
            errs.push(
                key,
                format!("{value:?} is longer than 100 years; write a shorter duration, e.g. \"30d\""),
            );
            None
        }
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

/// A duration that JWT times, whole seconds, are measured against (token
/// lifetimes, `leeway`, the session limits, `max_age`): a fraction would be
/// dropped, and `reuse_grace = "500ms"` would silently be no grace at all.
pub fn whole_seconds(key: &str, value: &str, errs: &mut ConfigErrors) -> Option<Duration> {
    let d = parse_duration(key, value, errs)?;
    if d.subsec_nanos() != 0 {
        errs.push(
            key,
            format!("{value:?} is not a whole number of seconds, which token times are; write e.g. \"2s\""),
        );
        return None;
    }
    Some(d)
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

/// The smallest valid config, for unit tests that need a [`Runtime`]: one
/// listener, the memory store, one upstream, an `access` route for every path.
#[cfg(test)]
pub(crate) const TEST_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"

[tokens]
secret = "test-secret-0123456789abcdef0123"

[store]
backend = "memory"

[[upstreams]]
name = "app"
urls = ["http://127.0.0.1:1"]

[[routes]]
path = "/**"
policy = "access"
upstream = "app"
"#;

#[cfg(test)]
mod tests {
    use super::{covers, without_indexes};

    #[test]
    fn a_failed_key_covers_itself_and_what_is_inside_it() {
        assert!(covers("tokens.secret", "tokens.secret"));
        assert!(covers("upstreams[0]", "upstreams[0].name"));
        assert!(!covers("tokens.secret", "tokens.secret_file"));
        assert!(!covers("upstreams[0].name", "upstreams[0]"));
        // `[*]` in the covered key matches every index, and only there.
        assert!(covers("upstreams[3].name", "upstreams[*].name"));
        assert!(covers("upstreams", "upstreams[*].name"));
        assert!(!covers("upstreams[3].urls", "upstreams[*].name"));
        assert!(!covers("routes[3].name", "upstreams[*].name"));
        assert!(!covers("upstreams[3].name", "upstreams[0].name"));
    }

    #[test]
    fn without_indexes_replaces_only_whole_indexes() {
        assert_eq!(without_indexes("routes[12].require.roles"), "routes[*].require.roles");
        assert_eq!(without_indexes("tokens.accept[0].kid"), "tokens.accept[*].kid");
        assert_eq!(without_indexes("forward.claims.\"a[b]\""), "forward.claims.\"a[b]\"");
        assert_eq!(without_indexes("a[1x]"), "a[1x]");
    }
}
