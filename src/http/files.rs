//! Static file serving decisions: mapping a request path to a file under a
//! document root, and working out conditional and range responses. No
//! socket I/O here; only `std::fs` metadata calls.
//!
//! Path mapping ([`resolve`]) refuses rather than normalises: after
//! percent-decoding (RFC 3986 §2.1), a `..` segment, an encoded slash
//! (`%2F`, which would change the segment structure) or any backslash is
//! 403; malformed escapes, NUL and non-UTF-8 are 400. Empty and `.`
//! segments are skipped. A directory is served by its `index.html`
//! directly, with or without a trailing slash (no redirect; there is no
//! directory listing). Symlinks are followed only if the final file's
//! canonical path is still inside the canonical root.
//!
//! [`plan`] evaluates preconditions in the order of RFC 9110 §13.2.2:
//! `If-Match` / `If-Unmodified-Since` (412), then `If-None-Match` (weak
//! comparison, 304; `If-Modified-Since` is then ignored) or
//! `If-Modified-Since` (304), then `Range` (RFC 9110 §14.2), honouring
//! `If-Range` (strong ETag or exact `Last-Modified` date). Only a single
//! `bytes` range is served as 206; multiple ranges, other units and
//! malformed values are ignored and the whole file is sent with 200, which
//! RFC 9110 §14.2 permits.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::date::{http_date_string, parse_http_date};
use super::request::{Method, Request};
use super::response::{write_head_end, write_head_start, write_header};

/// Why a request path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileError {
    /// Malformed path: bad percent-escape, NUL, invalid UTF-8, or not
    /// starting with `/` (400).
    BadRequest,
    /// Traversal attempt, encoded slash, backslash, symlink leaving the
    /// root, permission denied or not a regular file (403).
    Forbidden,
    /// No such file, or a directory without `index.html` (404).
    NotFound,
}

impl FileError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            FileError::BadRequest => 400,
            FileError::Forbidden => 403,
            FileError::NotFound => 404,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            FileError::BadRequest => "malformed path",
            FileError::Forbidden => "forbidden path",
            FileError::NotFound => "file not found",
        };
        write!(f, "{} ({})", what, self.status())
    }
}

impl std::error::Error for FileError {}

/// A file that may be served.
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

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a path, refusing the escapes that could smuggle a
/// separator or terminator past the segment checks.
fn decode_path(path: &str) -> Result<String, FileError> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_digit);
                let lo = b.get(i + 2).copied().and_then(hex_digit);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(FileError::BadRequest);
                };
                i += 3;
                match hi << 4 | lo {
                    b'/' => return Err(FileError::Forbidden),
                    c => c,
                }
            }
            c => {
                i += 1;
                c
            }
        };
        match c {
            0 => return Err(FileError::BadRequest),
            b'\\' => return Err(FileError::Forbidden),
            _ => out.push(c),
        }
    }
    String::from_utf8(out).map_err(|_| FileError::BadRequest)
}

fn io_error(e: &io::Error) -> FileError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => FileError::Forbidden,
        _ => FileError::NotFound,
    }
}

/// Content type for `path`, with `charset=utf-8` on the types browsers
/// would otherwise guess a charset for.
fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || (mime.type_() == mime_guess::mime::APPLICATION
            && matches!(mime.subtype().as_str(), "javascript" | "json"));
    if textual {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    }
}

/// Maps `request_path` (a request's path, e.g. [`Request::path`]; a
/// `?query` is stripped) to a regular file under `root`.
///
/// See the module docs for the rules. The filesystem may change between
/// this check and opening the file; serving from a root that untrusted
/// users can write symlinks into is not supported.
pub fn resolve(root: &Path, request_path: &str) -> Result<Resolved, FileError> {
    let (full, meta) = locate(root, request_path)?;
    let root_canon = canonical_root(root, true)?;
    let canon = contain(&root_canon, &full, request_path)?;
    Ok(resolved(&full, canon, &meta))
}

