//! Header hygiene (DESIGN.md §8): what is stripped from every request before
//! jwtgate adds its own headers, X-Forwarded-*, and response cleanup. Pure
//! functions over a `HeaderMap`; the pipeline decides when each one runs.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{
    HeaderName, HeaderValue, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;
use smallvec::SmallVec;

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones proxies still see).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] parsed: comparing two parsed standard names compares one
/// byte, so a name without `_` is matched against these with no string work.
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Whether `name`, which [`fold_header`] folded to `folded`, is hop-by-hop.
/// The `Cow` tells whether folding changed the name: when it did not, the
/// parsed name is compared, which for standard names is one byte.
#[allow(clippy::ptr_arg)]
#[inline]
fn is_hop_by_hop(name: &HeaderName, folded: &Cow<'_, str>) -> bool {
    if !hop_by_hop_length(folded.len()) {
        return false;
    }
    match folded {
        Cow::Borrowed(_) => HOP_BY_HOP_NAMES.contains(name),
        Cow::Owned(folded) => HOP_BY_HOP.contains(&folded.as_str()),
    }
}

/// The lengths of the [`HOP_BY_HOP`] names, one bit each.
const HOP_BY_HOP_LENGTHS: u32 = {
    let (mut mask, mut i) = (0u32, 0);
    while i < HOP_BY_HOP.len() {
        assert!(HOP_BY_HOP[i].len() < 32);
        mask |= 1 << HOP_BY_HOP[i].len();
        i += 1;
    }
    mask
};

/// Whether a name this long may be hop-by-hop: most names are not, and
/// are told by their length alone (folding keeps it).
#[inline]
fn hop_by_hop_length(len: usize) -> bool {
    len < 32 && HOP_BY_HOP_LENGTHS & (1 << len) != 0
}

/// Headers some frameworks read as the "real" URL or method: an attacker could
/// use them to reach a route under another route's policy. `SCRIPT_NAME` is
/// one of gunicorn's `forwarder_headers`, taken by default from 127.0.0.1:
/// given `SCRIPT_NAME: /public`, gunicorn routes `/public/admin` as
/// `/admin`. (`PATH_INFO`, its other default, only becomes
/// `HTTP_PATH_INFO`; it goes too.) Compared folded, so `SCRIPT_NAME` is
/// `script-name` here.
const REWRITE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
    "script-name",
    "path-info",
];

/// Headers describing the client's hop (its address, port, scheme, the
/// method and URI it asked for) that only a trusted proxy may set: DESIGN
/// §8's list, then the scheme and method spellings app servers read beside
/// `X-Forwarded-Proto` (Rack and gunicorn take `X-Forwarded-Ssl: on` as
/// HTTPS, Rack `X-Forwarded-Scheme`, gunicorn `X-Forwarded-Protocol: ssl`,
/// CodeIgniter `Front-End-Https`, Tornado and the ReverseProxied middleware
/// of Flask's snippets `X-Scheme`, others `X-Url-Scheme`; forward-auth apps
/// read `X-Forwarded-Method` with `X-Forwarded-Uri`), and the mount point
/// that middleware (`X-Script-Name`) and connexion's (`X-Forwarded-Path`)
/// strip from the path they route on, as a trusted proxy may set it.
/// (`HeaderName`s, not `&str`s: a lookup by `&str` parses the name again on
/// every request.)
static UNTRUSTED_HOP_HEADERS: [HeaderName; 16] = [
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-protocol"),
    HeaderName::from_static("front-end-https"),
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-scheme"),
    HeaderName::from_static("x-url-scheme"),
    HeaderName::from_static("x-script-name"),
    HeaderName::from_static("x-forwarded-path"),
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The address headers jwtgate writes itself (kept and extended from a
/// trusted proxy, replaced otherwise).
static REPLACED_ADDRESS_HEADERS: [HeaderName; 4] =
    [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, http::header::FORWARDED];

/// Whether `folded` names a hop header, of either kind.
fn is_hop_header(folded: &str) -> bool {
    UNTRUSTED_HOP_HEADERS.iter().chain(&REPLACED_ADDRESS_HEADERS).any(|h| h.as_str() == folded)
}

/// Lower-cases and reads `_` as `-`, the way many app servers (CGI, WSGI,
/// some Node frameworks) merge `X_Auth_Subject` into `X-Auth-Subject`.
/// Borrows when there is nothing to fold (the common case: `HeaderName`s
/// are already lower-case), so stripping allocates nothing per header.
pub fn fold_name(name: &str) -> Cow<'_, str> {
    if name.bytes().all(|b| b != b'_' && !b.is_ascii_uppercase()) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.bytes().map(|b| if b == b'_' { '-' } else { b.to_ascii_lowercase() as char }).collect())
}

