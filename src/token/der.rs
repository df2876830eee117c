//! Just enough DER to tell what kind of key a PEM file holds (PKCS#8, SPKI,
//! SEC1, PKCS#1) before aws-lc-rs validates it. aws-lc only says "rejected";
//! reading the algorithm identifier ourselves lets config errors say "this is a
//! P-384 key" or "this RSA key has 1024 bits" and name the fix.

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
/// `[0]` constructed: the curve parameters of a SEC1 `ECPrivateKey`.
const CONTEXT_0: u8 = 0xA0;

const OID_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
const OID_EC: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2B, 0x65, 0x71];
const OID_X25519: &[u8] = &[0x2B, 0x65, 0x6E];

/// What a key file holds, as far as the algorithm rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa {
        bits: usize,
    },
    P256,
    P384,
    Ed25519,
    /// Recognised but never usable for JWTs here (P-521, Ed448, X25519, RSA-PSS-only, …).
    Other(&'static str),
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "a {bits}-bit RSA key"),
            KeyKind::P256 => f.write_str("a P-256 EC key"),
            KeyKind::P384 => f.write_str("a P-384 EC key"),
            KeyKind::Ed25519 => f.write_str("an Ed25519 key"),
            KeyKind::Other(what) => write!(f, "{what}"),
        }
    }
}

/// A cursor over DER TLVs; every read checks bounds, so malformed input is `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// Reads one element that must carry `tag` and returns its contents.
    fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.0.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Some(contents)
    }

    /// Skips one element of any tag.
    fn skip(&mut self) -> Option<()> {
        let tag = self.peek_tag()?;
        self.read(tag).map(|_| ())
    }
}

/// The key kind named by an `AlgorithmIdentifier` (its OID plus, for EC, the curve).
fn kind_of(alg_id: &[u8], rsa_key: Option<&[u8]>) -> Option<KeyKind> {
    let mut r = Reader(alg_id);
    let oid = r.read(OID)?;
    Some(match oid {
        OID_RSA => KeyKind::Rsa { bits: rsa_modulus_bits(rsa_key?)? },
        OID_EC => curve_kind(r.read(OID)?),
        OID_ED25519 => KeyKind::Ed25519,
        OID_ED448 => KeyKind::Other("an Ed448 key"),
        OID_X25519 => KeyKind::Other("an X25519 (key agreement) key"),
        OID_RSA_PSS => KeyKind::Other("an RSASSA-PSS-restricted RSA key"),
        _ => KeyKind::Other("a key of an unsupported type"),
    })
}

fn curve_kind(curve: &[u8]) -> KeyKind {
    match curve {
        OID_P256 => KeyKind::P256,
        OID_P384 => KeyKind::P384,
        OID_P521 => KeyKind::Other("a P-521 EC key"),
        _ => KeyKind::Other("an EC key on an unsupported curve"),
    }
}

/// PKCS#8 `PrivateKeyInfo` → (kind, the inner private key bytes).
pub(crate) fn pkcs8(der: &[u8]) -> Option<(KeyKind, &[u8])> {
    let mut outer = Reader(der);
    let mut info = Reader(outer.read(SEQUENCE)?);
    info.read(INTEGER)?;
    let alg_id = info.read(SEQUENCE)?;
    let private = info.read(OCTET_STRING)?;
    // RSA's inner key is a PKCS#1 RSAPrivateKey: read its modulus for the size rule.
    let kind = kind_of(alg_id, Some(private).filter(|_| is_rsa(alg_id)))?;
    Some((kind, private))
}

/// SubjectPublicKeyInfo → (kind, the subjectPublicKey bits: PKCS#1, an EC point, or 32 Ed25519 bytes).
pub(crate) fn spki(der: &[u8]) -> Option<(KeyKind, &[u8])> {
    spki_contents(Reader(der).read(SEQUENCE)?)
}

