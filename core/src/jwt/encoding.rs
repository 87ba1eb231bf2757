//! Strict decoders for what a token is made of: base64url and JSON objects without duplicate member names (key
//! files' PEM and DER are read by the `pem`, `spki` and `der` crates, see `keys`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Decodes unpadded base64url (RFC 7515 §2) strictly: no padding, no whitespace, no other alphabet, and the
/// unused bits of the last character must be zero, so that every byte string has exactly one encoding.
pub(crate) fn base64url(text: &[u8]) -> Option<Vec<u8>> {
    // The engine refuses padding (`RequireNone`) and non-zero unused bits (`decode_allow_trailing_bits` off).
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Why strict JSON parsing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (or not UTF-8, or trailing bytes).
    Invalid,
    /// An object holds the same member name twice.
    DuplicateKey,
}

/// Parses JSON like `serde_json::from_slice`, but fails on an object with the same member name twice (at any
/// depth) instead of keeping the last one silently.
pub(crate) fn strict_json(bytes: &[u8]) -> Result<Value, JsonError> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict(&duplicate)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match value {
        Ok(v) => Ok(v),
        Err(_) if duplicate.get() => Err(JsonError::DuplicateKey),
        Err(_) => Err(JsonError::Invalid),
    }
}

/// A JSON value seed that records a duplicate member name in the shared flag and fails.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.0.set(true);
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors_and_is_strict() {
        // RFC 4648 §10 test vectors (unpadded).
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(enc.as_bytes()).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64url(b"-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        for bad in [
            "Zg==",
            "Zm9v YmFy",
            "Z",
            "Zh",
            "Zm9",
            "+/",
            "Zm9v\n",
            "Zm9\u{e9}",
        ] {
            assert_eq!(base64url(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(base64url(b"Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64url(b"Zm9"), None, "non-zero unused bits");
    }

    #[test]
    fn strict_json_refuses_duplicates_at_any_depth() {
        assert_eq!(
            strict_json(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#).unwrap()["b"]["c"][1]["d"],
            2
        );
        assert_eq!(
            strict_json(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            strict_json(br#"{"x":[{"a":1,"a":1}]}"#),
            Err(JsonError::DuplicateKey)
        );
        // Escapes that spell the same name are the same name.
        assert_eq!(
            strict_json(br#"{"exp":1,"\u0065xp":2}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(strict_json(b"{} x"), Err(JsonError::Invalid));
        assert_eq!(strict_json(b"\xff"), Err(JsonError::Invalid));
    }
}
