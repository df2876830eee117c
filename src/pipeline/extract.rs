//! The extract phase's parsing: the Cookie header as raw byte pairs, the
//! Bearer credential, and the query token (DESIGN.md §5, §7 "Cookies").

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use crate::error::GatewayError;

/// Where a credential came from; decides CSRF and what `token = "strip"` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Cookie,
    Query,
}

/// A presented token. Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub token: String,
    pub source: Source,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("source", &self.source).field("token", &"<redacted>").finish()
    }
}

/// The request's cookies in order, names and values as raw bytes. HTTP/2
/// `cookie` crumbs are joined first; pairs split on `;` plus one optional SP.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the request had a Cookie header at all, empty ones included.
    sent: bool,
}

impl CookieJar {
    pub fn parse(headers: &HeaderMap) -> CookieJar {
        let (mut pairs, mut sent) = (Vec::new(), false);
        for value in headers.get_all(COOKIE) {
            sent = true;
            for piece in value.as_bytes().split(|&b| b == b';') {
                let piece = piece.strip_prefix(b" ").unwrap_or(piece);
                if piece.is_empty() {
                    continue;
                }
                let (name, val) = match piece.iter().position(|&b| b == b'=') {
                    Some(i) => (&piece[..i], &piece[i + 1..]),
                    None => (piece, &b""[..]),
                };
                pairs.push((name.to_vec(), val.to_vec()));
            }
        }
        CookieJar { pairs, sent }
    }

    /// Whether the request had a Cookie header (an empty one too): without
    /// one, and with nothing set since, there is no Cookie to rewrite.
    pub fn sent(&self) -> bool {
        self.sent
    }

    /// The value of `name` (compared as raw bytes, no trimming or decoding).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| v.as_slice())
    }

    /// One of jwtgate's own cookie names twice → 400: which copy an app would
    /// read is not defined, so neither is trusted. Twice as an app reads
    /// names: `x=1;  access=A; access=B` is one `access` to jwtgate, which
    /// compares raw bytes, and two to Werkzeug, which trims the name and
    /// reads the first (A), while Starlette reads the last of
    /// `access=B; access =A`. jwtgate would have judged B and the app acted
    /// on A (see `spells_cookie`).
    ///
    /// One pass over the cookies: one shorter than every name is none of
    /// them, and one with no byte to trim, decode or mangle is judged by its
    /// exact name.
    pub fn reject_duplicates<const N: usize>(&self, names: &[&str; N]) -> Result<(), GatewayError> {
        let shortest = names.iter().map(|n| n.len()).min().unwrap_or(0);
        let mut seen = [false; N];
        for (raw, _) in self.pairs.iter().filter(|(raw, _)| raw.len() >= shortest) {
            let foldable = may_fold(raw);
            for (name, seen) in names.iter().zip(&mut seen) {
                if raw == name.as_bytes() || (foldable && folds_to(raw, name)) {
                    if *seen {
                        return Err(GatewayError::BadRequest(
                            "an authentication cookie appears more than once",
                        ));
                    }
                    *seen = true;
                }
            }
        }
        Ok(())
    }

    /// The Cookie header to forward, without the named cookies (in any
    /// spelling an app reads as the name); None if empty.
    pub fn render_without(&self, drop: &[&str]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (name, value) in &self.pairs {
            if drop.iter().any(|d| spells_cookie(name, d)) {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(name);
            out.push(b'=');
            out.extend_from_slice(value);
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether a cookie an app may read as `name` is here, in whatever
    /// spelling (see `spells_cookie`).
    pub fn spelled(&self, name: &str) -> bool {
        self.pairs.iter().any(|(raw, _)| spells_cookie(raw, name))
    }

    /// Replaces (or adds) `name`'s value, for forwarding a refreshed token.
    /// A cookie jwtgate did not read as `name` but an app would (`access =…`)
    /// is replaced too, spelling and all: beside the new one, an app might
    /// read it instead.
    pub fn set(&mut self, name: &str, value: &str) {
        let pair = (name.as_bytes().to_vec(), value.as_bytes().to_vec());
        match self.pairs.iter_mut().find(|(n, _)| spells_cookie(n, name)) {
            Some(found) => *found = pair,
            None => self.pairs.push(pair),
        }
    }
}

/// Whether an app may read the cookie named `raw` as `name`: exactly, or
/// with whitespace around it trimmed (Werkzeug, Starlette, Django, Go and
/// Node all trim; Starlette and Django as `str.strip()` does, which takes
/// NBSP and NEL too), or percent-decoded and mangled as PHP reads names
/// ([`is_param`]). jwtgate itself takes a cookie only by its exact name
/// (DESIGN §7); these other spellings only count toward the duplicate rule,
/// go where the name goes under `strip`, and give way to a swapped token.
fn spells_cookie(raw: &[u8], name: &str) -> bool {
    raw == name.as_bytes() || (may_fold(raw) && folds_to(raw, name))
}

/// Whether a name has a byte some app trims, decodes or mangles: without
/// one, only the exact name reads as the name.
fn may_fold(raw: &[u8]) -> bool {
    raw.iter().any(|&b| FOLDABLE[usize::from(b)])
}

/// The bytes [`may_fold`] looks for, as a table: it runs over every long
/// enough cookie name of every request.
static FOLDABLE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_py_space(b as u8) || matches!(b as u8, b'%' | b'+' | b'.' | b'[');
        b += 1;
    }
    table
};

