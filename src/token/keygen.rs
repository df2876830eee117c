//! `jwtgate keygen`: fresh signing keys from aws-lc-rs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;

use super::keys::min_secret_len;

/// A newly generated key, ready to be written to disk.
#[derive(Clone)]
pub enum GeneratedKey {
    /// HS*: `secret` is the text to put into `secret` / `secret_file`. The
    /// text itself is the key (as AuthX and flask-jwt-extended use it): the
    /// base64url form of as many random bytes as the algorithm's minimum length,
    /// so it carries that many bytes of entropy and is longer than the minimum.
    Secret { secret: String },
    /// Asymmetric: `private_pem` (PKCS#8, for `private_key`) and
    /// `public_pem` (SPKI, for an app's verifier or `[[tokens.accept]] public_key`).
    KeyPair { private_pem: String, public_pem: String },
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeneratedKey::Secret { .. } => f.write_str("GeneratedKey::Secret(<redacted>)"),
            GeneratedKey::KeyPair { public_pem, .. } => f
                .debug_struct("GeneratedKey::KeyPair")
                .field("private_pem", &"<redacted>")
                .field("public_pem", public_pem)
                .finish(),
        }
    }
}

/// Why `jwtgate keygen` could not produce a key.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("the system random number generator failed")]
    Random,
    #[error("key generation failed in aws-lc")]
    Crypto,
}

/// RSA size for new RS*/PS* keys: 3072 bits (NIST's recommendation past 2030);
/// 2048 is the minimum jwtgate accepts.
const RSA_SIZE: KeySize = KeySize::Rsa3072;

/// Generates a key for `alg`: a random secret for HS*, else a PKCS#8 + SPKI pair.
pub fn generate(alg: Algorithm) -> Result<GeneratedKey, KeygenError> {
    if let Some(len) = min_secret_len(alg) {
        let mut bytes = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeygenError::Random)?;
        return Ok(GeneratedKey::Secret { secret: URL_SAFE_NO_PAD.encode(bytes) });
    }
    let (private_der, public_der) = match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = if alg == Algorithm::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::generate(signing).map_err(|_| KeygenError::Crypto)?;
            let private = pair.to_pkcs8v1().map_err(|_| KeygenError::Crypto)?.as_ref().to_vec();
            (private, pair.public_key().as_der().map_err(|_| KeygenError::Crypto)?.as_ref().to_vec())
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(|_| KeygenError::Crypto)?;
            // PKCS#8 v1: what `openssl genpkey -algorithm ed25519` writes and every library reads.
            let private = pair.to_pkcs8v1().map_err(|_| KeygenError::Crypto)?.as_ref().to_vec();
            (private, pair.public_key().as_der().map_err(|_| KeygenError::Crypto)?.as_ref().to_vec())
        }
        _ => {
            let pair = RsaKeyPair::generate(RSA_SIZE).map_err(|_| KeygenError::Crypto)?;
            let private =
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(|_| KeygenError::Crypto)?;
            (
                private.as_ref().to_vec(),
                pair.public_key().as_der().map_err(|_| KeygenError::Crypto)?.as_ref().to_vec(),
            )
        }
    };
    Ok(GeneratedKey::KeyPair {
        private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private_der)),
        public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_der)),
    })
}
