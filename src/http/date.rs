//! HTTP dates (RFC 9110 §5.6.7), on top of the `httpdate` crate.
//!
//! Senders must generate only the IMF-fixdate form
//! (`Sun, 06 Nov 1994 08:49:37 GMT`); recipients must also accept the
//! obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and ANSI C asctime
//! (`Sun Nov  6 08:49:37 1994`) forms. `httpdate` parses all three and
//! formats IMF-fixdate; this module adds what a server needs around it:
//!
//! * formatting into a fixed `[u8; 29]`, so that the `Date:` header on every
//!   response costs no allocation, and [`DateCache`], which formats only when
//!   the second changes;
//! * clamping: `httpdate` panics outside 1970-01-01 ..= 9999-12-31, so times
//!   outside that range (a file dated 1960, say) are clamped into it;
//! * strictness: a value with surrounding whitespace is refused (field
//!   values arrive trimmed; `httpdate` would trim silently).
//!
//! Nothing here reads the clock: the caller passes the time in (the reactor
//! reads it once per service cycle), so tests can drive time.
//!
//! Differences from the hand-written parser this replaced, all from
//! `httpdate`: the weekday must agree with the date; years before 1970 are
//! refused (a precondition carrying one is then ignored, the safe side: the
//! full response is sent); a leap second (`:60`) is refused; a two-digit
//! RFC 850 year is read in the fixed window 1970–2069 rather than relative
//! to the current year.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpdate::HttpDate;

/// Length in bytes of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const IMF_FIXDATE_LEN: usize = 29;

/// An IMF-fixdate as bytes, ready to be written into a `Date` field.
pub type ImfFixdate = [u8; IMF_FIXDATE_LEN];

/// Last second `httpdate` can format: 9999-12-31T23:59:59Z.
const MAX_SECS: u64 = 253_402_300_799;

/// Whole seconds since the epoch, clamped to what IMF-fixdate (as `httpdate`
/// implements it) can express; sub-second precision is dropped.
fn clamped_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_SECS)
}

/// `fmt::Write` into a fixed buffer; `httpdate`'s `Display` writes exactly
/// [`IMF_FIXDATE_LEN`] bytes.
struct Fixed {
    buf: ImfFixdate,
    len: usize,
}

impl fmt::Write for Fixed {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn format_secs(secs: u64) -> ImfFixdate {
    let date = HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs));
    let mut w = Fixed {
        buf: [b' '; IMF_FIXDATE_LEN],
        len: 0,
    };
    // Cannot fail: the format has a fixed length once the year is clamped.
    let ok = write!(w, "{date}").is_ok() && w.len == IMF_FIXDATE_LEN;
    debug_assert!(ok, "httpdate wrote {} bytes", w.len);
    w.buf
}

/// Formats `t` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// Sub-second precision is dropped; times before 1970 or after 9999 are
/// clamped to the first or last second that can be written.
pub fn http_date(t: SystemTime) -> ImfFixdate {
    format_secs(clamped_secs(t))
}

/// Like [`http_date`] but returns an owned `String`.
pub fn http_date_string(t: SystemTime) -> String {
    http_date(t).iter().map(|&b| char::from(b)).collect()
}

/// Parses an HTTP-date in any of the three forms RFC 9110 §5.6.7 requires
/// recipients to accept. Returns `None` for anything malformed (callers
/// such as `If-Modified-Since` handling must then ignore the field).
///
/// Names are matched case-sensitively as the grammar specifies, and the
/// weekday must be the date's. See the module docs for the range accepted.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    if s.trim() != s {
        return None;
    }
    httpdate::parse_http_date(s).ok()
}