/// [`fold_name`] for a parsed header name, which is lower-case already: only
/// an `_` (rare, found by `memchr`) needs folding. Runs on every header of
/// every request and response.
fn fold_header(name: &HeaderName) -> Cow<'_, str> {
    let name = name.as_str();
    if name.as_bytes().contains(&b'_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The names jwtgate removes from every request, folded.
#[derive(Debug, Clone, Default)]
pub struct StripRules {
    /// Folded prefixes (`x-auth-`).
    pub prefixes: Vec<String>,
    /// Folded exact names: claim headers, claims_json_header, identity_header.
    pub names: Vec<String>,
}

impl StripRules {
    /// The rules a config implies: `strip_prefixes`, every claim header,
    /// `claims_json_header` and the identity header.
    pub fn new(forward: &crate::config::ForwardSettings, identity: &HeaderName) -> StripRules {
        let fold = |h: &HeaderName| fold_name(h.as_str()).into_owned();
        let mut names: Vec<String> = forward.claims.iter().map(|(_, h)| fold(h)).collect();
        names.extend(forward.claims_json_header.iter().map(fold));
        names.push(fold(identity));
        StripRules { prefixes: forward.strip_prefixes.clone(), names }
    }

    fn strips(&self, name: &HeaderName, connection_listed: &[Cow<'_, str>]) -> bool {
        let folded = fold_header(name);
        // An underscore spelling (`X_Forwarded_For`) of an address header goes
        // whoever sent it: an app server that reads `_` as `-` would merge it
        // into the real one, which `apply_forwarded` writes or checks.
        let address_spelling = matches!(&folded, Cow::Owned(f) if is_hop_header(f));
        is_hop_by_hop(name, &folded)
            || address_spelling
            || REWRITE_HEADERS.contains(&folded.as_ref())
            || self.names.iter().any(|n| *n == folded)
            || self.prefixes.iter().any(|p| folded.starts_with(p.as_str()))
            || connection_listed.contains(&folded)
    }
}

/// Headers a message usually names or removes: held inline, so the common
/// message costs no allocation for them.
type Few<T> = SmallVec<[T; 4]>;

/// Names listed in `Connection` (folded): they are hop-by-hop for this request.
/// Borrowed from the header values unless folding changed them. Names that
/// are hop-by-hop anyway (`keep-alive`, the usual one) are left out.
fn connection_listed(headers: &HeaderMap) -> Few<Cow<'_, str>> {
    let mut listed = Few::new();
    for value in headers.get_all(CONNECTION) {
        // The usual values whole, without the split: `keep-alive` lists only
        // a name that is hop-by-hop anyway, `close` only itself. (Every
        // HTTP/1.1 response from nginx says `keep-alive`.)
        let bytes = value.as_bytes();
        if bytes.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        }
        if bytes.eq_ignore_ascii_case(b"close") {
            listed.push(Cow::Borrowed("close"));
            continue;
        }
        let Ok(text) = value.to_str() else { continue };
        for name in text.split(',') {
            let name = fold_name(name.trim());
            if !name.is_empty() && !HOP_BY_HOP.contains(&name.as_ref()) {
                listed.push(name);
            }
        }
    }
    listed
}

/// Removes every spoofable or hop-by-hop header from a client request.
/// Runs BEFORE jwtgate adds claim headers, so nothing a client sent survives.
pub fn strip_request(headers: &mut HeaderMap, rules: &StripRules) {
    let doomed: Few<HeaderName> = {
        let listed = connection_listed(headers);
        headers.keys().filter(|name| rules.strips(name, &listed)).cloned().collect()
    };
    for name in doomed {
        headers.remove(&name);
    }
}

