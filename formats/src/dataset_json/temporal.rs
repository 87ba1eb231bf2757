//! ISO 8601 dates, datetimes and times as Dataset-JSON writes and reads them, and the SAS epoch conversions.
//!
//! Written: `YYYY-MM-DD`, `YYYY-MM-DDThh:mm:ss[.f]` (`Z` after an instant of a time-zone aware column),
//! `hh:mm:ss[.f]`; the fraction has the digits it needs (trailing zeros dropped), at most nine. Years must be
//! 0000-9999. Read: the same, plus `hh:mm` without seconds and an offset `Z`, `+hh:mm`, `+hhmm` or `+hh`
//! (converted to UTC); fractions finer than a microsecond must be zeros.

use chrono::{Datelike, NaiveDate};

/// Days from 1960-01-01 (the SAS epoch) to 1970-01-01.
pub(crate) const SAS_DAYS_TO_UNIX: i64 = 3653;
/// Seconds from 1960-01-01T00:00:00 to 1970-01-01T00:00:00.
pub(crate) const SAS_SECONDS_TO_UNIX: i64 = SAS_DAYS_TO_UNIX * 86_400;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn push_digits(buf: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = buf.len();
    buf.resize(start + width, b'0');
    for i in (0..width).rev() {
        buf[start + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Appends `YYYY-MM-DD` for `days` since 1970-01-01; `None` (nothing written) outside the years 0000-9999.
pub(crate) fn push_date(buf: &mut Vec<u8>, days: i64) -> Option<()> {
    let d = crate::csv::cell::date_of(days)?;
    let y = u32::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
    push_digits(buf, y, 4);
    buf.push(b'-');
    push_digits(buf, d.month(), 2);
    buf.push(b'-');
    push_digits(buf, d.day(), 2);
    Some(())
}

/// Appends `hh:mm:ss[.f]` for `micros` since midnight (0 <= micros < one day).
fn push_clock(buf: &mut Vec<u8>, nanos_of_day: u64) {
    let secs = (nanos_of_day / 1_000_000_000) as u32;
    let frac = (nanos_of_day % 1_000_000_000) as u32;
    push_digits(buf, secs / 3600, 2);
    buf.push(b':');
    push_digits(buf, secs / 60 % 60, 2);
    buf.push(b':');
    push_digits(buf, secs % 60, 2);
    if frac != 0 {
        let mut digits = 9;
        let mut f = frac;
        while f.is_multiple_of(10) {
            f /= 10;
            digits -= 1;
        }
        buf.push(b'.');
        push_digits(buf, f, digits);
    }
}

/// Appends `YYYY-MM-DDThh:mm:ss[.f]` for `nanos` since 1970-01-01T00:00:00 given as whole seconds and nanoseconds
/// (0-999,999,999); `None` outside the years 0000-9999.
pub(crate) fn push_datetime(buf: &mut Vec<u8>, secs: i64, nanos: u32) -> Option<()> {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    push_date(buf, days)?;
    buf.push(b'T');
    push_clock(buf, sod * 1_000_000_000 + u64::from(nanos));
    Some(())
}

/// Appends `hh:mm:ss[.f]` for `nanos` since midnight; `None` outside one day.
pub(crate) fn push_time(buf: &mut Vec<u8>, nanos: i64) -> Option<()> {
    let n = u64::try_from(nanos)
        .ok()
        .filter(|n| *n < 86_400_000_000_000)?;
    push_clock(buf, n);
    Some(())
}

/// A count of `per_second` units as whole seconds and nanoseconds.
pub(crate) fn split(value: i64, per_second: i64) -> (i64, u32) {
    let secs = value.div_euclid(per_second);
    let frac = value.rem_euclid(per_second);
    (secs, (frac * (1_000_000_000 / per_second)) as u32)
}

/// A SAS datetime or time (seconds, possibly fractional) as whole seconds and nanoseconds, rounded to the
/// microsecond (a double holds no more for present-day datetimes); `None` when not finite or out of range.
pub(crate) fn sas_seconds(v: f64) -> Option<(i64, u32)> {
    let micros = (v * 1e6).round();
    if !micros.is_finite() || micros.abs() >= 9.0e18 {
        return None;
    }
    let (secs, nanos) = split(micros as i64, 1_000_000);
    Some((secs, nanos))
}

fn two(b: &[u8], at: usize) -> Option<u32> {
    let (h, l) = (*b.get(at)?, *b.get(at + 1)?);
    (h.is_ascii_digit() && l.is_ascii_digit())
        .then(|| u32::from(h - b'0') * 10 + u32::from(l - b'0'))
}

/// Parses exactly `YYYY-MM-DD` to days since 1970-01-01.
pub(crate) fn parse_date(b: &[u8]) -> Option<i32> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two(b, 0)? * 100 + two(b, 2)?;
    let date = NaiveDate::from_ymd_opt(year as i32, two(b, 5)?, two(b, 8)?)?;
    let days = i64::from(date.num_days_from_ce()) - crate::csv::cell::UNIX_EPOCH_DAYS_FROM_CE;
    i32::try_from(days).ok()
}

/// Parses `hh:mm[:ss[.f]]` at the start of `b` to microseconds since midnight, and the bytes taken.
fn parse_clock(b: &[u8]) -> Option<(i64, usize)> {
    let hour = two(b, 0)?;
    if b.get(2) != Some(&b':') {
        return None;
    }
    let minute = two(b, 3)?;
    let mut at = 5;
    let mut second = 0;
    let mut micros = 0i64;
    if b.get(5) == Some(&b':') {
        second = two(b, 6)?;
        at = 8;
        if b.get(8) == Some(&b'.') {
            let digits = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let frac = &b[9..9 + digits];
            if frac.iter().skip(6).any(|&c| c != b'0') {
                return None;
            }
            for i in 0..6 {
                micros = micros * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
            }
            at = 9 + digits;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let clock = i64::from(hour * 3600 + minute * 60 + second) * 1_000_000 + micros;
    Some((clock, at))
}

/// Parses `hh:mm[:ss[.f]]` to microseconds since midnight.
pub(crate) fn parse_time(b: &[u8]) -> Option<i64> {
    match parse_clock(b)? {
        (t, n) if n == b.len() => Some(t),
        _ => None,
    }
}

/// Parses `YYYY-MM-DDThh:mm[:ss[.f]][Z|±hh[:mm]]` to microseconds since 1970-01-01T00:00:00 UTC (the local time
/// as given when there is no offset).
pub(crate) fn parse_datetime(b: &[u8]) -> Option<i64> {
    let days = i64::from(parse_date(b.get(..10)?)?);
    if !matches!(b.get(10), Some(b'T')) {
        return None;
    }
    let (clock, n) = parse_clock(&b[11..])?;
    let rest = &b[11 + n..];
    let offset_secs: i64 = match rest {
        b"" => 0,
        b"Z" => 0,
        [s @ (b'+' | b'-'), tail @ ..] => {
            let h = i64::from(two(tail, 0)?);
            let m = match &tail[2..] {
                [] => 0,
                [b':', ..] if tail.len() == 5 => i64::from(two(tail, 3)?),
                _ if tail.len() == 4 => i64::from(two(tail, 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *s == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    days.checked_mul(MICROS_PER_DAY)?
        .checked_add(clock)?
        .checked_sub(offset_secs * 1_000_000)
}

/// Whether `s` is a datetime as the standard's top-level attributes need it:
/// `YYYY-MM-DDThh:mm:ss(.n+)?(Z|(+|-)hh:mm)?` with valid calendar values.
pub(crate) fn is_attribute_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 || b[16] != b':' {
        return false;
    }
    let mut at = 19;
    if b.get(19) == Some(&b'.') {
        let n = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        at = 20 + n;
    }
    let zone_ok = match &b[at..] {
        b"" | b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            two(&[*h1, *h2], 0).is_some_and(|h| h <= 23)
                && two(&[*m1, *m2], 0).is_some_and(|m| m <= 59)
        }
        _ => false,
    };
    // The clock part (without an unlimited fraction) must parse.
    zone_ok && parse_date(&b[..10]).is_some() && b[10] == b'T' && parse_clock(&b[11..19]).is_some()
}

/// The instant an attribute datetime ([`is_attribute_datetime`]) names, for ordering two of them: UTC
/// microseconds when it has an offset, the local time as given otherwise.
pub(crate) fn attribute_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let local = parse_datetime(b.get(..19)?)?;
    let mut at = 19;
    let mut micros = 0i64;
    if b.get(19) == Some(&b'.') {
        let frac: Vec<u8> = b[20..]
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
        at = 20 + frac.len();
    }
    let offset = match &b[at..] {
        b"" | b"Z" => 0,
        [s @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let secs = i64::from(two(&[*h1, *h2], 0)? * 3600 + two(&[*m1, *m2], 0)? * 60);
            if *s == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    Some(local + micros - offset * 1_000_000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> Option<()>) -> Option<String> {
        let mut b = Vec::new();
        f(&mut b)?;
        Some(String::from_utf8(b).unwrap())
    }

    #[test]
    fn writes_iso_values() {
        assert_eq!(text(|b| push_date(b, 0)).unwrap(), "1970-01-01");
        assert_eq!(
            text(|b| push_date(b, 19725 - SAS_DAYS_TO_UNIX)).unwrap(),
            "2014-01-02"
        );
        assert_eq!(text(|b| push_date(b, -719_528)).unwrap(), "0000-01-01");
        assert_eq!(text(|b| push_date(b, 3_000_000)), None);
        assert_eq!(
            text(|b| push_datetime(b, -1, 500_000_000)).unwrap(),
            "1969-12-31T23:59:59.5"
        );
        assert_eq!(
            text(|b| push_datetime(b, 86_400 + 3_723, 0)).unwrap(),
            "1970-01-02T01:02:03"
        );
        assert_eq!(
            text(|b| push_time(b, 30_600_000_000_123)).unwrap(),
            "08:30:00.000000123"
        );
        assert_eq!(text(|b| push_time(b, -1)), None);
        assert_eq!(sas_seconds(0.25), Some((0, 250_000_000)));
        assert_eq!(sas_seconds(-0.5), Some((-1, 500_000_000)));
        assert_eq!(sas_seconds(f64::INFINITY), None);
    }

    #[test]
    fn reads_iso_values() {
        assert_eq!(parse_date(b"2014-01-02"), Some(19725 - 3653));
        assert_eq!(parse_date(b"2014-02-30"), None);
        assert_eq!(parse_date(b"2014-01"), None);
        assert_eq!(parse_time(b"08:30"), Some(30_600_000_000));
        assert_eq!(parse_time(b"08:30:00.5"), Some(30_600_500_000));
        assert_eq!(parse_time(b"08:30:00.0000001"), None);
        assert_eq!(parse_time(b"24:00:00"), None);
        assert_eq!(parse_datetime(b"1970-01-01T00:00:01"), Some(1_000_000));
        assert_eq!(parse_datetime(b"1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_datetime(b"1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(
            parse_datetime(b"1970-01-01T00:00:00-01"),
            Some(3_600_000_000)
        );
        assert_eq!(parse_datetime(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_datetime(b"1970-01-01 00:00:00"), None);
        assert_eq!(parse_datetime(b"1970-01-01T00:00:00+1"), None);
    }

    #[test]
    fn attribute_datetimes_follow_the_schema_pattern() {
        for ok in [
            "2024-11-11T15:09:15",
            "2025-06-19T17:57:05.015Z",
            "2020-08-21T09:14:29+02:00",
            "2020-08-21T09:14:29.123456789-05:30",
        ] {
            assert!(is_attribute_datetime(ok), "{ok}");
        }
        for bad in [
            "2024-11-11",
            "2024-11-11T15:09",
            "2024-11-11 15:09:15",
            "2024-13-11T15:09:15",
            "2024-11-11T15:09:15+0200",
            "2024-11-11T15:09:15.",
        ] {
            assert!(!is_attribute_datetime(bad), "{bad}");
        }
        let a = attribute_instant("2020-08-21T09:14:29+02:00").unwrap();
        let b = attribute_instant("2020-08-21T07:14:29Z").unwrap();
        assert_eq!(a, b);
        assert!(
            attribute_instant("2020-08-21T07:14:29.5").unwrap()
                > attribute_instant("2020-08-21T07:14:29").unwrap()
        );
    }
}
