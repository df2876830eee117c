//! `TokenSettings::build`: every rule of DESIGN.md §3 `[tokens]`, every
//! error with its key path and a fix.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::fixtures::RSA_1024_PKCS8;
use super::*;
use crate::token::{Location, MAX_LEEWAY};

/// The message for `key`, failing the test when there is none.
fn message<'a>(errs: &'a ConfigErrors, key: &str) -> &'a str {
    errs.iter()
        .find(|e| e.key == key)
        .map(|e| e.message.as_str())
        .unwrap_or_else(|| panic!("no error for {key} in:\n{errs}"))
}

#[test]
fn defaults_build() {
    let s = hs_settings();
    assert_eq!(s.locations, vec![Location::Headers, Location::Cookies]);
    assert_eq!(
        (s.access_ttl, s.refresh_ttl, s.leeway),
        (Duration::from_secs(900), Duration::from_secs(2_592_000), Duration::from_secs(5))
    );
    assert_eq!((s.max_token_bytes, s.query_param.as_str()), (8192, "token"));
    assert_eq!(s.minter.algorithm(), Algorithm::HS256);
    assert_eq!(s.minter.kid(), None);
    assert!(!format!("{s:?}").contains(SECRET));
}

#[test]
fn a_short_secret_names_the_key_and_the_fix() {
    let errs = build_errs(&raw_secret("HS256", "short-12345"), Path::new("."));
    assert_eq!(
        message(&errs, "tokens.secret"),
        "HS256 needs a secret of at least 32 bytes (got 11); generate one with: jwtgate keygen --alg HS256"
    );
    for (alg, min) in [("HS384", 48), ("HS512", 64)] {
        let errs = build_errs(&raw_secret(alg, &"x".repeat(min - 1)), Path::new("."));
        assert!(message(&errs, "tokens.secret").contains(&format!("at least {min} bytes (got {})", min - 1)));
        build_ok(&raw_secret(alg, &"x".repeat(min)), Path::new("."));
    }
}

#[test]
fn an_empty_secret_says_so() {
    let errs = build_errs(&raw_secret("HS256", ""), Path::new("."));
    assert!(message(&errs, "tokens.secret").starts_with("is empty"));
}

#[test]
fn secret_files_drop_only_the_trailing_newline() {
    let dir = tempdir();
    let raw = |file: &str| RawTokens { secret_file: Some(file.into()), ..RawTokens::default() };
    write(dir.path(), "ok.txt", &format!("{SECRET}\r\n"));
    build_ok(&raw("ok.txt"), dir.path());
    write(dir.path(), "short.txt", &format!("{}\n", &SECRET[1..]));
    assert!(message(&build_errs(&raw("short.txt"), dir.path()), "tokens.secret_file").contains("(got 31)"));
    assert!(message(&build_errs(&raw("missing.txt"), dir.path()), "tokens.secret_file")
        .starts_with("cannot read"));
}

#[test]
fn an_rsa_key_below_2048_bits_is_refused() {
    let dir = tempdir();
    let raw = RawTokens {
        algorithm: "RS256".into(),
        private_key: Some(write(dir.path(), "small.pem", RSA_1024_PKCS8)),
        ..RawTokens::default()
    };
    let msg = message(&build_errs(&raw, dir.path()), "tokens.private_key").to_string();
    assert!(msg.contains("at least 2048 bits") && msg.contains("1024-bit"), "{msg}");
}

#[test]
fn a_p384_key_configured_as_es256_is_refused() {
    let dir = tempdir();
    let mut raw = raw_private(dir.path(), Algorithm::ES384);
    raw.algorithm = "ES256".into();
    let msg = message(&build_errs(&raw, dir.path()), "tokens.private_key").to_string();
    assert!(
        msg.contains("ES256 needs a P-256 EC key") && msg.contains("P-384") && msg.contains("\"ES384\""),
        "{msg}"
    );
}

