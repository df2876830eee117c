//! Request-target canonicalization (DESIGN.md §4 rules 2–5).
//!
//! The gateway matches a route on the canonical path and forwards the very same
//! bytes, so anything two parsers could read differently is refused here rather
//! than "fixed": an upstream must never see a path that means something other
//! than what the route table judged.
//!
//! Decisions beyond the letter of DESIGN.md §4:
//! - the byte checks of rule 2 (control bytes, raw non-ASCII, malformed `%`) and the
//!   raw `#` apply to the whole target, query included, because the query is
//!   forwarded and a token may be taken from it (`query_param`);
//! - `%3B` is refused like a raw `;` when semicolons are not allowed (rule 4: "before
//!   AND after decoding"); when they are allowed it stays encoded, since `;` is not
//!   unreserved;
//! - printable ASCII that RFC 3986 does not allow raw in a path (space, `"`, `<`, `>`,
//!   `[`, `]`, `^`, `` ` ``, `{`, `|`, `}`) is percent-encoded, so that `/a"b` and
//!   `/a%22b` are one canonical path instead of two;
//! - decoded C1 controls and the compatibility forms that NFKC folds to `.`, `..` or
//!   `\` (U+2024, U+2025, U+FE52, U+FE68) are refused along with rule 2's look-alikes.

use crate::error::GatewayError;

/// Longest request target accepted; longer ones get 414 (DESIGN.md §4 rule 2).
pub const MAX_TARGET_BYTES: usize = 8192;

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
    /// The target exceeds [`MAX_TARGET_BYTES`] → 414.
    #[error("request target longer than 8 KiB")]
    TooLong,
    /// The target could be read two ways (or is malformed) → 400; the text says why.
    #[error("{0}")]
    Ambiguous(&'static str),
}

impl PathError {
    /// The refusal sent to the client: 414 uri_too_long or 400 bad_request.
    pub fn into_error(self) -> GatewayError {
        match self {
            PathError::TooLong => GatewayError::UriTooLong,
            PathError::Ambiguous(why) => GatewayError::BadRequest(why),
        }
    }
}

use PathError::Ambiguous;

/// Canonicalizes an origin-form request target as received on the wire.
///
/// Runs once per request, before routing; the returned path is what routes are
/// matched against and (after `strip_prefix`) what the upstream receives. The query
/// is split off at the first `?` and returned untouched. `allow_semicolon` is
/// `[server] allow_semicolon` (default false: any `;` in the path is a 400).
/// The result is a fixed point: canonicalizing `path` again returns it unchanged.
pub fn canonicalize(target: &str, allow_semicolon: bool) -> Result<Canonical, PathError> {
    if target.len() > MAX_TARGET_BYTES {
        return Err(PathError::TooLong);
    }
    if !target.starts_with('/') {
        return Err(Ambiguous("request target must start with / (origin-form)"));
    }
    check_target_bytes(target.as_bytes())?;
    let (raw_path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let path = canonical_path(raw_path, allow_semicolon)?;
    // Encoding raw characters can lengthen the path; refusing here keeps the
    // output a fixed point (it is always accepted again).
    if path.len() > MAX_TARGET_BYTES {
        return Err(PathError::TooLong);
    }
    Ok(Canonical { path, query })
}

/// Rule 2 on the raw bytes of the whole target.
fn check_target_bytes(bytes: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0x00..=0x1F | 0x7F => return Err(Ambiguous("control character in request target")),
            0x80..=0xFF => return Err(Ambiguous("raw non-ASCII byte in request target; percent-encode it")),
            b'#' => return Err(Ambiguous("fragment (#) in request target")),
            b'%' => {
                if hex_pair(bytes, i + 1).is_none() {
                    return Err(Ambiguous("malformed percent-escape (% not followed by two hex digits)"));
                }
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The byte encoded by the two hex digits at `bytes[at..at + 2]`, if they are hex digits.
fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = (*bytes.get(at)? as char).to_digit(16)?;
    let lo = (*bytes.get(at + 1)? as char).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

/// Canonicalizes the path part (starts with `/`, no `?`).
fn canonical_path(raw_path: &str, allow_semicolon: bool) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw_path.len());
    let mut segments = raw_path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        out.push('/');
        if segment.is_empty() {
            // Only the final segment may be empty: "/" itself, or one trailing slash.
            if last {
                break;
            }
            return Err(Ambiguous("empty path segment (//)"));
        }
        canonical_segment(segment, allow_semicolon, &mut out)?;
    }
    Ok(out)
}

