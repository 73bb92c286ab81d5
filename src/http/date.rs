//! HTTP dates (RFC 9110 §5.6.7).
//!
//! Senders must generate only the IMF-fixdate form
//! (`Sun, 06 Nov 1994 08:49:37 GMT`); recipients must also accept the
//! obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and ANSI C asctime
//! (`Sun Nov  6 08:49:37 1994`) forms. All three are parsed here; only
//! IMF-fixdate is produced.
//!
//! The calendar conversion is the proleptic-Gregorian days/civil algorithm,
//! written out here so that no date crate is needed. Formatting is done into
//! a fixed `[u8; 29]` so that the `Date:` header on every response costs no
//! allocation, and [`DateCache`] avoids even the arithmetic unless the second
//! has changed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length in bytes of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const IMF_FIXDATE_LEN: usize = 29;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const WEEKDAYS_LONG: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

const SECS_PER_DAY: i64 = 86_400;
// The four-digit year field bounds what IMF-fixdate can express, so
// timestamps are clamped to 0001-01-01T00:00:00 ..= 9999-12-31T23:59:59.
const MIN_SECS: i64 = -62_135_596_800;
const MAX_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of the given proleptic-Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count years from March so that the leap day is the last day of the
    // "year", which makes month lengths a simple linear formula.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whole seconds relative to the Unix epoch, rounded towards the past so
/// that a time a fraction before the epoch still formats as 1969.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -s.saturating_add(1)
            } else {
                -s
            }
        }
    }
}

fn from_unix_secs(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Formats `secs` since the Unix epoch as an IMF-fixdate.
fn format_secs(secs: i64) -> [u8; IMF_FIXDATE_LEN] {
    let secs = secs.clamp(MIN_SECS, MAX_SECS);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4 with Sunday = 0).
    let wday = (days + 4).rem_euclid(7) as usize;

    let mut b = *b"Sun, 00 Jan 0000 00:00:00 GMT";
    b[0..3].copy_from_slice(WEEKDAYS[wday]);
    put2(&mut b[5..7], day);
    b[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let year = year as u32; // clamped to 1..=9999 above
    put2(&mut b[12..14], year / 100);
    put2(&mut b[14..16], year % 100);
    put2(&mut b[17..19], sod / 3600);
    put2(&mut b[20..22], sod / 60 % 60);
    put2(&mut b[23..25], sod % 60);
    b
}

/// Formats `t` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// Sub-second precision is dropped; times outside years 1..=9999 are
/// clamped because the format has a four-digit year.
pub fn http_date(t: SystemTime) -> [u8; IMF_FIXDATE_LEN] {
    format_secs(unix_secs(t))
}

/// Like [`http_date`] but returns an owned `String`.
pub fn http_date_string(t: SystemTime) -> String {
    http_date(t).iter().map(|&b| char::from(b)).collect()
}

/// Parses an HTTP-date in any of the three forms RFC 9110 §5.6.7 requires
/// recipients to accept. Returns `None` for anything malformed (callers
/// such as `If-Modified-Since` handling must then ignore the field).
///
/// Names are matched case-sensitively as the grammar specifies. The weekday
/// is checked for spelling but not for agreement with the date.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let fields = if b.len() == IMF_FIXDATE_LEN && b.get(3) == Some(&b',') {
        parse_imf_fixdate(b)?
    } else if b.len() == 24 && b.get(3) == Some(&b' ') {
        parse_asctime(b)?
    } else {
        parse_rfc850(b, SystemTime::now())?
    };
    to_system_time(fields)
}

/// Broken-down time as read from the wire, before validation.
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
}

