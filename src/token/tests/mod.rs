//! Unit tests of the token module: key rules, verification, minting. Keys are
//! generated once per test binary (RSA generation is slow) and written to a
//! temporary directory the way an operator would write them.

mod build;
mod fixtures;
mod mint;
mod verify;

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};

use super::{generate, GeneratedKey, TokenSettings};
use crate::config::raw::{RawAcceptKey, RawTokens};
use crate::config::ConfigErrors;

/// A fixed "now" for every test: 2026-01-01T00:00:00Z.
pub(super) const NOW: i64 = 1_767_225_600;

/// A 32-byte HS256 secret.
pub(super) const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// (private PKCS#8 PEM, public SPKI PEM) for the key family of `alg`.
pub(super) fn pair(alg: Algorithm) -> &'static (String, String) {
    static RSA: OnceLock<(String, String)> = OnceLock::new();
    static P256: OnceLock<(String, String)> = OnceLock::new();
    static P384: OnceLock<(String, String)> = OnceLock::new();
    static ED: OnceLock<(String, String)> = OnceLock::new();
    let (cell, gen_alg) = match alg {
        Algorithm::ES256 => (&P256, Algorithm::ES256),
        Algorithm::ES384 => (&P384, Algorithm::ES384),
        Algorithm::EdDSA => (&ED, Algorithm::EdDSA),
        _ => (&RSA, Algorithm::RS256),
    };
    cell.get_or_init(|| match generate(gen_alg).expect("keygen") {
        GeneratedKey::KeyPair { private_pem, public_pem } => (private_pem, public_pem),
        GeneratedKey::Secret { .. } => panic!("asymmetric keygen returned a secret"),
    })
}

/// Writes `contents` into `dir/name` and returns the name (relative to `dir`).
pub(super) fn write(dir: &Path, name: &str, contents: &str) -> String {
    std::fs::write(dir.join(name), contents).expect("write key file");
    name.to_string()
}

/// `[tokens]` with an inline secret and no files.
pub(super) fn raw_secret(alg: &str, secret: &str) -> RawTokens {
    RawTokens { algorithm: alg.into(), secret: Some(secret.into()), ..RawTokens::default() }
}

/// `[tokens]` with a generated private key for `alg` written into `dir`.
pub(super) fn raw_private(dir: &Path, alg: Algorithm) -> RawTokens {
    let name = format!("{}.pem", super::keys::algorithm_name(alg));
    RawTokens {
        algorithm: super::keys::algorithm_name(alg).into(),
        private_key: Some(write(dir, &name, &pair(alg).0)),
        ..RawTokens::default()
    }
}

/// An `[[tokens.accept]]` entry with the generated public key for `alg`.
pub(super) fn accept_public(dir: &Path, alg: Algorithm, kid: Option<&str>) -> RawAcceptKey {
    let name = format!("{}.pub.pem", super::keys::algorithm_name(alg));
    RawAcceptKey {
        kid: kid.map(str::to_owned),
        algorithm: super::keys::algorithm_name(alg).into(),
        public_key: Some(write(dir, &name, &pair(alg).1)),
        ..RawAcceptKey::default()
    }
}

pub(super) fn build_ok(raw: &RawTokens, dir: &Path) -> TokenSettings {
    let mut errs = ConfigErrors::default();
    let built = TokenSettings::build(raw, dir, &mut errs);
    assert!(errs.is_empty(), "unexpected config errors:\n{errs}");
    built.expect("build returned None without errors")
}

pub(super) fn build_errs(raw: &RawTokens, dir: &Path) -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    let built = TokenSettings::build(raw, dir, &mut errs);
    assert!(built.is_none(), "build succeeded despite errors");
    assert!(!errs.is_empty(), "build failed without errors");
    errs
}

/// A token with exactly this header and payload JSON text (duplicates and all),
/// signed with `key` under `alg`.
pub(super) fn forge(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{sig}")
}

/// [`forge`] with HS256 and [`SECRET`].
pub(super) fn forge_hs(header: &str, payload: &str) -> String {
    forge(header, payload, &EncodingKey::from_secret(SECRET.as_bytes()), Algorithm::HS256)
}

/// A well-formed access-token payload at [`NOW`] with the given extra members.
pub(super) fn payload(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"sub":"alice","type":"access","jti":"j1","iat":{NOW},"exp":{}{sep}{extra}}}"#, NOW + 600)
}

/// Settings with HS256 and [`SECRET`], defaults otherwise.
pub(super) fn hs_settings() -> TokenSettings {
    build_ok(&raw_secret("HS256", SECRET), Path::new("."))
}

pub(super) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
