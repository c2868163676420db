//! RFC 3339 timestamps as the console sends them, to and from Unix seconds.
//!
//! The component cannot take a date crate's weight for two functions, so this
//! is the proleptic Gregorian arithmetic from Howard Hinnant's `chrono`-
//! compatible algorithms, kept small and tested against known instants.

use alloc::{format, string::String};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into Unix seconds (the
/// fraction is dropped). `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let s = text.trim().as_bytes();
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let num = |range: core::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * DAY + hour * 3600 + minute * 60 + second.min(59) - offset)
}

/// Like [`parse_rfc3339`], keeping the fraction: Unix microseconds (digits
/// past the sixth are dropped).
pub fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    let secs = parse_rfc3339(text)?;
    let frac = text
        .trim()
        .get(19..)
        .filter(|t| t.starts_with('.'))
        .map_or("", |t| {
            let digits = t[1..].bytes().take_while(u8::is_ascii_digit).count();
            &t[1..1 + digits]
        });
    let micros = frac
        .bytes()
        .chain(core::iter::repeat(b'0'))
        .take(6)
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// Formats Unix microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form
/// SentinelOne sends and accepts in time filters.
pub fn format_rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let base = format_rfc3339(secs);
    format!("{}.{frac:06}Z", &base[..base.len() - 1])
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2018-02-27T04:49:26.257525Z"),
            Some(1_519_706_966)
        );
        assert_eq!(
            parse_rfc3339("2026-04-28T04:07:21+00:00"),
            Some(1_777_349_241)
        );
        assert_eq!(
            parse_rfc3339("2026-04-28T06:07:21+02:00"),
            Some(1_777_349_241)
        );
        assert_eq!(parse_rfc3339("2000-02-29T23:59:59z"), Some(951_868_799));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2024",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0000",
            "yyyy-mm-ddT00:00:00Z",
            "2024-01-01T00:00:00Zjunk",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn micros() {
        assert_eq!(
            parse_rfc3339_micros("2018-02-27T04:49:26.257525Z"),
            Some(1_519_706_966_257_525)
        );
        assert_eq!(
            parse_rfc3339_micros("2018-02-27T04:49:26Z"),
            Some(1_519_706_966_000_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2018-02-27T04:49:26.25Z"),
            Some(1_519_706_966_250_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2018-02-27T04:49:26.123456789Z"),
            Some(1_519_706_966_123_456)
        );
        assert_eq!(
            format_rfc3339_micros(1_519_706_966_000_001),
            "2018-02-27T04:49:26.000001Z"
        );
        for t in [0, -1, 1_519_706_966_257_525] {
            assert_eq!(parse_rfc3339_micros(&format_rfc3339_micros(t)), Some(t));
        }
    }

    #[test]
    fn round_trips() {
        for t in [
            0,
            1,
            -1,
            951_868_799,
            1_777_349_241,
            4_102_444_800,
            -62_135_596_800,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(format_rfc3339(1_519_706_966), "2018-02-27T04:49:26Z");
    }
}
