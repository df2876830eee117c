//! Key paths as errors print them: dotted keys, array entries as `[i]`
//! (`routes[2].path`), keys that are not TOML bare keys quoted
//! (`forward.claims."https://example.com/roles"`), so a path can be pasted back
//! into the file.

/// `parent.key`, quoting `key` when it is not a bare TOML key.
pub fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// One step of a key path inside the parsed TOML tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Formats a list of steps as [`join`] / [`index`] would.
pub fn format(segs: &[Seg]) -> String {
    segs.iter().fold(String::new(), |acc, seg| match seg {
        Seg::Key(k) => join(&acc, k),
        Seg::Index(i) => index(&acc, *i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_keys_indexes_and_quoted_keys() {
        assert_eq!(join("", "server"), "server");
        assert_eq!(join("routes[2]", "path"), "routes[2].path");
        assert_eq!(join("forward.claims", "https://x/roles"), "forward.claims.\"https://x/roles\"");
        let segs = [Seg::Key("routes".into()), Seg::Index(1), Seg::Key("polcy".into())];
        assert_eq!(format(&segs), "routes[1].polcy");
        assert_eq!(format(&[]), "");
    }
}
