//! PEM key files → key material bound to one algorithm. The DER reader says
//! what the file holds (for precise errors), aws-lc-rs validates the key
//! itself, and the result is handed to jsonwebtoken in the DER form its
//! aws-lc backend expects (PKCS#1 for RSA, PKCS#8 for EC/Ed25519 private keys,
//! the raw point / raw Ed25519 key for public ones).

use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair, RsaPublicKeyComponents,
    RsaSubjectPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, ED25519,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Map, Value};

use super::der::{self, KeyKind};
use super::keys::{algorithm_name, PemField};

/// Key material read from config, before it gets a kid.
pub(crate) enum Material {
    Secret(Vec<u8>),
    Private { sign: EncodingKey, public: PublicKey },
    Public(PublicKey),
}

/// The public half of an asymmetric key: what verification and the JWKS need.
pub(crate) enum PublicKey {
    /// `pkcs1` is the DER `RSAPublicKey`; `n`/`e` big-endian without leading zeros.
    Rsa {
        pkcs1: Vec<u8>,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// `point` is the uncompressed SEC1 point `04 || x || y`.
    Ec {
        crv: &'static str,
        point: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

impl PublicKey {
    pub(crate) fn decoding_key(&self) -> DecodingKey {
        match self {
            PublicKey::Rsa { pkcs1, .. } => DecodingKey::from_rsa_der(pkcs1),
            PublicKey::Ec { point, .. } => DecodingKey::from_ec_der(point),
            PublicKey::Ed25519 { x } => DecodingKey::from_ed_der(x),
        }
    }

    /// The RFC 7517 public parameters (no kid / alg / use yet).
    pub(crate) fn jwk(&self) -> Map<String, Value> {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let v = match self {
            PublicKey::Rsa { n, e, .. } => json!({"kty": "RSA", "n": b64(n), "e": b64(e)}),
            PublicKey::Ec { crv, point } => {
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            PublicKey::Ed25519 { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)}),
        };
        match v {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn ec(kind: KeyKind, point: &[u8], file: &str) -> Result<PublicKey, String> {
        let (crv, len) = if kind == KeyKind::P256 { ("P-256", 65) } else { ("P-384", 97) };
        if point.len() != len || point[0] != 0x04 {
            return Err(format!(
                "{file}: only uncompressed EC points are supported; re-export with: \
                 openssl pkey -pubin -in {file} -pubout"
            ));
        }
        Ok(PublicKey::Ec { crv, point: point.to_vec() })
    }
}

/// What `alg` needs, for error messages.
pub(crate) fn expected_key(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => "RSA (≥ 2048 bits)",
        Algorithm::ES256 => "P-256 EC",
        Algorithm::ES384 => "P-384 EC",
        Algorithm::EdDSA => "Ed25519",
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "shared secret",
    }
}

/// Parses a PEM file for `alg`: a private key for `[tokens]`, a public one for `[[tokens.accept]]`.
pub(crate) fn parse(alg: Algorithm, field: PemField, bytes: &[u8], file: &str) -> Result<Material, String> {
    let blocks = pem::parse_many(bytes).map_err(|e| format!("{file} is not a PEM file ({e})"))?;
    // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key; it adds nothing.
    let keys: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() != "EC PARAMETERS").collect();
    let block = match keys.as_slice() {
        [one] => *one,
        [] => return Err(format!("{file} holds no PEM key (expected a -----BEGIN … KEY----- block)")),
        more => return Err(format!("{file} holds {} PEM blocks; keep exactly one key in it", more.len())),
    };
    match field {
        PemField::PrivateKey => private(alg, block.tag(), block.contents(), file),
        PemField::PublicKey => public(alg, block.tag(), block.contents(), file).map(Material::Public),
    }
}

fn private(alg: Algorithm, tag: &str, der: &[u8], file: &str) -> Result<Material, String> {
    let malformed = |format: &str| format!("{file} is not a valid {format} private key");
    // `inner` is the PKCS#1 key inside a PKCS#8 RSA key; unused for the other kinds.
    let (kind, inner) = match tag {
        "PRIVATE KEY" => der::pkcs8(der).ok_or_else(|| malformed("PKCS#8"))?,
        "RSA PRIVATE KEY" => {
            (KeyKind::Rsa { bits: der::rsa_modulus_bits(der).ok_or_else(|| malformed("PKCS#1"))? }, der)
        }
        "EC PRIVATE KEY" => {
            (der::sec1_curve(der).or_else(|| curve_of(alg)).ok_or_else(|| malformed("SEC1"))?, der)
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(format!(
                "{file} is encrypted; jwtgate reads unencrypted keys: openssl pkcs8 -in {file} -out plain.pem"
            ))
        }
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {
            return Err(format!(
                "{file} holds a public key; private_key needs the private key \
                 (a public key alone belongs in [[tokens.accept]] public_key)"
            ))
        }
        other => return Err(format!("{file} holds a {other:?} block; {}", PRIVATE_FORMATS)),
    };
    check_binding(alg, kind, file)?;
    let rejected = |e: KeyRejected| format!("{file} holds {kind} that is not valid ({e})");
    match kind {
        KeyKind::Rsa { .. } => {
            let pair = RsaKeyPair::from_der(inner).map_err(rejected)?;
            let public = rsa_public(pair.public_key());
            Ok(Material::Private { sign: EncodingKey::from_rsa_der(inner), public })
        }
        KeyKind::P256 | KeyKind::P384 => {
            let signing = if kind == KeyKind::P256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::from_private_key_der(signing, der).map_err(rejected)?;
            // jsonwebtoken's EC signer reads PKCS#8 only; this also converts SEC1.
            let pkcs8 = pair.to_pkcs8v1().map_err(|_| format!("{file}: cannot re-encode the EC key"))?;
            let public = PublicKey::ec(kind, pair.public_key().as_ref(), file)?;
            Ok(Material::Private { sign: EncodingKey::from_ec_der(pkcs8.as_ref()), public })
        }
        KeyKind::Ed25519 => {
            let pair = Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?;
            let public = PublicKey::Ed25519 { x: pair.public_key().as_ref().to_vec() };
            Ok(Material::Private { sign: EncodingKey::from_ed_der(der), public })
        }
        KeyKind::Other(_) => Err(format!("{file} holds {kind}, which jwtgate cannot use")),
    }
}

const PRIVATE_FORMATS: &str =
    "private_key takes PKCS#8 (PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) PEM";

fn public(alg: Algorithm, tag: &str, der: &[u8], file: &str) -> Result<PublicKey, String> {
    let malformed = |format: &str| format!("{file} is not a valid {format} public key");
    let (kind, key) = match tag {
        "PUBLIC KEY" => der::spki(der).ok_or_else(|| malformed("SubjectPublicKeyInfo"))?,
        "RSA PUBLIC KEY" => (KeyKind::Rsa { bits: der::rsa_modulus_bits(der).ok_or_else(|| malformed("PKCS#1"))? }, der),
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
            return Err(format!(
                "{file} holds a private key; public_key takes only the public half — \
                 extract it with: openssl pkey -in {file} -pubout -out public.pem"
            ))
        }
        "CERTIFICATE" => {
            return Err(format!(
                "{file} is a certificate; extract its key with: openssl x509 -in {file} -pubkey -noout > public.pem"
            ))
        }
        other => {
            return Err(format!(
                "{file} holds a {other:?} block; public_key takes PUBLIC KEY (SPKI) or RSA PUBLIC KEY (PKCS#1) PEM"
            ))
        }
    };
    check_binding(alg, kind, file)?;
    let rejected = |e: KeyRejected| format!("{file} holds {kind} that is not valid ({e})");
    match kind {
        KeyKind::Rsa { .. } => Ok(rsa_public(&RsaSubjectPublicKey::from_der(key).map_err(rejected)?)),
        KeyKind::P256 => {
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key).map_err(rejected)?;
            PublicKey::ec(kind, key, file)
        }
        KeyKind::P384 => {
            ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key).map_err(rejected)?;
            PublicKey::ec(kind, key, file)
        }
        KeyKind::Ed25519 => {
            ParsedPublicKey::new(&ED25519, key).map_err(rejected)?;
            Ok(PublicKey::Ed25519 { x: key.to_vec() })
        }
        KeyKind::Other(_) => Err(format!("{file} holds {kind}, which jwtgate cannot use")),
    }
}

