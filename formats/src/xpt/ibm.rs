//! IEEE 754 doubles to and from IBM System/360 hexadecimal floating point, as XPORT stores numerics.
//!
//! An IBM double is big-endian: bit 63 the sign, bits 62-56 an excess-64 exponent of 16, bits 55-0 the fraction
//! `F`; its value is `(-1)^s * F / 2^56 * 16^(E - 64)`. IBM has 56 fraction bits and IEEE 53, and aligning the
//! exponent to a power of 16 costs at most 3 bits, so **every normal double in the IBM range converts exactly**: no
//! rounding happens when writing (formats.md §1.7). The range is 16^-65 (about 5.4e-79) to about 7.2e75.
//!
//! Missing values are the missing code in the first byte and zeros after it: `.` is `0x2E`, `._` is `0x5F` and
//! `.A`-`.Z` are `0x41`-`0x5A`. A zero fraction with a non-zero exponent is not a normalized number, so they
//! cannot collide with values. In Arrow, `.` is a null (or a plain NaN); the special missing values `.A`-`.Z` and
//! `._` are NaNs with a payload ([`special_missing`], [`missing_tag`]).

/// The IBM bytes of the ordinary SAS missing value `.`.
pub const MISSING: [u8; 8] = [0x2E, 0, 0, 0, 0, 0, 0, 0];

/// The quiet-NaN bits that mark a special missing value; the low byte holds the tag (`A`-`Z` or `_`).
const TAGGED_NAN: u64 = 0x7FF8_5341_5300_0000;

/// Why a double has no IBM form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IbmError {
    /// Positive or negative infinity.
    Infinite,
    /// A magnitude of 2^252 or more, beyond the largest IBM double.
    Overflow,
}

impl IbmError {
    /// A short description without the value.
    pub fn describe(self) -> &'static str {
        match self {
            IbmError::Infinite => "an infinite number cannot be stored in SAS XPORT",
            IbmError::Overflow => "a number is too large for an IBM double (2^252 or more)",
        }
    }
}

/// Whether `tag` is a special missing tag: `A`-`Z` or `_`.
pub fn is_missing_tag(tag: u8) -> bool {
    tag == b'_' || tag.is_ascii_uppercase()
}

/// The NaN that stands for the special missing value `.A`-`.Z` or `._` (`tag` is `b'A'`..`b'Z'` or `b'_'`), or
/// `None` for another tag.
pub fn special_missing(tag: u8) -> Option<f64> {
    is_missing_tag(tag).then(|| f64::from_bits(TAGGED_NAN | u64::from(tag)))
}

/// The tag of a special missing NaN made by [`special_missing`], or `None` for any other value (plain NaN too).
pub fn missing_tag(x: f64) -> Option<u8> {
    let bits = x.to_bits();
    let tag = (bits & 0xFF) as u8;
    (bits & !0xFF == TAGGED_NAN && is_missing_tag(tag)).then_some(tag)
}

/// The 8 big-endian IBM bytes of `x`. NaN is the missing value `.` (a NaN made by [`special_missing`] is its
/// special missing value); zero of either sign is all zeros; magnitudes below 16^-65 (subnormals included)
/// underflow to zero, as in SAS.
///
/// # Errors
/// [`IbmError::Infinite`] for an infinity, [`IbmError::Overflow`] for a magnitude of 2^252 or more.
#[inline]
pub fn to_ibm(x: f64) -> Result<[u8; 8], IbmError> {
    let bits = x.to_bits();
    let sign = bits >> 63;
    let exp = ((bits >> 52) & 0x7FF) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0x7FF {
        if frac == 0 {
            return Err(IbmError::Infinite);
        }
        return Ok(match missing_tag(x) {
            Some(tag) => [tag, 0, 0, 0, 0, 0, 0, 0],
            None => MISSING,
        });
    }
    if exp == 0 {
        // Zero or subnormal: every IEEE subnormal is below 16^-65.
        return Ok([0; 8]);
    }
    // x = m / 2^53 * 2^e2 with m the 53-bit significand.
    let m = frac | (1u64 << 52);
    let e2 = exp - 1022;
    // q = ceil(e2 / 4): the hexadecimal exponent; the fraction is shifted right by 0-3 bits to align it.
    let q = e2.div_euclid(4) + i32::from(e2.rem_euclid(4) != 0);
    let shift = 4 * q - e2;
    let ibm_exp = q + 64;
    if ibm_exp > 127 {
        return Err(IbmError::Overflow);
    }
    if ibm_exp < 0 {
        return Ok([0; 8]);
    }
    // m << 3 has three zero bits at the bottom, so shifting right by at most 3 loses nothing.
    let f = (m << 3) >> shift;
    Ok(((sign << 63) | ((ibm_exp as u64) << 56) | f).to_be_bytes())
}