#[test]
fn eddsa_with_an_rsa_key_is_refused() {
    let dir = tempdir();
    let mut raw = raw_private(dir.path(), Algorithm::RS256);
    raw.algorithm = "EdDSA".into();
    let msg = message(&build_errs(&raw, dir.path()), "tokens.private_key").to_string();
    assert!(msg.contains("Ed25519") && msg.contains("RSA key"), "{msg}");
}

#[test]
fn exactly_one_key_source() {
    let dir = tempdir();
    let mut both = raw_private(dir.path(), Algorithm::ES256);
    both.secret = Some(SECRET.into());
    assert!(message(&build_errs(&both, dir.path()), "tokens").contains("secret and private_key"));
    let neither = RawTokens::default();
    let msg = message(&build_errs(&neither, dir.path()), "tokens").to_string();
    assert!(
        msg.contains("needs one of secret / secret_file / private_key") && msg.contains("keygen --alg HS256")
    );
}

#[test]
fn sources_must_fit_the_algorithm_family() {
    let dir = tempdir();
    let mut hs_with_pem = raw_private(dir.path(), Algorithm::ES256);
    hs_with_pem.algorithm = "HS256".into();
    assert!(message(&build_errs(&hs_with_pem, dir.path()), "tokens.private_key").contains("shared secret"));
    let rs_with_secret = raw_secret("RS256", SECRET);
    assert!(message(&build_errs(&rs_with_secret, dir.path()), "tokens.secret").contains("set private_key"));
    let mut public_as_private = raw_private(dir.path(), Algorithm::ES256);
    public_as_private.private_key = Some(write(dir.path(), "pub.pem", &pair(Algorithm::ES256).1));
    assert!(message(&build_errs(&public_as_private, dir.path()), "tokens.private_key")
        .contains("holds a public key"));
}

#[test]
fn algorithm_names_are_exact() {
    let errs = build_errs(&raw_secret("hs256", SECRET), Path::new("."));
    assert!(message(&errs, "tokens.algorithm").contains("write \"HS256\""));
    let errs = build_errs(&raw_secret("none", SECRET), Path::new("."));
    assert!(message(&errs, "tokens.algorithm").contains("not supported"));
}

#[test]
fn accept_entries_follow_the_same_rules() {
    let dir = tempdir();
    let mut raw = raw_secret("HS256", SECRET);
    let private_as_public = write(dir.path(), "priv.pem", &pair(Algorithm::ES256).0);
    raw.accept = vec![
        RawAcceptKey { algorithm: "ES256".into(), public_key: Some(private_as_public), ..Default::default() },
        RawAcceptKey {
            public_key: Some(accept_public(dir.path(), Algorithm::ES256, None).public_key.unwrap()),
            ..Default::default()
        },
        RawAcceptKey { algorithm: "ES256".into(), secret: Some(SECRET.into()), ..Default::default() },
        RawAcceptKey {
            algorithm: "HS256".into(),
            secret: Some("tiny".into()),
            kid: Some(String::new()),
            ..Default::default()
        },
    ];
    let errs = build_errs(&raw, dir.path());
    assert!(message(&errs, "tokens.accept[0].public_key").contains("holds a private key"));
    assert!(message(&errs, "tokens.accept[1].algorithm").contains("missing"));
    assert!(message(&errs, "tokens.accept[2].secret").contains("set public_key"));
    assert!(message(&errs, "tokens.accept[3].secret").contains("(got 4)"));
    assert!(message(&errs, "tokens.accept[3].kid").contains("omit kid"));
}