fn rsa_public(key: &RsaSubjectPublicKey) -> PublicKey {
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(key);
    PublicKey::Rsa {
        pkcs1: key.as_ref().to_vec(),
        n: der::strip_leading_zeros(&c.n).to_vec(),
        e: der::strip_leading_zeros(&c.e).to_vec(),
    }
}

/// A SEC1 key may omit its curve; then the configured algorithm says which one to try.
fn curve_of(alg: Algorithm) -> Option<KeyKind> {
    match alg {
        Algorithm::ES256 => Some(KeyKind::P256),
        Algorithm::ES384 => Some(KeyKind::P384),
        _ => None,
    }
}

/// DESIGN.md §3 key rules: each algorithm takes exactly one kind of key.
pub(crate) fn check_binding(alg: Algorithm, kind: KeyKind, file: &str) -> Result<(), String> {
    let name = algorithm_name(alg);
    let fits = match (alg, kind) {
        (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512, KeyKind::Rsa { bits })
        | (Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512, KeyKind::Rsa { bits }) => {
            if bits < 2048 {
                return Err(format!(
                    "{name} needs an RSA key of at least 2048 bits, but {file} holds {kind}; \
                     generate one with: jwtgate keygen --alg {name}"
                ));
            }
            if bits > 8192 {
                return Err(format!("{name} keys may have at most 8192 bits, but {file} holds {kind}"));
            }
            true
        }
        (Algorithm::ES256, KeyKind::P256)
        | (Algorithm::ES384, KeyKind::P384)
        | (Algorithm::EdDSA, KeyKind::Ed25519) => true,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let suggestion = match kind {
        KeyKind::Rsa { .. } => "algorithm = \"RS256\" (or RS384/RS512/PS256/PS384/PS512) fits it",
        KeyKind::P256 => "algorithm = \"ES256\" fits it",
        KeyKind::P384 => "algorithm = \"ES384\" fits it",
        KeyKind::Ed25519 => "algorithm = \"EdDSA\" fits it",
        KeyKind::Other(_) => "no JWT algorithm jwtgate supports fits it",
    };
    Err(format!(
        "{name} needs a {} key, but {file} holds {kind} ({suggestion}); \
         or generate a matching key with: jwtgate keygen --alg {name}",
        expected_key(alg)
    ))
}
