//! The file server's cache of resolved files, in the manner of nginx's
//! `open_file_cache` but revalidated on every use, so that it never serves
//! what a fresh [`resolve`](super::resolve::resolve) would not.
//!
//! An entry maps a request path (query stripped, still percent-encoded: a
//! spelling always decodes to the same file path, so nothing is lost by
//! skipping the decoding on a hit) to what resolution found: the canonical
//! path, length, times, `Content-Type`, the precomputed field lines of a 200,
//! and for small files the content. A use `stat`s the path as built from the
//! request and compares the file's identity (device, inode, length, mtime and
//! ctime); any difference, or an error, drops the entry and resolves afresh,
//! containment check included. Failures (404, 403, 400) are never cached, so a
//! file created after a 404 is served at once.
//!
//! The symlink containment check runs when an entry is filled, not on each
//! hit: a hit is a file with the same device and inode as one that was inside
//! the root when checked. Retargeting a symlink on the path to another file
//! changes the inode seen by the `stat` and so refills.
//!
//! Content is cached only once the file's ctime is [`SETTLE`] in the past
//! (judged at the `now` the caller passes to [`FileCache::lookup`]).
//! Timestamps have a granularity (a kernel tick, or 2 s on FAT), so two
//! same-length writes within one tick leave identical metadata; a body read
//! between them would then look current forever. Once the ctime is older than
//! any tick, every later change gives a different ctime. Until then the file
//! is read from disk per request, like a large one.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use super::resolve::{self, FileError};
use crate::http::date::ImfFixdate;
use crate::http::files::{self, Resolved};
use crate::http::response::{write_head_end, write_head_start};

/// Largest file whose content is cached; bigger ones are streamed from disk.
pub(crate) const MAX_CACHED_FILE: usize = 64 << 10;

/// How old a file's last change must be before its content is cached: more
/// than the coarsest common timestamp granularity (FAT's 2 s).
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// What the revalidating `stat` must find unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<SystemTime>,
    /// Last status change: unlike mtime it cannot be set by `utimes`, so a
    /// rewrite that restores the old mtime is still seen.
    changed: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl Identity {
    #[cfg(unix)]
    fn of(m: &fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        let changed = u64::try_from(m.ctime()).ok().and_then(|s| {
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(s, m.ctime_nsec().clamp(0, 999_999_999) as u32))
        });
        Identity {
            len: m.len(),
            modified: m.modified().ok(),
            changed,
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    #[cfg(not(unix))]
    fn of(m: &fs::Metadata) -> Identity {
        Identity {
            len: m.len(),
            modified: m.modified().ok(),
            // No ctime: a content cache could miss an mtime-restoring rewrite.
            changed: None,
            dev: 0,
            ino: 0,
        }
    }

    /// Whether the file may still change without its metadata showing it
    /// (see the module docs); also true when the time is unknown.
    fn unsettled(&self, now: SystemTime, settle: Duration) -> bool {
        self.changed
            .and_then(|t| t.checked_add(settle))
            .is_none_or(|t| t > now)
    }
}

/// A resolved file, as the cache hands it out.
#[derive(Debug)]
pub(crate) struct CachedFile {
    resolved: Resolved,
    /// The path as built from the request, symlinks not followed: `stat`ing
    /// it sees a retargeted link or a replaced directory.
    stat_path: PathBuf,
    id: Identity,
    /// [`files::ok_fields`] of `resolved`.
    ok_fields: Box<[u8]>,
    body: Option<Box<[u8]>>,
    /// Used since the evictor last passed (second chance).
    referenced: Cell<bool>,
    seq: u64,
}

impl CachedFile {
    /// The file as [`resolve::resolve`] would have returned it.
    pub(crate) fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// The whole content, if cached.
    pub(crate) fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Appends exactly what [`files::plan`]`(req, self.resolved(), now).write_head`
    /// does for a request that [`files::is_unconditional`] accepts, from the
    /// precomputed fields.
    pub(crate) fn write_ok_head(&self, out: &mut Vec<u8>, keep_alive: bool, date: Option<&ImfFixdate>) {
        out.reserve(self.ok_fields.len() + 96 + self.body.as_ref().map_or(0, |b| b.len()));
        write_head_start(out, 200, date);
        out.extend_from_slice(&self.ok_fields);
        write_head_end(out, 200, None, keep_alive);
    }

    fn wants_body(&self, max_file: usize) -> bool {
        self.body.is_none() && self.resolved.len <= max_file as u64
    }
}

/// Size bounds of a [`FileCache`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Entries kept; 0 disables the cache (every request is resolved).
    pub(crate) max_entries: usize,
    /// Total bytes of cached content.
    pub(crate) max_bytes: usize,
    /// Largest file whose content is cached.
    pub(crate) max_file: usize,
    /// See [`SETTLE`]; tests shorten it.
    pub(crate) settle: Duration,
}