#[test]
fn locations_and_other_keys_are_validated() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.locations = vec!["headers".into(), "header".into(), "headers".into()];
    raw.audience = vec![String::new()];
    raw.required_claims = vec!["exp".into(), " iat".into()];
    raw.query_param = String::new();
    raw.max_token_bytes = 0;
    raw.access_ttl = "0s".into();
    raw.leeway = "a bit".into();
    let errs = build_errs(&raw, Path::new("."));
    assert!(message(&errs, "tokens.locations[1]").contains("\"header\" is not a location"));
    assert!(message(&errs, "tokens.locations[2]").contains("listed twice"));
    for key in
        ["tokens.audience[0]", "tokens.required_claims[1]", "tokens.query_param", "tokens.max_token_bytes"]
    {
        message(&errs, key);
    }
    assert!(message(&errs, "tokens.access_ttl").contains("at least \"1s\""));
    assert!(message(&errs, "tokens.leeway").contains("not a duration"));
    raw = raw_secret("HS256", SECRET);
    raw.locations = vec![];
    message(&build_errs(&raw, Path::new(".")), "tokens.locations");
}

/// Leeway is clock skew, at most five minutes: revocations are kept that long
/// past a token's `exp` and no longer, so a larger one would reopen tokens
/// logged out before a reload raised it.
#[test]
fn leeway_is_at_most_five_minutes() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.leeway = "5m".into();
    let settings = TokenSettings::build(&raw, Path::new("."), &mut ConfigErrors::default()).unwrap();
    assert_eq!(settings.leeway, MAX_LEEWAY);
    raw.leeway = "301s".into();
    let errs = build_errs(&raw, Path::new("."));
    let msg = message(&errs, "tokens.leeway");
    assert!(msg.contains("\"301s\"") && msg.contains("at most \"5m\"") && msg.contains("NTP"), "{msg}");
}

#[test]
fn all_problems_are_reported_together() {
    let dir = tempdir();
    let mut raw = raw_secret("HS256", "short");
    raw.private_key = Some(write(dir.path(), "rsa.pem", &pair(Algorithm::RS256).0));
    raw.accept = vec![
        accept_public(dir.path(), Algorithm::ES384, None),
        RawAcceptKey {
            algorithm: "EdDSA".into(),
            public_key: Some(accept_public(dir.path(), Algorithm::RS256, None).public_key.unwrap()),
            ..Default::default()
        },
    ];
    raw.accept[0].algorithm = "ES256".into();
    raw.locations = vec!["cookie".into()];
    raw.refresh_ttl = "forever".into();
    let errs = build_errs(&raw, dir.path());
    for key in [
        "tokens",
        "tokens.accept[0].public_key",
        "tokens.accept[1].public_key",
        "tokens.locations[0]",
        "tokens.refresh_ttl",
    ] {
        message(&errs, key);
    }
    let mut short = raw_secret("HS256", "short");
    short.accept = raw.accept.clone();
    let errs = build_errs(&short, dir.path());
    for key in ["tokens.secret", "tokens.accept[0].public_key", "tokens.accept[1].public_key"] {
        message(&errs, key);
    }
}

