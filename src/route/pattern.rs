//! Route path patterns (DESIGN.md §4 rule 6): `/exact`, `/a/*/c`, `/prefix/**`.
//!
//! A pattern is compiled from its canonical form, so it is compared with canonical
//! request paths segment by segment, byte for byte (case-sensitive).

use std::cmp::Reverse;
use std::fmt;

use super::canonical::{canonicalize, PathError};

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this canonical segment.
    Literal(String),
    /// `*`: matches any one segment.
    Any,
}

/// A compiled route path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    /// Ends in `**`: also matches every path below the segments (and the segments themselves).
    rest: bool,
}

/// How specific a pattern is; greater is more specific (DESIGN.md §4 rule 6).
///
/// Field order is the comparison order: exact, more literal segments, then a
/// pattern without `**` over one with it, then fewer `*`. `**` is compared before
/// the `*` count so that `/a/*` and `/a/*/*` are not shadowed forever by `/a/**`
/// (which has fewer `*`): a pattern that matches a subset of another's paths must
/// be able to win somewhere. Between two non-`**` patterns that match the same path
/// with equally many literals the `*` counts are always equal, so the count only
/// decides between `**` patterns, as the contract says: fewer `*` wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    exact: bool,
    literals: usize,
    no_rest: bool,
    fewer_stars: Reverse<usize>,
}

/// The segments of a canonical path; a trailing `/` adds none (`/p/` matches as `/p`).
pub fn path_segments(path: &str) -> Vec<&str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

