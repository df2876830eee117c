//! Browser-like helpers for session tests: a cookie jar that applies Set-Cookie,
//! and the session routes the suites share.

use std::collections::BTreeMap;

/// The handler routes (login, refresh with GET+POST, logout) plus an `access`
/// route `/api/**`, with a 30 s reuse grace: what every session suite runs.
pub const SESSION_ROUTES: &str = r#"
[sessions]
reuse_grace = "30s"

[[routes]]
path = "/login"
handler = "login"
upstream = "app"

[[routes]]
path = "/refresh"
handler = "refresh"
methods = ["GET", "POST"]

[[routes]]
path = "/logout"
handler = "logout"

[[routes]]
path = "/api/**"
policy = "access"
upstream = "app"
"#;

use super::RawResponse;

/// The cookies a browser would hold, by name.
#[derive(Debug, Clone, Default)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    /// Applies every Set-Cookie of `resp` (Max-Age=0 deletes).
    pub fn absorb(&mut self, resp: &RawResponse) {
        for line in resp.all("set-cookie") {
            let first = line.split(';').next().unwrap_or_default();
            let (name, value) = first.split_once('=').unwrap_or((first, ""));
            if line.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The Set-Cookie lines of a response, sorted, for comparing two responses.
pub fn set_cookies(resp: &RawResponse) -> Vec<String> {
    let mut v = resp.all("set-cookie");
    v.sort();
    v
}

/// Just the `name=value` of each Set-Cookie, sorted: two responses carrying the
/// same tokens compare equal even when their Max-Age counts from another second.
pub fn cookie_values(resp: &RawResponse) -> Vec<String> {
    let mut v: Vec<String> =
        resp.all("set-cookie").iter().map(|c| c.split(';').next().unwrap_or_default().to_owned()).collect();
    v.sort();
    v
}

/// The session's four cookies (default names), each deleted by `resp` and
/// nothing else set: a check that an empty list would pass is no check.
pub fn assert_cleared(resp: &RawResponse) {
    let lines = set_cookies(resp);
    for name in ["access_token_cookie", "csrf_access_token", "csrf_refresh_token", "refresh_token_cookie"] {
        let cleared = lines.iter().filter(|l| l.starts_with(&format!("{name}=")) && l.contains("Max-Age=0"));
        assert_eq!(cleared.count(), 1, "{name} not cleared once: {lines:?}");
    }
    assert_eq!(lines.len(), 4, "{lines:?}");
}
