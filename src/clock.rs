//! RFC 3339 timestamps without a date-time dependency: the one formatter every module uses
//! (notifications, audit-log entries of the simulator, Logging filters).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock IAM conditions are evaluated against: the system's, moved forward by an offset
/// that only tests set (so a time-bound grant can be seen to expire without waiting for it).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    /// Now, as IAM would see it.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every copy of it) forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// `t` in milliseconds since the Unix epoch (0 before it): the time the state store records.
pub fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A span in milliseconds, saturating.
pub fn span_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Fractional-second digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// `.123Z`
    Millis,
    /// `.123456Z` (what Cloud Logging writes)
    Micros,
}

/// `t` as an RFC 3339 UTC timestamp.
pub fn rfc3339(t: SystemTime, precision: Precision) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let fraction = match precision {
        Precision::Millis => format!("{:03}", d.subsec_millis()),
        Precision::Micros => format!("{:06}", d.subsec_micros()),
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants_format_as_rfc3339() {
        assert_eq!(
            rfc3339(UNIX_EPOCH, Precision::Millis),
            "1970-01-01T00:00:00.000Z"
        );
        let t = UNIX_EPOCH + Duration::from_micros(1_795_918_800_123_456);
        assert_eq!(rfc3339(t, Precision::Millis), "2026-11-29T02:20:00.123Z");
        assert_eq!(rfc3339(t, Precision::Micros), "2026-11-29T02:20:00.123456Z");
        assert_eq!(
            rfc3339(
                UNIX_EPOCH + Duration::from_secs(951_782_400),
                Precision::Millis
            ),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
