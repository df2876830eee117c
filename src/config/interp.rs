//! `${VAR}` interpolation and unknown-key collection, both done on the parsed
//! TOML tree so every error can name its key path.
//!
//! Interpolation rules (DESIGN.md §3 says only "any string may contain `${VAR}`"):
//! - every string VALUE is interpolated, also inside arrays and inline tables;
//!   key names are not;
//! - `${NAME}` takes `NAME` from the environment; NAME is letters, digits and `_`,
//!   not starting with a digit. A set-but-empty variable is used as the empty string;
//! - `$${` is a literal `${` (so `$${HOME}` stays `${HOME}`); a `$` not followed by
//!   `{` is an ordinary character;
//! - a substituted value is not interpolated again.

use toml::Value;

use super::keypath::{self, Seg};
use super::raw::RawConfig;
use super::ConfigErrors;

#[cfg(test)]
mod tests;

/// Parses TOML (a syntax error is reported alone: `Err`) and replaces `${VAR}`
/// in every string using `env`. `Ok` carries the tree and the problems found
/// (each missing variable names its key); a string that could not be expanded
/// is left as written.
pub fn parse_and_interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(toml::Value, ConfigErrors), ConfigErrors> {
    let mut value = match toml::from_str::<toml::Table>(text) {
        Ok(table) => Value::Table(table),
        Err(e) => {
            // Never toml's whole rendering: it quotes the offending line, and
            // that may be a secret's (a second `secret = …` left while
            // rotating, a backslash in a password). Its position and message.
            let message = e.message().trim_end().replace('\n', "; ");
            let at = e.span().map_or_else(String::new, |span| {
                // A byte offset: back to a character boundary, so no input panics.
                let start =
                    (0..=span.start.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                let before = &text[..start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            });
            let mut errs = ConfigErrors::default();
            errs.push("(syntax)", format!("{at}{message}; fix the TOML syntax there"));
            return Err(errs);
        }
    };
    let mut errs = ConfigErrors::default();
    interpolate_tree(&mut value, &mut Vec::new(), env, &mut errs);
    Ok((value, errs))
}

/// Deserializes into [`RawConfig`], collecting EVERY unknown key with its path
/// (e.g. `routes[1].polcy`) instead of stopping at the first. Wrongly typed
/// values are all reported too, each with its key path.
pub fn deserialize_collecting_unknown(
    value: toml::Value,
) -> Result<(RawConfig, ConfigErrors, Vec<String>), ConfigErrors> {
    super::unknown::deserialize(value)
}

fn interpolate_tree(
    value: &mut Value,
    path: &mut Vec<Seg>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut ConfigErrors,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(problems) => {
                for problem in problems {
                    errs.push(keypath::format(path), problem);
                }
            }
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                interpolate_tree(item, path, env, errs);
                path.pop();
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push(Seg::Key(key.clone()));
                interpolate_tree(item, path, env, errs);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Expands one string; the error lists every problem in it.
fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                // Never quote the value: it may be a secret.
                problems.push(
                    "unterminated \"${\"; close it as \"${NAME}\" or write \"$${\" for a literal \"${\""
                        .to_owned(),
                );
                return Err(problems);
            };
            let name = &after[..end];
            match lookup(name, env) {
                Ok(v) => out.push_str(&v),
                Err(problem) => problems.push(problem),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn lookup(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        // Never quote what is between the braces: the value may be a secret.
        return Err("a \"${\" here is not a variable reference (names are letters, digits and _); \
             write \"$${\" for a literal \"${\""
            .to_owned());
    }
    env(name).ok_or_else(|| format!("environment variable {name} is not set; export it or write the value"))
}