/// Removes hop-by-hop headers (and those `Connection` names) plus `identity`
/// from an upstream response; the identity header never reaches a client.
pub fn strip_response(headers: &mut HeaderMap, identity: &HeaderName) {
    let identity = fold_header(identity);
    let doomed: Few<HeaderName> = {
        let listed = connection_listed(headers);
        headers
            .keys()
            .filter(|name| {
                // Folding keeps a name's length: one that no hop-by-hop
                // name and not `identity` has needs no folding, unless
                // `Connection` listed names.
                let len = name.as_str().len();
                if listed.is_empty() && len != identity.len() && !hop_by_hop_length(len) {
                    return false;
                }
                let folded = fold_header(name);
                is_hop_by_hop(name, &folded) || listed.contains(&folded) || folded == identity
            })
            .cloned()
            .collect()
    };
    for name in doomed {
        headers.remove(&name);
    }
}

/// What the gateway knows about the hop it terminates.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    /// `http` or `https`, as jwtgate was reached.
    pub proto: &'static str,
    /// The request's Host (or `:authority`) as sent.
    pub host: &'a str,
}

/// X-Forwarded-For/-Proto/-Host and `Forwarded` (RFC 7239). From an untrusted
/// peer every client-supplied address header is replaced or removed; from a
/// trusted proxy they are kept and extended. Their underscore spellings are
/// `strip_request`'s, which runs first. Runs on every proxied request, so
/// each value is built in one buffer that becomes the header without a copy.
/// The buffers are sized exactly: `Bytes` takes a full `Vec` as it is, while
/// one with spare capacity costs it an allocation of its own.
pub fn apply_forwarded(headers: &mut HeaderMap, hop: &Hop<'_>) {
    let (xff, xfp, xfh, fwd) =
        (X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, http::header::FORWARDED);
    let peer = ip_text(hop.peer);
    let v6 = hop.peer.is_ipv6();
    // `;host=…` goes only into an untrusted peer's element (below).
    let host_token = is_token(hop.host);
    let host_len = if hop.peer_trusted { 0 } else { 6 + hop.host.len() + if host_token { 0 } else { 2 } };
    let for_len = peer.len() + if v6 { 4 } else { 0 };
    let mut element = String::with_capacity(4 + for_len + 7 + hop.proto.len() + host_len);
    element.push_str("for=");
    if v6 {
        element.push_str("\"[");
        element.push_str(&peer);
        element.push_str("]\"");
    } else {
        element.push_str(&peer);
    }
    element.push_str(";proto=");
    element.push_str(hop.proto);
    if hop.peer_trusted {
        let joined_xff = join_values(headers, &xff).map_or(peer.clone(), |prev| format!("{prev}, {peer}"));
        let joined_fwd =
            join_values(headers, &fwd).map_or(element.clone(), |prev| format!("{prev}, {element}"));
        set(headers, xff, joined_xff);
        set(headers, fwd, joined_fwd);
        if !headers.contains_key(&xfp) {
            headers.insert(xfp, HeaderValue::from_static(hop.proto));
        }
        if !headers.contains_key(&xfh) {
            set(headers, xfh, hop.host.to_owned());
        }
        return;
    }
    // One pass over the (few) headers sent beats a hashed lookup per name;
    // a list of them is made only when one is there (seldom).
    let untrusted = |name: &&HeaderName| UNTRUSTED_HOP_HEADERS.contains(*name);
    if headers.keys().any(|name| untrusted(&name)) {
        let doomed: Few<HeaderName> = headers.keys().filter(untrusted).cloned().collect();
        for name in doomed {
            headers.remove(name);
        }
    }
    set(headers, xff, peer);
    headers.insert(xfp, HeaderValue::from_static(hop.proto));
    set(headers, xfh, hop.host.to_owned());
    element.push_str(";host=");
    if host_token {
        element.push_str(hop.host);
    } else {
        element.push('"');
        element.push_str(hop.host);
        element.push('"');
    }
    set(headers, fwd, element);
}

