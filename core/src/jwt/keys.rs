//! Verification keys: HMAC secrets, PEM public keys (SPKI, or PKCS#1 for RSA) and JWK / JWK Set documents, each
//! pinned to one [`Algorithm`] when it is loaded.

use super::encoding::{base64url, strict_json, JsonError};
use super::Algorithm;
use crate::error::Reason;
use crate::error::{Error, Result};
use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode, Reader, SliceReader};
use ring::{hmac, signature};
use serde_json::Value;

/// The largest key file read (a JWK Set of many RSA keys fits easily).
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// One verification key, pinned to one algorithm, with an optional key id.
///
/// The key material never appears in `Debug` output, errors or logs.
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<String>,
    alg: Algorithm,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Hmac(hmac::Key),
    /// Big-endian modulus and exponent without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point (65 bytes).
    EcP256(Vec<u8>),
    /// A 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn invalid(reason: Reason, message: impl Into<String>) -> Error {
    Error::validation(reason, message).with_field("jwt")
}

fn bad_key(message: &str) -> Error {
    invalid(
        Reason::InvalidKey,
        format!("the JWT key cannot be read: {message}"),
    )
}

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The smallest and largest RSA moduli accepted, in bits (ring's `*_2048_8192_*` verification limits).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

impl JwtKey {
    /// An HMAC key (`HS256`, `HS384` or `HS512`) from its secret bytes.
    ///
    /// # Errors
    /// EXP002 `weak_hmac_secret` for a secret shorter than 32 bytes or than the hash output (RFC 7518 §3.2:
    /// 32 bytes for HS256, 48 for HS384, 64 for HS512); `key_alg_mismatch` when `alg` is not an HMAC algorithm;
    /// `invalid_kid` for an empty key id.
    pub fn hmac(secret: &[u8], alg: Algorithm, kid: Option<&str>) -> Result<JwtKey> {
        let (hmac_alg, min) = match alg {
            Algorithm::Hs256 => (hmac::HMAC_SHA256, 32),
            Algorithm::Hs384 => (hmac::HMAC_SHA384, 48),
            Algorithm::Hs512 => (hmac::HMAC_SHA512, 64),
            _ => return Err(mismatch(alg)),
        };
        if secret.len() < min {
            return Err(invalid(
                Reason::WeakHmacSecret,
                format!("an {} secret needs at least {min} bytes", alg.as_str()),
            )
            .with_detail("min_bytes", min));
        }
        JwtKey::new(kid, alg, Material::Hmac(hmac::Key::new(hmac_alg, secret)))
    }

    /// A public key from PEM text: `PUBLIC KEY` (SPKI: RSA, EC P-256 or Ed25519) or `RSA PUBLIC KEY` (PKCS#1).
    ///
    /// # Errors
    /// EXP002 `invalid_key` for unreadable PEM or DER or an unsupported key type; `private_key_in_config` for a
    /// private key (trialport only verifies); `key_alg_mismatch` when the key cannot serve `alg` (an HMAC
    /// algorithm included: a public key is never an HMAC secret); `invalid_kid` for an empty key id.
    pub fn from_pem(text: &[u8], alg: Algorithm, kid: Option<&str>) -> Result<JwtKey> {
        let (label, der) = pem(text)?;
        let material = match label.as_str() {
            "PUBLIC KEY" => spki(&der)?,
            "RSA PUBLIC KEY" => {
                let (n, e) = rsa_public_key(&der).ok_or_else(|| bad_key("malformed RSA key"))?;
                Material::Rsa { n, e }
            }
            l if l.contains("PRIVATE KEY") => return Err(private_key()),
            _ => {
                return Err(bad_key(
                    "expected a 'PUBLIC KEY' or 'RSA PUBLIC KEY' PEM block",
                ))
            }
        };
        JwtKey::with_material(kid, alg, material)
    }

    /// The keys of a JWK (RFC 7517) or JWK Set (`{"keys": [...]}`) document. Each key's algorithm is its `alg`
    /// member or, when it has none, `alg`; a key with neither is refused. In a set, keys whose `use` is not
    /// `sig` are skipped. `kid` names the key of a single JWK that has no `kid` member.
    ///
    /// # Errors
    /// EXP002 `invalid_key` (not JSON, duplicate member names, missing or malformed members, an unsupported key
    /// type or curve, an empty set); `missing_alg`; `unsupported_alg` for an `alg` outside trialport's list;
    /// `key_alg_mismatch` (the key's `alg` differs from `alg`, or the key type cannot serve it);
    /// `private_key_in_config`; `invalid_kid`.
    pub fn from_jwk(text: &[u8], alg: Option<Algorithm>, kid: Option<&str>) -> Result<Vec<JwtKey>> {
        let doc = strict_json(text).map_err(|e| match e {
            JsonError::DuplicateKey => bad_key("a JWK object holds the same member twice"),
            JsonError::Invalid => bad_key("not a JSON document"),
        })?;
        if let Some(keys) = doc.get("keys") {
            if kid.is_some() {
                return Err(invalid(
                    Reason::InvalidKid,
                    "a key id cannot be given for a JWK Set: each key carries its own",
                ));
            }
            let keys = keys
                .as_array()
                .ok_or_else(|| bad_key("'keys' is not an array"))?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(u) = k.get("use") {
                    if u.as_str() != Some("sig") {
                        continue;
                    }
                }
                out.push(jwk(k, alg, None)?);
            }
            if out.is_empty() {
                return Err(bad_key("the JWK Set has no signature key"));
            }
            Ok(out)
        } else {
            Ok(vec![jwk(&doc, alg, kid)?])
        }
    }

    /// The keys in a key file, by its content: PEM (`-----BEGIN`), JWK or JWK Set (a JSON object), or else the
    /// raw bytes of an HMAC secret (one trailing line break removed, so that `echo SECRET > file` works).
    ///
    /// # Errors
    /// As [`JwtKey::hmac`], [`JwtKey::from_pem`] and [`JwtKey::from_jwk`]; EXP002 `missing_alg` when a PEM key
    /// or a secret comes without `alg`.
    pub fn from_file_bytes(
        bytes: &[u8],
        alg: Option<Algorithm>,
        kid: Option<&str>,
    ) -> Result<Vec<JwtKey>> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            let alg = alg.ok_or_else(missing_alg)?;
            return Ok(vec![JwtKey::from_pem(bytes, alg, kid)?]);
        }
        if trimmed.starts_with(b"{") {
            return JwtKey::from_jwk(bytes, alg, kid);
        }
        let alg = alg.ok_or_else(missing_alg)?;
        if !alg.is_hmac() {
            return Err(bad_key("expected PEM or JWK for an asymmetric algorithm"));
        }
        let secret = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(bytes);
        Ok(vec![JwtKey::hmac(secret, alg, kid)?])
    }

    /// The key id, if any (compared as an opaque string).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    fn with_material(kid: Option<&str>, alg: Algorithm, material: Material) -> Result<JwtKey> {
        let fits = matches!(
            (&material, alg),
            (Material::Rsa { .. }, Algorithm::Rs256 | Algorithm::Ps256)
                | (Material::EcP256(_), Algorithm::Es256)
                | (Material::Ed25519(_), Algorithm::EdDsa)
                | (
                    Material::Hmac(_),
                    Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512
                )
        );
        if !fits {
            return Err(mismatch(alg));
        }
        if let Material::Rsa { n, .. } = &material {
            if !RSA_BITS.contains(&bit_len(n)) {
                return Err(bad_key("RSA keys need a modulus of 2048 to 8192 bits"));
            }
        }
        JwtKey::new(kid, alg, material)
    }

    fn new(kid: Option<&str>, alg: Algorithm, material: Material) -> Result<JwtKey> {
        if kid.is_some_and(str::is_empty) {
            return Err(invalid(Reason::InvalidKid, "a key id cannot be empty"));
        }
        Ok(JwtKey {
            kid: kid.map(str::to_string),
            alg,
            material,
        })
    }

    /// Whether `sig` is this key's signature of `message` under its pinned algorithm.
    pub(crate) fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            // Constant-time comparison inside ring.
            Material::Hmac(key) => hmac::verify(key, message, sig).is_ok(),
            Material::Rsa { n, e } => {
                let params = match self.alg {
                    Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA256,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            Material::EcP256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            Material::Ed25519(key) => signature::UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, sig)
                .is_ok(),
        }
    }
}

