//! Safe mapping of a request path to a regular file under a document root.
//!
//! [`resolve`] refuses rather than normalises: after percent-decoding
//! (RFC 3986 §2.1, with the `percent-encoding` crate), a `..` segment, an
//! encoded slash (`%2F`, which would change the segment structure) or any
//! backslash is 403; malformed escapes, NUL and non-UTF-8 are 400. Empty and
//! `.` segments are skipped. A directory is served by its `index.html`
//! directly, with or without a trailing slash (no redirect; there is no
//! directory listing). Symlinks are followed only if the final file's
//! canonical path is still inside the canonical root.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use percent_encoding::{percent_decode, percent_decode_str};

use crate::http::files::Resolved;

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

/// Checks a raw request path left to right for what decoding must not let
/// through: a malformed escape, NUL (400); an escaped slash, a backslash
/// plain or escaped (403). The first offence found decides the error.
fn check_escapes(path: &str) -> Result<(), FileError> {
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let esc = b
                .get(i..i + 3)
                .filter(|e| e[1].is_ascii_hexdigit() && e[2].is_ascii_hexdigit())
                .ok_or(FileError::BadRequest)?;
            i += 3;
            match percent_decode(esc).next() {
                Some(b'/') => return Err(FileError::Forbidden),
                Some(c) => c,
                None => return Err(FileError::BadRequest),
            }
        } else {
            i += 1;
            b[i - 1]
        };
        match c {
            0 => return Err(FileError::BadRequest),
            b'\\' => return Err(FileError::Forbidden),
            _ => {}
        }
    }
    Ok(())
}

/// Percent-decodes a path, refusing the escapes that could smuggle a
/// separator or terminator past the segment checks (see [`check_escapes`]),
/// and anything that does not decode to UTF-8 (400).
fn decode_path(path: &str) -> Result<String, FileError> {
    check_escapes(path)?;
    percent_decode_str(path)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| FileError::BadRequest)
}

fn io_error(e: &io::Error) -> FileError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => FileError::Forbidden,
        _ => FileError::NotFound,
    }
}

/// `Content-Type` value for `path`'s extension, with `charset=utf-8` on the types browsers
/// would otherwise guess a charset for.
pub fn content_type(path: &Path) -> String {
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

/// Maps `request_path` (a request's path, e.g. [`Request::path`](crate::http::Request::path); a
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileserver::TempDir;
    use std::time::{Duration, UNIX_EPOCH};

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
    fn decoding_matches_the_old_rules() {
        for (path, want) in [
            ("/a%20b", Ok("/a b")),
            ("/%41%62%63", Ok("/Abc")),
            ("/caf%C3%A9", Ok("/caf\u{e9}")),
            ("/\u{e9}t\u{e9}", Ok("/\u{e9}t\u{e9}")),
            ("/a+b", Ok("/a+b")),
            ("/%2e%2E", Ok("/..")),
            // The first offence, left to right, decides.
            ("/%2f%zz", Err(FileError::Forbidden)),
            ("/%zz%2f", Err(FileError::BadRequest)),
            ("/%00%5c", Err(FileError::BadRequest)),
            ("/%5c%00", Err(FileError::Forbidden)),
            ("/%5C", Err(FileError::Forbidden)),
            ("/%2F", Err(FileError::Forbidden)),
            ("/%\u{e9}", Err(FileError::BadRequest)),
            ("/%e\u{e9}", Err(FileError::BadRequest)),
            ("/%c3", Err(FileError::BadRequest)),
            ("/%e2%82", Err(FileError::BadRequest)),
        ] {
            let got = decode_path(path);
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{path:?}");
        }
    }
}