/// A numeric value read from XPORT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IbmValue {
    /// A number.
    Number(f64),
    /// A missing value: `b'.'` for the ordinary `.`, `b'A'`-`b'Z'` or `b'_'` for a special one.
    Missing(u8),
}

/// Decodes an IBM double stored in `bytes` (1 to 8 bytes: shorter numerics are the leading bytes, padded here with
/// zeros). The result is the exact IBM value rounded once to the nearest double; values SAS wrote from doubles come
/// back exactly. A zero fraction is zero whatever the exponent.
#[inline]
pub fn from_ibm(bytes: &[u8]) -> IbmValue {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    let word = u64::from_be_bytes(b);
    let fraction = word & ((1u64 << 56) - 1);
    if fraction == 0 {
        let first = b[0];
        if first == b'.' || is_missing_tag(first) {
            return IbmValue::Missing(first);
        }
        return IbmValue::Number(if first & 0x80 != 0 { -0.0 } else { 0.0 });
    }
    let exp = ((word >> 56) & 0x7F) as i32;
    // value = fraction * 2^(4 * (exp - 64) - 56); `fraction as f64` is the one rounding (to 53 bits), and the
    // power of two is exact: the exponent stays within -312..=196, far from the limits of a double.
    let scale = f64::from_bits(((4 * (exp - 64) - 56 + 1023) as u64) << 52);
    let magnitude = fraction as f64 * scale;
    IbmValue::Number(if word >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 8] {
        let v: Vec<u8> = s
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    /// The vectors of formats.md §1.7 (TS-140's own marked there; its pi has 15 digits on purpose).
    #[allow(clippy::approx_constant)]
    const VECTORS: &[(f64, &str)] = &[
        (1.0, "41 10 00 00 00 00 00 00"),
        (-1.0, "C1 10 00 00 00 00 00 00"),
        (0.0, "00 00 00 00 00 00 00 00"),
        (2.0, "41 20 00 00 00 00 00 00"),
        (0.5, "40 80 00 00 00 00 00 00"),
        (-2.5, "C1 28 00 00 00 00 00 00"),
        (0.1, "40 19 99 99 99 99 99 9A"),
        (-0.1, "C0 19 99 99 99 99 99 9A"),
        (25.1, "42 19 19 99 99 99 99 9A"),
        (63.0, "42 3F 00 00 00 00 00 00"),
        (100.0, "42 64 00 00 00 00 00 00"),
        (1e-5, "3C A7 C5 AC 47 1B 47 88"),
        (3.14159265358979, "41 32 43 F6 A8 88 5A 22"),
        (12345678.0, "46 BC 61 4E 00 00 00 00"),
        (1e15, "4D 38 D7 EA 4C 68 00 00"),
        (19725.0, "44 4D 0D 00 00 00 00 00"),
        (1704270600.0, "48 65 95 1B 08 00 00 00"),
        (30600.0, "44 77 88 00 00 00 00 00"),
    ];

    #[test]
    fn spec_vectors_encode_and_decode_exactly() {
        for &(x, h) in VECTORS {
            assert_eq!(to_ibm(x).unwrap(), hex(h), "{x}");
            assert_eq!(from_ibm(&hex(h)), IbmValue::Number(x), "{h}");
        }
        let smallest = 2f64.powi(-260);
        assert_eq!(to_ibm(smallest).unwrap(), hex("00 10 00 00 00 00 00 00"));
        assert_eq!(
            from_ibm(&hex("00 10 00 00 00 00 00 00")),
            IbmValue::Number(smallest)
        );
        let largest = 2f64.powi(252) * (1.0 - 2f64.powi(-53));
        assert_eq!(to_ibm(largest).unwrap(), hex("7F FF FF FF FF FF FF F8"));
        assert_eq!(
            from_ibm(&hex("7F FF FF FF FF FF FF F8")),
            IbmValue::Number(largest)
        );
    }

    #[test]
    fn limits_missing_values_and_zeros() {
        assert_eq!(to_ibm(f64::INFINITY), Err(IbmError::Infinite));
        assert_eq!(to_ibm(f64::NEG_INFINITY), Err(IbmError::Infinite));
        assert_eq!(to_ibm(2f64.powi(252)), Err(IbmError::Overflow));
        assert_eq!(to_ibm(-1e300), Err(IbmError::Overflow));
        assert_eq!(to_ibm(f64::NAN).unwrap(), MISSING);
        assert_eq!(to_ibm(-0.0).unwrap(), [0; 8]);
        assert_eq!(to_ibm(5e-324).unwrap(), [0; 8]);
        assert_eq!(to_ibm(2f64.powi(-261)).unwrap(), [0; 8]);
        assert_eq!(to_ibm(1e-100).unwrap(), [0; 8]);
        for tag in (b'A'..=b'Z').chain([b'_']) {
            let nan = special_missing(tag).unwrap();
            assert!(nan.is_nan());
            assert_eq!(missing_tag(nan), Some(tag));
            assert_eq!(to_ibm(nan).unwrap(), [tag, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(
                from_ibm(&[tag, 0, 0, 0, 0, 0, 0, 0]),
                IbmValue::Missing(tag)
            );
        }
        assert_eq!(special_missing(b'a'), None);
        assert_eq!(missing_tag(f64::NAN), None);
        assert_eq!(from_ibm(&MISSING), IbmValue::Missing(b'.'));
        assert_eq!(from_ibm(&[b'.', 0, 0]), IbmValue::Missing(b'.'));
        // Unnormalized zeros are zero (pandas read them as 5.397605e-79).
        assert_eq!(
            from_ibm(&hex("00 00 00 00 00 00 00 00")),
            IbmValue::Number(0.0)
        );
        assert_eq!(
            from_ibm(&hex("01 00 00 00 00 00 00 00")),
            IbmValue::Number(0.0)
        );
        assert_eq!(
            from_ibm(&hex("80 00 00 00 00 00 00 00")),
            IbmValue::Number(-0.0)
        );
    }

    #[test]
    fn short_numerics_are_the_leading_bytes() {
        // formats.md §1.7: 0.1 in 3 bytes is 40 19 99, which reads back as 0.0999908447265625.
        let b = to_ibm(0.1).unwrap();
        assert_eq!(&b[..3], &[0x40, 0x19, 0x99]);
        assert_eq!(from_ibm(&b[..3]), IbmValue::Number(0.0999908447265625));
        // The largest integers always exact at each length.
        for (len, max) in [
            (3usize, 8_192f64),
            (4, 2_097_152.0),
            (5, 536_870_912.0),
            (6, 137_438_953_472.0),
            (7, 35_184_372_088_832.0),
            (8, 9_007_199_254_740_992.0),
        ] {
            let b = to_ibm(max).unwrap();
            assert!(b[len..].iter().all(|&x| x == 0), "{len}");
            assert_eq!(from_ibm(&b[..len]), IbmValue::Number(max));
        }
    }

    /// A small deterministic generator (splitmix64) for the round-trip property tests.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn every_normal_double_in_range_round_trips_exactly() {
        let mut state = 42u64;
        let lo = 2f64.powi(-260);
        let hi = 2f64.powi(252);
        let mut checked = 0;
        while checked < 200_000 {
            let x = f64::from_bits(splitmix(&mut state));
            if !x.is_normal() || x.abs() < lo || x.abs() >= hi {
                continue;
            }
            let b = to_ibm(x).unwrap();
            assert_eq!(from_ibm(&b), IbmValue::Number(x), "{x:e}");
            checked += 1;
        }
        // Clinical-looking values: integers, dates, decimals with few digits.
        for i in -100_000i64..100_000 {
            for x in [
                i as f64,
                i as f64 / 10.0,
                i as f64 / 1000.0,
                i as f64 * 86_400.0,
            ] {
                assert_eq!(from_ibm(&to_ibm(x).unwrap()), IbmValue::Number(x));
            }
        }
    }

    #[test]
    fn every_ibm_double_with_53_bits_round_trips_to_the_same_bytes() {
        let mut state = 7u64;
        for _ in 0..200_000 {
            let r = splitmix(&mut state);
            // A normalized fraction with at most 53 significant bits, any exponent and sign.
            let mut f = (r & ((1u64 << 56) - 1)) | (1u64 << 52);
            let lead = 63 - f.leading_zeros();
            f &= !((1u64 << (lead.saturating_sub(52))) - 1);
            let word = (r & (1u64 << 63)) | (((r >> 56) & 0x7F) << 56) | f;
            let bytes = word.to_be_bytes();
            let IbmValue::Number(x) = from_ibm(&bytes) else {
                panic!("missing")
            };
            assert_eq!(to_ibm(x).unwrap(), bytes, "{word:016x}");
        }
    }
}
