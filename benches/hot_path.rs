//! Micro-benchmarks of the per-request hot path, in pipeline order (lib.rs):
//! canonical → route → extract → verify → rewrite, plus minting.
//!
//! Every fixture (keys, runtimes, tokens, header maps) is built once in `main`,
//! outside any timed closure; one named scenario per function. The machine these
//! run on is shared, so compare ratios between scenarios, not absolute times.
//!
//! `verify/cold/<alg>` is the verifier without its cache of verified tokens
//! (`verify_uncached`: every token decoded and its signature checked);
//! `verify/cached/<alg>` is the gateway's path for a token seen before (a hit
//! re-runs only the clock's checks). `verify_steps/*` split the cold path up, to
//! show where the time goes: the JWS signature check alone through jsonwebtoken
//! (which re-reads the public key on every call), and the raw aws-lc check with
//! a key parsed once.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{BatchSize, BenchmarkGroup, Criterion};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use jsonwebtoken::{Algorithm, DecodingKey};
use jwtgate::config::raw::RawRoute;
use jwtgate::config::{ConfigErrors, Runtime};
use jwtgate::forward::claims::inject;
use jwtgate::forward::headers::{apply_forwarded, strip_request, Hop, StripRules};
use jwtgate::pipeline::extract::{bearer, CookieJar};
use jwtgate::route::{canonicalize, RouteTable};
use jwtgate::token::{generate, Claims, GeneratedKey, MintSpec, TokenType};
use serde_json::{json, Map, Value};

/// Token times: minted at T0, verified a minute later (inside the 15 m ttl).
const T0: i64 = 1_800_000_000;
const NOW: i64 = T0 + 60;
/// 32 bytes: the HS256 minimum.
const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

/// One signing algorithm under test: its runtime, a token it minted, and the
/// public half for the `verify_steps` scenarios.
struct AlgFixture {
    name: &'static str,
    alg: Algorithm,
    runtime: Runtime,
    token: String,
    /// SPKI PEM; `None` for HS256.
    public_pem: Option<String>,
}

fn main() {
    let keys = tempfile::tempdir().expect("tempdir for generated keys");
    let algs: Vec<AlgFixture> = [
        ("HS256", Algorithm::HS256),
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
    ]
    .into_iter()
    .map(|(name, alg)| alg_fixture(name, alg, keys.path()))
    .collect();

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_canonicalize(&mut c);
    bench_route_lookup(&mut c);
    bench_extract(&mut c, &algs[0].token);
    bench_headers(&mut c, &algs[0].runtime);
    bench_claims(&mut c, &algs[0]);
    bench_verify(&mut c, &algs);
    bench_verify_steps(&mut c, &algs);
    bench_mint(&mut c, &algs);
    c.final_summary();
}

/// `[tokens]` + `[forward]` for one algorithm; asymmetric keys are generated
/// into `dir` and loaded through `private_key`, as an operator would.
fn alg_fixture(name: &'static str, alg: Algorithm, dir: &Path) -> AlgFixture {
    let (key_line, public_pem) = match generate(alg).expect("keygen") {
        GeneratedKey::Secret { .. } => (format!("secret = {SECRET:?}"), None),
        GeneratedKey::KeyPair { private_pem, public_pem } => {
            let path = dir.join(format!("{name}.pem"));
            std::fs::write(&path, private_pem).expect("write private key");
            (format!("private_key = {:?}", path.display().to_string()), Some(public_pem))
        }
    };
    let text = format!(
        r#"
[log]
access_log = false

[tokens]
algorithm = "{name}"
{key_line}
issuer = "https://auth.example.com"
audience = ["app"]

[store]
backend = "memory"

[forward]
strip_prefixes = ["X-Auth-"]
claims = {{ sub = "X-Auth-Subject", fresh = "X-Auth-Fresh", roles = "X-Auth-Roles", email = "X-Auth-Email", tenant = "X-Auth-Tenant" }}
claims_json_header = "X-Auth-Claims"

[[upstreams]]
name = "app"
urls = ["http://127.0.0.1:9000"]
"#
    );
    let runtime = jwtgate::config::parse(&text, dir).unwrap_or_else(|e| panic!("{name} config:\n{e}"));
    let extra = identity_claims();
    let spec = MintSpec {
        sub: "alice",
        token_type: TokenType::Access,
        fresh: true,
        csrf: Some("4f1c2e9a-csrf"),
        fid: Some("0b7d4a52-family"),
        auth_time: Some(T0),
        exp: None,
        extra: &extra,
    };
    let token = runtime.tokens.minter.mint(&spec, T0).expect("mint fixture token").token;
    runtime.tokens.verifier.verify(&token, NOW).expect("fixture token verifies");
    AlgFixture { name, alg, runtime, token, public_pem }
}