/// [`resolve`] under a root that is already canonical, for callers that
/// canonicalise it once rather than per request. Also returns the path as
/// built from the request (not canonicalised; `stat` it to revalidate) and
/// its metadata.
pub(crate) fn resolve_in(
    root_canon: &Path,
    request_path: &str,
) -> Result<(Resolved, PathBuf, fs::Metadata), FileError> {
    let (full, meta) = locate(root_canon, request_path)?;
    let canon = contain(root_canon, &full, request_path)?;
    Ok((resolved(&full, canon, &meta), full, meta))
}

/// The canonical form of a document root. A failure is the server's
/// misconfiguration rather than the client's fault, hence the log (which a
/// caller that retries per request may ask for only once).
pub(crate) fn canonical_root(root: &Path, log_error: bool) -> Result<PathBuf, FileError> {
    fs::canonicalize(root).map_err(|e| {
        if log_error {
            log::error!("document root {}: {e}", root.display());
        }
        FileError::NotFound
    })
}

/// The regular file `request_path` names under `root` (by the segment
/// rules only; symlinks are not checked here) and its metadata.
fn locate(root: &Path, request_path: &str) -> Result<(PathBuf, fs::Metadata), FileError> {
    let path = request_path.split('?').next().unwrap_or("");
    if !path.starts_with('/') {
        return Err(FileError::BadRequest);
    }
    let decoded = decode_path(path)?;
    let mut full = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(FileError::Forbidden),
            s => full.push(s),
        }
    }

    let mut meta = fs::metadata(&full).map_err(|e| io_error(&e))?;
    if meta.is_dir() {
        full.push("index.html");
        meta = fs::metadata(&full).map_err(|e| io_error(&e))?;
    }
    // Devices and FIFOs could block or never end; only plain files.
    if !meta.is_file() {
        return Err(FileError::Forbidden);
    }
    Ok((full, meta))
}

/// The canonical path of `full`, if it is inside `root_canon`.
fn contain(root_canon: &Path, full: &Path, request_path: &str) -> Result<PathBuf, FileError> {
    let canon = fs::canonicalize(full).map_err(|e| io_error(&e))?;
    if !canon.starts_with(root_canon) {
        log::warn!(
            "refusing {request_path:?}: {} is outside {}",
            canon.display(),
            root_canon.display()
        );
        return Err(FileError::Forbidden);
    }
    Ok(canon)
}