/// [`spells_cookie`] past the exact comparison.
fn folds_to(raw: &[u8], name: &str) -> bool {
    // Every reading keeps a name's length or shortens it.
    if raw.len() < name.len() {
        return false;
    }
    let start = raw.iter().position(|b| !is_py_space(*b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !is_py_space(*b)).map_or(start, |i| i + 1);
    let trimmed = &raw[start..end];
    trimmed == name.as_bytes() || std::str::from_utf8(trimmed).is_ok_and(|t| is_param(t, name))
}

/// Whitespace to Python's `str.strip()` and `str.split()` in a header read
/// as Latin-1 (a superset of the SP and HTAB other parsers trim or split on).
const fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | 0x85 | 0xa0)
}

/// The Bearer token of the single Authorization header, if it is one.
/// Two Authorization headers → 400 (an app might read the other one).
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    authorization(headers)?.map_or(Ok(None), bearer_token)
}

/// The single Authorization header, if any; two → 400 (an app might read
/// the other one).
pub fn authorization(headers: &HeaderMap) -> Result<Option<&http::HeaderValue>, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Authorization header"));
    }
    Ok(first)
}

/// The Bearer token of an Authorization value, if it carries one.
///
/// It carries one wherever an app could read one from it ([`is_bearer`]),
/// and then it must be one `Bearer <token>`, with the scheme in any case
/// and spaces or tabs between; anything else an app reads a Bearer from is
/// 400. flask-jwt-extended finds the Bearer in a comma list (`Basic …,
/// Bearer X`) and splits on any whitespace (`Bearer\tX`, NBSP included):
/// had jwtgate read no token there, a cookie would have decided and the
/// app run on X, never verified.
pub fn bearer_token(first: &http::HeaderValue) -> Result<Option<&str>, GatewayError> {
    let bytes = first.as_bytes();
    // The usual `Bearer <token>`, in one pass over the token: a fold with
    // no early exit, which the compiler vectorizes (an `all` took 8× as long).
    if bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
        let token = trim_spaces(&bytes[7..]);
        if !token.is_empty() && token.iter().fold(true, |ok, &b| ok & b.is_ascii_graphic() & (b != b',')) {
            return Ok(std::str::from_utf8(token).ok());
        }
    }
    if !is_bearer(first) {
        return Ok(None);
    }
    let text = first.to_str().ok().filter(|t| !t.contains(','));
    let mut words = text.into_iter().flat_map(|t| t.split([' ', '\t'])).filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token)),
        _ => Err(GatewayError::BadRequest("malformed Bearer Authorization header")),
    }
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether an app could read a Bearer token from this Authorization value,
/// verified or not. flask-jwt-extended splits a comma list and each element
/// on any whitespace, as Python's `str.split()` knows it (`Basic …, Bearer
/// …`, `Bearer\t…`, `Bearer\u{a0}…` read as Latin-1). AuthX takes the whole
/// value with every `Bearer ` deleted, so a bare token, or one with
/// `Bearer ` inside it, is a token to AuthX too: any value that reads so as
/// one word with a `.` in it (a JWT's shape; the schemes in use have a
/// space after their name).
pub fn is_bearer(value: &http::HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let flask = bytes.split(|&b| b == b',').any(|element| {
        let mut words = element.split(|&b| is_py_space(b)).filter(|w| !w.is_empty());
        words.next().is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer"))
    });
    flask || authx_reads_a_token(bytes)
}

