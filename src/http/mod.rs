//! Sans-IO HTTP/1.1 server side: everything between bytes read from a
//! socket and bytes to write back, with no sockets here.
//!
//! * [`request`]: finding the end of a request head incrementally
//!   ([`HeadScanner`]) and parsing it with its smuggling checks
//!   ([`parse_head`]), RFC 9112 §2–§7.
//! * [`chunked`]: decoding chunked request bodies, RFC 9112 §7.1.
//! * [`response`]: writing response heads and small HTML status pages.
//! * [`files`]: static files — safe path mapping under a document root,
//!   conditional requests (RFC 9110 §13) and byte ranges (RFC 9110 §14).
//! * [`date`]: HTTP-date formatting and parsing, RFC 9110 §5.6.7.
//!
//! A connection typically: appends reads to its buffer and calls
//! [`HeadScanner::scan`]; on `Complete(n)` calls [`parse_head`] on
//! `buf[..n]`; answers errors with [`status_page`] using the error's
//! status; reads a body by `Content-Length` or with [`ChunkedDecoder`];
//! drains the request and [`HeadScanner::reset`]s for the next one.

pub mod chunked;
pub mod date;
pub(crate) mod file_cache;
pub mod files;
pub mod request;
pub mod response;

pub use chunked::{Chunk, ChunkedDecoder};
pub use date::{http_date, parse_http_date, DateCache};
pub use files::{etag, plan, resolve, FileError, Plan, Resolved};
pub use request::{parse_head, HeadScanner, HttpError, Limits, Method, Request, Scan};
pub use response::{reason_phrase, status_page, write_head};

/// A scratch directory for the file-serving unit tests, removed on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

#[cfg(test)]
impl TempDir {
    /// A new empty directory, unique per process and call.
    pub(crate) fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
