//! The four session cookies (DESIGN.md §7 "Cookies"): tokens HttpOnly, CSRF
//! values readable by JavaScript, attributes from `[cookies]`, Max-Age = the
//! refresh lifetime so an expired access token still arrives to be refreshed.

use http::HeaderValue;

use crate::config::{CookieSettings, Runtime, SameSite};
use crate::store::TokenPair;

/// Whether JavaScript may read the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Hidden,
    Readable,
}

fn cookie(
    settings: &CookieSettings,
    name: &str,
    value: &str,
    max_age: i64,
    script: Script,
) -> Option<HeaderValue> {
    let mut s = format!("{name}={value}; Path={}; Max-Age={}", settings.path, max_age.max(0));
    if let Some(domain) = &settings.domain {
        s.push_str("; Domain=");
        s.push_str(domain);
    }
    if settings.secure {
        s.push_str("; Secure");
    }
    if script == Script::Hidden {
        s.push_str("; HttpOnly");
    }
    s.push_str(match settings.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    HeaderValue::from_str(&s).ok()
}

/// Whether the Set-Cookie value `theirs` (an app's) sets the same cookie as
/// `ours` (one of jwtgate's, made under `settings`): the same name, Path and Domain, the
/// cookie's identity to a browser (RFC 6265 §5.3). Read as browsers read it
/// (§5.2): a value with no `=` sets nothing; attribute names in any case,
/// the last of each winning; no valid Path means the request path's
/// directory; a Domain's leading dot and case do not count.
pub fn same_cookie(theirs: &[u8], ours: &[u8], settings: &CookieSettings, request_path: &str) -> bool {
    let name = ours.split(|&b| b == b'=').next().unwrap_or_default();
    let mut parts = theirs.split(|&b| b == b';');
    let pair = parts.next().unwrap_or_default();
    let Some(eq) = pair.iter().position(|&b| b == b'=') else {
        return false;
    };
    if pair[..eq].trim_ascii() != name {
        return false;
    }
    let (mut path, mut domain): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    for attribute in parts {
        let (key, value) = match attribute.iter().position(|&b| b == b'=') {
            Some(i) => (attribute[..i].trim_ascii(), attribute[i + 1..].trim_ascii()),
            None => (attribute.trim_ascii(), &b""[..]),
        };
        if key.eq_ignore_ascii_case(b"path") {
            path = value.starts_with(b"/").then_some(value);
        } else if key.eq_ignore_ascii_case(b"domain") {
            let value = value.strip_prefix(b".").unwrap_or(value);
            domain = (!value.is_empty()).then_some(value);
        }
    }
    let path = path.unwrap_or_else(|| default_path(request_path).as_bytes());
    let same_domain = match (domain, &settings.domain) {
        (None, None) => true,
        (Some(theirs), Some(ours)) => {
            theirs.eq_ignore_ascii_case(ours.strip_prefix('.').unwrap_or(ours).as_bytes())
        }
        _ => false,
    };
    same_domain && path == settings.path.as_bytes()
}

/// A cookie's path when Set-Cookie gives none (RFC 6265 §5.1.4): the
/// request path up to its last `/`, or `/`.
fn default_path(request_path: &str) -> &str {
    match request_path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &request_path[..i],
    }
}

/// Set-Cookie values for a new or rotated session. The CSRF cookies only
/// while `[csrf]` is on: AuthX and flask-jwt-extended set them only with CSRF
/// protection on, and nothing reads them otherwise.
pub fn for_session(rt: &Runtime, pair: &TokenPair, csrf: Option<&str>, now: i64) -> Vec<HeaderValue> {
    session(&rt.cookies, pair, csrf.filter(|_| rt.csrf.enabled), now)
}

/// Set-Cookie values for a session, the CSRF cookies when `csrf` is given.
pub fn session(
    settings: &CookieSettings,
    pair: &TokenPair,
    csrf: Option<&str>,
    now: i64,
) -> Vec<HeaderValue> {
    let max_age = pair.refresh_exp - now;
    let mut out = vec![
        cookie(settings, &settings.access, &pair.access_token, max_age, Script::Hidden),
        cookie(settings, &settings.refresh, &pair.refresh_token, max_age, Script::Hidden),
    ];
    if let Some(csrf) = csrf {
        out.push(cookie(settings, &settings.csrf_access, csrf, max_age, Script::Readable));
        out.push(cookie(settings, &settings.csrf_refresh, csrf, max_age, Script::Readable));
    }
    out.into_iter().flatten().collect()
}

/// The most of one cookie's name plus value that browsers keep: RFC 6265
/// §6.1 asks for at least 4096 bytes, and Chrome and Firefox keep no more (a
/// longer cookie is dropped without a word).
const BROWSER_COOKIE_BYTES: usize = 4096;
/// Room kept at login for the session's later tokens, which can be a few
/// bytes longer than its first (a rotation's access token says
/// `"fresh":false`).
const LATER_TOKENS_HEADROOM: usize = 16;