/// What an identity provider typically adds: a role list, an e-mail, a number.
fn identity_claims() -> Map<String, Value> {
    let v = json!({ "roles": ["admin", "dev"], "email": "alice@example.com", "tenant": 42 });
    v.as_object().cloned().unwrap_or_default()
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    c.benchmark_group(name)
}

fn bench_canonicalize(c: &mut Criterion) {
    let mut g = group(c, "canonicalize");
    let plain = "/api/v1/users/42/profile?expand=roles";
    let escaped = "/api/v1/%7Ealice/caf%c3%a9/report%20Q1/%41%42?lang=fr";
    assert!(canonicalize(escaped, false).is_ok(), "escaped fixture is a valid target");
    g.bench_function("plain", |b| b.iter(|| canonicalize(black_box(plain), false)));
    g.bench_function("escapes", |b| b.iter(|| canonicalize(black_box(escaped), false)));
    g.finish();
}

/// 100 routes over 25 services: per service an exact path, a `**` subtree, a
/// `*` segment and a deeper exact path, so lookup always scans all of them.
fn route_table() -> RouteTable {
    let route = |path: String, policy: &str| RawRoute {
        path,
        policy: Some(policy.into()),
        upstream: Some("app".into()),
        ..RawRoute::default()
    };
    let raw: Vec<RawRoute> = (0..25)
        .flat_map(|i| {
            [
                route(format!("/svc{i}/health"), "public"),
                route(format!("/svc{i}/**"), "access"),
                route(format!("/svc{i}/items/*"), "access"),
                route(format!("/svc{i}/admin/settings"), "fresh"),
            ]
        })
        .collect();
    let mut errs = ConfigErrors::default();
    let table = RouteTable::build(&raw, &["app".to_owned()], &mut errs);
    table.unwrap_or_else(|| panic!("route fixture:\n{errs}"))
}

fn bench_route_lookup(c: &mut Criterion) {
    let table = route_table();
    assert_eq!(table.routes().len(), 100);
    let (host, get) = ("app.example.com", Method::GET);
    assert_eq!(table.lookup(host, &get, "/svc24/admin/settings").map(|r| r.index), Ok(99));
    assert_eq!(table.lookup(host, &get, "/svc24/reports/2024/q1").map(|r| r.index), Ok(97));
    assert!(table.lookup(host, &get, "/nowhere/at/all").is_err());
    let mut g = group(c, "route_lookup");
    g.bench_function("hit_exact", |b| {
        b.iter(|| table.lookup(host, &get, black_box("/svc24/admin/settings")).is_ok())
    });
    g.bench_function("hit_doublestar", |b| {
        b.iter(|| table.lookup(host, &get, black_box("/svc24/reports/2024/q1")).is_ok())
    });
    g.bench_function("miss", |b| b.iter(|| table.lookup(host, &get, black_box("/nowhere/at/all")).is_err()));
    g.finish();
}