/// The same keys without their PEM armour: raw DER (a `.der` file as
/// `secret_file`), or its base64 (a PEM body pasted without the `-----`
/// lines), standard or URL-safe, with line breaks or none. Base64 secrets
/// that are no key (`openssl rand -base64 48`) still pass. (Found by a
/// review of token handling: the body of a public key, published at
/// `/jwks`, verified HS256 tokens forged with it.)
#[test]
fn a_key_without_its_pem_armour_is_refused_as_a_secret() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let dir = tempdir();
    let signed = rcgen::generate_simple_self_signed(vec!["jwtgate.test".into()]).expect("certificate");
    let rsa_public = pem::parse(super::fixtures::RSA_2048_PKCS1_PUBLIC).expect("fixture").into_contents();
    let ders: [(&str, Vec<u8>); 4] = [
        (
            "SPKI public key",
            pem::parse(signed.signing_key.public_key_pem()).expect("SPKI PEM").into_contents(),
        ),
        ("PKCS#8 private key", signed.signing_key.serialize_der()),
        ("certificate", signed.cert.der().to_vec()),
        ("PKCS#1 RSA public key", rsa_public),
    ];
    for (what, der) in ders {
        let wrapped: Vec<String> = STANDARD
            .encode(&der)
            .as_bytes()
            .chunks(64)
            .map(|l| String::from_utf8(l.to_vec()).unwrap())
            .collect();
        for text in [wrapped.join("\n"), STANDARD.encode(&der), URL_SAFE_NO_PAD.encode(&der)] {
            let msg = message(&build_errs(&raw_secret("HS256", &text), Path::new(".")), "tokens.secret")
                .to_string();
            assert!(msg.starts_with("holds a key or certificate in DER"), "{what}: {msg}");
        }
        std::fs::write(dir.path().join("key.der"), &der).unwrap();
        let raw = RawTokens { secret_file: Some("key.der".into()), ..RawTokens::default() };
        let msg = message(&build_errs(&raw, dir.path()), "tokens.secret_file").to_string();
        assert!(msg.contains("in DER"), "{what} as a .der file: {msg}");
    }
    // A DER key whose last byte is a line feed: trimmed as a text file's
    // would be, it no longer parses, and would pass as a secret.
    let ends_in_newline = (0..20_000)
        .map(|_| rcgen::KeyPair::generate().expect("P-256 key"))
        .map(|k| pem::parse(k.public_key_pem()).expect("SPKI PEM").into_contents())
        .find(|der| der.last() == Some(&b'\n'))
        .expect("about one P-256 key in 256 ends in 0x0A");
    std::fs::write(dir.path().join("key.der"), &ends_in_newline).unwrap();
    let raw = RawTokens { secret_file: Some("key.der".into()), ..RawTokens::default() };
    assert!(message(&build_errs(&raw, dir.path()), "tokens.secret_file").contains("in DER"));
    for len in [32, 48, 64, 256] {
        for _ in 0..50 {
            let mut bytes = vec![0u8; len];
            aws_lc_rs::rand::fill(&mut bytes).unwrap();
            build_ok(&raw_secret("HS256", &STANDARD.encode(&bytes)), Path::new("."));
        }
    }
}

/// Location names are words like every other word-valued key: compared
/// without regard to case, as `log.format = "JSON"` is.
#[test]
fn locations_are_read_without_regard_to_case() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.locations = vec!["Headers".into(), "COOKIES".into(), " query ".into()];
    let settings = TokenSettings::build(&raw, Path::new("."), &mut ConfigErrors::default()).unwrap();
    assert_eq!(settings.locations, [Location::Headers, Location::Cookies, Location::Query]);
    raw.locations = vec!["headers".into(), "Headers".into()];
    assert!(message(&build_errs(&raw, Path::new(".")), "tokens.locations[1]").contains("listed twice"));
}

/// A public key is no secret: as the HMAC secret it lets anyone who has it
/// sign tokens (algorithm confusion), so a key in `secret` or `secret_file`
/// is refused, naming the key. Secrets that merely mention such text pass.
#[test]
fn a_public_key_is_refused_as_a_secret() {
    let dir = tempdir();
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyyK0lHZrS4gKCWGBB9aTb0d5xm7R\n-----END PUBLIC KEY-----\n";
    let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0b5vO0d5xm7RkF8eYpkQZr0UQ2TA user@host";
    let jwk = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    for (text, kind) in [(pem, "a PEM key or certificate"), (ssh, "an OpenSSH key"), (jwk, "a JSON Web Key")]
    {
        let msg =
            message(&build_errs(&raw_secret("HS256", text), Path::new(".")), "tokens.secret").to_string();
        assert!(
            msg.starts_with(&format!("holds {kind}, not a secret")) && msg.contains("private_key"),
            "{msg}"
        );
        write(dir.path(), "key.txt", text);
        let raw = RawTokens { secret_file: Some("key.txt".into()), ..RawTokens::default() };
        assert!(message(&build_errs(&raw, dir.path()), "tokens.secret_file").contains(kind));
    }
    for fine in ["ssh-not-a-key-but-a-long-enough-passphrase", "{kty} is only a word in this 32-byte secret"]
    {
        build_ok(&raw_secret("HS256", fine), Path::new("."));
    }
}
