//! Text encodings of bytes shared across the crate: lowercase hex ([`hex`]) and its decoder ([`hex_decode`]).

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes lowercase or uppercase hex; `None` when the text is not whole bytes of hex digits (a sign, a space or
/// any other character included).
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{hex, hex_decode};

    #[test]
    fn hex_round_trips_and_refuses_anything_but_digit_pairs() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_decode(&hex(&bytes)), Some(bytes.clone()));
        assert_eq!(hex_decode(&hex(&bytes).to_uppercase()), Some(bytes));
        assert_eq!(hex_decode(""), Some(vec![]));
        // `u8::from_str_radix` would take "+f" as 0x0f.
        for bad in ["+f", "-1", " f", "f ", "0g", "abc", "é0"] {
            assert_eq!(hex_decode(bad), None, "{bad:?}");
        }
    }
}
