//! Static file responses, decided from a file's metadata: conditional
//! requests (RFC 9110 §13) and byte ranges (RFC 9110 §14). No I/O here:
//! finding the file and reading it is [`crate::fileserver`]'s job, and the
//! current time is an argument.
//!
//! [`plan`] evaluates preconditions in the order of RFC 9110 §13.2.2:
//! `If-Match` / `If-Unmodified-Since` (412), then `If-None-Match` (weak
//! comparison, 304; `If-Modified-Since` is then ignored) or
//! `If-Modified-Since` (304), then `Range` (RFC 9110 §14.2), honouring
//! `If-Range` (strong ETag or exact `Last-Modified` date). Only a single
//! `bytes` range is served as 206; multiple ranges, other units and
//! malformed values are ignored and the whole file is sent with 200, which
//! RFC 9110 §14.2 permits. A date precondition later than `now` is ignored
//! (RFC 9110 §13.1.3, §13.1.4).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::date::{http_date_string, parse_http_date, ImfFixdate};
use super::request::{Method, Request};
use super::response::{write_head_end, write_head_start, write_header};

/// A file that may be served: what [`plan`] needs to know about it.
/// [`crate::fileserver::resolve()`] makes one from the filesystem; anything
/// else (a test, another store) may build one by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical path of the file (the one that was checked to be inside
    /// the root; open this one).
    pub path: PathBuf,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, if the filesystem reports one.
    pub modified: Option<SystemTime>,
    /// `Content-Type` value, from the requested name's extension.
    pub content_type: String,
}

fn unix_secs(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// A strong entity tag `"<len hex>-<mtime secs hex>"`, quotes included.
///
/// Like most servers' file ETags it cannot see a same-size rewrite within
/// one second; that is the price of not hashing file contents.
pub fn etag(len: u64, modified: Option<SystemTime>) -> String {
    format!("\"{:x}-{:x}\"", len, unix_secs(modified))
}

/// What to send for a file: status, the byte range for 206, and the header
/// fields apart from `Date`, `Server`, `Content-Length` and `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// 200, 206, 304, 412 or 416.
    pub status: u16,
    /// Inclusive (first, last) byte offsets to send for 206.
    pub range: Option<(u64, u64)>,
    /// `Content-Type`, `Last-Modified`, `ETag`, `Accept-Ranges` and
    /// `Content-Range` as applicable to the status.
    pub headers: Vec<(String, String)>,
    /// Bytes of body to send (0 for 304/412/416). For `HEAD`, send the
    /// head with this length but no body.
    pub body_len: u64,
}

impl Plan {
    /// Appends the response head for this plan: status line, `Date`,
    /// `Server`, [`headers`](Self::headers), `Content-Length` (not for 304,
    /// where it would describe the unsent representation) and
    /// `Connection: close` when `!keep_alive`. `date` is the `Date` value
    /// (`None`: no `Date`).
    pub fn write_head(&self, out: &mut Vec<u8>, keep_alive: bool, date: Option<&ImfFixdate>) {
        write_head_start(out, self.status, date);
        for (name, value) in &self.headers {
            write_header(out, name, value);
        }
        let len = (self.status != 304).then_some(self.body_len);
        write_head_end(out, self.status, len, keep_alive);
    }
}

