//! Signing and verification keys: loading, the per-algorithm rules of
//! DESIGN.md §3, and `jwtgate keygen`.
//!
//! Every key is bound to exactly one algorithm when it is loaded; verification
//! never asks a key "can you do this alg?", it only picks keys whose bound
//! algorithm equals the token's `alg`. That binding is what makes the classic
//! RS256 → HS256 confusion (HMAC keyed with the RSA public key) impossible.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Map, Value};

use super::der;
use super::pem_keys::{self, Material};
use crate::config::{resolve_path, ConfigErrors};

pub use super::keygen::{generate, GeneratedKey, KeygenError};

/// Every algorithm jwtgate accepts, by its exact JOSE name. Case matters:
/// `hs256` or `NONE` are not algorithms.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The JOSE name of `alg`, as written into headers and JWKs.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// Minimum HMAC secret length in bytes (the hash output size, RFC 7518 §3.2);
/// `None` for asymmetric algorithms.
pub fn min_secret_len(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::HS256 => Some(32),
        Algorithm::HS384 => Some(48),
        Algorithm::HS512 => Some(64),
        _ => None,
    }
}

/// One verification key, bound to exactly one algorithm (DESIGN.md §5 key selection).
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
    /// The public JWK (with kid, alg, use); `None` for HMAC secrets, which are never published.
    pub(crate) jwk: Option<Map<String, Value>>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The `[tokens]` key, used by the minter.
pub(crate) struct SigningKey {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) key: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// Which PEM key a table takes: `[tokens]` signs, `[[tokens.accept]]` only verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemField {
    PrivateKey,
    PublicKey,
}

impl PemField {
    fn name(self) -> &'static str {
        match self {
            PemField::PrivateKey => "private_key",
            PemField::PublicKey => "public_key",
        }
    }
}

/// The key-related settings of `[tokens]` or of one `[[tokens.accept]]` entry.
pub(crate) struct KeyConfig<'a> {
    /// Key path prefix for errors: `tokens` or `tokens.accept[2]`.
    pub(crate) prefix: String,
    pub(crate) algorithm: &'a str,
    pub(crate) kid: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
    pub(crate) secret_file: Option<&'a str>,
    pub(crate) pem: Option<&'a str>,
    pub(crate) pem_field: PemField,
}

/// Loads the `[tokens]` key: the minter's key and the first verification key.
pub(crate) fn load_signing(
    cfg: &KeyConfig<'_>,
    base_dir: &Path,
    errs: &mut ConfigErrors,
) -> Option<(SigningKey, VerifyKey)> {
    let (alg, material) = load(cfg, base_dir, errs)?;
    let kid = cfg.kid.map(str::to_owned);
    let (sign, verify) = match material {
        Material::Secret(secret) => (
            EncodingKey::from_secret(&secret),
            VerifyKey::new(kid.clone(), alg, DecodingKey::from_secret(&secret)),
        ),
        Material::Private { sign, public } => (sign, VerifyKey::public(kid.clone(), alg, &public)),
        // load() only yields a bare public key for PemField::PublicKey.
        Material::Public(_) => return None,
    };
    Some((SigningKey { kid, alg, key: sign }, verify))
}

/// Loads one `[[tokens.accept]]` verification key.
pub(crate) fn load_verify(
    cfg: &KeyConfig<'_>,
    base_dir: &Path,
    errs: &mut ConfigErrors,
) -> Option<VerifyKey> {
    let (alg, material) = load(cfg, base_dir, errs)?;
    let kid = cfg.kid.map(str::to_owned);
    Some(match material {
        Material::Secret(secret) => VerifyKey::new(kid, alg, DecodingKey::from_secret(&secret)),
        Material::Private { public, .. } | Material::Public(public) => VerifyKey::public(kid, alg, &public),
    })
}

impl VerifyKey {
    fn new(kid: Option<String>, alg: Algorithm, key: DecodingKey) -> VerifyKey {
        VerifyKey { kid, alg, key, jwk: None }
    }

    fn public(kid: Option<String>, alg: Algorithm, public: &pem_keys::PublicKey) -> VerifyKey {
        let mut jwk = public.jwk();
        if let Some(kid) = &kid {
            jwk.insert("kid".into(), kid.clone().into());
        }
        jwk.insert("alg".into(), algorithm_name(alg).into());
        jwk.insert("use".into(), "sig".into());
        VerifyKey { kid, alg, key: public.decoding_key(), jwk: Some(jwk) }
    }
}