/// Appends the canonical form of one non-empty raw segment to `out`, refusing it if
/// its escapes or its decoded text are ambiguous.
fn canonical_segment(segment: &str, allow_semicolon: bool, out: &mut String) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    // Without escapes the decoded text is the segment itself, byte for
    // byte: no buffer for it.
    let escapes = bytes.contains(&b'%');
    let mut decoded = if escapes { Vec::with_capacity(bytes.len()) } else { Vec::new() };
    let mut i = 0;
    while i < bytes.len() {
        let (byte, escaped) = match bytes[i] {
            b'%' => {
                let byte = hex_pair(bytes, i + 1).ok_or(Ambiguous("malformed percent-escape"))?;
                i += 2;
                (byte, true)
            }
            byte => (byte, false),
        };
        i += 1;
        check_byte(byte, escaped, allow_semicolon)?;
        push_canonical(byte, escaped, out);
        if escapes {
            decoded.push(byte);
        }
    }
    let text = if escapes {
        std::str::from_utf8(&decoded)
            .map_err(|_| Ambiguous("percent-escapes in path that do not decode to valid UTF-8"))?
    } else {
        segment
    };
    check_decoded_segment(text)
}

/// Rule 4 for one byte of a segment, `escaped` telling whether it came from `%XX`.
fn check_byte(byte: u8, escaped: bool, allow_semicolon: bool) -> Result<(), PathError> {
    let reason = match (byte, escaped) {
        (b'\\', false) => "backslash in path",
        (b'\\', true) => "encoded backslash (%5C) in path",
        (b'/', true) => "encoded slash (%2F) in path",
        (b'?', true) => "encoded question mark (%3F) in path",
        (b'#', true) => "encoded fragment mark (%23) in path",
        (b'%', true) => "encoded percent sign (%25) in path: double encoding",
        (0x00..=0x1F | 0x7F, _) => "encoded control character in path",
        (b';', false) if !allow_semicolon => "semicolon in path (see [server] allow_semicolon)",
        (b';', true) if !allow_semicolon => "encoded semicolon (%3B) in path (see [server] allow_semicolon)",
        _ => return Ok(()),
    };
    Err(Ambiguous(reason))
}

/// Writes one byte in canonical form: unreserved characters raw, characters that
/// may stand raw in a path as they came, everything else as upper-case `%XX`.
fn push_canonical(byte: u8, escaped: bool, out: &mut String) {
    let raw_ok = is_unreserved(byte) || (!escaped && is_raw_path_char(byte));
    if raw_ok {
        out.push(char::from(byte));
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0F)]));
    }
}