/// Resolved files under one document root, with the root canonicalised once.
pub(crate) struct FileCache {
    root: PathBuf,
    root_canon: Option<PathBuf>,
    root_error_logged: bool,
    limits: Limits,
    map: HashMap<Rc<str>, Rc<CachedFile>>,
    /// Insertion order for eviction; an item whose seq is not the map's is
    /// stale (its entry was replaced or dropped) and skipped.
    order: VecDeque<(Rc<str>, u64)>,
    bytes: usize,
    next_seq: u64,
}

impl FileCache {
    /// A cache for files under `root`, which need not exist yet (it is
    /// canonicalised at the first request that finds it).
    pub(crate) fn new(root: PathBuf, limits: Limits) -> FileCache {
        let max_file = limits.max_file.min(limits.max_bytes);
        FileCache {
            root,
            root_canon: None,
            root_error_logged: false,
            limits: Limits { max_file, ..limits },
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    /// The file for `request_path`, as [`resolve::resolve`] would map it
    /// (same errors), from the cache when the file is unchanged. `now` is
    /// the current time, for the settle check.
    pub(crate) fn lookup(
        &mut self,
        request_path: &str,
        now: SystemTime,
    ) -> Result<Rc<CachedFile>, FileError> {
        let key = request_path.split('?').next().unwrap_or("");
        if let Some(e) = self.map.get(key) {
            match fs::metadata(&e.stat_path) {
                Ok(m) if m.is_file() && Identity::of(&m) == e.id => {
                    if !e.wants_body(self.limits.max_file) || e.id.unsettled(now, self.limits.settle) {
                        e.referenced.set(true);
                        return Ok(e.clone());
                    }
                    // Settled since it was filled: the mapping still holds, only
                    // the content is to be read.
                    let e = e.clone();
                    let body = load_body(&e.resolved.path, &e.id, now, self.limits.settle);
                    let entry = CachedFile {
                        resolved: e.resolved.clone(),
                        stat_path: e.stat_path.clone(),
                        id: e.id,
                        ok_fields: e.ok_fields.clone(),
                        body,
                        referenced: Cell::new(true),
                        seq: 0,
                    };
                    self.remove(key);
                    return Ok(self.insert(key, entry));
                }
                _ => {
                    self.remove(key);
                }
            }
        }
        let root = self.root_canon()?;
        let (resolved, stat_path, meta) = resolve::resolve_in(root, key)?;
        let id = Identity::of(&meta);
        let body = (resolved.len <= self.limits.max_file as u64 && self.limits.max_entries > 0)
            .then(|| load_body(&resolved.path, &id, now, self.limits.settle))
            .flatten();
        let entry = CachedFile {
            ok_fields: files::ok_fields(&resolved).into_boxed_slice(),
            resolved,
            stat_path,
            id,
            body,
            referenced: Cell::new(false),
            seq: 0,
        };
        Ok(self.insert(key, entry))
    }

    fn root_canon(&mut self) -> Result<&Path, FileError> {
        if self.root_canon.is_none() {
            // Logged once: a missing root would otherwise log per request.
            let canon = resolve::canonical_root(&self.root, !self.root_error_logged);
            self.root_error_logged |= canon.is_err();
            self.root_canon = Some(canon?);
        }
        Ok(self.root_canon.as_deref().expect("just set"))
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.body.as_ref().map_or(0, |b| b.len());
        }
    }

    /// Adds `entry` under `key`, evicting to stay within the limits; the
    /// entry is returned (uncached if it cannot fit).
    fn insert(&mut self, key: &str, mut entry: CachedFile) -> Rc<CachedFile> {
        let size = entry.body.as_ref().map_or(0, |b| b.len());
        while self.map.len() >= self.limits.max_entries || self.bytes + size > self.limits.max_bytes {
            if !self.evict_one() {
                return Rc::new(entry);
            }
        }
        entry.seq = self.next_seq;
        self.next_seq += 1;
        let key: Rc<str> = key.into();
        self.order.push_back((key.clone(), entry.seq));
        let entry = Rc::new(entry);
        self.map.insert(key, entry.clone());
        self.bytes += size;
        // Stale order items are only dropped when reached; bound them.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
        entry
    }

    /// Drops the oldest entry not used since the evictor last passed it.
    fn evict_one(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            let Some(e) = self.map.get(&key) else {
                continue;
            };
            if e.seq != seq {
                continue;
            }
            if e.referenced.replace(false) {
                self.order.push_back((key, seq));
                continue;
            }
            self.remove(&key);
            return true;
        }
        false
    }