/// One element of an `If-Match` / `If-None-Match` list.
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// Parses `#entity-tag` (RFC 9110 §8.8.3). Commas may occur inside the
/// quotes, so this cannot just split on commas. `None` if malformed.
fn parse_etags(mut s: &[u8], out: &mut impl FnMut(EntityTag<'_>)) -> Option<()> {
    loop {
        while let [b' ' | b'\t' | b',', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return Some(());
        }
        let weak = s.starts_with(b"W/");
        if weak {
            s = &s[2..];
        }
        let rest = s.strip_prefix(b"\"")?;
        let end = rest.iter().position(|&b| b == b'"')?;
        out(EntityTag {
            weak,
            opaque: &rest[..end],
        });
        s = &rest[end + 1..];
        // After a tag only OWS and a comma (or the end) may follow.
        while let [b' ' | b'\t', r @ ..] = s {
            s = r;
        }
        if !s.is_empty() && s[0] != b',' {
            return None;
        }
    }
}

/// Whether any value of the list-valued field `name` matches our tag
/// (`*` matches any existing file). `None` when the field is absent or
/// malformed, in which case it is ignored.
fn etag_field_matches(req: &Request, name: &str, ours: &str, strong: bool) -> Option<bool> {
    let ours = ours.as_bytes();
    let ours = &ours[1..ours.len() - 1];
    let mut present = false;
    let mut matched = false;
    for value in req.header_values(name) {
        present = true;
        let value = value.trim_ascii();
        if value == b"*" {
            matched = true;
            continue;
        }
        parse_etags(value, &mut |t| {
            // Strong comparison needs both sides strong; weak ignores W/.
            if t.opaque == ours && !(strong && t.weak) {
                matched = true;
            }
        })?;
    }
    present.then_some(matched)
}

/// Reads a date-valued precondition, ignoring it when malformed or later
/// than `now` (RFC 9110 §13.1.3/§13.1.4).
fn date_field(req: &Request, name: &str, now: SystemTime) -> Option<u64> {
    let date = parse_http_date(req.header(name)?.trim())?;
    if date > now {
        return None;
    }
    Some(unix_secs(Some(date)))
}

enum RangeSpec {
    /// Inclusive byte offsets.
    Satisfiable(u64, u64),
    Unsatisfiable,
    /// Malformed, multi-range or unknown unit: send the whole file.
    Ignore,
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a `Range` value for a representation of `len` bytes.
fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some((unit, set)) = value.split_once('=') else {
        return RangeSpec::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Ignore;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeSpec::Ignore;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignore;
    };
    if first.is_empty() {
        // Suffix range: the last n bytes.
        let Some(n) = parse_u64(last) else {
            return RangeSpec::Ignore;
        };
        if n == 0 {
            return RangeSpec::Unsatisfiable;
        }
        if len == 0 {
            // RFC 9110 §14.1.3 deems this satisfiable, but there is no
            // byte to name in Content-Range; send the (empty) file.
            return RangeSpec::Ignore;
        }
        return RangeSpec::Satisfiable(len - n.min(len), len - 1);
    }
    let Some(start) = parse_u64(first) else {
        return RangeSpec::Ignore;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match parse_u64(last) {
            Some(end) if end >= start => end,
            _ => return RangeSpec::Ignore,
        }
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Satisfiable(start, end.min(len - 1))
}

/// Whether `If-Range` (if present) lets the `Range` apply (RFC 9110
/// §13.1.5): a strong ETag equal to ours, or a date exactly equal to our
/// `Last-Modified`.
fn if_range_allows(req: &Request, tag: &str, mtime: Option<u64>) -> bool {
    let Some(value) = req.header_bytes("if-range") else {
        return true;
    };
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return value == tag.as_bytes();
    }
    let date = std::str::from_utf8(value).ok().and_then(parse_http_date);
    match (date, mtime) {
        (Some(d), Some(m)) => unix_secs(Some(d)) == m,
        _ => false,
    }
}

/// The fields of a 200 (and, plus `Content-Range`, a 206) for `file`, in
/// the order they are sent.
fn full_headers(file: &Resolved, tag: &str, last_modified: Option<String>) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(5);
    headers.push(("Content-Type".into(), file.content_type.clone()));
    if let Some(lm) = last_modified {
        headers.push(("Last-Modified".into(), lm));
    }
    headers.push(("ETag".into(), tag.to_owned()));
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    headers
}

/// The field lines [`Plan::write_head`] writes between `Server` and
/// `Connection` for the 200 that [`plan`] gives a request without
/// preconditions or `Range` (see [`is_unconditional`]), `Content-Length`
/// included. Precomputed per file, so a cached file's head costs copies
/// only.
pub(crate) fn ok_fields(file: &Resolved) -> Vec<u8> {
    let tag = etag(file.len, file.modified);
    let mut out = Vec::with_capacity(160);
    for (name, value) in full_headers(file, &tag, file.modified.map(http_date_string)) {
        write_header(&mut out, &name, &value);
    }
    // write_head_end with a length writes exactly this line for a 200.
    write_head_end(&mut out, 200, Some(file.len), true);
    out.truncate(out.len() - 2);
    out
}

/// Whether `req` has none of the fields that can make [`plan`] answer
/// anything but a plain 200 (`If-Range` only matters with `Range`).
pub(crate) fn is_unconditional(req: &Request) -> bool {
    const FIELDS: [&str; 5] = [
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "range",
    ];
    !req.headers()
        .any(|(name, _)| FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)))
}