/// RFC 3986 unreserved: escapes of these are decoded (rule 5).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 sub-delims, `:` and `@`: allowed raw in a segment and kept as sent,
/// because an escape of one of them may mean something else to the upstream.
fn is_raw_path_char(byte: u8) -> bool {
    matches!(byte, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

/// Non-ASCII letters whose case mapping is ASCII, percent-encoded as a
/// lower-cased canonical path spells them, with what they fold to. .NET's
/// `OrdinalIgnoreCase` (ASP.NET Core routing) upper-cases `ı` to `I` and `ſ`
/// to `S`; Java's `equalsIgnoreCase` also lower-cases `K` (Kelvin) to `k` and
/// `İ` to `i`; a full upper-casing (Java's `String.toUpperCase`) turns `ß`
/// into `SS` and the Latin ligatures into their letters.
const CASE_FOLDS: [(&str, &str); 13] = [
    ("%c4%b0", "i"),      // İ U+0130
    ("%c4%b1", "i"),      // ı U+0131
    ("%c5%bf", "s"),      // ſ U+017F
    ("%e2%84%aa", "k"),   // K U+212A
    ("%c3%9f", "ss"),     // ß U+00DF
    ("%e1%ba%9e", "ss"),  // ẞ U+1E9E
    ("%ef%ac%80", "ff"),  // ﬀ U+FB00
    ("%ef%ac%81", "fi"),  // ﬁ
    ("%ef%ac%82", "fl"),  // ﬂ
    ("%ef%ac%83", "ffi"), // ﬃ
    ("%ef%ac%84", "ffl"), // ﬄ
    ("%ef%ac%85", "st"),  // ﬅ
    ("%ef%ac%86", "st"),  // ﬆ
];

/// A canonical path (or pattern) as a case-folding upstream reads it, for the
/// case guard (DESIGN §4 rule 9): ASCII letters lower-cased, and the
/// non-ASCII letters that fold into ASCII ones ([`CASE_FOLDS`]) replaced, so
/// `/adm%C4%B1n` (`admın`) is read as `/admin`.
pub(crate) fn fold_case(path: &str) -> String {
    let mut folded = path.to_ascii_lowercase();
    if folded.contains("%c") || folded.contains("%e") {
        for (escaped, ascii) in CASE_FOLDS {
            if folded.contains(escaped) {
                folded = folded.replace(escaped, ascii);
            }
        }
    }
    folded
}

/// Sub-delims, `:` and `@` whose escapes the escape guard decodes: all of
/// [`is_raw_path_char`] but `*`. A raw `*` segment is a route pattern's
/// wildcard, so a literal one can only be written `%2A`, and decoding it
/// would match it against every `*` route.
fn is_guarded_escape(byte: u8) -> bool {
    byte != b'*' && is_raw_path_char(byte)
}

/// The byte a guarded escape at `bytes[i]` (`%3A`) stands for, if one starts there.
fn guarded_escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    hex_pair(bytes, i + 1).filter(|&b| bytes[i] == b'%' && is_guarded_escape(b))
}

/// A canonical path with its escapes of sub-delims, `:` and `@` decoded
/// (`/api/users%3Apurge` → `/api/users:purge`), the way nearly every app
/// server reads it before routing; `None` when it has none. For the escape
/// guard (`RouteTable::lookup`); the upstream still receives the canonical
/// bytes.
pub(crate) fn decode_reserved_escapes(path: &str) -> Option<String> {
    if !path.contains('%') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        match guarded_escape_at(bytes, i) {
            Some(byte) => {
                out.push(char::from(byte));
                changed = true;
                i += 3;
            }
            None => {
                // Canonical paths are ASCII: byte by byte is char by char.
                out.push(char::from(bytes[i]));
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// The first escape of a sub-delim (but `*`), `:` or `@` in a canonical
/// path, as (`%3A`, `:`): a route pattern must spell these raw.
pub(crate) fn reserved_escape(path: &str) -> Option<(&str, char)> {
    let bytes = path.as_bytes();
    (0..bytes.len()).find_map(|i| guarded_escape_at(bytes, i).map(|byte| (&path[i..i + 3], char::from(byte))))
}

/// Rules 2 and 4 on the fully decoded text of one segment.
fn check_decoded_segment(text: &str) -> Result<(), PathError> {
    if text == "." || text == ".." {
        return Err(Ambiguous("dot segment (. or ..) in path, raw or encoded"));
    }
    if text.ends_with('.') {
        return Err(Ambiguous("path segment ending in a dot"));
    }
    if text.ends_with(char::is_whitespace) {
        return Err(Ambiguous("path segment ending in whitespace"));
    }
    for c in text.chars() {
        if is_look_alike(c) {
            return Err(Ambiguous("encoded look-alike of . / or \\ in path"));
        }
        if c.is_control() {
            return Err(Ambiguous("encoded control character in path"));
        }
    }
    Ok(())
}

/// Characters some upstreams fold into `.`, `/` or `\` (full-width forms, division
/// slash, set minus, and the NFKC compatibility dots and backslash).
fn is_look_alike(c: char) -> bool {
    matches!(c, '\u{FF0E}' | '\u{FF0F}' | '\u{FF3C}' | '\u{2215}' | '\u{2216}')
        || matches!(c, '\u{2024}' | '\u{2025}' | '\u{FE52}' | '\u{FE68}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_escapes_decode_for_the_guard_only() {
        assert_eq!(decode_reserved_escapes("/a/users%3Apurge/%40me"), Some("/a/users:purge/@me".into()));
        assert_eq!(decode_reserved_escapes("/caf%C3%A9/%20x"), None, "other escapes are not the guard's");
        assert_eq!(decode_reserved_escapes("/plain"), None);
        assert_eq!(decode_reserved_escapes("/%2B%2b"), Some("/++".into()));
        assert_eq!(reserved_escape("/x/a%2Bb"), Some(("%2B", '+')));
        assert_eq!(reserved_escape("/x/%C3%A9"), None);
        // A literal `*` can only be spelled %2A: it is no wildcard to decode into.
        assert_eq!(decode_reserved_escapes("/x/%2A"), None);
        assert_eq!(reserved_escape("/x/%2A"), None);
    }

    #[test]
    fn case_folding_reads_letters_that_fold_into_ascii_as_ascii() {
        assert_eq!(fold_case("/Adm%C4%B1n/%C5%BFecret/%E2%84%AAey"), "/admin/secret/key");
        assert_eq!(fold_case("/stra%C3%9Fe/%EF%AC%81le"), "/strasse/file");
        assert_eq!(fold_case("/caf%C3%A9"), "/caf%c3%a9", "other letters stay escaped");
    }

    fn path(target: &str) -> String {
        match canonicalize(target, false) {
            Ok(c) => c.path,
            Err(e) => panic!("{target:?} refused: {e}"),
        }
    }

    fn refused(target: &str) -> bool {
        matches!(canonicalize(target, false), Err(Ambiguous(_)))
    }

    #[test]
    fn plain_paths_pass_unchanged() {
        for p in ["/", "/a", "/a/", "/a/b/c", "/a-b_c~d.e/f", "/x:y@z!$&'()*+,=", "/%C3%A9t%C3%A9"] {
            assert_eq!(path(p), p);
        }
    }

    #[test]
    fn query_is_split_at_first_question_mark_and_kept_verbatim() {
        let c = canonicalize("/a/%62?x=%2F..//?y=%zz;", false);
        // A malformed escape in the query is still refused (rule 2 covers the whole target).
        assert!(c.is_err());
        let c = canonicalize("/a/%62?x=%2F..//?y;=1", false).unwrap();
        assert_eq!(c.path, "/a/b");
        assert_eq!(c.query.as_deref(), Some("x=%2F..//?y;=1"));
        assert_eq!(canonicalize("/a?", false).unwrap().query.as_deref(), Some(""));
        assert_eq!(canonicalize("/a", false).unwrap().query, None);
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_upper_cased() {
        assert_eq!(path("/%61dmin"), "/admin");
        assert_eq!(path("/%7Euser/%2d%5F%2e%30"), "/~user/-_.0");
        assert_eq!(path("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(path("/a%2ab%3a"), "/a%2Ab%3A");
        assert_eq!(path("/a%20b"), "/a%20b");
    }

    #[test]
    fn raw_characters_not_allowed_in_a_path_are_encoded() {
        assert_eq!(path("/a\"b"), "/a%22b");
        assert_eq!(path("/a b"), "/a%20b");
        assert_eq!(path("/{x}|[y]^`<>"), "/%7Bx%7D%7C%5By%5D%5E%60%3C%3E");
    }

    #[test]
    fn length_and_origin_form() {
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(canonicalize(&long, false), Err(PathError::TooLong));
        let max = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 1));
        assert!(canonicalize(&max, false).is_ok());
        let grows = format!("/{}", "\"".repeat(3000));
        assert_eq!(canonicalize(&grows, false), Err(PathError::TooLong));
        for t in ["", "*", "a/b", "http://x/a", "%2Fa"] {
            assert!(refused(t), "{t:?}");
        }
    }

    #[test]
    fn raw_bytes_that_are_refused() {
        for t in [
            "/a\0b",
            "/a\tb",
            "/a\nb",
            "/a\x7fb",
            "/caf\u{e9}",
            "/a#b",
            "/a?b#c",
            "/a%",
            "/a%4",
            "/a%zz",
            "/a%G1",
        ] {
            assert!(refused(t), "{t:?}");
        }
    }

    #[test]
    fn encoded_separators_and_double_encoding_are_refused() {
        for t in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a\\b", "/a%3Fb", "/a%23b", "/a%25", "/a%252F", "/a%2500"] {
            assert!(refused(t), "{t:?}");
        }
    }

    #[test]
    fn encoded_controls_are_refused() {
        for t in ["/a%00", "/a%0A", "/a%1f", "/a%7F", "/a%C2%85b", "/a%C2%9Fb"] {
            assert!(refused(t), "{t:?}");
        }
    }

    #[test]
    fn semicolons_follow_allow_semicolon() {
        assert!(refused("/a;b"));
        assert!(refused("/a%3Bb"));
        assert_eq!(canonicalize("/a;b=1/c", true).unwrap().path, "/a;b=1/c");
        assert_eq!(canonicalize("/a%3bb", true).unwrap().path, "/a%3Bb");
        // A query may carry semicolons either way.
        assert!(canonicalize("/a?b;c", false).is_ok());
    }

    #[test]
    fn empty_segments_are_refused_but_one_trailing_slash_is_fine() {
        for t in ["//", "//a", "/a//b", "/a//", "/a///"] {
            assert!(refused(t), "{t:?}");
        }
        assert_eq!(path("/a/"), "/a/");
        assert_eq!(path("/"), "/");
    }

    #[test]
    fn dot_segments_raw_or_encoded_are_refused() {
        for t in [
            "/.", "/..", "/./a", "/a/../b", "/a/.", "/a/./", "/%2E", "/%2e%2E", "/.%2E", "/%2E./x",
            "/a/%2e/b",
        ] {
            assert!(refused(t), "{t:?}");
        }
    }

    #[test]
    fn segments_ending_in_dot_or_whitespace_are_refused() {
        for t in ["/a.", "/a./b", "/a%2E", "/a...", "/a%20", "/a%20/b", "/a%09", "/a%C2%A0", "/a%E3%80%80"] {
            assert!(refused(t), "{t:?}");
        }
        assert_eq!(path("/a.b/.c/%20x"), "/a.b/.c/%20x");
    }

    #[test]
    fn invalid_utf8_and_look_alikes_are_refused() {
        for t in [
            "/%C3",
            "/%C3/%A9",
            "/%FF",
            "/%C0%AF",
            "/%ED%A0%80",
            "/%EF%BC%8E",
            "/%EF%BC%8F",
            "/%EF%BC%BC",
            "/%E2%88%95",
            "/%E2%88%96",
            "/%E2%80%A4",
            "/%EF%B9%92",
        ] {
            assert!(refused(t), "{t:?}");
        }
    }

    #[test]
    fn output_is_a_fixed_point() {
        for t in ["/%61/%c3%a9/x\"y/a;b", "/a%20b/", "/%7e", "/"] {
            let once = canonicalize(t, true).unwrap().path;
            assert_eq!(canonicalize(&once, true).unwrap().path, once);
        }
    }
}