/// Shared by both tables: the algorithm, exactly one key source, the
/// algorithm/key rules. Pushes every problem it finds before giving up.
fn load(cfg: &KeyConfig<'_>, base_dir: &Path, errs: &mut ConfigErrors) -> Option<(Algorithm, Material)> {
    let alg = parse_algorithm(cfg.algorithm);
    if alg.is_none() {
        errs.push(format!("{}.algorithm", cfg.prefix), unknown_algorithm(cfg.algorithm));
    }
    if cfg.kid == Some("") {
        errs.push(
            format!("{}.kid", cfg.prefix),
            "is empty; omit kid to match tokens whose header has no kid",
        );
    }
    let one_source = check_one_source(cfg, alg, errs);
    let alg = alg?;
    if !one_source {
        return None;
    }
    let material = match min_secret_len(alg) {
        Some(min) => load_secret(cfg, alg, min, base_dir, errs)?,
        None => load_pem(cfg, alg, base_dir, errs)?,
    };
    Some((alg, material))
}

/// HS*: the secret from `secret` or `secret_file`; a PEM file is a mistake.
fn load_secret(
    cfg: &KeyConfig<'_>,
    alg: Algorithm,
    min: usize,
    base_dir: &Path,
    errs: &mut ConfigErrors,
) -> Option<Material> {
    let p = &cfg.prefix;
    if let Some(secret) = cfg.secret {
        return check_secret(&format!("{p}.secret"), alg, secret.as_bytes().to_vec(), min, errs);
    }
    if let Some(file) = cfg.secret_file {
        let key = format!("{p}.secret_file");
        return read_secret_file(&key, file, base_dir, errs)
            .and_then(|s| check_secret(&key, alg, s, min, errs));
    }
    let msg = format!(
        "{} uses a shared secret: set secret or secret_file instead, or choose an \
         asymmetric algorithm (RS256, PS256, ES256, ES384, EdDSA) for this key",
        algorithm_name(alg)
    );
    errs.push(format!("{p}.{}", cfg.pem_field.name()), msg);
    None
}

/// RS*/PS*/ES*/EdDSA: the PEM file; a secret is a mistake.
fn load_pem(
    cfg: &KeyConfig<'_>,
    alg: Algorithm,
    base_dir: &Path,
    errs: &mut ConfigErrors,
) -> Option<Material> {
    let p = &cfg.prefix;
    let field = cfg.pem_field.name();
    let stray =
        [("secret", cfg.secret), ("secret_file", cfg.secret_file)].into_iter().find(|f| f.1.is_some());
    if let Some((name, _)) = stray {
        let msg = format!(
            "{} verifies with a {} key, not a secret: set {field} (generate a key pair with: \
             jwtgate keygen --alg {}); secret and secret_file are for HS256/HS384/HS512",
            algorithm_name(alg),
            pem_keys::expected_key(alg),
            algorithm_name(alg),
        );
        errs.push(format!("{p}.{name}"), msg);
        return None;
    }
    let path = resolve_path(base_dir, cfg.pem?);
    let loaded = std::fs::read(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|bytes| pem_keys::parse(alg, cfg.pem_field, &bytes, &path.display().to_string()));
    loaded.map_err(|msg| errs.push(format!("{p}.{field}"), msg)).ok()
}

/// Exactly one of secret / secret_file / (private_key | public_key).
fn check_one_source(cfg: &KeyConfig<'_>, alg: Option<Algorithm>, errs: &mut ConfigErrors) -> bool {
    let pem = cfg.pem_field.name();
    let set: Vec<&str> = [
        ("secret", cfg.secret.is_some()),
        ("secret_file", cfg.secret_file.is_some()),
        (pem, cfg.pem.is_some()),
    ]
    .iter()
    .filter(|s| s.1)
    .map(|s| s.0)
    .collect();
    let msg = match set.len() {
        1 => return true,
        0 => match alg {
            Some(a) if min_secret_len(a).is_some() => format!(
                "needs one of secret / secret_file / {pem}; {} takes a secret — generate one with: jwtgate keygen --alg {}",
                algorithm_name(a),
                algorithm_name(a)
            ),
            Some(a) => format!(
                "needs one of secret / secret_file / {pem}; {} takes {pem} — generate a key pair with: jwtgate keygen --alg {}",
                algorithm_name(a),
                algorithm_name(a)
            ),
            None => format!("needs one of secret / secret_file / {pem}"),
        },
        _ => format!("{} are all set; keep exactly one of secret / secret_file / {pem}", set.join(" and ")),
    };
    let follows = ["secret", "secret_file", pem].map(|k| format!("{}.{k}", cfg.prefix)).into();
    errs.push_following(cfg.prefix.clone(), follows, msg);
    false
}

fn unknown_algorithm(given: &str) -> String {
    const ALL: &str = "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";
    if given.is_empty() {
        return format!("is missing; set the algorithm this key is for, one of {ALL}");
    }
    let exact = ALL.split(", ").find(|a| a.eq_ignore_ascii_case(given));
    match exact {
        Some(a) => format!("{given:?} is not an algorithm name (names are case-sensitive); write \"{a}\""),
        None => format!("{given:?} is not supported; use one of {ALL}"),
    }
}