/// A browser-like request that also tries to spoof identity and routing headers.
fn request_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: &'static str, value: String| {
        h.append(HeaderName::from_static(name), HeaderValue::from_str(&value).expect("header value"));
    };
    add("host", "app.example.com".into());
    add("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0".into());
    add("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into());
    add("accept-language", "en-US,en;q=0.5".into());
    add("accept-encoding", "gzip, deflate, br".into());
    add("authorization", format!("Bearer {token}"));
    add(
        "cookie",
        format!("_ga=GA1.2.1234567890.1700000000; theme=dark; access_token_cookie={token}; csrf_access_token=4f1c2e9a-csrf; lang=en"),
    );
    add("connection", "keep-alive, x-debug".into());
    add("x-debug", "1".into());
    add("te", "trailers".into());
    add("x-auth-subject", "mallory".into());
    add("x_auth_roles", "admin".into());
    add("x-original-url", "/admin".into());
    add("x-forwarded-for", "10.0.0.1".into());
    add("x-real-ip", "10.0.0.1".into());
    add("content-type", "application/json".into());
    h
}

fn bench_extract(c: &mut Criterion, token: &str) {
    let headers = request_headers(token);
    let jar = CookieJar::parse(&headers);
    assert_eq!(jar.get("access_token_cookie"), Some(token.as_bytes()));
    assert_eq!(bearer(&headers).ok().flatten(), Some(token));
    let mut g = group(c, "extract");
    g.bench_function("cookie_jar", |b| {
        b.iter(|| CookieJar::parse(black_box(&headers)).get("access_token_cookie").map(<[u8]>::len))
    });
    // The extract phase's check of the four configured names, each in any
    // spelling an app reads as it.
    let names = ["access_token_cookie", "refresh_token_cookie", "csrf_access_token", "csrf_refresh_token"];
    assert!(jar.reject_duplicates(&names).is_ok());
    g.bench_function("cookie_duplicates", |b| b.iter(|| black_box(&jar).reject_duplicates(&names).is_ok()));
    g.bench_function("bearer", |b| b.iter(|| bearer(black_box(&headers)).ok().flatten().map(str::len)));
    g.finish();
}

/// The strip rules a config snapshot derives from `[forward]` and `[sessions]`.
fn strip_rules(runtime: &Runtime) -> StripRules {
    StripRules::new(&runtime.forward, &runtime.sessions.identity_header)
}