/// Caches the formatted current time, re-formatting only when the second
/// changes; a busy server otherwise formats the same string for every
/// response. The owner feeds it the time (the reactor once per service
/// cycle) and reads [`date`](Self::date) and [`time`](Self::time) for
/// everything answered in that cycle.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    time: SystemTime,
    buf: ImfFixdate,
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    /// A cache set to the Unix epoch; set it with [`at`](Self::at) or
    /// [`update`](Self::update) before use.
    pub fn new() -> Self {
        DateCache {
            secs: 0,
            time: UNIX_EPOCH,
            buf: format_secs(0),
        }
    }

    /// Sets the time to `now` and returns its IMF-fixdate, re-formatted only
    /// if its second differs from the previous time's.
    pub fn at(&mut self, now: SystemTime) -> &ImfFixdate {
        self.update(now);
        &self.buf
    }

    /// Sets the time to `now` (see [`at`](Self::at)).
    pub fn update(&mut self, now: SystemTime) {
        self.time = now;
        let secs = clamped_secs(now);
        if secs != self.secs {
            self.secs = secs;
            self.buf = format_secs(secs);
        }
    }

    /// The IMF-fixdate of the last time set.
    pub fn date(&self) -> &ImfFixdate {
        &self.buf
    }

    /// The last time set, e.g. as the `now` that preconditions are judged
    /// against.
    pub fn time(&self) -> SystemTime {
        self.time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_rfc_example() {
        assert_eq!(&http_date(at(784_111_777)), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date_string(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn formats_edges() {
        assert_eq!(&http_date(UNIX_EPOCH), b"Thu, 01 Jan 1970 00:00:00 GMT");
        // Sub-second precision is dropped.
        let t = at(784_111_777) + Duration::from_millis(999);
        assert_eq!(&http_date(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
        // Leap day in a 400-year leap century, and a non-leap century.
        assert_eq!(&http_date(at(951_782_400)), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(at(4_107_542_400)), b"Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(&http_date(at(MAX_SECS)), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn clamps_instead_of_panicking() {
        // httpdate panics on both; a file's mtime can be anything.
        assert_eq!(
            &http_date(UNIX_EPOCH - Duration::from_secs(1)),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            &http_date(UNIX_EPOCH - Duration::from_millis(500)),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(&http_date(at(MAX_SECS + 1)), b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(&http_date(at(u64::MAX / 2)), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn parses_all_three_forms() {
        let want = Some(at(784_111_777));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(
            parse_http_date("Wed Nov 16 08:49:37 1994"),
            Some(at(784_111_777 + 10 * 86_400))
        );
    }

    #[test]
    fn rfc850_two_digit_year_window() {
        // httpdate's fixed window: 70..=99 are 19xx, 00..=69 are 20xx.
        let y = |s: &str| http_date_string(parse_http_date(s).unwrap());
        assert_eq!(
            y("Thursday, 01-Jan-70 00:00:00 GMT"),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            y("Thursday, 01-Jan-81 00:00:00 GMT"),
            "Thu, 01 Jan 1981 00:00:00 GMT"
        );
        assert_eq!(
            y("Monday, 01-Jan-35 00:00:00 GMT"),
            "Mon, 01 Jan 2035 00:00:00 GMT"
        );
        assert_eq!(
            y("Tuesday, 01-Jan-69 00:00:00 GMT"),
            "Tue, 01 Jan 2069 00:00:00 GMT"
        );
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
            " Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "Sonntag, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov x6 08:49:37 1994",
            // The weekday must agree with the date.
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun Nov 16 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}",
            "garbage",
        ] {
            assert_eq!(parse_http_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn round_trips_across_range() {
        // Every ~1.3 days over 1970..2100 plus arbitrary second offsets.
        let end = 4_102_444_800; // 2100-01-01
        let mut s = 0;
        while s < end {
            let text = http_date_string(at(s));
            assert_eq!(parse_http_date(&text), Some(at(s)), "{text}");
            s += 113_417;
        }
    }

    #[test]
    fn cache_reformats_only_on_new_second() {
        let mut c = DateCache::new();
        assert_eq!(c.date(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(c.time(), UNIX_EPOCH);
        let t = at(784_111_777);
        assert_eq!(c.at(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
        let later = t + Duration::from_millis(999);
        assert_eq!(c.at(later), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(c.time(), later);
        c.update(t + Duration::from_secs(1));
        assert_eq!(c.date(), b"Sun, 06 Nov 1994 08:49:38 GMT");
        // Back to the epoch (a clock set back) re-formats too.
        assert_eq!(c.at(UNIX_EPOCH), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
