//! The file server: the part of static-file serving that touches the
//! filesystem, beside the reactor. The HTTP decisions (preconditions,
//! ranges, heads) are the sans-IO [`crate::http::files`]; this module finds
//! files and reads them.
//!
//! * [`resolve()`]: safe mapping of a request path to a regular file under a
//!   document root (percent-decoding, traversal and symlink checks, index
//!   files, `Content-Type`).
//! * `cache` (crate-private): the per-context cache of resolved files and
//!   small files' content, revalidated with one `stat` per use.
//! * [`stream`]: [`FileStream`], a file body sent a chunk at a time.
//!
//! Nothing here reads the clock; where time matters (the cache's settle
//! check) the caller passes `now`.

pub(crate) mod cache;
pub mod resolve;
pub mod stream;

pub use resolve::{content_type, resolve, FileError};
pub use stream::{FileStream, FILE_CHUNK};

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