fn bench_headers(c: &mut Criterion, runtime: &Runtime) {
    let headers = request_headers("header.payload.signature");
    let rules = strip_rules(runtime);
    let mut stripped = headers.clone();
    strip_request(&mut stripped, &rules);
    assert!(!stripped.contains_key("x-auth-subject") && !stripped.contains_key("x-debug"));
    let hop = Hop {
        peer: IpAddr::from([203, 0, 113, 7]),
        peer_trusted: false,
        proto: "https",
        host: "app.example.com",
    };
    let mut g = group(c, "headers");
    // The map is cloned in the untimed setup: both functions edit it in place.
    g.bench_function("strip_request", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                strip_request(&mut h, &rules);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apply_forwarded", |b| {
        b.iter_batched(
            || stripped.clone(),
            |mut h| {
                apply_forwarded(&mut h, &hop);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_claims(c: &mut Criterion, hs: &AlgFixture) {
    let claims: Arc<Claims> = hs.runtime.tokens.verifier.verify(&hs.token, NOW).expect("verified claims");
    let forward = &hs.runtime.forward;
    let mut probe = HeaderMap::new();
    inject(&mut probe, &claims, forward, NOW).expect("claims fit headers");
    assert_eq!(probe.len(), forward.claims.len() + 1, "every configured claim header plus the JSON one");
    let mut g = group(c, "claims");
    g.bench_function("inject", |b| {
        b.iter_batched(
            HeaderMap::new,
            |mut h| inject(&mut h, black_box(&claims), forward, NOW).map(|()| h),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion, algs: &[AlgFixture]) {
    let mut g = group(c, "verify");
    for a in algs {
        let verifier = &a.runtime.tokens.verifier;
        g.bench_function(format!("cold/{}", a.name), |b| {
            b.iter(|| verifier.verify_uncached(black_box(&a.token), NOW).is_ok())
        });
        // The verified-token cache (every algorithm): what a browser's second
        // request with the same token costs.
        g.bench_function(format!("cached/{}", a.name), |b| {
            b.iter(|| verifier.verify(black_box(&a.token), NOW).is_ok())
        });
    }
    g.finish();
}

/// `header.payload` and the decoded signature of a compact JWS.
fn signing_input_and_signature(token: &str) -> (&str, &str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').expect("compact JWS");
    (input, sig, URL_SAFE_NO_PAD.decode(sig).expect("base64url signature"))
}

fn decoding_key(a: &AlgFixture) -> DecodingKey {
    let pem = a.public_pem.as_deref().map(str::as_bytes);
    match (a.alg, pem) {
        (Algorithm::HS256, _) => DecodingKey::from_secret(SECRET.as_bytes()),
        (Algorithm::RS256, Some(p)) => DecodingKey::from_rsa_pem(p).expect("RSA public key"),
        (Algorithm::ES256, Some(p)) => DecodingKey::from_ec_pem(p).expect("EC public key"),
        (Algorithm::EdDSA, Some(p)) => DecodingKey::from_ed_pem(p).expect("Ed25519 public key"),
        (alg, _) => panic!("no fixture key for {alg:?}"),
    }
}

/// The aws-lc key parsed once; `None` for HS256 (an HMAC key has nothing to parse).
fn parsed_key(a: &AlgFixture) -> Option<ParsedPublicKey> {
    let algorithm: &'static dyn lc::VerificationAlgorithm = match a.alg {
        Algorithm::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::ES256 => &lc::ECDSA_P256_SHA256_FIXED,
        Algorithm::EdDSA => &lc::ED25519,
        _ => return None,
    };
    let spki = pem::parse(a.public_pem.as_deref()?).expect("SPKI PEM");
    Some(ParsedPublicKey::new(algorithm, spki.contents()).expect("aws-lc parses the SPKI"))
}

fn bench_verify_steps(c: &mut Criterion, algs: &[AlgFixture]) {
    let mut g = group(c, "verify_steps");
    for a in algs {
        let (input, sig_b64, sig) = signing_input_and_signature(&a.token);
        let key = decoding_key(a);
        let ok = jsonwebtoken::crypto::verify(sig_b64, input.as_bytes(), &key, a.alg);
        assert!(matches!(ok, Ok(true)), "{}: jsonwebtoken accepts the fixture", a.name);
        g.bench_function(format!("jws_signature/{}", a.name), |b| {
            b.iter(|| jsonwebtoken::crypto::verify(black_box(sig_b64), input.as_bytes(), &key, a.alg))
        });
        if let Some(parsed) = parsed_key(a) {
            assert!(parsed.verify_sig(input.as_bytes(), &sig).is_ok(), "{}: aws-lc accepts it", a.name);
            g.bench_function(format!("parsed_key/{}", a.name), |b| {
                b.iter(|| parsed.verify_sig(black_box(input.as_bytes()), &sig).is_ok())
            });
        }
    }
    g.finish();
}

fn bench_mint(c: &mut Criterion, algs: &[AlgFixture]) {
    let extra = identity_claims();
    let spec = MintSpec {
        sub: "alice",
        token_type: TokenType::Access,
        fresh: false,
        csrf: Some("4f1c2e9a-csrf"),
        fid: Some("0b7d4a52-family"),
        auth_time: Some(T0),
        exp: None,
        extra: &extra,
    };
    let mut g = group(c, "mint");
    for a in algs.iter().filter(|a| matches!(a.alg, Algorithm::HS256 | Algorithm::ES256)) {
        let minter = &a.runtime.tokens.minter;
        g.bench_function(a.name, |b| b.iter(|| minter.mint(black_box(&spec), NOW).map(|m| m.token.len())));
    }
    g.finish();
}