fn mismatch(alg: Algorithm) -> Error {
    invalid(
        Reason::KeyAlgMismatch,
        format!("the key cannot verify {} tokens", alg.as_str()),
    )
}

fn missing_alg() -> Error {
    invalid(
        Reason::MissingAlg,
        "the JWT key needs an algorithm: give 'alg' in the configuration or in the JWK",
    )
}

fn private_key() -> Error {
    invalid(
        Reason::PrivateKeyInConfig,
        "a private key was given: trialport only verifies tokens and needs the public key",
    )
}

fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        Some(&b) => n.len() * 8 - b.leading_zeros() as usize,
        None => 0,
    }
}

/// The label and DER bytes of the one PEM block in `text` (text before it is allowed).
///
/// The `pem` crate reads the framing and the base64; the checks around it keep the body as strict as RFC 7468
/// text: one block only, base64 with ASCII whitespace (blank lines included) and no encapsulated headers.
fn pem(text: &[u8]) -> Result<(String, Vec<u8>)> {
    let text = std::str::from_utf8(text).map_err(|_| bad_key("PEM is not text"))?;
    match text.matches("-----BEGIN ").count() {
        0 => return Err(bad_key("no PEM block")),
        1 => {}
        _ => return Err(bad_key("one key per PEM file")),
    }
    // The crate skips any Unicode whitespace in the body, and reads the lines before a blank line as headers.
    if text
        .chars()
        .any(|c| c.is_whitespace() && !c.is_ascii_whitespace())
    {
        return Err(bad_key("malformed PEM base64"));
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let block = ::pem::parse(lines.join("\n")).map_err(|e| match e {
        ::pem::PemError::InvalidData(_) | ::pem::PemError::InvalidHeader(_)
            if text.contains(':') =>
        {
            bad_key("encrypted or annotated PEM is not supported")
        }
        ::pem::PemError::InvalidData(_) => bad_key("malformed PEM base64"),
        ::pem::PemError::MissingBeginTag => bad_key("malformed PEM header"),
        _ => bad_key("no PEM end line"),
    })?;
    if block.headers().iter().next().is_some() {
        return Err(bad_key("encrypted or annotated PEM is not supported"));
    }
    Ok((block.tag().to_string(), block.into_contents()))
}

/// A SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) with an RSA, EC P-256 or Ed25519 key. The `spki` and `der` crates
/// read it as strict DER: minimal lengths, nothing after the structure, a BIT STRING without unused bits.
fn spki(der: &[u8]) -> Result<Material> {
    let malformed = || bad_key("malformed SubjectPublicKeyInfo");
    let info = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|_| malformed())?;
    let key = info.subject_public_key.as_bytes().ok_or_else(malformed)?;
    let params = info.algorithm.parameters;
    let oid = info.algorithm.oid;
    if oid == OID_RSA {
        // Parameters: NULL (required by RFC 3279, tolerated when absent).
        if params.is_some_and(|p| !p.is_null()) {
            return Err(malformed());
        }
        let (n, e) = rsa_public_key(key).ok_or_else(|| bad_key("malformed RSA key"))?;
        Ok(Material::Rsa { n, e })
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve = params.ok_or_else(malformed)?;
        if curve.decode_as::<ObjectIdentifier>().ok() != Some(OID_P256) {
            return Err(bad_key("only the P-256 curve is supported for EC keys"));
        }
        ec_point(key.to_vec())
    } else if oid == OID_ED25519 {
        if params.is_some() {
            return Err(malformed());
        }
        ed25519(key.to_vec())
    } else {
        Err(bad_key(
            "unsupported key type: RSA, EC P-256 and Ed25519 are supported",
        ))
    }
}

