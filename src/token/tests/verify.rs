//! Verification: header hygiene, key selection, claims, time rules.

use jsonwebtoken::{Algorithm, EncodingKey};

use super::*;
use crate::token::{Fresh, TokenError, TokenType};

fn verify(token: &str) -> Result<crate::token::Claims, TokenError> {
    hs_settings().verifier.verify(token, NOW).map(std::sync::Arc::unwrap_or_clone)
}

const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[test]
fn a_plain_hs256_token_verifies() {
    let claims = verify(&forge_hs(HS, &payload(r#""roles":["admin"]"#))).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.token_type, TokenType::Access);
    assert_eq!(claims.jti.as_deref(), Some("j1"));
    assert_eq!(claims.all["roles"], serde_json::json!(["admin"]));
}

#[test]
fn alg_none_is_refused_in_every_casing() {
    for alg in ["none", "None", "NONE", "nOnE", "hs256", ""] {
        let header = format!(r#"{{"alg":"{alg}"}}"#);
        let unsigned =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(payload("")));
        assert!(verify(&unsigned).is_err(), "{alg} without signature");
        let with_sig = format!("{unsigned}AAAA");
        assert!(matches!(verify(&with_sig), Err(TokenError::UnsupportedAlgorithm)), "{alg}");
    }
    let no_alg = forge_hs(r#"{"typ":"JWT"}"#, &payload(""));
    assert!(matches!(verify(&no_alg), Err(TokenError::Malformed)));
    let numeric_alg = forge_hs(r#"{"alg":256}"#, &payload(""));
    assert!(matches!(verify(&numeric_alg), Err(TokenError::UnsupportedAlgorithm)));
}

#[test]
fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let dir = tempdir();
    let settings = build_ok(&raw_private(dir.path(), Algorithm::RS256), dir.path());
    let public_pem = &pair(Algorithm::RS256).1;
    let confused =
        forge(HS, &payload(""), &EncodingKey::from_secret(public_pem.as_bytes()), Algorithm::HS256);
    assert!(matches!(settings.verifier.verify(&confused, NOW), Err(TokenError::UnknownKey)));
}

#[test]
fn every_forbidden_header_parameter_is_refused() {
    for name in ["crit", "jku", "jwk", "x5u", "x5c", "b64", "zip", "enc", "cty"] {
        let header = format!(r#"{{"alg":"HS256","{name}":"x"}}"#);
        match verify(&forge_hs(&header, &payload(""))) {
            Err(TokenError::ForbiddenHeader(found)) => assert_eq!(found, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn duplicate_names_are_refused_in_header_and_payload() {
    let dup_header = forge_hs(r#"{"alg":"HS256","alg":"HS256"}"#, &payload(""));
    assert!(matches!(verify(&dup_header), Err(TokenError::Malformed)));
    let dup_sub = forge_hs(HS, &payload(r#""sub":"admin""#));
    assert!(matches!(verify(&dup_sub), Err(TokenError::BadClaims(_))));
    let nested = forge_hs(HS, &payload(r#""org":{"id":1,"id":2}"#));
    assert!(matches!(verify(&nested), Err(TokenError::BadClaims(_))));
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let max = hs_settings().max_token_bytes;
    // Not even base64: any decoding attempt would say Malformed.
    let garbage = "!".repeat(max + 1);
    assert!(matches!(verify(&garbage), Err(TokenError::TooLarge)));
    assert!(matches!(verify(&"!".repeat(max)), Err(TokenError::Malformed)));
}

#[test]
fn malformed_shapes_are_refused() {
    let good = forge_hs(HS, &payload(""));
    let padded = format!("{good}=");
    let plus = good.replacen('-', "+", 1).replacen('_', "/", 1);
    for bad in ["", "a", "a.b", "a.b.c.d", "..", "a..c", &padded, &format!("{good}.x"), &format!(" {good}")] {
        assert!(matches!(verify(bad), Err(TokenError::Malformed)), "{bad:?}");
    }
    if plus != good {
        assert!(matches!(verify(&plus), Err(TokenError::Malformed)));
    }
    let not_json = format!("{}.{}.AAAA", URL_SAFE_NO_PAD.encode("{"), URL_SAFE_NO_PAD.encode("{}"));
    assert!(matches!(verify(&not_json), Err(TokenError::Malformed)));
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let token = forge_hs(HS, &payload(""));
    let mut parts: Vec<&str> = token.split('.').collect();
    let evil = URL_SAFE_NO_PAD.encode(payload(r#""admin":true"#));
    parts[1] = &evil;
    assert!(matches!(verify(&parts.join(".")), Err(TokenError::BadSignature)));
    let other_secret = forge(HS, &payload(""), &EncodingKey::from_secret(&[7u8; 32]), Algorithm::HS256);
    assert!(matches!(verify(&other_secret), Err(TokenError::BadSignature)));
}

#[test]
fn kid_selects_keys_exactly() {
    let dir = tempdir();
    let mut raw = raw_secret("HS256", SECRET);
    raw.kid = Some("k1".into());
    raw.accept = vec![accept_public(dir.path(), Algorithm::ES256, Some("k2"))];
    let v = build_ok(&raw, dir.path()).verifier;
    let with = |kid: &str| forge_hs(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &payload(""));
    assert!(v.verify(&with("k1"), NOW).is_ok());
    assert!(matches!(v.verify(&with("K1"), NOW), Err(TokenError::UnknownKey)));
    assert!(matches!(v.verify(&with("nope"), NOW), Err(TokenError::UnknownKey)));
    // No kid in the header: only keys configured without kid, and there are none.
    assert!(matches!(v.verify(&forge_hs(HS, &payload("")), NOW), Err(TokenError::UnknownKey)));
    // kid k2 exists, but is bound to ES256.
    assert!(matches!(v.verify(&with("k2"), NOW), Err(TokenError::UnknownKey)));
    let es = EncodingKey::from_ec_pem(pair(Algorithm::ES256).0.as_bytes()).unwrap();
    let es_token = forge(r#"{"alg":"ES256","kid":"k2"}"#, &payload(""), &es, Algorithm::ES256);
    assert!(v.verify(&es_token, NOW).is_ok());
}

#[test]
fn keys_are_tried_in_config_order_among_equal_kids() {
    let dir = tempdir();
    let mut raw = raw_secret("HS256", SECRET);
    let old = "an-older-secret-that-is-long-enough-32";
    raw.accept =
        vec![RawAcceptKey { algorithm: "HS256".into(), secret: Some(old.into()), ..Default::default() }];
    let v = build_ok(&raw, dir.path()).verifier;
    let by_old = forge(HS, &payload(""), &EncodingKey::from_secret(old.as_bytes()), Algorithm::HS256);
    assert!(v.verify(&by_old, NOW).is_ok());
    assert!(v.verify(&forge_hs(HS, &payload("")), NOW).is_ok());
}

#[test]
fn float_exp_and_iat_are_accepted() {
    let p = format!(r#"{{"sub":"a","jti":"j","iat":{NOW}.25,"exp":{}.5}}"#, NOW + 60);
    let claims = verify(&forge_hs(HS, &p)).unwrap();
    assert_eq!(claims.exp, Some((NOW + 60) as f64 + 0.5));
}

#[test]
fn expiry_follows_jsonwebtoken_semantics_and_carries_claims() {
    let v = hs_settings().verifier;
    let token_exp =
        |exp: i64| forge_hs(HS, &format!(r#"{{"sub":"a","jti":"j","iat":{},"exp":{exp}}}"#, exp - 60));
    // Valid up to and including exp == now - leeway (5s).
    assert!(v.verify(&token_exp(NOW - 5), NOW).is_ok());
    match v.verify(&token_exp(NOW - 6), NOW) {
        Err(TokenError::Expired(claims)) => {
            assert_eq!(claims.sub, "a");
            assert_eq!(claims.jti.as_deref(), Some("j"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expired_is_only_reported_when_everything_else_passed() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.issuer = "https://issuer".into();
    let v = build_ok(&raw, Path::new(".")).verifier;
    let old = format!(r#"{{"sub":"a","jti":"j","iat":{},"exp":{},"iss":"other"}}"#, NOW - 1000, NOW - 900);
    assert!(matches!(v.verify(&forge_hs(HS, &old), NOW), Err(TokenError::BadIssuer)));
    let long =
        format!(r#"{{"sub":"a","jti":"j","iat":{},"exp":{},"iss":"https://issuer"}}"#, NOW - 9000, NOW - 10);
    assert!(matches!(v.verify(&forge_hs(HS, &long), NOW), Err(TokenError::LifetimeTooLong)));
    let bad_sig = forge(HS, &old, &EncodingKey::from_secret(&[1u8; 32]), Algorithm::HS256);
    assert!(matches!(v.verify(&bad_sig, NOW), Err(TokenError::BadSignature)));
}

#[test]
fn iat_and_nbf_in_the_future_are_refused_beyond_leeway() {
    let at = |claim: &str, t: i64| {
        forge_hs(HS, &format!(r#"{{"sub":"a","jti":"j","iat":{NOW},"exp":{},"{claim}":{t}}}"#, NOW + 60))
    };
    assert!(verify(&at("nbf", NOW + 5)).is_ok());
    assert!(matches!(verify(&at("nbf", NOW + 6)), Err(TokenError::NotYetValid)));
    let iat_future =
        forge_hs(HS, &format!(r#"{{"sub":"a","jti":"j","iat":{},"exp":{}}}"#, NOW + 6, NOW + 60));
    assert!(matches!(verify(&iat_future), Err(TokenError::IssuedInFuture)));
    let iat_leeway =
        forge_hs(HS, &format!(r#"{{"sub":"a","jti":"j","iat":{},"exp":{}}}"#, NOW + 5, NOW + 60));
    assert!(verify(&iat_leeway).is_ok());
}

#[test]
fn lifetime_is_capped_by_the_ttl_of_the_type() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.required_claims = vec!["exp".into()];
    let v = build_ok(&raw, Path::new(".")).verifier;
    let tok = |body: String| forge_hs(HS, &body);
    // access_ttl 900s + leeway 5s, measured from iat…
    assert!(v.verify(&tok(format!(r#"{{"sub":"a","iat":{NOW},"exp":{}}}"#, NOW + 905)), NOW).is_ok());
    let long = tok(format!(r#"{{"sub":"a","iat":{NOW},"exp":{}}}"#, NOW + 906));
    assert!(matches!(v.verify(&long, NOW), Err(TokenError::LifetimeTooLong)));
    // …or from now when there is no iat.
    assert!(v.verify(&tok(format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 905)), NOW).is_ok());
    let long = tok(format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 906));
    assert!(matches!(v.verify(&long, NOW), Err(TokenError::LifetimeTooLong)));
    // Refresh tokens get refresh_ttl (30d).
    let refresh = tok(format!(r#"{{"sub":"a","type":"refresh","iat":{NOW},"exp":{}}}"#, NOW + 29 * 86400));
    assert!(v.verify(&refresh, NOW).is_ok());
}

#[test]
fn a_missing_exp_never_expires_when_not_required() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.required_claims = vec![];
    let v = build_ok(&raw, Path::new(".")).verifier;
    assert!(v.verify(&forge_hs(HS, r#"{"sub":"a"}"#), NOW).is_ok());
    let required = hs_settings().verifier;
    match required.verify(&forge_hs(HS, r#"{"sub":"a","iat":1,"jti":"j"}"#), NOW) {
        Err(TokenError::MissingClaim(name)) => assert_eq!(name, "exp"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn required_claims_must_be_present_and_non_null() {
    let no_jti = forge_hs(HS, &format!(r#"{{"sub":"a","iat":{NOW},"exp":{}}}"#, NOW + 60));
    assert!(matches!(verify(&no_jti), Err(TokenError::MissingClaim(n)) if n == "jti"));
    let null_jti = forge_hs(HS, &format!(r#"{{"sub":"a","jti":null,"iat":{NOW},"exp":{}}}"#, NOW + 60));
    assert!(matches!(verify(&null_jti), Err(TokenError::MissingClaim(n)) if n == "jti"));
}

#[test]
fn iss_and_aud_are_checked_only_when_configured() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.issuer = "iss-a".into();
    raw.audience = vec!["api".into(), "web".into()];
    let v = build_ok(&raw, Path::new(".")).verifier;
    let with = |extra: &str| forge_hs(HS, &payload(extra));
    assert!(v.verify(&with(r#""iss":"iss-a","aud":"web""#), NOW).is_ok());
    assert!(v.verify(&with(r#""iss":"iss-a","aud":["x","api"]"#), NOW).is_ok());
    assert!(matches!(v.verify(&with(r#""iss":"iss-b","aud":"web""#), NOW), Err(TokenError::BadIssuer)));
    assert!(matches!(v.verify(&with(r#""iss":"iss-a","aud":"x""#), NOW), Err(TokenError::BadAudience)));
    assert!(matches!(v.verify(&with(r#""iss":"iss-a","aud":["x"]"#), NOW), Err(TokenError::BadAudience)));
    assert!(matches!(v.verify(&with(r#""iss":"iss-a","aud":7"#), NOW), Err(TokenError::BadAudience)));
    assert!(matches!(v.verify(&with(r#""aud":"web""#), NOW), Err(TokenError::MissingClaim(n)) if n == "iss"));
    assert!(
        matches!(v.verify(&with(r#""iss":"iss-a""#), NOW), Err(TokenError::MissingClaim(n)) if n == "aud")
    );
    // Unconfigured: anything goes.
    assert!(verify(&with(r#""iss":"whoever","aud":7"#)).is_ok());
}

#[test]
fn sub_must_be_a_non_empty_string() {
    let body = |sub: &str| format!(r#"{{{sub}"jti":"j","iat":{NOW},"exp":{}}}"#, NOW + 60);
    assert!(matches!(verify(&forge_hs(HS, &body(""))), Err(TokenError::MissingClaim(n)) if n == "sub"));
    for bad in [r#""sub":"","#, r#""sub":42,"#, r#""sub":["a"],"#, r#""sub":true,"#] {
        assert!(matches!(verify(&forge_hs(HS, &body(bad))), Err(TokenError::BadClaims(_))), "{bad}");
    }
}

#[test]
fn type_is_access_when_missing_and_otherwise_exact() {
    let body = |t: &str| format!(r#"{{"sub":"a",{t}"jti":"j","iat":{NOW},"exp":{}}}"#, NOW + 60);
    assert_eq!(verify(&forge_hs(HS, &body(""))).unwrap().token_type, TokenType::Access);
    assert_eq!(verify(&forge_hs(HS, &body(r#""type":"refresh","#))).unwrap().token_type, TokenType::Refresh);
    for bad in [r#""type":"Access","#, r#""type":"id","#, r#""type":1,"#] {
        assert!(matches!(verify(&forge_hs(HS, &body(bad))), Err(TokenError::UnknownType)), "{bad}");
    }
}

#[test]
fn fresh_accepts_bools_and_until_timestamps() {
    let with = |fresh: &str| verify(&forge_hs(HS, &payload(&format!(r#""fresh":{fresh}"#))));
    let flag = with("true").unwrap();
    assert_eq!(flag.fresh, Fresh::Flag(true));
    assert!(flag.is_fresh(NOW));
    assert!(!with("false").unwrap().is_fresh(NOW));
    let until = with(&format!("{}", NOW + 30)).unwrap();
    assert_eq!(until.fresh, Fresh::Until((NOW + 30) as f64));
    assert!(until.is_fresh(NOW) && until.is_fresh(NOW + 30) && !until.is_fresh(NOW + 31));
    assert!(!verify(&forge_hs(HS, &payload(""))).unwrap().is_fresh(NOW));
    assert!(matches!(with(r#""yes""#), Err(TokenError::BadClaims(_))));
}

#[test]
fn typed_claims_reject_wrong_types() {
    for bad in [r#""csrf":1"#, r#""fid":{}"#, r#""auth_time":1.5"#, r#""auth_time":"1""#, r#""nbf":"0""#] {
        assert!(matches!(verify(&forge_hs(HS, &payload(bad))), Err(TokenError::BadClaims(_))), "{bad}");
    }
    let ok = verify(&forge_hs(HS, &payload(r#""auth_time":1700000000,"csrf":"c","fid":"f""#))).unwrap();
    assert_eq!(
        (ok.auth_time, ok.csrf.as_deref(), ok.fid.as_deref()),
        (Some(1_700_000_000), Some("c"), Some("f"))
    );
}

#[test]
fn jwks_lists_public_keys_only() {
    let dir = tempdir();
    let mut raw = raw_private(dir.path(), Algorithm::ES256);
    raw.kid = Some("sig-1".into());
    raw.accept = vec![
        accept_public(dir.path(), Algorithm::EdDSA, Some("ed")),
        accept_public(dir.path(), Algorithm::RS256, None),
        RawAcceptKey { algorithm: "HS256".into(), secret: Some(SECRET.into()), ..Default::default() },
    ];
    let jwks = build_ok(&raw, dir.path()).verifier.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0]["kid"], "sig-1");
    assert_eq!((keys[0]["kty"].as_str(), keys[0]["crv"].as_str()), (Some("EC"), Some("P-256")));
    assert_eq!((keys[0]["alg"].as_str(), keys[0]["use"].as_str()), (Some("ES256"), Some("sig")));
    assert_eq!((keys[1]["kty"].as_str(), keys[1]["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert_eq!(keys[2]["kty"], "RSA");
    assert!(keys[2].get("kid").is_none());
    assert_eq!(keys[2]["e"], "AQAB");
    assert!(!jwks.to_string().contains(&URL_SAFE_NO_PAD.encode(SECRET)));
    assert!(keys.iter().all(|k| k.get("d").is_none() && k.get("k").is_none()));
}

#[test]
fn jwks_keys_verify_tokens_through_jsonwebtoken() {
    let dir = tempdir();
    let settings = build_ok(&raw_private(dir.path(), Algorithm::RS256), dir.path());
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(settings.verifier.jwks()["keys"][0].clone()).expect("valid JWK");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let token = settings.minter.mint(&super::mint::spec("bob", TokenType::Access), NOW).unwrap().token;
    let sig_input = token.rsplit_once('.').unwrap();
    assert!(
        jsonwebtoken::crypto::verify(sig_input.1, sig_input.0.as_bytes(), &key, Algorithm::RS256).unwrap()
    );
}

#[test]
fn inspect_shows_header_and_claims_even_when_refused() {
    let v = hs_settings().verifier;
    let bad = forge(HS, &payload(""), &EncodingKey::from_secret(&[3u8; 32]), Algorithm::HS256);
    let seen = v.inspect(&bad, NOW);
    assert!(!seen.is_valid());
    assert!(matches!(seen.verdict, Err(TokenError::BadSignature)));
    assert_eq!(seen.header.unwrap()["alg"], "HS256");
    assert_eq!(seen.claims.unwrap()["sub"], "alice");
    let good = v.inspect(&forge_hs(HS, &payload("")), NOW);
    assert!(good.is_valid());
    let junk = v.inspect("not a token", NOW);
    assert!(junk.header.is_none() && junk.claims.is_none() && !junk.is_valid());
}

mod cache {
    use super::super::*;
    use crate::token::{MintSpec, TokenError, TokenType};

    fn es256() -> (crate::token::TokenSettings, tempfile::TempDir) {
        let dir = tempdir();
        let settings = build_ok(&raw_private(dir.path(), Algorithm::ES256), dir.path());
        (settings, dir)
    }

    fn mint(s: &crate::token::TokenSettings, now: i64) -> String {
        let extra = serde_json::Map::new();
        let spec = MintSpec {
            sub: "alice",
            token_type: TokenType::Access,
            fresh: true,
            csrf: None,
            fid: None,
            auth_time: None,
            exp: None,
            extra: &extra,
        };
        s.minter.mint(&spec, now).unwrap().token
    }

    #[test]
    fn verdicts_are_cached() {
        let (s, _dir) = es256();
        let cache = s.verifier.cache.as_ref().expect("ES256 config has a cache");
        let token = mint(&s, 1_000_000);
        assert_eq!(cache.len(), 0);
        let first = s.verifier.verify(&token, 1_000_000).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(s.verifier.verify(&token, 1_000_001).unwrap(), first);
        let hs = hs_settings();
        let token = forge_hs(r#"{"alg":"HS256"}"#, &payload(""));
        hs.verifier.verify(&token, NOW).unwrap();
        assert_eq!(hs.verifier.cache.as_ref().unwrap().len(), 1, "HS256 verdicts are cached too");
    }

    #[test]
    fn a_cached_token_still_expires() {
        let (s, _dir) = es256();
        let token = mint(&s, 1_000_000);
        s.verifier.verify(&token, 1_000_000).unwrap();
        let later = 1_000_000 + 15 * 60 + 60;
        assert!(matches!(s.verifier.verify(&token, later), Err(TokenError::Expired(_))));
    }

    #[test]
    fn a_tampered_token_is_not_a_cache_hit() {
        let (s, _dir) = es256();
        let token = mint(&s, 1_000_000);
        s.verifier.verify(&token, 1_000_000).unwrap();
        // Flip a character in the middle of the signature: the last base64url
        // character carries unused bits, so changing it may not change the bytes.
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mid = sig.len() / 2;
        let flipped = if &sig[mid..=mid] == "A" { "B" } else { "A" };
        let forged = format!("{head}.{}{flipped}{}", &sig[..mid], &sig[mid + 1..]);
        assert_ne!(forged, token);
        assert!(s.verifier.verify(&forged, 1_000_000).is_err());
    }

    /// A hit re-runs only the time checks: that is sound because only a
    /// token that passed the fixed rules (required claims, iss, aud) is ever
    /// cached, and a reload's new rules come with a new verifier and cache.
    #[test]
    fn a_token_failing_a_fixed_rule_is_never_cached_and_new_rules_start_cold() {
        let mut raw = raw_secret("HS256", SECRET);
        raw.issuer = "iss-a".into();
        let strict = build_ok(&raw, Path::new(".")).verifier;
        let wrong = forge_hs(r#"{"alg":"HS256"}"#, &payload(r#""iss":"iss-b""#));
        for _ in 0..2 {
            assert!(matches!(strict.verify(&wrong, NOW), Err(TokenError::BadIssuer)));
        }
        assert_eq!(strict.cache.as_ref().unwrap().len(), 0);
        let loose = hs_settings().verifier;
        assert!(loose.verify(&wrong, NOW).is_ok(), "no issuer rule here");
        assert_eq!(loose.cache.as_ref().unwrap().len(), 1);
        assert!(matches!(strict.verify(&wrong, NOW), Err(TokenError::BadIssuer)), "caches are not shared");
    }

    #[test]
    fn forgetting_drops_the_entry() {
        let (s, _dir) = es256();
        let token = mint(&s, 1_000_000);
        s.verifier.verify(&token, 1_000_000).unwrap();
        s.verifier.forget(&token);
        assert_eq!(s.verifier.cache.as_ref().unwrap().len(), 0);
    }
}

/// A token whose claims are `{"sub":"alice","type":"access","jti":"j1",`
/// then `iat` and `exp` written as given (JSON text), then `extra`.
fn timed(iat: &str, exp: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    forge_hs(
        HS,
        &format!(r#"{{"sub":"alice","type":"access","jti":"j1","iat":{iat},"exp":{exp}{sep}{extra}}}"#),
    )
}

/// Time claims of every JSON type and size: only numbers count, and a number
/// too large for a lifetime, or beyond what a float holds, is refused too.
#[test]
fn time_claims_that_are_no_usable_number_are_refused() {
    let (now, later) = (NOW.to_string(), (NOW + 60).to_string());
    let quoted_later = format!("\"{later}\"");
    let quoted_now = format!("\"{now}\"");
    for (iat, exp) in [(&now, &quoted_later), (&quoted_now, &later)] {
        assert!(matches!(verify(&timed(iat, exp, "")), Err(TokenError::BadClaims(_))), "{iat} {exp}");
    }
    for exp in ["true", "[1]", "{}", "null"] {
        assert!(verify(&timed(&now, exp, "")).is_err(), "exp {exp}");
    }
    assert!(matches!(verify(&timed(&now, "1e30", "")), Err(TokenError::LifetimeTooLong)));
    assert!(matches!(verify(&timed(&now, "18446744073709551615", "")), Err(TokenError::LifetimeTooLong)));
    assert!(matches!(verify(&timed("1e30", "1e30", "")), Err(TokenError::IssuedInFuture)));
    assert!(matches!(verify(&timed(&now, "-1", "")), Err(TokenError::Expired(_))));
    assert!(matches!(verify(&timed(&now, "1e400", "")), Err(TokenError::Malformed)));
}

/// `fresh` is a boolean or a time: `1` is neither and reads as not fresh,
/// `"true"` is refused; neither makes a token fresh.
#[test]
fn fresh_spelled_as_another_type_is_never_fresh() {
    let now = NOW.to_string();
    let later = (NOW + 600).to_string();
    let one = verify(&timed(&now, &later, r#""fresh":1"#));
    assert!(one.as_ref().map_or(true, |c| !c.is_fresh(NOW)), "{one:?}");
    assert!(matches!(verify(&timed(&now, &later, r#""fresh":"true""#)), Err(TokenError::BadClaims(_))));
    assert!(verify(&timed(&now, &later, r#""fresh":true"#)).unwrap().is_fresh(NOW), "the control");
}

/// A `kid` is looked up, never used as a path, a query or a pattern: odd
/// strings find no key, and a `kid` that is no string is malformed.
#[test]
fn kid_tricks_find_no_key() {
    let body = payload("");
    for kid in [r#""../../dev/null""#, r#""' OR 1=1 --""#, r#""k1\u0000""#, r#""""#, r#""*""#] {
        let token = forge_hs(&format!(r#"{{"alg":"HS256","kid":{kid}}}"#), &body);
        let settings =
            build_ok(&RawTokens { kid: Some("k1".into()), ..raw_secret("HS256", SECRET) }, Path::new("."));
        assert!(matches!(settings.verifier.verify(&token, NOW), Err(TokenError::UnknownKey)), "kid {kid}");
    }
    for kid in ["null", "1", r#"["k1"]"#] {
        let token = forge_hs(&format!(r#"{{"alg":"HS256","kid":{kid}}}"#), &body);
        assert!(matches!(verify(&token), Err(TokenError::Malformed)), "kid {kid}");
    }
}

/// Signatures changed in the ways verifiers have been fooled by: an HS256
/// MAC cut short or padded, ES256's all-zero and (n, n) signatures, and an
/// Ed25519 signature whose S has the group order added (S + L, the classic
/// malleability check).
#[test]
fn tampered_signatures_are_refused() {
    use base64::Engine;
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let resign = |token: &str, sig: &[u8]| format!("{}.{}", token.rsplit_once('.').unwrap().0, b64(sig));
    let sig_of = |token: &str| URL_SAFE_NO_PAD.decode(token.rsplit_once('.').unwrap().1).unwrap();

    let hs = forge_hs(HS, &payload(""));
    assert!(verify(&hs).is_ok(), "the control");
    let mac = sig_of(&hs);
    for cut in [1, 16, 31] {
        assert!(matches!(verify(&resign(&hs, &mac[..cut])), Err(TokenError::BadSignature)), "{cut} bytes");
    }
    let padded = [mac.as_slice(), &[0]].concat();
    assert!(matches!(verify(&resign(&hs, &padded)), Err(TokenError::BadSignature)));

    let dir = tempdir();
    let es = build_ok(&raw_private(dir.path(), Algorithm::ES256), dir.path());
    let es_key = EncodingKey::from_ec_pem(pair(Algorithm::ES256).0.as_bytes()).unwrap();
    let es_token = forge(r#"{"alg":"ES256"}"#, &payload(""), &es_key, Algorithm::ES256);
    assert!(es.verifier.verify(&es_token, NOW).is_ok(), "the ES256 control");
    const P256_N: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC,
        0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
    ];
    for sig in [[0u8; 64].to_vec(), [P256_N, P256_N].concat()] {
        assert!(matches!(es.verifier.verify(&resign(&es_token, &sig), NOW), Err(TokenError::BadSignature)));
    }

    let ed = build_ok(&raw_private(dir.path(), Algorithm::EdDSA), dir.path());
    let ed_key = EncodingKey::from_ed_pem(pair(Algorithm::EdDSA).0.as_bytes()).unwrap();
    let ed_token = forge(r#"{"alg":"EdDSA"}"#, &payload(""), &ed_key, Algorithm::EdDSA);
    assert!(ed.verifier.verify(&ed_token, NOW).is_ok(), "the EdDSA control");
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian as S is.
    const ED25519_L: [u8; 32] = [
        0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sig = sig_of(&ed_token);
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(ED25519_L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert!(matches!(ed.verifier.verify(&resign(&ed_token, &sig), NOW), Err(TokenError::BadSignature)));
}
