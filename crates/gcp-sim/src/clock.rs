//! RFC 3339 UTC timestamps (what Cloud Logging and the other APIs write) and their parsing for Logging
//! filters, with no date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Parses RFC 3339 / ISO 8601 (`2026-01-02`, `2026-01-02T03:04:05Z`, fractions, `±hh:mm`) to
/// nanoseconds since the epoch.
pub fn parse_instant(s: &str) -> Option<i128> {
    let s = s.trim();
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut nanos: i128 = i128::from(days_from_civil(y, m, d)) * 86_400 * 1_000_000_000;
    let Some(time) = time else {
        return Some(nanos);
    };
    let (clock, offset_secs) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = off[1..].split_once(':').unwrap_or((&off[1..], "0"));
        (c, sign * (num(hh)? * 3600 + num(mm)? * 60))
    } else {
        return None;
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut tp = hms.split(':');
    let (h, mi) = (num(tp.next()?)?, num(tp.next()?)?);
    let sec = tp.next().map(num).unwrap_or(Some(0))?;
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let frac_nanos: i128 = if frac.is_empty() {
        0
    } else {
        num(frac)?;
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        digits.parse().ok()?
    };
    nanos += i128::from(h * 3600 + mi * 60 + sec - offset_secs) * 1_000_000_000 + frac_nanos;
    Some(nanos)
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339_micros(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_and_parses_known_instants() {
        let t = UNIX_EPOCH + Duration::from_micros(1_733_000_000_123_456);
        assert_eq!(rfc3339_micros(t), "2024-11-30T20:53:20.123456Z");
        assert_eq!(
            parse_instant("2024-11-30T20:53:20.123456Z"),
            Some(1_733_000_000_123_456_000)
        );
        assert_eq!(
            parse_instant("2024-11-30T21:53:20.123456+01:00"),
            parse_instant("2024-11-30T20:53:20.123456Z")
        );
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000_000_000));
        assert_eq!(
            parse_instant("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        assert!(parse_instant("yesterday").is_none());
        assert!(parse_instant("2024-13-01").is_none());
    }
}