/// PKCS#1 RSAPublicKey: `SEQUENCE { modulus INTEGER, publicExponent INTEGER }`, both non-negative and minimally
/// encoded; returned big-endian without leading zeros.
fn rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut reader = SliceReader::new(der).ok()?;
    let (n, e) = reader
        .sequence(|seq| Ok((UintRef::decode(seq)?, UintRef::decode(seq)?)))
        .ok()?;
    reader.finish(()).ok()?;
    let strip = |v: &[u8]| {
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
        v[start..].to_vec()
    };
    let (n, e) = (strip(n.as_bytes()), strip(e.as_bytes()));
    (!n.is_empty() && !e.is_empty()).then_some((n, e))
}

fn ec_point(point: Vec<u8>) -> Result<Material> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err(bad_key("an EC P-256 key must be an uncompressed point"));
    }
    Ok(Material::EcP256(point))
}

fn ed25519(key: Vec<u8>) -> Result<Material> {
    if key.len() != signature::ED25519_PUBLIC_KEY_LEN {
        return Err(bad_key("an Ed25519 key has 32 bytes"));
    }
    Ok(Material::Ed25519(key))
}

/// One JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
fn jwk(k: &Value, configured: Option<Algorithm>, kid: Option<&str>) -> Result<JwtKey> {
    let obj = k
        .as_object()
        .ok_or_else(|| bad_key("a JWK is not a JSON object"))?;
    let text = |name: &str| -> Result<Option<&str>> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad_key("a JWK member is not a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>> {
        let s = text(name)?.ok_or_else(|| bad_key("a JWK lacks a required member"))?;
        // Padding is not part of JWK encoding, but some tools write it: tolerated in configuration.
        base64url(s.trim_end_matches('=').as_bytes())
            .ok_or_else(|| bad_key("a JWK member is not base64url"))
    };
    let own_alg = match text("alg")? {
        None => None,
        Some(name) => Some(Algorithm::parse(name).ok_or_else(|| {
            invalid(
                Reason::UnsupportedAlg,
                "a JWK names an algorithm trialport does not verify",
            )
        })?),
    };
    let alg = match (own_alg, configured) {
        (Some(a), Some(c)) if a != c => {
            return Err(invalid(
                Reason::KeyAlgMismatch,
                "the JWK's 'alg' differs from the configured algorithm",
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(missing_alg()),
    };
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err(bad_key("the JWK's 'key_ops' does not allow 'verify'"));
        }
    }
    let own_kid = text("kid")?;
    let kid = match (own_kid, kid) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                Reason::InvalidKid,
                "the configured key id differs from the JWK's 'kid'",
            ))
        }
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    };
    let kty = text("kty")?.ok_or_else(|| bad_key("a JWK lacks 'kty'"))?;
    if kty != "oct" && obj.contains_key("d") {
        return Err(private_key());
    }
    let material = match kty {
        "oct" => return JwtKey::hmac(&bytes("k")?, alg, kid),
        "RSA" => {
            let strip = |v: Vec<u8>| {
                let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                v[start..].to_vec()
            };
            let (n, e) = (strip(bytes("n")?), strip(bytes("e")?));
            if n.is_empty() || e.is_empty() {
                return Err(bad_key("malformed RSA key"));
            }
            Material::Rsa { n, e }
        }
        "EC" => {
            if text("crv")? != Some("P-256") {
                return Err(bad_key("only the P-256 curve is supported for EC keys"));
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(bad_key("P-256 coordinates have 32 bytes"));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_point(point)?
        }
        "OKP" => {
            if text("crv")? != Some("Ed25519") {
                return Err(bad_key("only the Ed25519 curve is supported for OKP keys"));
            }
            ed25519(bytes("x")?)?
        }
        _ => return Err(bad_key("unsupported JWK key type")),
    };
    JwtKey::with_material(kid, alg, material)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DER bytes of a PEM block with base64 body `body`, if it is read.
    fn pem_body(body: &str) -> Option<Vec<u8>> {
        pem(format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n").as_bytes())
            .ok()
            .map(|(_, der)| der)
    }

    #[test]
    fn base64_standard_needs_padding_and_skips_whitespace() {
        // PEM bodies: standard base64, padded, ASCII whitespace skipped.
        assert_eq!(pem_body("Zm9v\nYmE=\n").as_deref(), Some(&b"fooba"[..]));
        assert_eq!(pem_body("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(pem_body("Zg"), None);
        assert_eq!(pem_body("-_8="), None);
    }

    #[test]
    fn pem_framing_stays_strict_around_the_crate() {
        // Blank lines in the body are whitespace; Unicode whitespace is not.
        assert_eq!(pem_body("Zm9v\n\nYmE=\n").as_deref(), Some(&b"fooba"[..]));
        assert_eq!(pem_body("Zm9v\u{a0}YmE="), None);
        assert_eq!(pem_body("Zm9v\u{b}YmE="), None);
        // Headers (encrypted PEM), a second block, a mismatched end line, no block: refused.
        assert_eq!(pem_body("Proc-Type: 4,ENCRYPTED\n\nZg=="), None);
        assert_eq!(pem_body("Proc-Type: 4,ENCRYPTED\nZg=="), None);
        let two = "-----BEGIN PUBLIC KEY-----\nZg==\n-----END PUBLIC KEY-----\n".repeat(2);
        assert!(pem(two.as_bytes()).is_err());
        assert!(pem(b"-----BEGIN PUBLIC KEY-----\nZg==\n-----END RSA PUBLIC KEY-----\n").is_err());
        assert!(pem(b"Zg==").is_err());
        // Text before the block is allowed.
        let (label, der) =
            pem(b"a comment: key 1\n-----BEGIN PUBLIC KEY-----\nZg==\n-----END PUBLIC KEY-----\n")
                .unwrap();
        assert_eq!((label.as_str(), der.as_slice()), ("PUBLIC KEY", &b"f"[..]));
    }

    #[test]
    fn der_lengths_are_minimal_and_bounded() {
        let uint = |der: &[u8]| UintRef::from_der(der).ok().map(|u| u.as_bytes().to_vec());
        assert_eq!(uint(&[0x02, 0x01, 0x05]), Some(vec![5u8]));
        assert_eq!(uint(&[0x02, 0x02, 0x00, 0x80]), Some(vec![0x80u8]));
        assert_eq!(uint(&[0x02, 0x01, 0x80]), None);
        let any = |der: &[u8]| der::asn1::AnyRef::from_der(der).is_ok();
        assert!(any(&[0x02, 0x01, 0x05]));
        assert!(!any(&[0x02, 0x81, 0x01, 0x05]));
        assert!(!any(&[0x02, 0x05, 0x01]));
        assert!(!any(&[0x02, 0x85, 1, 1, 1, 1, 1]));
        // PKCS#1: a whole SEQUENCE of two positive INTEGERs, nothing after it.
        assert_eq!(
            rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]),
            Some((vec![5], vec![3]))
        );
        assert_eq!(
            rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x00]),
            None
        );
        assert_eq!(
            rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x83]),
            None
        );
        assert_eq!(rsa_public_key(&[0x30, 0x03, 0x02, 0x01, 0x05]), None);
    }

    #[test]
    fn debug_output_hides_the_material() {
        let secret = [0x5au8; 32];
        let k = JwtKey::hmac(&secret, Algorithm::Hs256, Some("k1")).unwrap();
        let text = format!("{k:?}");
        assert!(text.contains("k1") && text.contains("Hs256"), "{text}");
        assert!(!text.contains("90") && !text.contains("5a"), "{text}");
    }

    #[test]
    fn hmac_secret_lengths_follow_rfc7518() {
        for (alg, min) in [
            (Algorithm::Hs256, 32),
            (Algorithm::Hs384, 48),
            (Algorithm::Hs512, 64),
        ] {
            let e = JwtKey::hmac(&vec![1u8; min - 1], alg, None).unwrap_err();
            assert_eq!(e.reason(), "weak_hmac_secret");
            JwtKey::hmac(&vec![1u8; min], alg, None).unwrap();
        }
        assert_eq!(
            JwtKey::hmac(&[1u8; 64], Algorithm::Rs256, None)
                .unwrap_err()
                .reason(),
            "key_alg_mismatch"
        );
    }

    #[test]
    fn secret_files_lose_one_trailing_line_break() {
        let secret = "s".repeat(32);
        let k = JwtKey::from_file_bytes(
            format!("{secret}\n").as_bytes(),
            Some(Algorithm::Hs256),
            None,
        )
        .unwrap();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), b"m");
        assert!(k[0].verify(b"m", tag.as_ref()));
        // 31 bytes plus a line break is still too short.
        let e = JwtKey::from_file_bytes(
            format!("{}\n", &secret[1..]).as_bytes(),
            Some(Algorithm::Hs256),
            None,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "weak_hmac_secret");
    }
}