/// The kind of the public key in an X.509 certificate.
pub(crate) fn certificate_key(der: &[u8]) -> Option<KeyKind> {
    let mut cert = Reader(Reader(der).read(SEQUENCE)?);
    let mut tbs = Reader(cert.read(SEQUENCE)?);
    if tbs.peek_tag() == Some(CONTEXT_0) {
        tbs.skip()?; // version
    }
    tbs.read(INTEGER)?; // serialNumber
    for _ in 0..4 {
        tbs.read(SEQUENCE)?; // signature, issuer, validity, subject
    }
    spki_contents(tbs.read(SEQUENCE)?).map(|(kind, _)| kind)
}

/// A PKCS#1 `RSAPublicKey` and nothing else: a modulus of at least 1024 bits
/// and an exponent (strict, so that no random secret reads as one).
pub(crate) fn rsa_public_key(der: &[u8]) -> Option<usize> {
    let mut outer = Reader(der);
    let mut key = Reader(outer.read(SEQUENCE)?);
    let modulus = unsigned_bits(key.read(INTEGER)?);
    key.read(INTEGER)?;
    (outer.0.is_empty() && key.0.is_empty() && modulus >= 1024).then_some(modulus)
}

fn spki_contents(info: &[u8]) -> Option<(KeyKind, &[u8])> {
    let mut info = Reader(info);
    let alg_id = info.read(SEQUENCE)?;
    let bits = info.read(BIT_STRING)?;
    // The first byte counts unused bits; keys always use whole bytes.
    let (&0, key) = bits.split_first()? else { return None };
    let kind = kind_of(alg_id, Some(key).filter(|_| is_rsa(alg_id)))?;
    Some((kind, key))
}

/// SEC1 `ECPrivateKey` → its curve, when the optional parameters name one.
pub(crate) fn sec1_curve(der: &[u8]) -> Option<KeyKind> {
    let mut outer = Reader(der);
    let mut key = Reader(outer.read(SEQUENCE)?);
    key.read(INTEGER)?;
    key.read(OCTET_STRING)?;
    while let Some(tag) = key.peek_tag() {
        if tag == CONTEXT_0 {
            return Some(curve_kind(Reader(key.read(CONTEXT_0)?).read(OID)?));
        }
        key.skip()?;
    }
    None
}

fn is_rsa(alg_id: &[u8]) -> bool {
    Reader(alg_id).read(OID) == Some(OID_RSA)
}

/// Bit length of the modulus of a PKCS#1 `RSAPrivateKey` or `RSAPublicKey`.
pub(crate) fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    let mut outer = Reader(pkcs1);
    let mut key = Reader(outer.read(SEQUENCE)?);
    let first = key.read(INTEGER)?;
    // RSAPrivateKey starts with a version (0 or 1); RSAPublicKey with the modulus.
    let modulus = if first.len() == 1 && first[0] <= 1 { key.read(INTEGER)? } else { first };
    Some(unsigned_bits(modulus))
}

fn unsigned_bits(int: &[u8]) -> usize {
    let trimmed = strip_leading_zeros(int);
    match trimmed.first() {
        Some(&b) => (trimmed.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

/// Big-endian integer bytes without the DER sign byte, as JWK `n`/`e` want them.
pub(crate) fn strip_leading_zeros(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
    &int[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_truncation_are_checked() {
        assert_eq!(Reader(&[0x30, 0x03, 1, 2]).read(SEQUENCE), None);
        assert_eq!(Reader(&[0x30, 0x81, 0x02, 1, 2]).read(SEQUENCE), Some(&[1u8, 2][..]));
        assert_eq!(Reader(&[0x30, 0x85, 0, 0, 0, 0, 1]).read(SEQUENCE), None);
        assert_eq!(Reader(&[0x02, 0x00]).read(SEQUENCE), None);
        assert_eq!(pkcs8(&[]), None);
        assert_eq!(spki(&[0x30, 0x00]), None);
    }

    #[test]
    fn bit_counts_ignore_the_sign_byte() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x01]), 1);
        assert_eq!(unsigned_bits(&[]), 0);
    }
}
