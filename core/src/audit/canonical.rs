//! The canonical JSON encoding of audit events: the JSON Canonicalization Scheme (JCS, RFC 8785).
//!
//! - Objects: members sorted by their names compared as UTF-16 code units (for the ASCII names trialport uses,
//!   plain byte order), written `{"name":value,...}` with no white space.
//! - Arrays: `[value,...]` in order, no white space.
//! - Strings: UTF-8, with `"` and `\` escaped as `\"` and `\\`, U+0008, U+0009, U+000A, U+000C and U+000D as
//!   `\b`, `\t`, `\n`, `\f`, `\r`, every other character below U+0020 as `\u00xx` (lowercase hex), and nothing
//!   else escaped (not `/`, not non-ASCII).
//! - Numbers: as ECMAScript's `Number.prototype.toString` prints the IEEE 754 double: integers up to 2^53 in
//!   plain decimal (`0`, `-7`, `9007199254740992`), other values in the shortest form that reads back to the same
//!   double (`0.5`, `1e+21`, `1.5e-7`, `100000000000000000000`). Integers beyond 2^53 are first rounded to a double,
//!   as RFC 8785 requires; the engine writes none (sequence numbers, counts and sizes stay far below).
//! - `true`, `false`, `null` as such.

use serde_json::{Number, Value};

/// The largest integer every double represents exactly (2^53).
const EXACT_INTEGER: u64 = 1 << 53;

/// `v` in the canonical encoding (RFC 8785, see the module docs).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                if let Some(value) = members.get(name) {
                    write_value(out, value);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(u) = n.as_u64() {
        if u <= EXACT_INTEGER {
            out.push_str(&u.to_string());
            return;
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= EXACT_INTEGER {
            out.push_str(&i.to_string());
            return;
        }
    }
    // serde_json numbers are finite (JSON has no NaN or infinity).
    out.push_str(&es_number(n.as_f64().unwrap_or(0.0)));
}

/// The digits and decimal exponent of a positive finite double as `d.ddd × 10^exponent`: the fewest digits that
/// read back to `x`, the closest such to `x`, and of two equally close the one ending in an even digit
/// (ECMA-262's rule; Rust's own shortest form may pick the odd one of a tie).
fn shortest_digits(x: f64) -> (String, i64) {
    let split = |sci: &str| -> (String, i64) {
        let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
        (
            mantissa.chars().filter(char::is_ascii_digit).collect(),
            exponent.parse().unwrap_or(0),
        )
    };
    let (digits, exponent) = split(&format!("{x:e}"));
    // 800 digits hold any double exactly (the longest needs 767): a tie is `head` then `5` then zeros.
    let (exact, exact_exponent) = split(&format!("{x:.800e}"));
    if exact_exponent != exponent || exact.len() <= digits.len() {
        return (digits, exponent);
    }
    let (head, tail) = exact.split_at(digits.len());
    let tie = tail.starts_with('5') && tail[1..].bytes().all(|b| b == b'0');
    if !tie {
        return (digits, exponent);
    }
    let even = if head
        .bytes()
        .last()
        .is_some_and(|b| (b - b'0').is_multiple_of(2))
    {
        head.to_string()
    } else {
        match increment(head) {
            Some(up) => up,
            None => return (digits, exponent),
        }
    };
    let reads_back = format!("{}.{}e{exponent}", &even[..1], &even[1..])
        .parse::<f64>()
        .is_ok_and(|y| y == x);
    if reads_back {
        (even, exponent)
    } else {
        (digits, exponent)
    }
}

/// `digits` plus one in the last place, `None` when that carries into a new digit.
fn increment(digits: &str) -> Option<String> {
    let mut bytes = digits.as_bytes().to_vec();
    for b in bytes.iter_mut().rev() {
        if *b == b'9' {
            *b = b'0';
        } else {
            *b += 1;
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

/// A finite double as ECMAScript's `Number.prototype.toString` (ECMA-262 §6.1.6.1.20) prints it.
pub(crate) fn es_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".to_string();
    }
    let (digits, exponent) = shortest_digits(x.abs());
    let k = digits.len() as i64;
    // The value is 0.digits × 10^n.
    let n = exponent + 1;
    let mut s = String::new();
    if x < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if n > 0 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The number examples of RFC 8785 Appendix B (IEEE 754 bit patterns and their expected text), plus the
    /// boundaries of ECMAScript's notation switch.
    #[test]
    fn numbers_print_as_rfc_8785_appendix_b() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in cases {
            assert_eq!(es_number(f64::from_bits(*bits)), *want, "{bits:#018x}");
        }
        for (x, want) in [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.5, "0.5"),
            (4.5, "4.5"),
            (2e-3, "0.002"),
            (-1.0, "-1"),
            (123.0, "123"),
        ] {
            assert_eq!(es_number(x), want, "{x}");
        }
    }

    #[test]
    fn objects_sort_by_utf16_and_strings_escape_as_rfc_8785() {
        // RFC 8785 §3.2.3: the sorting example (names compared as UTF-16 code units).
        let v: Value = serde_json::from_str(
            r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let order: Vec<String> = {
            let text = canonical_json(&v);
            let back: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
            // preserve_order keeps the text's order when reading it back.
            back.values()
                .map(|x| x.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            order,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
        // RFC 8785 §3.2.2.2 string example, and the compact layout.
        let v = json!({"b": [1, {"z": null, "a": true}], "a": "\u{20ac}$\u{f}\nA'B\"\\\\\"/"});
        assert_eq!(
            canonical_json(&v),
            "{\"a\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\",\"b\":[1,{\"a\":true,\"z\":null}]}"
        );
        assert_eq!(canonical_json(&json!(-0.0)), "0");
        assert_eq!(canonical_json(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(canonical_json(&json!(i64::MIN)), "-9223372036854776000");
    }
}