/// AuthX's reading (`value.replace("Bearer ", "")`) is one word with a `.`.
fn authx_reads_a_token(bytes: &[u8]) -> bool {
    const BEARER: &[u8] = b"Bearer ";
    let (mut rest, mut dot) = (bytes, false);
    while !rest.is_empty() {
        if rest.starts_with(BEARER) {
            rest = &rest[BEARER.len()..];
            continue;
        }
        match rest[0] {
            b if is_py_space(b) => return false,
            b'.' => dot = true,
            _ => {}
        }
        rest = &rest[1..];
    }
    dot
}

/// The value of `param` in a raw query string (first occurrence).
pub fn query_token<'q>(query: &'q str, param: &str) -> Option<&'q str> {
    query.split(['&', ';']).find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (is_param(name, param) && !value.is_empty()).then_some(value)
    })
}

/// The query with every `param=…` pair removed, verbatim otherwise. A `;`
/// separates pairs too, as some parsers read it (Rack 2, Python before 3.9.2).
pub fn query_without(query: &str, param: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut first = true;
    for group in query.split('&') {
        let mut removed = false;
        let mut kept: Vec<&str> = group
            .split(';')
            .filter(|pair| {
                let token = is_param(pair.split_once('=').map_or(*pair, |(n, _)| n), param);
                removed |= token;
                !token
            })
            .collect();
        if removed {
            // `token=F;` leaves no dangling separator behind.
            kept.retain(|pair| !pair.is_empty());
        }
        if kept.is_empty() {
            continue;
        }
        if !first {
            out.push('&');
        }
        first = false;
        out.push_str(&kept.join(";"));
    }
    out
}

