//! Phases that judge the request line and headers before any credential is
//! looked at: limits, host, canonical target, route.

use http::header::{HOST, TRANSFER_ENCODING};
use http::{Method, Request, Version};

use super::RequestCtx;
use crate::error::GatewayError;
use crate::route::{PathError, RouteMiss};

/// `max_header_bytes` / `max_headers` (431), counted here because hyper's
/// buffer limit does not bound the header block; Transfer-Encoding other than
/// exactly `chunked` → 501 (a coding we don't implement) or 400 (malformed).
pub fn limits<B>(ctx: &RequestCtx, req: &Request<B>) -> Result<(), GatewayError> {
    method(req.method())?;
    let server = &ctx.snap.runtime.server;
    let headers = req.headers();
    if headers.len() > server.max_headers {
        return Err(GatewayError::HeadersTooLarge);
    }
    let bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if bytes > server.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    transfer_encoding(req)
}

/// A method with a lower-case letter → 400, as nginx answers. Routes list
/// methods in upper case and match them exactly, but many app servers
/// (Werkzeug, for one) upper-case the method they receive: `post` would
/// miss a `methods = ["POST"]` route, fall to a broader one, and still run
/// the app's POST handler under that route's policy.
///
/// CONNECT → 405: jwtgate is no forward proxy (DESIGN.md §4).
pub(crate) fn method(method: &Method) -> Result<(), GatewayError> {
    if method == Method::CONNECT {
        return Err(GatewayError::MethodNotAllowed { allow: Vec::new() });
    }
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(GatewayError::BadRequest("the method must be upper-case"));
    }
    Ok(())
}

fn transfer_encoding<B>(req: &Request<B>) -> Result<(), GatewayError> {
    let mut codings = Vec::new();
    for value in req.headers().get_all(TRANSFER_ENCODING) {
        let text = value.to_str().map_err(|_| GatewayError::BadRequest("malformed Transfer-Encoding"))?;
        codings.extend(text.split(',').map(|c| c.trim().to_ascii_lowercase()));
    }
    match codings.as_slice() {
        [] => Ok(()),
        [only] if only == "chunked" => Ok(()),
        list if list.iter().any(|c| c.is_empty() || !c.bytes().all(is_tchar)) => {
            Err(GatewayError::BadRequest("malformed Transfer-Encoding"))
        }
        list if list.iter().filter(|c| *c == "chunked").count() > 1 => {
            Err(GatewayError::BadRequest("chunked applied more than once"))
        }
        _ => Err(GatewayError::NotImplemented),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTTP/1.1: exactly one Host and an origin-form target. HTTP/2: the host is
/// `:authority`, and a `host` field, if present, must equal it; a request
/// without `:authority` carries its host in exactly one `host` field instead
/// (RFC 9113 §8.3.1, as nginx and Envoy accept it).
pub fn host<B>(ctx: &mut RequestCtx, req: &Request<B>) -> Result<(), GatewayError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    let one_host = || match (first, second) {
        (Some(h), None) => {
            Ok(h.to_str().map_err(|_| GatewayError::BadRequest("malformed Host header"))?.to_owned())
        }
        _ => Err(GatewayError::BadRequest("exactly one Host header is required")),
    };
    let host = if req.version() == Version::HTTP_2 {
        match req.uri().authority() {
            Some(authority) => {
                let authority = authority.as_str();
                if second.is_some() || first.is_some_and(|h| h.as_bytes() != authority.as_bytes()) {
                    return Err(GatewayError::BadRequest("host header differs from :authority"));
                }
                authority.to_owned()
            }
            None => one_host()?,
        }
    } else {
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            return Err(GatewayError::BadRequest("absolute-form request targets are not accepted"));
        }
        one_host()?
    };
    ctx.match_host = match_host(&host).ok_or(GatewayError::BadRequest("malformed Host header"))?;
    ctx.host = host;
    Ok(())
}

/// The host as routes match it: lower-cased, the port and one trailing dot
/// dropped. None (→ 400) unless the value is a host an upstream reads the
/// same way: a name of letters, digits, `-`, `_` and dots between non-empty
/// labels, or an IPv6 literal in brackets; then at most one `:port` of
/// digits. Anything looser would let an upstream that normalises the Host
/// (`admin.example.com.`, `admin.example.com:x:80`) serve one host's routes
/// under another's policy.
pub(crate) fn match_host(host: &str) -> Option<String> {
    let bytes = host.as_bytes();
    if bytes.first() == Some(&b'[') {
        // An IPv6 literal matches in its canonical spelling, as route hosts
        // are written: `[0::1]` is `[::1]`.
        let close = host.find(']')?;
        let addr: std::net::Ipv6Addr = host[1..close].parse().ok()?;
        return port_ok(&bytes[close + 1..]).then(|| format!("[{addr}]"));
    }
    // One pass: labels of letters, digits, `-` and `_`, none empty, up to
    // the port.
    let (mut label, mut end) = (0, bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b':' => {
                end = i;
                break;
            }
            b'.' if label == 0 => return None,
            b'.' => label = 0,
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' => label += 1,
            _ => return None,
        }
    }
    // A trailing dot (the last label empty) is left out.
    let name_end = if label == 0 { end.checked_sub(1)? } else { end };
    let name = &host[..name_end];
    (name_end > 0 && port_ok(&bytes[end..]) && ipv4_ok(name)).then(|| name.to_ascii_lowercase())
}

