//! Minting, and mint → verify round trips for every algorithm and key encoding.

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};

use super::fixtures::{P256_SEC1_WITH_PARAMS, RSA_2048_PKCS1, RSA_2048_PKCS1_PUBLIC};
use super::*;
use crate::token::{MintSpec, TokenError, TokenType};

/// A spec with no extra claims and no session fields.
pub(super) fn spec(sub: &'static str, token_type: TokenType) -> MintSpec<'static> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    MintSpec {
        sub,
        token_type,
        fresh: false,
        csrf: None,
        fid: None,
        auth_time: None,
        exp: None,
        extra: EMPTY.get_or_init(Map::new),
    }
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[test]
fn every_algorithm_round_trips_with_generated_keys() {
    let dir = tempdir();
    for alg in ALL {
        let name = crate::token::keys::algorithm_name(alg);
        let mut raw = match generate(alg).unwrap() {
            GeneratedKey::Secret { secret } => raw_secret(name, &secret),
            GeneratedKey::KeyPair { .. } => raw_private(dir.path(), alg),
        };
        raw.kid = Some(format!("kid-{name}"));
        let s = build_ok(&raw, dir.path());
        for token_type in [TokenType::Access, TokenType::Refresh] {
            let minted = s.minter.mint(&spec("alice", token_type), NOW).unwrap();
            let claims = s.verifier.verify(&minted.token, NOW).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!((claims.sub.as_str(), claims.token_type), ("alice", token_type), "{name}");
            assert_eq!(claims.jti.as_deref(), Some(minted.jti.as_str()));
            assert_eq!(
                decode_part(&minted.token, 0),
                json!({"alg": name, "typ": "JWT", "kid": format!("kid-{name}")})
            );
        }
    }
}

#[test]
fn generated_secrets_meet_the_minimum_lengths() {
    for (alg, min) in [(Algorithm::HS256, 32), (Algorithm::HS384, 48), (Algorithm::HS512, 64)] {
        let GeneratedKey::Secret { secret } = generate(alg).unwrap() else {
            panic!("HS keygen gave a key pair")
        };
        assert!(secret.len() >= min);
        assert_ne!(
            secret,
            match generate(alg).unwrap() {
                GeneratedKey::Secret { secret } => secret,
                GeneratedKey::KeyPair { .. } => unreachable!(),
            }
        );
        assert!(!format!("{:?}", GeneratedKey::Secret { secret: secret.clone() }).contains(&secret));
    }
}

#[test]
fn minted_claims_follow_the_contract() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.issuer = "https://gw".into();
    raw.audience = vec!["app".into()];
    let s = build_ok(&raw, Path::new("."));
    let mut extra = Map::new();
    for (k, v) in [("roles", json!(["admin"])), ("email", json!("a@x")), ("sub", json!("mallory"))] {
        extra.insert(k.into(), v);
    }
    for reserved in ["iss", "aud", "exp", "nbf", "iat", "jti", "type", "fresh", "csrf", "fid", "auth_time"] {
        extra.insert(reserved.into(), json!("forged"));
    }
    let spec = MintSpec {
        fresh: true,
        csrf: Some("c-1"),
        fid: Some("f-1"),
        auth_time: Some(NOW - 100),
        extra: &extra,
        ..spec("alice", TokenType::Access)
    };
    let minted = s.minter.mint(&spec, NOW).unwrap();
    assert_eq!(minted.exp, NOW + 900);
    let body = decode_part(&minted.token, 1);
    let expected = json!({
        "sub": "alice", "type": "access", "fresh": true, "jti": minted.jti, "iat": NOW, "exp": NOW + 900,
        "csrf": "c-1", "fid": "f-1", "auth_time": NOW - 100, "iss": "https://gw", "aud": "app",
        "roles": ["admin"], "email": "a@x",
    });
    assert_eq!(body, expected);
    let claims = s.verifier.verify(&minted.token, NOW).unwrap();
    assert_eq!(claims.extra(), extra.into_iter().filter(|(k, _)| k == "roles" || k == "email").collect());
    assert!(uuid::Uuid::parse_str(&minted.jti).is_ok_and(|u| u.get_version_num() == 4));
}

#[test]
fn refresh_tokens_have_no_fresh_and_take_refresh_ttl() {
    let s = hs_settings();
    let minted = s.minter.mint(&MintSpec { fresh: true, ..spec("alice", TokenType::Refresh) }, NOW).unwrap();
    let body = decode_part(&minted.token, 1);
    assert!(body.get("fresh").is_none());
    assert!(body.get("nbf").is_none());
    assert_eq!(body["type"], "refresh");
    assert_eq!(minted.exp, NOW + 30 * 86400);
}

#[test]
fn explicit_exp_and_several_audiences() {
    let mut raw = raw_secret("HS256", SECRET);
    raw.audience = vec!["a".into(), "b".into()];
    let s = build_ok(&raw, Path::new("."));
    let minted =
        s.minter.mint(&MintSpec { exp: Some(NOW + 60), ..spec("x", TokenType::Access) }, NOW).unwrap();
    assert_eq!(minted.exp, NOW + 60);
    let body = decode_part(&minted.token, 1);
    assert_eq!((body["exp"].as_i64(), &body["aud"]), (Some(NOW + 60), &json!(["a", "b"])));
    assert!(!format!("{minted:?}").contains(&minted.token));
}

#[test]
fn an_empty_sub_is_not_minted() {
    assert!(matches!(
        hs_settings().minter.mint(&spec("", TokenType::Access), NOW),
        Err(TokenError::BadClaims(_))
    ));
}

#[test]
fn legacy_encodings_load_sign_and_verify() {
    let dir = tempdir();
    let sec1 = RawTokens {
        algorithm: "ES256".into(),
        private_key: Some(write(dir.path(), "sec1.pem", P256_SEC1_WITH_PARAMS)),
        ..RawTokens::default()
    };
    let s = build_ok(&sec1, dir.path());
    assert!(s
        .verifier
        .verify(&s.minter.mint(&spec("a", TokenType::Access), NOW).unwrap().token, NOW)
        .is_ok());

    let mut rsa = RawTokens {
        algorithm: "PS256".into(),
        private_key: Some(write(dir.path(), "pkcs1.pem", RSA_2048_PKCS1)),
        kid: Some("a".into()),
        ..RawTokens::default()
    };
    rsa.accept = vec![RawAcceptKey {
        kid: Some("b".into()),
        algorithm: "RS512".into(),
        public_key: Some(write(dir.path(), "pkcs1.pub.pem", RSA_2048_PKCS1_PUBLIC)),
        ..RawAcceptKey::default()
    }];
    let s = build_ok(&rsa, dir.path());
    assert!(s
        .verifier
        .verify(&s.minter.mint(&spec("a", TokenType::Access), NOW).unwrap().token, NOW)
        .is_ok());
    let key = EncodingKey::from_rsa_pem(RSA_2048_PKCS1.as_bytes()).unwrap();
    let by_app = forge(r#"{"alg":"RS512","kid":"b"}"#, &payload(""), &key, Algorithm::RS512);
    assert!(s.verifier.verify(&by_app, NOW).is_ok());
    // The same key under kid "a" is bound to PS256 only.
    let wrong_alg = forge(r#"{"alg":"RS512","kid":"a"}"#, &payload(""), &key, Algorithm::RS512);
    assert!(matches!(s.verifier.verify(&wrong_alg, NOW), Err(TokenError::UnknownKey)));
}
