//! `[forward]` and `[errors]`.

use http::HeaderName;

use super::{clean, fold_header, header_name, one_of};
use crate::config::keypath;
use crate::config::raw::{RawErrors, RawForward};
use crate::config::{ConfigErrors, ErrorSettings, ForwardSettings, Keep};

#[cfg(test)]
mod tests;

/// Headers a claim may never be written to (folded form): framing, routing,
/// credentials, proxy metadata and hop-by-hop headers. `X-Forwarded-*` is
/// refused by prefix.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
    "authorization",
    "forwarded",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Validates `[forward]`; `identity_header` is `[sessions] identity_header` as written.
pub(super) fn forward(
    raw: &RawForward,
    identity_header: &str,
    errs: &mut ConfigErrors,
) -> Option<ForwardSettings> {
    let before = errs.0.len();
    let strip_prefixes = strip_prefixes(&raw.strip_prefixes, errs);
    let identity = fold_header(identity_header);
    let mut taken: Vec<(String, String)> = Vec::new();
    let mut claims = Vec::new();
    for (claim, header) in &raw.claims {
        let key = keypath::join("forward.claims", claim);
        if claim.is_empty() {
            errs.push(
                &key,
                "the claim name is empty; write the claim to forward, e.g. sub = \"X-Auth-Subject\"",
            );
        }
        if let Some(name) = claim_header(&key, header, &identity, &mut taken, errs) {
            claims.push((claim.clone(), name));
        }
    }
    let json = raw.claims_json_header.trim();
    let claims_json_header = if json.is_empty() {
        None
    } else {
        claim_header("forward.claims_json_header", json, &identity, &mut taken, errs)
    };
    let keep = [("keep", Keep::Keep), ("strip", Keep::Strip)];
    let settings = ForwardSettings {
        strip_prefixes,
        claims,
        claims_json_header,
        token: one_of("forward.token", &raw.token, &keep, errs).unwrap_or(Keep::Keep),
        refresh_cookie: one_of("forward.refresh_cookie", &raw.refresh_cookie, &keep, errs)
            .unwrap_or(Keep::Strip),
    };
    clean(errs, before, settings)
}

/// Folded (lower-case, `_` → `-`); an empty prefix would strip every header.
fn strip_prefixes(raw: &[String], errs: &mut ConfigErrors) -> Vec<String> {
    let mut out = Vec::new();
    for (i, prefix) in raw.iter().enumerate() {
        let folded = fold_header(prefix);
        let valid = !folded.is_empty() && HeaderName::from_bytes(folded.as_bytes()).is_ok();
        if valid {
            out.push(folded);
        } else {
            errs.push(
                keypath::index("forward.strip_prefixes", i),
                format!("{prefix:?} is not a header-name prefix; write e.g. \"X-Auth-\" (an empty prefix would strip every header)"),
            );
        }
    }
    out
}

/// A header jwtgate writes a claim into: valid, not reserved, not used twice.
/// `taken` holds (folded header, key) of the headers accepted so far.
fn claim_header(
    key: &str,
    header: &str,
    identity: &str,
    taken: &mut Vec<(String, String)>,
    errs: &mut ConfigErrors,
) -> Option<HeaderName> {
    let name = header_name(key, header, errs)?;
    let folded = fold_header(header);
    if RESERVED_HEADERS.contains(&folded.as_str()) || folded.starts_with("x-forwarded-") || folded == identity
    {
        errs.push(
            key,
            format!(
                "{header:?} is a header jwtgate or the HTTP framing owns (Host, Cookie, Authorization, \
                 Forwarded, X-Forwarded-*, hop-by-hop, or the sessions identity_header); \
                 write another name, e.g. \"X-Auth-…\""
            ),
        );
        return None;
    }
    if let Some((_, other)) = taken.iter().find(|(h, _)| *h == folded) {
        errs.push(
            key,
            format!("{header:?} is already the header of {other}; give each claim its own header"),
        );
        return None;
    }
    taken.push((folded, key.to_string()));
    Some(name)
}

/// Validates `[errors]`: `login_url` empty = no redirect; else an absolute path
/// (`/login`) or an http(s) URL, usable as a `Location` header.
pub(super) fn errors(raw: &RawErrors, errs: &mut ConfigErrors) -> Option<ErrorSettings> {
    let url = raw.login_url.trim();
    if url.is_empty() {
        return Some(ErrorSettings { login_url: None });
    }
    let absolute_path = url.starts_with('/') && !url.starts_with("//");
    let http_url = url.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https"))
            && u.authority().is_some_and(|a| !a.host().is_empty())
    });
    let header_safe = http::HeaderValue::from_str(url).is_ok() && !url.contains(['#', ' ']);
    if (absolute_path || http_url) && header_safe {
        return Some(ErrorSettings { login_url: Some(url.to_string()) });
    }
    errs.push(
        "errors.login_url",
        format!("{url:?} is not a login URL; write an absolute path like \"/login\" or a URL like \"https://id.example.com/login\" (no fragment), or \"\" for no redirect"),
    );
    None
}