/// The address as `Display` writes it, in a buffer of exactly its length.
/// IPv4, the common case, without the formatting machinery, which costs
/// more than the rest of this header work.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let octets = v4.octets();
    let digits = |o: u8| 1 + usize::from(o >= 10) + usize::from(o >= 100);
    let mut out = String::with_capacity(3 + octets.iter().map(|&o| digits(o)).sum::<usize>());
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Sets `name` to `value` (its buffer becomes the header's); a value a header
/// cannot carry removes the header instead.
fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// RFC 9110 token. The punctuation as a `matches!`, which compiles to a bit
/// test: a `contains` on a list of it ran a `memchr` for each `.` and `:`
/// of every request's Host.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || is_token_punctuation(b))
}

fn is_token_punctuation(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> StripRules {
        StripRules {
            prefixes: vec!["x-auth-".into()],
            names: vec!["x-jwtgate-identity".into(), "x-user".into()],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn strips_prefixed_claim_headers_and_underscore_variants() {
        let mut h = map(&[
            ("X-Auth-Subject", "admin"),
            ("X_Auth_Subject", "admin"),
            ("x_user", "root"),
            ("X-Jwtgate-Identity", "{}"),
            ("accept", "*/*"),
        ]);
        strip_request(&mut h, &rules());
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn strips_the_mount_point_headers_gunicorn_reads_in_every_spelling() {
        let mut h = map(&[
            ("SCRIPT_NAME", "/public"),
            ("Script-Name", "/public"),
            ("path_info", "/admin"),
            ("X-Script-Name-Hint", "kept"),
        ]);
        strip_request(&mut h, &StripRules::default());
        let kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(kept, ["x-script-name-hint"]);
    }

    #[test]
    fn the_parsed_hop_by_hop_names_are_the_listed_ones() {
        let parsed: Vec<&str> = HOP_BY_HOP_NAMES.iter().map(HeaderName::as_str).collect();
        assert_eq!(parsed, HOP_BY_HOP);
        for name in ["Keep_Alive", "transfer_encoding", "te", "x-te", "connections"] {
            let parsed = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let folded = fold_header(&parsed);
            assert_eq!(
                is_hop_by_hop(&parsed, &folded),
                HOP_BY_HOP.contains(&fold_name(name).as_ref()),
                "{name}"
            );
        }
    }

    #[test]
    fn hop_by_hop_names_are_told_by_length_first() {
        for name in HOP_BY_HOP {
            assert!(hop_by_hop_length(name.len()), "{name}");
        }
        for len in [0, 1, 3, 4, 6, 12, 14, 20, 31, 32, 64, 1000] {
            assert!(!hop_by_hop_length(len), "{len}");
        }
    }

    #[test]
    fn a_response_loses_the_underscore_spellings_of_hop_by_hop_names_and_identity() {
        let mut h = map(&[
            ("Transfer_Encoding", "chunked"),
            ("keep_alive", "5"),
            ("X_Jwtgate_Identity", "{}"),
            ("x_other_header", "1"),
            ("content-type", "text/plain"),
        ]);
        strip_response(&mut h, &HeaderName::from_static("x-jwtgate-identity"));
        let mut kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["content-type", "x_other_header"]);
    }

    #[test]
    fn a_parsed_name_folds_as_its_raw_spelling_does() {
        for raw in ["X_Auth_Subject", "x_user", "X-Auth-Sub", "content-type", "x-a_b__c_", "_"] {
            let parsed = HeaderName::from_bytes(raw.as_bytes()).unwrap();
            assert_eq!(fold_header(&parsed), fold_name(raw), "{raw}");
        }
    }

    #[test]
    fn strips_names_smuggled_through_connection() {
        let mut h = map(&[
            ("connection", "close, X-Custom, x_other"),
            ("x-custom", "1"),
            ("x-other", "2"),
            ("x-keep", "3"),
        ]);
        strip_request(&mut h, &StripRules::default());
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("x-custom"));
        assert!(!h.contains_key("x-other"));
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn strips_url_and_method_override_headers() {
        let mut h = map(&[
            ("x-original-url", "/admin"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("x_rewrite_url", "/a"),
        ]);
        strip_request(&mut h, &StripRules::default());
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn untrusted_peer_gets_its_address_headers_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("x-real-ip", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        let hop =
            Hop { peer: "10.0.0.9".parse().unwrap(), peer_trusted: false, proto: "http", host: "app.test" };
        apply_forwarded(&mut h, &hop);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-host"], "app.test");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["forwarded"], "for=10.0.0.9;proto=http;host=app.test");
        assert!(!h.contains_key("x-real-ip") && !h.contains_key("true-client-ip"));
    }

    #[test]
    fn underscore_spellings_of_address_headers_never_reach_the_upstream() {
        let sent = [
            ("X_Real_IP", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
            ("X_Forwarded_Proto", "https"),
            ("x_forwarded_host", "evil"),
            ("X_Forwarded_Prefix", "/admin"),
            ("true_client_ip", "6.6.6.6"),
            ("x_client_ip", "6.6.6.6"),
            ("x_custom_header", "not an address header: kept"),
            ("x_forwarded_port", "1"),
            ("x_forwarded_server", "evil"),
            ("x_forwarded_uri", "/admin"),
            ("X_Forwarded_Ssl", "on"),
            ("x_forwarded_method", "DELETE"),
        ];
        for trusted in [false, true] {
            let mut h = map(&sent);
            h.append("x-real-ip", HeaderValue::from_static("1.2.3.4"));
            let hop =
                Hop { peer: "10.0.0.9".parse().unwrap(), peer_trusted: trusted, proto: "http", host: "a" };
            strip_request(&mut h, &StripRules::default());
            apply_forwarded(&mut h, &hop);
            let underscored: Vec<&str> =
                h.keys().map(HeaderName::as_str).filter(|n| n.contains('_')).collect();
            assert_eq!(underscored, ["x_custom_header"], "trusted={trusted}");
            assert_eq!(h["x-forwarded-for"], "10.0.0.9");
            assert_eq!(h["x-forwarded-proto"], "http");
            // From a trusted proxy the real X-Real-IP stays; otherwise it goes too.
            assert_eq!(h.contains_key("x-real-ip"), trusted);
        }
    }

    /// A client over plain HTTP must not pass for one over HTTPS (or ask for
    /// another method) to an app that reads another spelling than
    /// `X-Forwarded-Proto`; a trusted proxy in front may say so.
    #[test]
    fn scheme_and_method_spellings_only_a_trusted_proxy_may_send() {
        let sent = [
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-scheme", "https"),
            ("x-forwarded-protocol", "ssl"),
            ("front-end-https", "on"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/admin"),
        ];
        for trusted in [false, true] {
            let mut h = map(&sent);
            let hop =
                Hop { peer: "10.0.0.9".parse().unwrap(), peer_trusted: trusted, proto: "http", host: "a" };
            apply_forwarded(&mut h, &hop);
            for (name, value) in sent {
                let kept = h.get(name).map(|v| v.to_str().unwrap());
                assert_eq!(kept, trusted.then_some(value), "{name}, trusted={trusted}");
            }
            assert_eq!(h["x-forwarded-proto"], "http");
        }
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut h =
            map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("x-real-ip", "1.2.3.4")]);
        let hop = Hop { peer: "::1".parse().unwrap(), peer_trusted: true, proto: "http", host: "app.test" };
        apply_forwarded(&mut h, &hop);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let samples = ["0.0.0.0", "9.10.99.100", "255.255.255.255", "127.0.0.1", "::1", "fe80::1:2"];
        for text in samples {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            let out = ip_text(ip);
            assert_eq!(out, ip.to_string());
            assert_eq!(out.len(), out.capacity(), "{out}: sized exactly");
        }
    }

    #[test]
    fn token_punctuation_is_rfc_9110s() {
        for b in 0..=255u8 {
            assert_eq!(is_token_punctuation(b), b"!#$%&'*+-.^_`|~".contains(&b), "{b}");
        }
    }

    #[test]
    fn a_host_that_is_not_a_token_is_quoted_in_forwarded() {
        let mut h = HeaderMap::new();
        let hop =
            Hop { peer: "::1".parse().unwrap(), peer_trusted: false, proto: "https", host: "[::1]:8443" };
        apply_forwarded(&mut h, &hop);
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=https;host=\"[::1]:8443\"");
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn response_loses_hop_by_hop_and_identity() {
        let mut h = map(&[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-jwtgate-identity", "{}"),
            ("keep-alive", "5"),
            ("etag", "1"),
        ]);
        strip_response(&mut h, &HeaderName::from_static("x-jwtgate-identity"));
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("etag"));
    }
}