fn resolved(full: &Path, canon: PathBuf, meta: &fs::Metadata) -> Resolved {
    Resolved {
        content_type: content_type(full),
        path: canon,
        len: meta.len(),
        modified: meta.modified().ok(),
    }
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
    /// `Connection: close` when `!keep_alive`.
    pub fn write_head(&self, out: &mut Vec<u8>, keep_alive: bool) {
        write_head_start(out, self.status, true);
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

/// Reads a date-valued precondition, ignoring it when malformed or in the
/// future (RFC 9110 §13.1.3/§13.1.4).
fn date_field(req: &Request, name: &str) -> Option<u64> {
    let date = parse_http_date(req.header(name)?.trim())?;
    if date > SystemTime::now() {
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
pub fn plan(req: &Request, file: &Resolved) -> Plan {
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
                && matches!((date_field(req, "if-unmodified-since"), mtime), (Some(d), Some(m)) if m > d)
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
                && matches!((date_field(req, "if-modified-since"), mtime), (Some(d), Some(m)) if m <= d)
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
    use crate::http::TempDir;
    use std::time::Duration;

    const MTIME: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
    const CONTENT: &[u8] = b"0123456789abcdefghij"; // 20 bytes

    /// root/{hello.txt, app.js, data.json, pic.png, index.html,
    ///       sub/index.html, empty/, zero.txt, fifo?},
    /// outside/secret.txt, plus symlinks in root.
    fn fixture() -> (TempDir, PathBuf) {
        let tmp = TempDir::new("wsr-http-files");
        let root = tmp.0.join("root");
        let outside = tmp.0.join("outside");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        for name in [
            "hello.txt",
            "app.js",
            "data.json",
            "pic.png",
            "index.html",
            "sub/index.html",
        ] {
            fs::write(root.join(name), CONTENT).unwrap();
        }
        fs::write(root.join("zero.txt"), b"").unwrap();
        fs::write(root.join("a b.txt"), b"space").unwrap();
        fs::write(outside.join("secret.txt"), b"secret").unwrap();
        let f = fs::File::options()
            .write(true)
            .open(root.join("hello.txt"))
            .unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME)).unwrap();
        use std::os::unix::fs::symlink;
        symlink(outside.join("secret.txt"), root.join("leak.txt")).unwrap();
        symlink("../outside", root.join("leakdir")).unwrap();
        symlink("hello.txt", root.join("alias.txt")).unwrap();
        (tmp, root)
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

    #[test]
    fn resolves_files_and_types() {
        let (_tmp, root) = fixture();
        let r = resolve(&root, "/hello.txt?x=../../etc").unwrap();
        assert_eq!(r.len, 20);
        assert_eq!(r.content_type, "text/plain; charset=utf-8");
        assert_eq!(r.modified, Some(UNIX_EPOCH + Duration::from_secs(MTIME)));
        assert_eq!(r.path, fs::canonicalize(root.join("hello.txt")).unwrap());
        for (path, ty) in [
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/data.json", "application/json; charset=utf-8"),
            ("/pic.png", "image/png"),
            ("/index.html", "text/html; charset=utf-8"),
        ] {
            assert_eq!(resolve(&root, path).unwrap().content_type, ty, "{path}");
        }
        assert_eq!(
            content_type(Path::new("x.mjs")),
            "application/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
        assert_eq!(resolve(&root, "/a%20b.txt").unwrap().len, 5);
        assert_eq!(resolve(&root, "//./sub//index.html").unwrap().len, 20);
    }

    #[test]
    fn directories_serve_index() {
        let (_tmp, root) = fixture();
        let want = fs::canonicalize(root.join("index.html")).unwrap();
        assert_eq!(resolve(&root, "/").unwrap().path, want);
        let want = fs::canonicalize(root.join("sub/index.html")).unwrap();
        assert_eq!(resolve(&root, "/sub/").unwrap().path, want);
        assert_eq!(resolve(&root, "/sub").unwrap().path, want);
        assert_eq!(
            resolve(&root, "/sub").unwrap().content_type,
            "text/html; charset=utf-8"
        );
        assert_eq!(resolve(&root, "/empty/"), Err(FileError::NotFound));
    }

    #[test]
    fn missing_is_404() {
        let (_tmp, root) = fixture();
        assert_eq!(resolve(&root, "/nope.txt"), Err(FileError::NotFound));
        assert_eq!(resolve(&root, "/hello.txt/x"), Err(FileError::NotFound));
        assert_eq!(resolve(&root, "/.../x"), Err(FileError::NotFound));
        assert_eq!(
            resolve(&root.join("missing-root"), "/x"),
            Err(FileError::NotFound)
        );
        assert_eq!(FileError::NotFound.status(), 404);
    }

    #[test]
    fn traversal_and_encoding_attacks() {
        let (_tmp, root) = fixture();
        for (path, want) in [
            ("/../etc/passwd", FileError::Forbidden),
            ("/../outside/secret.txt", FileError::Forbidden),
            ("/%2e%2e/x", FileError::Forbidden),
            ("/%2e%2e/outside/secret.txt", FileError::Forbidden),
            ("/a/%2E%2e/b", FileError::Forbidden),
            ("/sub/..", FileError::Forbidden),
            ("/..", FileError::Forbidden),
            ("/.%2e/outside/secret.txt", FileError::Forbidden),
            ("/a%2fb", FileError::Forbidden),
            ("/sub%2Findex.html", FileError::Forbidden),
            ("/..%2f..%2fetc", FileError::Forbidden),
            ("/a\\b", FileError::Forbidden),
            ("/..\\outside", FileError::Forbidden),
            ("/a%5cb", FileError::Forbidden),
            ("/a%00b", FileError::BadRequest),
            ("/hello.txt%00.png", FileError::BadRequest),
            ("/a\0b", FileError::BadRequest),
            ("/%zz", FileError::BadRequest),
            ("/%4", FileError::BadRequest),
            ("/%", FileError::BadRequest),
            ("/%ff", FileError::BadRequest),
            ("/%c3%28", FileError::BadRequest),
            ("hello.txt", FileError::BadRequest),
            ("", FileError::BadRequest),
            ("*", FileError::BadRequest),
        ] {
            assert_eq!(resolve(&root, path), Err(want), "{path:?}");
        }
        assert_eq!(FileError::BadRequest.status(), 400);
        assert_eq!(FileError::Forbidden.status(), 403);
        assert_eq!(FileError::Forbidden.to_string(), "forbidden path (403)");
    }

    #[test]
    fn symlinks_must_stay_inside_root() {
        let (_tmp, root) = fixture();
        assert_eq!(resolve(&root, "/leak.txt"), Err(FileError::Forbidden));
        assert_eq!(resolve(&root, "/leakdir/secret.txt"), Err(FileError::Forbidden));
        // A link inside the root is fine, and typed by its own name.
        let r = resolve(&root, "/alias.txt").unwrap();
        assert_eq!(r.path, fs::canonicalize(root.join("hello.txt")).unwrap());
        // A root reached through a symlink is canonicalised too.
        let linked_root = root.parent().unwrap().join("rootlink");
        std::os::unix::fs::symlink(&root, &linked_root).unwrap();
        assert_eq!(resolve(&linked_root, "/hello.txt").unwrap().len, 20);
        assert_eq!(resolve(&linked_root, "/leak.txt"), Err(FileError::Forbidden));
    }

    #[test]
    fn non_regular_files_are_refused() {
        if Path::new("/dev/null").exists() {
            assert_eq!(resolve(Path::new("/dev"), "/null"), Err(FileError::Forbidden));
        }
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
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
        let p = plan(&req(""), &file);
        assert_eq!((p.status, p.range, p.body_len), (200, None, 20));
        assert_eq!(header(&p, "content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(header(&p, "last-modified"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(header(&p, "etag"), Some(etag(20, file.modified).as_str()));
        assert_eq!(header(&p, "accept-ranges"), Some("bytes"));
        assert_eq!(header(&p, "content-range"), None);

        let mut out = Vec::new();
        p.write_head(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(text.contains("\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"));
        assert!(text.contains("\r\nETag: \"14-2ebc98a1\"\r\n"));
    }

    #[test]
    fn not_modified_by_etag() {
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
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
            p.write_head(&mut out, true);
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
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
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
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
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
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
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
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
        for range in ["bytes=20-", "bytes=20-30", "bytes=100-200", "bytes=-0"] {
            let p = range_plan(&file, range);
            assert_eq!(p.status, 416, "{range}");
            assert_eq!(p.body_len, 0);
            assert_eq!(p.range, None);
            assert_eq!(header(&p, "content-range"), Some("bytes */20"));
        }
        let empty = resolve(&root, "/zero.txt").unwrap();
        assert_eq!(range_plan(&empty, "bytes=0-").status, 416);
        assert_eq!(range_plan(&empty, "bytes=-5").status, 200);
    }

    #[test]
    fn ignored_ranges_serve_200() {
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
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
        let (_tmp, root) = fixture();
        let file = resolve(&root, "/hello.txt").unwrap();
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
}