fn to_system_time(f: Fields) -> Option<SystemTime> {
    // RFC 9110 allows second 60 for leap seconds; it simply rolls over.
    if !(1..=9999).contains(&f.year)
        || f.day == 0
        || f.day > days_in_month(f.year, f.month)
        || f.hour > 23
        || f.min > 59
        || f.sec > 60
    {
        return None;
    }
    let days = days_from_civil(f.year, f.month, f.day);
    let secs = days * SECS_PER_DAY + i64::from(f.hour * 3600 + f.min * 60 + f.sec);
    Some(from_unix_secs(secs))
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn month(b: &[u8]) -> Option<u32> {
    MONTHS.iter().position(|m| &m[..] == b).map(|i| i as u32 + 1)
}

fn short_weekday(b: &[u8]) -> bool {
    WEEKDAYS.iter().any(|d| &d[..] == b)
}

/// `HH:MM:SS` → (hour, minute, second).
fn time_of_day(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(b: &[u8]) -> Option<Fields> {
    if !short_weekday(&b[0..3])
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || &b[25..] != b" GMT"
    {
        return None;
    }
    let (hour, min, sec) = time_of_day(&b[17..25])?;
    Some(Fields {
        year: i64::from(digits(&b[12..16])?),
        month: month(&b[8..11])?,
        day: digits(&b[5..7])?,
        hour,
        min,
        sec,
    })
}

/// `Sun Nov  6 08:49:37 1994` (day is space-padded)
fn parse_asctime(b: &[u8]) -> Option<Fields> {
    if !short_weekday(&b[0..3]) || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    let day = if b[8] == b' ' {
        digits(&b[9..10])?
    } else {
        digits(&b[8..10])?
    };
    let (hour, min, sec) = time_of_day(&b[11..19])?;
    Some(Fields {
        year: i64::from(digits(&b[20..24])?),
        month: month(&b[4..7])?,
        day,
        hour,
        min,
        sec,
    })
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn parse_rfc850(b: &[u8], now: SystemTime) -> Option<Fields> {
    let comma = b.iter().position(|&c| c == b',')?;
    if !WEEKDAYS_LONG.contains(&&b[..comma]) {
        return None;
    }
    let rest = &b[comma..];
    // ", DD-Mon-YY HH:MM:SS GMT"
    if rest.len() != 24
        || &rest[..2] != b", "
        || rest[4] != b'-'
        || rest[8] != b'-'
        || rest[11] != b' '
        || &rest[20..] != b" GMT"
    {
        return None;
    }
    let (hour, min, sec) = time_of_day(&rest[12..20])?;
    let yy = i64::from(digits(&rest[9..11])?);
    // RFC 9110 §5.6.7: a two-digit year that would be more than 50 years in
    // the future means the most recent past year with those digits.
    let (this_year, _, _) = civil_from_days(unix_secs(now).div_euclid(SECS_PER_DAY));
    let mut year = this_year - this_year.rem_euclid(100) + yy;
    if year > this_year + 50 {
        year -= 100;
    }
    Some(Fields {
        year,
        month: month(&rest[5..8])?,
        day: digits(&rest[2..4])?,
        hour,
        min,
        sec,
    })
}

/// Caches the formatted current time, re-formatting only when the wall-clock
/// second changes; a busy server otherwise formats the same string for
/// every response.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: i64,
    buf: [u8; IMF_FIXDATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    /// Creates an empty cache; the first call formats.
    pub fn new() -> Self {
        DateCache {
            secs: i64::MIN,
            buf: [0; IMF_FIXDATE_LEN],
        }
    }

    /// The IMF-fixdate for `now`, re-formatted only if its second differs
    /// from the previous call's.
    pub fn at(&mut self, now: SystemTime) -> &[u8; IMF_FIXDATE_LEN] {
        let secs = unix_secs(now);
        if secs != self.secs {
            self.secs = secs;
            self.buf = format_secs(secs);
        }
        &self.buf
    }

    /// The IMF-fixdate for [`SystemTime::now`].
    pub fn now(&mut self) -> &[u8; IMF_FIXDATE_LEN] {
        self.at(SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        from_unix_secs(secs)
    }

    #[test]
    fn formats_rfc_example() {
        assert_eq!(&http_date(at(784_111_777)), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date_string(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn formats_edges() {
        assert_eq!(&http_date(UNIX_EPOCH), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(at(-1)), b"Wed, 31 Dec 1969 23:59:59 GMT");
        // Half a second before the epoch is still in 1969.
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(&http_date(t), b"Wed, 31 Dec 1969 23:59:59 GMT");
        // Leap day in a 400-year leap century.
        assert_eq!(&http_date(at(951_782_400)), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(at(4_107_542_400)), b"Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(&http_date(at(i64::MAX)), b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(&http_date(at(MIN_SECS)), b"Mon, 01 Jan 0001 00:00:00 GMT");
    }

    #[test]
    fn parses_all_three_forms() {
        let want = Some(at(784_111_777));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(
            parse_http_date("Sun Nov 16 08:49:37 1994"),
            Some(at(784_111_777 + 10 * 86_400))
        );
    }

    #[test]
    fn rfc850_two_digit_year_window() {
        // Evaluated as if "now" were 2030: 2081 is more than 50 years
        // ahead, so "81" means 1981; 2080 is exactly 50 ahead and stays.
        let now = at(days_from_civil(2030, 6, 1) * SECS_PER_DAY);
        let f = parse_rfc850(b"Monday, 01-Jan-81 00:00:00 GMT", now).unwrap();
        assert_eq!(f.year, 1981);
        let f = parse_rfc850(b"Monday, 01-Jan-80 00:00:00 GMT", now).unwrap();
        assert_eq!(f.year, 2080);
        let f = parse_rfc850(b"Monday, 01-Jan-35 00:00:00 GMT", now).unwrap();
        assert_eq!(f.year, 2035);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:60:37 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08-49-37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 0000 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "Sonntag, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov x6 08:49:37 1994",
            "garbage",
        ] {
            assert_eq!(parse_http_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn round_trips_across_range() {
        // Every ~1.3 days over 1900..2100 plus arbitrary second offsets.
        let start = days_from_civil(1900, 1, 1) * SECS_PER_DAY;
        let end = days_from_civil(2100, 1, 1) * SECS_PER_DAY;
        let mut s = start;
        while s < end {
            let text = http_date_string(at(s));
            assert_eq!(parse_http_date(&text), Some(at(s)), "{text}");
            s += 113_417;
        }
    }

    #[test]
    fn civil_matches_day_by_day_walk() {
        // Independent check of the calendar arithmetic: walk dates by
        // incrementing day/month/year and compare with the closed form.
        let (mut y, mut m, mut d) = (1600i64, 1u32, 1u32);
        let mut days = days_from_civil(1600, 1, 1);
        while y < 2401 {
            assert_eq!(civil_from_days(days), (y, m, d));
            assert_eq!(days_from_civil(y, m, d), days);
            days += 1;
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn cache_reformats_only_on_new_second() {
        let mut c = DateCache::new();
        let t = at(784_111_777);
        assert_eq!(c.at(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            c.at(t + Duration::from_millis(999)),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(c.at(t + Duration::from_secs(1)), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(c.now().len(), IMF_FIXDATE_LEN);
        assert!(parse_http_date(std::str::from_utf8(c.now()).unwrap()).is_some());
    }
}