impl Pattern {
    /// Compiles a `[[routes]] path`; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} must start with /, e.g. \"/{}\"", text.trim_start_matches('/')));
        }
        // Semicolons are harmless in a pattern: with allow_semicolon off, requests
        // carrying one never reach matching.
        let canonical = canonicalize(text, true).map_err(|e| match e {
            PathError::TooLong => "is longer than 8 KiB".to_owned(),
            PathError::Ambiguous(why) => format!(
                "{text:?} is not a canonical path ({why}); write it as a client sends it, \
                 non-ASCII percent-encoded (e.g. %C3%A9)"
            ),
        })?;
        if canonical.query.is_some() {
            return Err(format!("{text:?} contains ?; a route path never matches the query, remove it"));
        }
        // Apps decode these before routing, so the raw spelling is the one a
        // pattern means; a request spelling it escaped meets the escape guard.
        if let Some((escape, raw)) = super::canonical::reserved_escape(&canonical.path) {
            return Err(format!(
                "{text:?} spells {raw:?} as {escape}; write it raw ({raw}), as apps read it before routing \
                 (a request that escapes it is judged both ways)"
            ));
        }
        Self::from_segments(text, &path_segments(&canonical.path))
    }

    /// Classifies canonical segments into literals, `*` and a final `**`.
    fn from_segments(text: &str, raw: &[&str]) -> Result<Pattern, String> {
        let mut pattern = Pattern { segments: Vec::with_capacity(raw.len()), rest: false };
        for (i, segment) in raw.iter().enumerate() {
            match *segment {
                "**" if i + 1 == raw.len() => pattern.rest = true,
                "**" => return Err(format!("{text:?}: ** is allowed only as the last segment")),
                "*" => pattern.segments.push(Segment::Any),
                s if s.contains('*') => {
                    return Err(format!("{text:?}: * stands for a whole segment; write /*/ not {s:?}"))
                }
                s => pattern.segments.push(Segment::Literal(s.to_owned())),
            }
        }
        Ok(pattern)
    }

    /// The same pattern case-folded (`canonical::fold_case`), for the case
    /// guard (rule 9).
    pub fn case_folded(&self) -> Pattern {
        let segments = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Segment::Literal(super::canonical::fold_case(l)),
                Segment::Any => Segment::Any,
            })
            .collect();
        Pattern { segments, rest: self.rest }
    }

    /// Whether any literal segment holds an ASCII upper-case byte.
    pub fn has_ascii_uppercase(&self) -> bool {
        self.literals().any(|l| l.bytes().any(|b| b.is_ascii_uppercase()))
    }

    /// Whether the pattern matches a path split by [`path_segments`].
    pub fn matches(&self, path: &[&str]) -> bool {
        let fits =
            if self.rest { path.len() >= self.segments.len() } else { path.len() == self.segments.len() };
        fits && self.segments.iter().zip(path).all(|(s, p)| match s {
            Segment::Literal(l) => l == p,
            Segment::Any => true,
        })
    }

    /// This pattern's rank among the patterns matching one path.
    pub fn specificity(&self) -> Specificity {
        let literals = self.literals().count();
        let stars = self.segments.len() - literals;
        Specificity {
            exact: !self.rest && stars == 0,
            literals,
            no_rest: !self.rest,
            fewer_stars: Reverse(stars),
        }
    }

    /// A path both patterns match, if there is one (for the overlap config error).
    pub fn overlap(&self, other: &Pattern) -> Option<String> {
        let (short, long) =
            if self.segments.len() <= other.segments.len() { (self, other) } else { (other, self) };
        // A shorter pattern reaches the longer one's paths only through its `**`.
        if short.segments.len() < long.segments.len() && !short.rest {
            return None;
        }
        let mut witness = String::new();
        for (i, segment) in long.segments.iter().enumerate() {
            let merged = match (short.segments.get(i), segment) {
                (Some(Segment::Literal(a)), Segment::Literal(b)) if a != b => return None,
                (Some(Segment::Literal(a)), _) => a.as_str(),
                (_, Segment::Literal(b)) => b.as_str(),
                (_, Segment::Any) => "x",
            };
            witness.push('/');
            witness.push_str(merged);
        }
        if witness.is_empty() {
            witness.push('/');
        }
        Some(witness)
    }

    /// The leading literal segments, before the first `*` or `**`.
    pub fn literal_prefix(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map_while(|s| match s {
            Segment::Literal(l) => Some(l.as_str()),
            Segment::Any => None,
        })
    }

    fn literals(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Literal(l) => Some(l.as_str()),
            Segment::Any => None,
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Any => f.write_str("/*")?,
            }
        }
        match (self.rest, self.segments.is_empty()) {
            (true, _) => f.write_str("/**"),
            (false, true) => f.write_str("/"),
            (false, false) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn hits(pattern: &str, path: &str) -> bool {
        p(pattern).matches(&path_segments(path))
    }

    #[test]
    fn path_segments_ignore_one_trailing_slash() {
        assert!(path_segments("/").is_empty());
        assert_eq!(path_segments("/a/b/"), ["a", "b"]);
        assert_eq!(path_segments("/a/b"), ["a", "b"]);
    }

    #[test]
    fn exact_and_single_star_patterns() {
        assert!(hits("/a", "/a") && hits("/a", "/a/") && hits("/a/", "/a"));
        assert!(!hits("/a", "/A") && !hits("/a", "/a/b") && !hits("/a", "/"));
        assert!(hits("/", "/") && !hits("/", "/a"));
        assert!(hits("/a/*/c", "/a/b/c") && hits("/a/*/c", "/a/zz/c/"));
        assert!(!hits("/a/*/c", "/a/c") && !hits("/a/*/c", "/a/b/c/d"));
    }

    #[test]
    fn double_star_matches_the_prefix_and_below_on_segment_boundaries() {
        for path in ["/admin", "/admin/", "/admin/x", "/admin/x/y/"] {
            assert!(hits("/admin/**", path), "{path}");
        }
        assert!(!hits("/admin/**", "/administrator") && !hits("/admin/**", "/"));
        for path in ["/", "/a", "/a/b/c"] {
            assert!(hits("/**", path), "{path}");
        }
    }

    #[test]
    fn patterns_are_canonicalized_like_paths() {
        assert_eq!(p("/%61dmin/**").to_string(), "/admin/**");
        assert_eq!(p("/caf%c3%a9/").to_string(), "/caf%C3%A9");
        assert_eq!(p("/*/x/*").to_string(), "/*/x/*");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for text in
            ["admin", "", "/a/**/b", "/a*", "/a/b*c/", "/***", "/a//b", "/a/../b", "/a%2Fb", "/a?x", "/é"]
        {
            assert!(Pattern::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn specificity_orders_exact_literals_rest_stars() {
        let rank = |t: &str| p(t).specificity();
        assert!(rank("/a/b") > rank("/a/*"));
        assert!(rank("/a/b") > rank("/a/b/**"));
        assert!(rank("/a/b/*") > rank("/a/*/*"));
        assert!(rank("/a/*") > rank("/a/**"));
        assert!(rank("/a/*/*") > rank("/a/**"));
        assert!(rank("/a/**") > rank("/a/*/**"));
        assert!(rank("/a/**") > rank("/**"));
        assert_eq!(rank("/a/*"), rank("/*/b"));
    }

    #[test]
    fn overlap_is_computed_on_segments() {
        assert_eq!(p("/a/*").overlap(&p("/*/b")).as_deref(), Some("/a/b"));
        assert_eq!(p("/a/*").overlap(&p("/b/*")), None);
        assert_eq!(p("/a/**").overlap(&p("/*/b/c")).as_deref(), Some("/a/b/c"));
        assert_eq!(p("/a/b/**").overlap(&p("/a")), None);
        assert_eq!(p("/a/**").overlap(&p("/a")).as_deref(), Some("/a"));
        assert_eq!(p("/**").overlap(&p("/")).as_deref(), Some("/"));
        assert_eq!(p("/a/*/**").overlap(&p("/*/b/**")).as_deref(), Some("/a/b"));
        assert_eq!(p("/a/*").overlap(&p("/a/*/*")), None);
    }
}
