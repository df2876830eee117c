//! The TOML tree → [`RawConfig`], reporting every unknown key (through
//! `serde_ignored`, with a "did you mean" hint) and every wrongly typed value,
//! each with its key path.
//!
//! serde stops at the first type error and `toml::Value`'s errors carry no array
//! indexes, so a failed pass is followed by a search: each branch of the tree is
//! deserialized alone (every raw struct is `#[serde(default)]`, so a branch alone
//! fails exactly when a value in it is wrongly typed), descending to the deepest
//! branch that still fails. The bad values are then removed and the unknown-key
//! pass runs on the rest, so one run reports both kinds.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;
use toml::{Table, Value};

use super::keypath::{self, Seg};
use super::raw::{
    RawAcceptKey, RawAdmin, RawConfig, RawCookies, RawCsrf, RawErrors, RawForward, RawLog, RawRoute,
    RawServer, RawSessions, RawStore, RawTokens, RawUpstream,
};
use super::ConfigErrors;

#[cfg(test)]
mod tests;

/// See the module doc. `Ok` carries the config built from everything that was
/// well typed, the errors found, and the key paths of the values dropped and of
/// the absent keys a misspelled one was meant as (so validation does not report
/// them again as missing).
pub fn deserialize(value: Value) -> Result<(RawConfig, ConfigErrors, Vec<String>), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut dropped = Vec::new();
    let mut value = value;
    if RawConfig::deserialize(value.clone()).is_err() {
        let mut bad = Vec::new();
        locate(&value, &mut Vec::new(), &|v| v, &mut bad, &mut errs);
        for path in &bad {
            remove_enclosing_key(&mut value, path);
        }
        dropped.extend(bad.iter().map(|p| keypath::format(p)));
    }
    let mut unknown = Vec::new();
    let tree = value.clone();
    let raw = serde_ignored::deserialize(value, |path| unknown.push(segments(&path)));
    for path in unknown {
        let (message, meant) = unknown_key(&path);
        // `nam = "app"` for `name`: what validation finds missing there was written.
        if let Some(meant) = meant.filter(|m| !has_sibling(&tree, &path, m)) {
            let mut at = path.clone();
            at.pop();
            at.push(Seg::Key(meant.to_owned()));
            dropped.push(keypath::format(&at));
        }
        errs.push(keypath::format(&path), message);
    }
    match raw {
        Ok(raw) => Ok((raw, errs, dropped)),
        Err(e) => {
            if errs.is_empty() {
                errs.push("(root)", type_message(&e));
            }
            Err(errs)
        }
    }
}

/// Finds the deepest branches of `node` that fail to deserialize on their own.
/// `rebuild` wraps a node into a whole config holding only that branch.
fn locate(
    node: &Value,
    path: &mut Vec<Seg>,
    rebuild: &dyn Fn(Value) -> Value,
    bad: &mut Vec<Vec<Seg>>,
    errs: &mut ConfigErrors,
) {
    let Err(e) = RawConfig::deserialize(rebuild(node.clone())) else { return };
    let before = errs.0.len();
    match node {
        Value::Table(table) if fits(rebuild(Value::Table(Table::new()))) => {
            for (key, child) in table {
                let wrap = |v: Value| rebuild(Value::Table(Table::from_iter([(key.clone(), v)])));
                path.push(Seg::Key(key.clone()));
                locate(child, path, &wrap, bad, errs);
                path.pop();
            }
        }
        Value::Array(items) if fits(rebuild(Value::Array(Vec::new()))) => {
            for (i, child) in items.iter().enumerate() {
                let wrap = |v: Value| rebuild(Value::Array(vec![v]));
                path.push(Seg::Index(i));
                locate(child, path, &wrap, bad, errs);
                path.pop();
            }
        }
        _ => {}
    }
    if errs.0.len() == before {
        errs.push(keypath::format(path), type_message(&e));
        bad.push(path.clone());
    }
}

fn fits(value: Value) -> bool {
    RawConfig::deserialize(value).is_ok()
}

fn type_message(e: &toml::de::Error) -> String {
    let message = e.message();
    let message = if message.contains("untagged enum OneOrMany") {
        "expected a string or an array of strings".to_string()
    } else if let Some(pos) = message.find("expected struct Raw") {
        format!("{}expected a table", &message[..pos])
    } else {
        message.to_string()
    };
    format!("wrong type: {}; write it as gateway.toml.example shows", unquoted(&message))
}