/// Whether a browser would keep this new session's token cookies, and those
/// of its rotations after it.
pub fn fit_a_browser(settings: &CookieSettings, pair: &TokenPair) -> bool {
    [(&settings.access, &pair.access_token), (&settings.refresh, &pair.refresh_token)]
        .into_iter()
        .all(|(name, token)| name.len() + token.len() + LATER_TOKENS_HEADROOM <= BROWSER_COOKIE_BYTES)
}

/// Set-Cookie values that delete all four cookies (Max-Age=0).
pub fn cleared(settings: &CookieSettings) -> Vec<HeaderValue> {
    [
        (&settings.access, Script::Hidden),
        (&settings.refresh, Script::Hidden),
        (&settings.csrf_access, Script::Readable),
        (&settings.csrf_refresh, Script::Readable),
    ]
    .into_iter()
    .filter_map(|(name, script)| cookie(settings, name, "", 0, script))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CookieSettings {
        CookieSettings {
            access: "access_token_cookie".into(),
            refresh: "refresh_token_cookie".into(),
            csrf_access: "csrf_access_token".into(),
            csrf_refresh: "csrf_refresh_token".into(),
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            path: "/".into(),
        }
    }

    #[test]
    fn an_app_cookie_is_the_same_cookie_only_with_the_same_name_path_and_domain() {
        let ours = settings();
        let same = |theirs: &str, path: &str| {
            same_cookie(theirs.as_bytes(), b"access_token_cookie=new", &ours, path)
        };
        assert!(same("access_token_cookie=; Max-Age=0; Path=/", "/api/logout"));
        assert!(same(" access_token_cookie =x; pAtH = / ; HttpOnly", "/api/logout"), "trimmed, any case");
        assert!(same("access_token_cookie=x", "/logout"), "no Path: the request's directory, /");
        assert!(same("access_token_cookie=x; Path=relative", "/logout"), "an invalid Path counts as none");
        assert!(!same("access_token_cookie=x", "/api/logout"), "no Path: /api, another cookie");
        assert!(!same("access_token_cookie=x; Path=/api", "/api/logout"));
        assert!(!same("access_token_cookie=x; Path=/; Path=/api", "/"), "the last Path wins");
        assert!(!same("access_token_cookie=x; Path=/; Domain=example.com", "/"), "ours is host-only");
        assert!(!same("access_token_cookie; Path=/", "/"), "no `=`: sets nothing");
        assert!(!same("Access_token_cookie=x; Path=/", "/"), "names are case-sensitive");
        assert!(!same("refresh_token_cookie=x; Path=/", "/"));

        let ours = CookieSettings { domain: Some("Example.com".into()), ..settings() };
        let same = |theirs: &str| same_cookie(theirs.as_bytes(), b"access_token_cookie=new", &ours, "/");
        assert!(same("access_token_cookie=x; Path=/; Domain=.example.COM"));
        assert!(!same("access_token_cookie=x; Path=/"), "host-only is another cookie");
        assert!(!same("access_token_cookie=x; Path=/; Domain=app.example.com"));
    }

    #[test]
    fn tokens_are_http_only_and_csrf_is_readable() {
        let pair = TokenPair {
            access_token: "a.b.c".into(),
            access_exp: 1100,
            refresh_token: "d.e.f".into(),
            refresh_jti: "j".into(),
            refresh_exp: 4600,
        };
        let cookies: Vec<String> = session(&settings(), &pair, Some("x"), 1000)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            cookies[0],
            "access_token_cookie=a.b.c; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"
        );
        assert!(cookies[1].starts_with("refresh_token_cookie=d.e.f;") && cookies[1].contains("HttpOnly"));
        assert_eq!(cookies[2], "csrf_access_token=x; Path=/; Max-Age=3600; Secure; SameSite=Lax");
        assert!(!cookies[3].contains("HttpOnly"));
    }

    #[test]
    fn a_session_fits_a_browser_while_each_token_cookie_leaves_room_for_later_tokens() {
        let s = settings();
        let pair = |access: usize, refresh: usize| TokenPair {
            access_token: "a".repeat(access),
            access_exp: 0,
            refresh_token: "r".repeat(refresh),
            refresh_jti: "j".into(),
            refresh_exp: 0,
        };
        let access_room = BROWSER_COOKIE_BYTES - LATER_TOKENS_HEADROOM - s.access.len();
        let refresh_room = BROWSER_COOKIE_BYTES - LATER_TOKENS_HEADROOM - s.refresh.len();
        assert!(fit_a_browser(&s, &pair(access_room, refresh_room)));
        assert!(!fit_a_browser(&s, &pair(access_room + 1, 10)));
        assert!(!fit_a_browser(&s, &pair(10, refresh_room + 1)));
    }

    #[test]
    fn clearing_sets_max_age_zero_for_all_four() {
        let mut s = settings();
        s.domain = Some("example.com".into());
        let cleared = cleared(&s);
        assert_eq!(cleared.len(), 4);
        for c in cleared {
            let c = c.to_str().unwrap();
            assert!(c.contains("=; Path=/; Max-Age=0; Domain=example.com"), "{c}");
        }
    }
}
