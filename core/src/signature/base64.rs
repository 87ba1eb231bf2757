//! Standard base64 (RFC 4648 §4, with padding): how signatures and public keys are written in manifests.

use ::base64::engine::general_purpose::STANDARD;
use ::base64::Engine as _;

/// Encodes bytes as padded standard base64.
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes padded standard base64 strictly: whole 4-character groups, padding only at the end, and no set bit
/// in the unused low bits (so each byte string has exactly one accepted text). `None` for anything else.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    // The engine requires canonical padding and refuses non-zero unused bits and any whitespace.
    STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc4648_test_vectors() {
        // RFC 4648 §10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn round_trips_every_byte_and_refuses_malformed_text() {
        let all: Vec<u8> = (0..=255u8).collect();
        for n in 0..all.len() {
            assert_eq!(decode(&encode(&all[..n])).unwrap(), &all[..n]);
        }
        for bad in [
            "Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm9v\n", "Zm-v", "Zm_v",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