/// serde's message without the values it quotes: integers and the like in
/// backticks ("invalid type: integer `…`"), strings in double quotes, with
/// Rust's escapes ("invalid type: string \"…\""). The value may be a secret,
/// or a URL with a password, written where another type belongs. A quote
/// left open drops the rest of the message.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        let close = match c {
            '`' => '`',
            '"' => '"',
            _ => {
                out.push(c);
                continue;
            }
        };
        out.truncate(out.trim_end().len());
        while let Some(q) = chars.next() {
            if q == '\\' && close == '"' {
                chars.next();
            } else if q == close {
                break;
            }
        }
    }
    out
}

/// Drops the innermost table key containing `path` (an array entry's whole
/// array), so array indexes elsewhere keep their meaning for the unknown-key pass.
fn remove_enclosing_key(root: &mut Value, path: &[Seg]) {
    let Some(last_key) = path.iter().rposition(|s| matches!(s, Seg::Key(_))) else { return };
    let mut node = root;
    for seg in &path[..last_key] {
        let next = match (seg, node) {
            (Seg::Key(k), Value::Table(t)) => t.get_mut(k),
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return };
        node = next;
    }
    if let (Seg::Key(k), Value::Table(t)) = (&path[last_key], node) {
        t.remove(k);
    }
}

fn segments(path: &serde_ignored::Path) -> Vec<Seg> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => push(segments(parent), Seg::Index(*index)),
        Path::Map { parent, key } => push(segments(parent), Seg::Key(key.clone())),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            segments(parent)
        }
    }
}

fn push(mut v: Vec<Seg>, seg: Seg) -> Vec<Seg> {
    v.push(seg);
    v
}

/// Whether the table holding the key at `path` also holds `key`.
fn has_sibling(root: &Value, path: &[Seg], key: &str) -> bool {
    let mut node = root;
    for seg in &path[..path.len().saturating_sub(1)] {
        let next = match (seg, node) {
            (Seg::Key(k), Value::Table(t)) => t.get(k),
            (Seg::Index(i), Value::Array(a)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    matches!(node, Value::Table(t) if t.contains_key(key))
}

/// The message for an unknown key, and the known key it is probably a typo of.
fn unknown_key(path: &[Seg]) -> (String, Option<&'static str>) {
    let Some((Seg::Key(key), parent)) = path.split_last() else {
        return ("unknown key; remove it".into(), None);
    };
    let table: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    match suggest(key, known_keys(&table.join("."))) {
        Some(known) => (format!("unknown key; did you mean {known:?}?"), Some(known)),
        None => ("unknown key; remove it (gateway.toml.example lists every key)".into(), None),
    }
}

/// The keys serde accepts in the table at `table` (array indexes dropped).
pub(super) fn known_keys(table: &str) -> &'static [&'static str] {
    match table {
        "" => fields_of::<RawConfig>(),
        "server" => fields_of::<RawServer>(),
        "admin" => fields_of::<RawAdmin>(),
        "log" => fields_of::<RawLog>(),
        "tokens" => fields_of::<RawTokens>(),
        "tokens.accept" => fields_of::<RawAcceptKey>(),
        "cookies" => fields_of::<RawCookies>(),
        "csrf" => fields_of::<RawCsrf>(),
        "sessions" => fields_of::<RawSessions>(),
        "store" => fields_of::<RawStore>(),
        "forward" => fields_of::<RawForward>(),
        "errors" => fields_of::<RawErrors>(),
        "upstreams" => fields_of::<RawUpstream>(),
        "routes" => fields_of::<RawRoute>(),
        _ => &[],
    }
}

/// The closest known key within a small edit distance, if any.
fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let key = key.to_ascii_lowercase().replace('-', "_");
    let limit = if key.len() <= 4 { 1 } else { 2 };
    known.iter().map(|k| (edit_distance(&key, k), *k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The field names a derived `Deserialize` struct passes to `deserialize_struct`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldsProbe(&mut fields));
    fields
}

/// A deserializer that only records the field list it is asked for.
struct FieldsProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldsProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}
