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

    fn count(&self, name: &str) -> usize {
        self.pairs.iter().filter(|(n, _)| n == name.as_bytes()).count()
    }

    /// One of jwtgate's own cookie names twice → 400: which copy an app would
    /// read is not defined, so neither is trusted.
    pub fn reject_duplicates(&self, names: &[&str]) -> Result<(), GatewayError> {
        if names.iter().any(|n| self.count(n) > 1) {
            return Err(GatewayError::BadRequest("an authentication cookie appears more than once"));
        }
        Ok(())
    }

    /// The Cookie header to forward, without the named cookies; None if empty.
    pub fn render_without(&self, drop: &[&str]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (name, value) in &self.pairs {
            if drop.iter().any(|d| d.as_bytes() == name.as_slice()) {
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

    /// Replaces (or adds) `name`'s value, for forwarding a refreshed token.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.pairs.iter_mut().find(|(n, _)| n == name.as_bytes()) {
            Some(pair) => pair.1 = value.as_bytes().to_vec(),
            None => self.pairs.push((name.as_bytes().to_vec(), value.as_bytes().to_vec())),
        }
    }
}

/// The Bearer token of the single Authorization header, if it is one.
/// Two Authorization headers → 400 (an app might read the other one).
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Authorization header"));
    }
    let Ok(text) = first.to_str() else { return Ok(None) };
    let Some((scheme, token)) = text.split_once(' ') else { return Ok(None) };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_matches(' ');
    Ok((!token.is_empty()).then_some(token))
}

/// Whether an app could read a Bearer token from this Authorization value,
/// verified or not: flask-jwt-extended splits a comma list and each element
/// on any whitespace (`Basic …, Bearer …`, `Bearer\t…`).
pub fn is_bearer(value: &http::HeaderValue) -> bool {
    value.as_bytes().split(|&b| b == b',').any(|element| {
        let mut words = element.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
        words.next().is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer"))
    })
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
