//! Streaming a file (or a byte range of one) as a response body, one chunk
//! per drained out buffer, so that a large file never sits in memory and a
//! slow client holds only one chunk.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes of a file read per chunk.
pub const FILE_CHUNK: usize = 64 << 10;

/// A file body still to be sent: the open file, positioned at the next byte
/// to send, and how many bytes are left.
#[derive(Debug)]
pub struct FileStream {
    file: File,
    remaining: u64,
}

impl FileStream {
    /// Opens `path` to send `len` bytes from offset `start` (a range, or
    /// `0` and the whole length).
    pub fn open(path: &Path, start: u64, len: u64) -> io::Result<FileStream> {
        let mut file = File::open(path)?;
        if start > 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        Ok(FileStream { file, remaining: len })
    }

    /// Opens `path` to send all of it, as long as the opened file is now.
    pub fn open_whole(path: &Path) -> io::Result<FileStream> {
        let file = File::open(path)?;
        let remaining = file.metadata()?.len();
        Ok(FileStream { file, remaining })
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Replaces the contents of `out` (which must hold nothing still to be
    /// sent) with the next chunk, at most [`FILE_CHUNK`] bytes. Returns
    /// whether that was the last one.
    ///
    /// The previous chunk's bytes are overwritten in place: `out` is only
    /// zero-filled where it grows, not all 64 KiB for every chunk. A file
    /// that ends before the promised length is an `UnexpectedEof` error
    /// (the head is out already, so only closing the connection is honest).
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let want = self.remaining.min(FILE_CHUNK as u64) as usize;
        if out.len() < want {
            out.resize(want, 0);
        } else {
            out.truncate(want);
        }
        if want == 0 {
            return Ok(true);
        }
        loop {
            match self.file.read(&mut out[..want]) {
                Ok(0) => {
                    out.clear();
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ended {} bytes early", self.remaining),
                    ));
                }
                Ok(n) => {
                    out.truncate(n);
                    self.remaining -= n as u64;
                    return Ok(self.remaining == 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.clear();
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileserver::TempDir;

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Drains a stream chunk by chunk into one vector.
    fn drain(s: &mut FileStream, out: &mut Vec<u8>) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let last = s.next_chunk(out)?;
            assert!(out.len() <= FILE_CHUNK);
            all.extend_from_slice(out);
            if last {
                return Ok(all);
            }
        }
    }

    #[test]
    fn whole_file_in_chunks() {
        let t = TempDir::new("wsr-stream");
        let data = content(FILE_CHUNK * 2 + 123);
        let p = t.0.join("f.bin");
        std::fs::write(&p, &data).unwrap();
        let mut s = FileStream::open_whole(&p).unwrap();
        assert_eq!(s.remaining(), data.len() as u64);
        // A buffer with stale bytes in it is overwritten, not appended to.
        let mut out = vec![0xAA; 10];
        assert_eq!(drain(&mut s, &mut out).unwrap(), data);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn range_and_early_end() {
        let t = TempDir::new("wsr-stream");
        let data = content(1000);
        let p = t.0.join("f.bin");
        std::fs::write(&p, &data).unwrap();
        let mut out = vec![1; FILE_CHUNK + 5];
        let mut s = FileStream::open(&p, 100, 50).unwrap();
        assert_eq!(drain(&mut s, &mut out).unwrap(), &data[100..150]);
        // Promised more than the file holds: an error, never a short body.
        let mut s = FileStream::open(&p, 990, 20).unwrap();
        assert!(!s.next_chunk(&mut out).unwrap());
        assert_eq!(out, &data[990..]);
        let e = s.next_chunk(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(FileStream::open(&t.0.join("missing"), 0, 1).is_err());
    }
}