/// `secret_file` holds the secret bytes; trailing CR/LF (what `echo >` and
/// editors add) are dropped, any other byte counts. A key in DER is kept
/// whole: its last byte is data, 0x0A or 0x0D in about one key of 128, and
/// cut short it would no longer read as the key it is (`key_text`).
fn read_secret_file(key: &str, value: &str, base_dir: &Path, errs: &mut ConfigErrors) -> Option<Vec<u8>> {
    let path = resolve_path(base_dir, value);
    match std::fs::read(&path) {
        Ok(bytes) if der_key(&bytes) => Some(bytes),
        Ok(mut bytes) => {
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            Some(bytes)
        }
        Err(e) => {
            errs.push(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn check_secret(
    key: &str,
    alg: Algorithm,
    secret: Vec<u8>,
    min: usize,
    errs: &mut ConfigErrors,
) -> Option<Material> {
    let name = algorithm_name(alg);
    let hint = format!("jwtgate keygen --alg {name}");
    if secret.is_empty() {
        errs.push(
            key,
            format!(
                "is empty (an environment variable such as ${{JWTGATE_SECRET}} that expanded to \"\"?); \
                 {name} needs a secret of at least {min} bytes; generate one with: {hint}"
            ),
        );
        return None;
    }
    if let Some(kind) = key_text(&secret) {
        errs.push(
            key,
            format!(
                "holds {kind}, not a secret: anyone who has that key could sign {name} tokens with it \
                 as the HMAC secret. To verify with a key pair, set tokens.algorithm to its algorithm \
                 (RS256, ES256, EdDSA, ...) and private_key (or public_key in [[tokens.accept]]); \
                 for {name}, generate a secret with: {hint}"
            ),
        );
        return None;
    }
    if secret.len() < min {
        errs.push(
            key,
            format!(
                "{name} needs a secret of at least {min} bytes (got {}); generate one with: {hint}",
                secret.len()
            ),
        );
        return None;
    }
    Some(Material::Secret(secret))
}

/// The key types that begin an OpenSSH public key line (`ssh-ed25519 AAAA…`).
const SSH_KEY_TYPES: [&[u8]; 8] = [
    b"ssh-rsa",
    b"ssh-dss",
    b"ssh-ed25519",
    b"ecdsa-sha2-nistp256",
    b"ecdsa-sha2-nistp384",
    b"ecdsa-sha2-nistp521",
    b"sk-ssh-ed25519@openssh.com",
    b"sk-ecdsa-sha2-nistp256@openssh.com",
];

/// What kind of key `secret` is, when it is one: a public key used as an
/// HMAC secret is the classic algorithm-confusion hole, since the public key
/// is no secret (PyJWT refuses the same). PEM (any `-----BEGIN` block:
/// keys and certificates), OpenSSH public keys, JWKs, and keys and
/// certificates in DER, raw (a `.der` file as `secret_file`) or in base64
/// (a PEM's body pasted without its `-----` lines) are recognised.
fn key_text(secret: &[u8]) -> Option<&'static str> {
    let text = secret.trim_ascii_start();
    let has = |needle: &[u8]| secret.windows(needle.len()).any(|w| w == needle);
    if has(b"-----BEGIN ") {
        Some("a PEM key or certificate")
    } else if SSH_KEY_TYPES.iter().any(|t| text.starts_with(t) && text.get(t.len()) == Some(&b' ')) {
        Some("an OpenSSH key")
    } else if text.starts_with(b"{") && has(b"\"kty\"") {
        Some("a JSON Web Key")
    } else if der_key(secret) || base64_body(secret).is_some_and(|der| der_key(&der)) {
        Some("a key or certificate in DER (raw, or in base64 as a PEM without its -----BEGIN lines)")
    } else {
        None
    }
}

/// A public or private key, or a certificate, in DER. The parsers want the
/// whole structure (algorithm OIDs, an RSA modulus of 1024 bits or more), so
/// random secret bytes never read as one.
fn der_key(der: &[u8]) -> bool {
    der::spki(der).is_some()
        || der::pkcs8(der).is_some()
        || der::certificate_key(der).is_some()
        || der::rsa_public_key(der).is_some()
}

/// `secret` read as base64, standard or URL-safe, padded or not, with line
/// breaks and spaces ignored (as a PEM body has them).
fn base64_body(secret: &[u8]) -> Option<Vec<u8>> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    let compact: Vec<u8> = secret.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [STANDARD, URL_SAFE]
        .iter()
        .find_map(|alphabet| GeneralPurpose::new(alphabet, config).decode(&compact).ok())
}