/// Decides how to answer a `GET` or `HEAD` for `file`; see the module
/// docs for the rules. For other methods, a matching `If-None-Match`
/// yields 412 instead of 304 and `Range` is ignored, as RFC 9110 says, but
/// such requests should normally have been refused with 405 before this.
///
/// `now` is the current time, which a date precondition must not be later
/// than to count.
pub fn plan(req: &Request, file: &Resolved, now: SystemTime) -> Plan {
    let tag = etag(file.len, file.modified);
    let mtime = file
        .modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let last_modified = file.modified.map(http_date_string);
    let get_or_head = matches!(req.method(), Method::Get | Method::Head);

    let validators = |headers: &mut Vec<(String, String)>| {
        if let Some(lm) = &last_modified {
            headers.push(("Last-Modified".into(), lm.clone()));
        }
        headers.push(("ETag".into(), tag.clone()));
    };
    let bare = |status: u16, headers: Vec<(String, String)>| Plan {
        status,
        range: None,
        headers,
        body_len: 0,
    };

    // 1-2: the client's copy must still be current (lost-update checks).
    let failed = match etag_field_matches(req, "if-match", &tag, true) {
        Some(matched) => !matched,
        None => {
            req.header_bytes("if-match").is_none()
                && matches!((date_field(req, "if-unmodified-since", now), mtime), (Some(d), Some(m)) if m > d)
        }
    };
    if failed {
        return bare(412, Vec::new());
    }

    // 3-4: the client's cached copy is still good.
    let not_modified = match etag_field_matches(req, "if-none-match", &tag, false) {
        Some(matched) => matched,
        None if req.header_bytes("if-none-match").is_some() => false,
        None => {
            get_or_head
                && matches!((date_field(req, "if-modified-since", now), mtime), (Some(d), Some(m)) if m <= d)
        }
    };
    if not_modified {
        if !get_or_head {
            return bare(412, Vec::new());
        }
        let mut headers = Vec::with_capacity(2);
        validators(&mut headers);
        return bare(304, headers);
    }

    let mut headers = full_headers(file, &tag, last_modified);

    // 5: ranges apply only to GET (RFC 9110 §14.2).
    let range = match req.header("range") {
        Some(value) if req.method() == Method::Get && if_range_allows(req, &tag, mtime) => {
            parse_range(value, file.len)
        }
        _ => RangeSpec::Ignore,
    };
    match range {
        RangeSpec::Satisfiable(start, end) => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {start}-{end}/{}", file.len),
            ));
            Plan {
                status: 206,
                range: Some((start, end)),
                headers,
                body_len: end - start + 1,
            }
        }
        RangeSpec::Unsatisfiable => bare(
            416,
            vec![
                ("Content-Range".into(), format!("bytes */{}", file.len)),
                ("Accept-Ranges".into(), "bytes".into()),
            ],
        ),
        RangeSpec::Ignore => Plan {
            status: 200,
            range: None,
            headers,
            body_len: file.len,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits};
    use std::time::Duration;

    const MTIME: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn secs(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    /// A day after the file's mtime: what the tests judge preconditions at.
    fn now() -> SystemTime {
        secs(MTIME + 86_400)
    }

    /// A 20-byte text file last modified at MTIME.
    fn hello() -> Resolved {
        Resolved {
            path: PathBuf::from("/srv/www/hello.txt"),
            len: 20,
            modified: Some(secs(MTIME)),
            content_type: "text/plain; charset=utf-8".into(),
        }
    }

    fn zero() -> Resolved {
        Resolved { len: 0, ..hello() }
    }

    fn req(extra: &str) -> Request {
        req_m("GET", extra)
    }

    fn req_m(method: &str, extra: &str) -> Request {
        let head = format!("{method} /hello.txt HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        parse_head(head.as_bytes(), &Limits::default()).unwrap()
    }

    fn header<'a>(p: &'a Plan, name: &str) -> Option<&'a str> {
        p.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn plan(req: &Request, file: &Resolved) -> Plan {
        super::plan(req, file, now())
    }
    #[test]
    fn etag_format() {
        let t = Some(UNIX_EPOCH + Duration::from_secs(MTIME));
        assert_eq!(etag(20, t), "\"14-2ebc98a1\"");
        assert_eq!(etag(0, None), "\"0-0\"");
        assert_ne!(etag(20, t), etag(21, t));
    }

    #[test]
    fn plain_200() {
        let file = hello();
        let p = plan(&req(""), &file);
        assert_eq!((p.status, p.range, p.body_len), (200, None, 20));
        assert_eq!(header(&p, "content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(header(&p, "last-modified"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(header(&p, "etag"), Some(etag(20, file.modified).as_str()));
        assert_eq!(header(&p, "accept-ranges"), Some("bytes"));
        assert_eq!(header(&p, "content-range"), None);

        let mut out = Vec::new();
        let mut dates = crate::http::DateCache::new();
        p.write_head(&mut out, false, Some(dates.at(now())));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: Mon, 07 Nov 1994 08:49:37 GMT\r\n"));
        assert!(text.contains("\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"));
        assert!(text.contains("\r\nETag: \"14-2ebc98a1\"\r\n"));
    }

    #[test]
    fn not_modified_by_etag() {
        let file = hello();
        let tag = etag(file.len, file.modified);
        for inm in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"zzz\", {tag}"),
            format!("\"a,b\" , W/{tag} ,"),
            "*".to_string(),
        ] {
            let p = plan(&req(&format!("If-None-Match: {inm}\r\n")), &file);
            assert_eq!(p.status, 304, "{inm}");
            assert_eq!(p.body_len, 0);
            assert_eq!(header(&p, "etag"), Some(tag.as_str()));
            assert_eq!(header(&p, "content-type"), None);
            let mut out = Vec::new();
            p.write_head(&mut out, true, None);
            assert!(!String::from_utf8(out).unwrap().contains("Content-Length"));
        }
        // Several field lines combine.
        let p = plan(
            &req(&format!("If-None-Match: \"x\"\r\nIf-None-Match: {tag}\r\n")),
            &file,
        );
        assert_eq!(p.status, 304);
        // HEAD too.
        let p = plan(&req_m("HEAD", &format!("If-None-Match: {tag}\r\n")), &file);
        assert_eq!(p.status, 304);
        // Non-matching, or a comma inside another tag, is 200.
        for inm in ["\"other\"", "\"14-2ebc98a1,\"", "14-2ebc98a1", "W/\"14\""] {
            let p = plan(&req(&format!("If-None-Match: {inm}\r\n")), &file);
            assert_eq!(p.status, 200, "{inm}");
        }
        // If-None-Match present and not matching: If-Modified-Since ignored.
        let p = plan(
            &req("If-None-Match: \"other\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            &file,
        );
        assert_eq!(p.status, 200);
        // Unsafe methods get 412 instead of 304.
        let p = plan(&req_m("PUT", "If-None-Match: *\r\n"), &file);
        assert_eq!(p.status, 412);
    }

    #[test]
    fn not_modified_by_date() {
        let file = hello();
        for (ims, status) in [
            ("Sun, 06 Nov 1994 08:49:37 GMT", 304),
            ("Sunday, 06-Nov-94 08:49:38 GMT", 304),
            ("Sun Nov  6 08:49:37 1994", 304),
            ("Sun, 06 Nov 1994 08:49:36 GMT", 200),
            ("Mon, 01 Jan 1990 00:00:00 GMT", 200),
            ("not a date", 200),
            ("Fri, 31 Dec 9999 23:59:59 GMT", 200), // future: ignored
        ] {
            let p = plan(&req(&format!("If-Modified-Since: {ims}\r\n")), &file);
            assert_eq!(p.status, status, "{ims}");
        }
        // Without a known mtime there is nothing to compare.
        let undated = Resolved {
            modified: None,
            ..file.clone()
        };
        let p = plan(
            &req("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            &undated,
        );
        assert_eq!(p.status, 200);
        assert_eq!(header(&p, "last-modified"), None);
    }

    #[test]
    fn preconditions_412() {
        let file = hello();
        let tag = etag(file.len, file.modified);
        let p = plan(&req(&format!("If-Match: {tag}\r\n")), &file);
        assert_eq!(p.status, 200);
        let p = plan(&req("If-Match: *\r\n"), &file);
        assert_eq!(p.status, 200);
        let p = plan(&req("If-Match: \"other\"\r\n"), &file);
        assert_eq!(p.status, 412);
        // If-Match uses the strong comparison.
        let p = plan(&req(&format!("If-Match: W/{tag}\r\n")), &file);
        assert_eq!(p.status, 412);
        let p = plan(
            &req("If-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n"),
            &file,
        );
        assert_eq!(p.status, 412);
        let p = plan(
            &req("If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            &file,
        );
        assert_eq!(p.status, 200);
    }

    fn range_plan(file: &Resolved, range: &str) -> Plan {
        plan(&req(&format!("Range: {range}\r\n")), file)
    }

    #[test]
    fn single_ranges() {
        let file = hello();
        for (range, (start, end)) in [
            ("bytes=0-4", (0, 4)),
            ("bytes=5-", (5, 19)),
            ("bytes=-5", (15, 19)),
            ("bytes=-100", (0, 19)),
            ("bytes=10-1000", (10, 19)),
            ("bytes=19-19", (19, 19)),
            ("Bytes = 2-3 ,", (2, 3)),
            ("bytes=0-", (0, 19)),
        ] {
            let p = range_plan(&file, range);
            assert_eq!(p.status, 206, "{range}");
            assert_eq!(p.range, Some((start, end)), "{range}");
            assert_eq!(p.body_len, end - start + 1);
            assert_eq!(
                header(&p, "content-range"),
                Some(format!("bytes {start}-{end}/20").as_str())
            );
            assert_eq!(header(&p, "content-type"), Some("text/plain; charset=utf-8"));
        }
    }

    #[test]
    fn unsatisfiable_ranges() {
        let file = hello();
        for range in ["bytes=20-", "bytes=20-30", "bytes=100-200", "bytes=-0"] {
            let p = range_plan(&file, range);
            assert_eq!(p.status, 416, "{range}");
            assert_eq!(p.body_len, 0);
            assert_eq!(p.range, None);
            assert_eq!(header(&p, "content-range"), Some("bytes */20"));
        }
        let empty = zero();
        assert_eq!(range_plan(&empty, "bytes=0-").status, 416);
        assert_eq!(range_plan(&empty, "bytes=-5").status, 200);
    }

    #[test]
    fn ignored_ranges_serve_200() {
        let file = hello();
        for range in [
            "bytes=0-1,5-6",
            "bytes=0-1, -3",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=",
            "bytes= 1 -2",
            "bytes=+1-2",
            "bytes=0-99999999999999999999",
            "items=0-4",
            "0-4",
        ] {
            let p = range_plan(&file, range);
            assert_eq!((p.status, p.range, p.body_len), (200, None, 20), "{range}");
        }
        // Range is only for GET.
        let p = plan(&req_m("HEAD", "Range: bytes=0-4\r\n"), &file);
        assert_eq!(p.status, 200);
    }

    #[test]
    fn if_range() {
        let file = hello();
        let tag = etag(file.len, file.modified);
        for (if_range, status) in [
            (tag.clone(), 206),
            (format!("W/{tag}"), 200),
            ("\"other\"".to_string(), 200),
            ("Sun, 06 Nov 1994 08:49:37 GMT".to_string(), 206),
            ("Sun, 06 Nov 1994 08:49:38 GMT".to_string(), 200),
            ("garbage".to_string(), 200),
        ] {
            let p = plan(
                &req(&format!("Range: bytes=0-4\r\nIf-Range: {if_range}\r\n")),
                &file,
            );
            assert_eq!(p.status, status, "{if_range}");
        }
    }

    #[test]
    fn date_preconditions_are_judged_at_the_given_now() {
        let file = hello();
        let ims = "If-Modified-Since: Sun, 06 Nov 1994 08:49:40 GMT\r\n";
        let ius = "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n";
        // Three seconds after the mtime the date is in the past: it counts.
        assert_eq!(super::plan(&req(ims), &file, secs(MTIME + 3)).status, 304);
        assert_eq!(super::plan(&req(ims), &file, secs(MTIME + 1000)).status, 304);
        // Before that it lies in the future and is ignored.
        assert_eq!(super::plan(&req(ims), &file, secs(MTIME + 2)).status, 200);
        assert_eq!(super::plan(&req(ims), &file, secs(MTIME)).status, 200);
        // If-Unmodified-Since likewise: 412 only once its date has passed.
        assert_eq!(super::plan(&req(ius), &file, secs(MTIME)).status, 412);
        assert_eq!(super::plan(&req(ius), &file, secs(MTIME - 2)).status, 200);
    }
}