/// Whether a query pair's raw `name` is `param` as an app's parser may read
/// it: percent-decoded with `+` as a space (form parsers), and as PHP reads
/// it (leading spaces skipped, the name ending at a NUL, `.`, space and `[`
/// read as `_`, `name[…]` an array of `name`). Otherwise `%74oken=…` would
/// reach an app that reads it as `token=…`, a token jwtgate never saw.
fn is_param(name: &str, param: &str) -> bool {
    if !name.contains(['%', '+', '.', ' ', '[']) {
        return name == param;
    }
    let decoded = match form_urlencoded::parse(name.as_bytes()).next() {
        Some((decoded, _)) => decoded,
        None => return false,
    };
    if decoded == param {
        return true;
    }
    let decoded = decoded.trim_start_matches(' ');
    let decoded = decoded.split('\0').next().unwrap_or_default();
    let base = match decoded.find('[') {
        Some(open) if decoded[open..].contains(']') => &decoded[..open],
        _ => decoded,
    };
    base.len() == param.len()
        && base
            .bytes()
            .zip(param.bytes())
            .all(|(n, p)| n == p || (p == b'_' && matches!(n, b'.' | b' ' | b'[')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn joins_crumbs_and_splits_on_semicolon_and_one_space() {
        let jar = CookieJar::parse(&headers(&["a=1; b=2", "c=3;d=4"]));
        assert_eq!(jar.get("a"), Some(&b"1"[..]));
        assert_eq!(jar.get("d"), Some(&b"4"[..]));
        let jar = CookieJar::parse(&headers(&["a=1;  b=2"]));
        assert_eq!(jar.get("b"), None, "two spaces: the name keeps one");
        assert_eq!(jar.get(" b"), Some(&b"2"[..]));
    }

    #[test]
    fn names_compare_as_raw_bytes() {
        let jar = CookieJar::parse(&headers(&["%5F%5FHost-x=1"]));
        assert_eq!(jar.get("__Host-x"), None);
    }

    /// Spellings Werkzeug (first wins), Starlette (last wins) or PHP read as
    /// the name: beside the real cookie, the app could act on another token
    /// than the one jwtgate judged.
    #[test]
    fn an_auth_cookie_twice_as_apps_read_names_is_refused() {
        let spellings: [(&[u8], &str); 9] = [
            (b"x=1;  access=A; access=B", "access"),
            (b"access=B; access =A", "access"),
            (b"access=B;\taccess=A", "access"),
            // NBSP and NEL as single bytes: Starlette reads the header as Latin-1.
            (b"access=B; \xa0access=A", "access"),
            (b"access=B; access\x85=A", "access"),
            (b"a_b=B; a%5Fb=A", "a_b"),
            (b"a_b=B; a.b=A", "a_b"),
            (b"a_b=B; a+b=A", "a_b"),
            (b"a_b=B; a[b=A", "a_b"),
        ];
        for (cookie, name) in spellings {
            let mut h = HeaderMap::new();
            h.append(COOKIE, HeaderValue::from_bytes(cookie).unwrap());
            let jar = CookieJar::parse(&h);
            assert!(
                jar.reject_duplicates(&[name]).is_err(),
                "{:?} passed",
                cookie.escape_ascii().to_string()
            );
        }
        // The raw-byte rule still decides which cookie is the credential,
        // and other names, however close, pass.
        let jar = CookieJar::parse(&headers(&["x=1;  access=A"]));
        assert_eq!(jar.get("access"), None);
        assert!(jar.reject_duplicates(&["access"]).is_ok());
        let jar = CookieJar::parse(&headers(&["access=B; accessx=A; xaccess=A; acc ess=A; access_=A"]));
        assert!(jar.reject_duplicates(&["access"]).is_ok());
    }

    #[test]
    fn a_name_is_spelled_in_any_spelling_an_app_reads() {
        let jar = CookieJar::parse(&headers(&["x=1;  access=A"]));
        assert!(jar.spelled("access") && jar.get("access").is_none());
        let jar = CookieJar::parse(&headers(&["x=1; accessx=A; access_=B"]));
        assert!(!jar.spelled("access"));
    }

    /// Under `strip`, and when a refreshed token is swapped in, the other
    /// spellings go with the name.
    #[test]
    fn other_spellings_of_a_name_go_where_the_name_goes() {
        let jar = CookieJar::parse(&headers(&["a=1;  access=A; b=2"]));
        assert_eq!(jar.render_without(&["access"]).unwrap(), b"a=1; b=2");
        let mut jar = CookieJar::parse(&headers(&["a=1; access =A; b=2"]));
        jar.set("access", "NEW");
        assert_eq!(jar.render_without(&[]).unwrap(), b"a=1; access=NEW; b=2");
    }

    #[test]
    fn duplicate_auth_cookie_is_refused_other_duplicates_pass() {
        let jar = CookieJar::parse(&headers(&["access=1; theme=a; theme=b"]));
        assert!(jar.reject_duplicates(&["access"]).is_ok());
        let jar = CookieJar::parse(&headers(&["access=1", "access=2"]));
        assert!(jar.reject_duplicates(&["access"]).is_err());
    }

    #[test]
    fn rendering_drops_named_cookies() {
        let jar = CookieJar::parse(&headers(&["a=1; refresh=x; b=2"]));
        assert_eq!(jar.render_without(&["refresh"]).unwrap(), b"a=1; b=2");
        assert_eq!(CookieJar::parse(&headers(&["refresh=x"])).render_without(&["refresh"]), None);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h).unwrap(), None);
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(bearer(&h).is_err());
    }

    /// Wherever flask-jwt-extended or AuthX would read a token, jwtgate reads
    /// the same one or refuses the request: it never sees no token there.
    #[test]
    fn an_authorization_header_an_app_reads_a_bearer_from_carries_one() {
        let read = |value: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
            bearer(&h).map(|t| t.map(str::to_owned))
        };
        for (value, token) in [
            (&b"Bearer a.b.c"[..], "a.b.c"),
            (b"BEARER a.b.c", "a.b.c"),
            (b"Bearer   a.b.c  ", "a.b.c"),
            (b"Bearer\ta.b.c", "a.b.c"),
            (b"bearer \t a.b.c\t", "a.b.c"),
        ] {
            assert_eq!(
                read(value).unwrap().as_deref(),
                Some(token),
                "{:?}",
                value.escape_ascii().to_string()
            );
        }
        for value in [
            &b"Basic eA==, Bearer a.b.c"[..],
            b"Bearer a.b.c, Basic eA==",
            b"Bearer a.b.c,",
            b"Bearer\xa0a.b.c",
            b"Bearer\x85a.b.c",
            b"Bearer a.b.c d",
            b"Bearer",
            // AuthX deletes every `Bearer ` and decodes what is left.
            b"a.b.c",
            b"a.b.Bearer c",
            b"Bearer a.b.Bearer c",
        ] {
            assert!(read(value).is_err(), "{:?} was not refused", value.escape_ascii().to_string());
        }
        // Other schemes carry no token, and nothing is refused for them.
        for value in [
            &b"Basic eA=="[..],
            b"Digest a=1, b=2",
            b"Bearerish a.b.c",
            b"Basic \xa0",
            b"Token a.b.c",
            b"abc",
        ] {
            assert_eq!(read(value).unwrap(), None, "{:?}", value.escape_ascii().to_string());
        }
    }

    #[test]
    fn query_token_found_and_removed() {
        assert_eq!(query_token("a=1&token=xyz&b=2", "token"), Some("xyz"));
        assert_eq!(query_token("tokens=1", "token"), None);
        assert_eq!(query_without("a=1&token=xyz&b=2", "token"), "a=1&b=2");
        assert_eq!(query_without("token=xyz", "token"), "");
        // Spelled so that a form parser reads it as `token`: removed too.
        assert_eq!(query_without("token=T&%74oken=F&%74%6Fken=G&a=%74oken", "token"), "a=%74oken");
        assert_eq!(query_token("%74oken=T", "token"), Some("T"));
        assert_eq!(query_without("my+token=1&my%20token=2&my-token=3", "my token"), "my-token=3");
        // `;` separates pairs for some parsers: a token behind one is found and removed.
        assert_eq!(query_without("x=1;token=F&token=T&b=2;c=3", "token"), "x=1&b=2;c=3");
        assert_eq!(query_token("x=1;token=T", "token"), Some("T"));
        // PHP reads these names as `access_token`.
        let php =
            "access.token=F&access+token=G&access[token=H&access_token[]=I&access_token[k]=J&accessXtoken=1";
        assert_eq!(query_without(php, "access_token"), "accessXtoken=1");
        assert_eq!(query_without("a=1&&b=2", "token"), "a=1&&b=2", "nothing else changes");
        assert_eq!(query_without("a=1&token=F;", "token"), "a=1", "no separator left dangling");
        assert_eq!(query_without("a=1&;token=F;;b=2", "token"), "a=1&b=2");
        assert_eq!(query_without("a=1;;b=2", "token"), "a=1;;b=2", "a group without the token is as sent");
        // PHP skips leading spaces and ends a name at a NUL.
        assert_eq!(query_without("+token=F&%20%20token=G&token%00x=H&x+token=1", "token"), "x+token=1");
    }
}