    #[cfg(test)]
    fn stats(&self) -> (usize, usize) {
        (self.map.len(), self.bytes)
    }
}

/// The content of the file at `path` if it is still `id` before and after
/// the read and has settled by `now`; otherwise `None` (it is streamed
/// instead).
fn load_body(path: &Path, id: &Identity, now: SystemTime, settle: Duration) -> Option<Box<[u8]>> {
    if id.unsettled(now, settle) {
        return None;
    }
    let mut f = fs::File::open(path).ok()?;
    let same = |f: &fs::File| f.metadata().is_ok_and(|m| Identity::of(&m) == *id);
    if !same(&f) {
        return None;
    }
    let len = usize::try_from(id.len).ok()?;
    let mut body = Vec::with_capacity(len);
    // One byte over the length tells a file that grew from one that did not.
    (&mut f).take(id.len + 1).read_to_end(&mut body).ok()?;
    (body.len() == len && same(&f)).then(|| body.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileserver::TempDir;
    use crate::http::request::{parse_head, Limits as ReqLimits};
    use crate::http::DateCache;
    use std::time::UNIX_EPOCH;

    fn dirs() -> TempDir {
        let t = TempDir::new("wsr-file-cache");
        fs::create_dir_all(t.0.join("root/sub")).unwrap();
        fs::create_dir_all(t.0.join("outside")).unwrap();
        t
    }

    impl TempDir {
        fn root(&self) -> PathBuf {
            self.0.join("root")
        }
    }

    /// The tests on real files judge settling by the real clock.
    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn limits() -> Limits {
        Limits {
            max_entries: 16,
            max_bytes: 1 << 20,
            max_file: MAX_CACHED_FILE,
            settle: Duration::ZERO,
        }
    }

    fn cache(t: &TempDir) -> FileCache {
        FileCache::new(t.root(), limits())
    }

    fn set_mtime(path: &Path, secs: u64) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn hit_is_the_same_entry_with_content() {
        let t = dirs();
        fs::write(t.root().join("a.txt"), b"hello").unwrap();
        let mut c = cache(&t);
        let a = c.lookup("/a.txt?x=1", now()).unwrap();
        assert_eq!(a.body(), Some(&b"hello"[..]));
        let b = c.lookup("/a.txt", now()).unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(*b.resolved(), resolve::resolve(&t.root(), "/a.txt").unwrap());
        assert_eq!(c.stats(), (1, 5));
    }

    #[test]
    fn changes_are_seen() {
        let t = dirs();
        let p = t.root().join("a.txt");
        fs::write(&p, b"one").unwrap();
        set_mtime(&p, 1_000_000);
        let mut c = cache(&t);
        assert_eq!(c.lookup("/a.txt", now()).unwrap().body(), Some(&b"one"[..]));
        // Different length.
        fs::write(&p, b"three").unwrap();
        set_mtime(&p, 1_000_000);
        assert_eq!(c.lookup("/a.txt", now()).unwrap().body(), Some(&b"three"[..]));
        // Same length, mtime set back to what it was: the ctime still moves.
        fs::write(&p, b"THREE").unwrap();
        set_mtime(&p, 1_000_000);
        let e = c.lookup("/a.txt", now()).unwrap();
        assert_eq!(e.body(), Some(&b"THREE"[..]));
        // Deleted: 404, and the entry is gone.
        fs::remove_file(&p).unwrap();
        assert_eq!(c.lookup("/a.txt", now()).unwrap_err(), FileError::NotFound);
        assert_eq!(c.stats(), (0, 0));
        // Created after the 404.
        fs::write(&p, b"back").unwrap();
        assert_eq!(c.lookup("/a.txt", now()).unwrap().body(), Some(&b"back"[..]));
        // Replaced by a directory with an index.
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        fs::write(p.join("index.html"), b"<p>dir</p>").unwrap();
        let e = c.lookup("/a.txt", now()).unwrap();
        assert_eq!(e.body(), Some(&b"<p>dir</p>"[..]));
        assert_eq!(e.resolved().content_type, "text/html; charset=utf-8");
    }

    #[test]
    fn unsettled_files_are_not_held() {
        let t = dirs();
        fs::write(t.root().join("a.txt"), b"fresh").unwrap();
        let mut c = FileCache::new(
            t.root(),
            Limits {
                settle: Duration::from_secs(3600),
                ..limits()
            },
        );
        let e = c.lookup("/a.txt", now()).unwrap();
        assert_eq!(e.body(), None);
        assert_eq!(e.resolved().len, 5);
        // The metadata is cached all the same.
        assert!(Rc::ptr_eq(&e, &c.lookup("/a.txt", now()).unwrap()));
        // Once settled (time driven by the caller), the next hit reads the
        // content.
        let later = now() + Duration::from_secs(3601);
        assert_eq!(c.lookup("/a.txt", later).unwrap().body(), Some(&b"fresh"[..]));
        assert_eq!(c.stats(), (1, 5));
        // A fresh entry judged an hour on is filled with content at once.
        fs::write(t.root().join("b.txt"), b"new").unwrap();
        assert_eq!(c.lookup("/b.txt", later).unwrap().body(), Some(&b"new"[..]));
    }

    #[test]
    fn symlinks_checked_at_fill_and_retargeting_seen() {
        use std::os::unix::fs::symlink;
        let t = dirs();
        fs::write(t.root().join("a.txt"), b"inside").unwrap();
        fs::write(t.0.join("outside/secret.txt"), b"secret").unwrap();
        let link = t.root().join("link.txt");
        symlink("a.txt", &link).unwrap();
        let mut c = cache(&t);
        assert_eq!(c.lookup("/link.txt", now()).unwrap().body(), Some(&b"inside"[..]));
        fs::remove_file(&link).unwrap();
        symlink(t.0.join("outside/secret.txt"), &link).unwrap();
        assert_eq!(c.lookup("/link.txt", now()).unwrap_err(), FileError::Forbidden);
        // A directory on the path swapped for a link to outside.
        fs::write(t.root().join("sub/x.txt"), b"x").unwrap();
        assert!(c.lookup("/sub/x.txt", now()).is_ok());
        fs::rename(t.root().join("sub"), t.0.join("moved")).unwrap();
        fs::write(t.0.join("outside/x.txt"), b"y").unwrap();
        symlink(t.0.join("outside"), t.root().join("sub")).unwrap();
        assert_eq!(c.lookup("/sub/x.txt", now()).unwrap_err(), FileError::Forbidden);
        // Errors are the same as resolve's and not cached.
        for p in ["/../x", "/%00", "/nope", "/sub/../a.txt"] {
            assert_eq!(
                c.lookup(p, now()).unwrap_err(),
                resolve::resolve(&t.root(), p).unwrap_err(),
                "{p}"
            );
        }
    }

    #[test]
    fn bounds_and_eviction() {
        let t = dirs();
        for i in 0..10 {
            fs::write(t.root().join(format!("{i}.txt")), vec![b'x'; 100]).unwrap();
        }
        fs::write(t.root().join("big.bin"), vec![0u8; 5000]).unwrap();
        let mut c = FileCache::new(
            t.root(),
            Limits {
                max_entries: 4,
                max_bytes: 350,
                max_file: 1000,
                settle: Duration::ZERO,
            },
        );
        // Too big for content: metadata only.
        let big = c.lookup("/big.bin", now()).unwrap();
        assert_eq!((big.body(), big.resolved().len), (None, 5000));
        for i in 0..10 {
            let e = c.lookup(&format!("/{i}.txt"), now()).unwrap();
            assert_eq!(e.body().map(<[u8]>::len), Some(100));
            let (n, bytes) = c.stats();
            assert!(n <= 4 && bytes <= 350, "{n} {bytes}");
            // Keep 0.txt hot: second chance keeps it through the churn.
            c.lookup("/0.txt", now()).unwrap();
        }
        assert!(c.map.contains_key("/0.txt"));
        assert!(c.order.len() <= 2 * c.map.len() + 64);
        // Disabled.
        let mut off = FileCache::new(
            t.root(),
            Limits {
                max_entries: 0,
                ..limits()
            },
        );
        let e = off.lookup("/1.txt", now()).unwrap();
        assert_eq!((e.body(), off.stats()), (None, (0, 0)));
    }

    #[test]
    fn ok_head_is_byte_identical_to_plan() {
        let t = dirs();
        fs::write(t.root().join("a.txt"), b"hello").unwrap();
        set_mtime(&t.root().join("a.txt"), 1_577_836_800);
        fs::write(t.root().join("index.html"), b"<p>i</p>").unwrap();
        fs::write(t.root().join("x.bin"), b"").unwrap();
        let mut c = cache(&t);
        let req = parse_head(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
            &ReqLimits::default(),
        )
        .unwrap();
        assert!(files::is_unconditional(&req));
        for path in ["/a.txt", "/", "/x.bin"] {
            let e = c.lookup(path, now()).unwrap();
            for keep in [true, false] {
                // The same time, so the same Date line.
                let mut dates = DateCache::new();
                let date = dates.at(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
                let mut a = Vec::new();
                e.write_ok_head(&mut a, keep, Some(date));
                let mut b = Vec::new();
                files::plan(&req, e.resolved(), now()).write_head(&mut b, keep, Some(date));
                assert!(a.starts_with(b"HTTP/1.1 200 OK\r\nDate: Sun, 13 Sep 2020 12:26:40 GMT\r\n"));
                assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            }
        }
        for extra in [
            "If-None-Match: \"x\"",
            "if-modified-since: x",
            "If-Match: *",
            "If-Unmodified-Since: x",
            "RANGE: bytes=0-1",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n\r\n");
            let req = parse_head(head.as_bytes(), &ReqLimits::default()).unwrap();
            assert!(!files::is_unconditional(&req), "{extra}");
        }
    }
}