/// A name whose last label is a number is an IPv4 address to browsers and
/// WHATWG URL parsers (`127.1`, `0x7f.0.0.1` and `2130706433` are all
/// 127.0.0.1), so it must be one in the dotted-decimal spelling route hosts
/// are written in; any other spelling would match as a different host than
/// an upstream that parses it reads.
pub(crate) fn ipv4_ok(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    let number = match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    };
    !number || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Nothing, or `:` and at most five digits.
fn port_ok(port: &[u8]) -> bool {
    port.is_empty()
        || port
            .strip_prefix(b":")
            .is_some_and(|digits| digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit))
}

/// DESIGN.md §4 rules 2–5; `*` targets and other non-origin forms → 400.
pub fn canonical<B>(ctx: &mut RequestCtx, req: &Request<B>) -> Result<(), GatewayError> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let allow_semicolon = ctx.snap.runtime.server.allow_semicolon;
    let canonical = crate::route::canonicalize(target, allow_semicolon).map_err(|e| match e {
        PathError::TooLong => GatewayError::UriTooLong,
        PathError::Ambiguous(why) => GatewayError::BadRequest(why),
    })?;
    ctx.canonical = Some(canonical);
    Ok(())
}

/// Most specific route; no route → 404 / 405 with Allow; a case or escape
/// conflict → 400.
pub fn route(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let path = ctx.canonical.as_ref().map_or("/", |c| c.path.as_str());
    let table = &ctx.snap.runtime.routes;
    let route = table.lookup(&ctx.match_host, &ctx.method, path).map_err(RouteMiss::into_error)?;
    ctx.set_route(route.index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::match_host;

    #[test]
    fn hosts_are_lower_cased_without_port() {
        assert_eq!(match_host("App.Example.com:8080").unwrap(), "app.example.com");
        assert_eq!(match_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(match_host("[::FFFF:127.0.0.1]").unwrap(), "[::ffff:127.0.0.1]");
        assert_eq!(match_host("[0:0::1]:8080").unwrap(), "[::1]", "canonical, as route hosts are");
        assert_eq!(match_host("127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(match_host("my_host:").unwrap(), "my_host", "an empty port is a port (RFC 3986)");
        assert!(match_host("a b").is_none());
        assert!(match_host("").is_none());
        assert!(match_host("host:port").is_none());
    }

    #[test]
    fn a_host_an_upstream_would_normalise_matches_as_it_or_is_refused() {
        // One trailing dot is the same host (DNS root), so it matches as one.
        assert_eq!(match_host("Admin.Example.com.").unwrap(), "admin.example.com");
        assert_eq!(match_host("admin.example.com.:443").unwrap(), "admin.example.com");
        assert_eq!(match_host("127.0.0.1.:80").unwrap(), "127.0.0.1");
        // A last label that is not a number leaves the name a name.
        for name in ["123.example.com", "app.0x7g", "a1", "0xz", "app.1e"] {
            assert_eq!(match_host(name).unwrap(), name);
        }
        let refused = [
            "admin.example.com:x:80",
            "admin.example.com:80:80",
            "admin.example.com..",
            ".admin.example.com",
            "admin..example.com",
            ".",
            ":80",
            "admin.example.com:123456",
            "[::1]junk",
            "[::1]:80:80",
            "[]",
            "[::1",
            "[::1%25eth0]",
            "[admin.example.com]",
            "[...]",
            "[1]",
            "admin.example.com/",
            "admin.example.com\\",
            "admin.example.com%2e",
            // IPv4 in spellings other than dotted decimal (WHATWG reads
            // each as an address).
            "127.1",
            "0x7f.0.0.1",
            "0x7F000001",
            "2130706433",
            "127.0.0.01",
            "127.0.0.256",
            "1.2.3.4.5",
            "example.0x",
            "0x",
            "0X7F.1",
            "10.5.",
            "app.example.123",
        ];
        for host in refused {
            assert_eq!(match_host(host), None, "{host:?} was accepted");
        }
    }

    #[test]
    fn methods_with_a_lower_case_letter_are_refused() {
        use http::Method;
        for ok in ["GET", "POST", "MKCOL", "VERSION-CONTROL", "PURGE"] {
            assert!(super::method(&Method::from_bytes(ok.as_bytes()).unwrap()).is_ok(), "{ok}");
        }
        for bad in ["post", "Post", "get", "connect", "PATCh"] {
            assert!(super::method(&Method::from_bytes(bad.as_bytes()).unwrap()).is_err(), "{bad}");
        }
    }
}
