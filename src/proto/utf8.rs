//! Streaming UTF-8 validation for text messages (RFC 6455 §8.1).
//!
//! A text message may be split into frames, and frames into reads, at any byte, even
//! inside a code point. The validator keeps at most three bytes of an unfinished code
//! point between chunks, and reports an error as soon as a byte makes the text invalid
//! ("fail fast"), not at the end of the message. Whole chunks go through
//! `std::str::from_utf8`, which is vectorised for ASCII.

/// Error: the text is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8 in text")
    }
}

impl std::error::Error for Utf8Error {}

/// Incremental UTF-8 validator.
///
/// ```
/// use wsreactor::proto::utf8::Utf8Validator;
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::new();
/// v.feed(&euro[..1]).unwrap();
/// assert!(!v.is_complete());
/// v.feed(&euro[1..]).unwrap();
/// assert!(v.is_complete());
/// assert!(v.feed(&[0xff]).is_err()); // fails on the byte, not at the end
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// True when no code point is left unfinished: the text so far may end here.
    #[inline]
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Forgets any state, for the next message.
    #[inline]
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Validates the next chunk of the text.
    ///
    /// Returns an error as soon as the bytes seen so far cannot begin a valid text.
    #[inline]
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            // Finish the code point left over from the previous chunk, one byte at a time:
            // it needs at most three more bytes.
            while self.pending_len > 0 {
                let Some((&b, rest)) = chunk.split_first() else {
                    return Ok(());
                };
                self.pending[self.pending_len as usize] = b;
                let len = self.pending_len as usize + 1;
                match std::str::from_utf8(&self.pending[..len]) {
                    Ok(_) => self.pending_len = 0,
                    Err(e) if e.error_len().is_none() => self.pending_len = len as u8,
                    Err(_) => return Err(Utf8Error),
                }
                chunk = rest;
            }
        }
        // Fast path for the common all-ASCII chunk.
        if chunk.is_ascii() {
            return Ok(());
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            // `error_len() == None` means the chunk ends inside a code point that is
            // still a valid prefix: keep it for the next chunk.
            Err(e) if e.error_len().is_none() => {
                let tail = &chunk[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(bytes: &[u8]) -> (bool, bool) {
        // returns (valid when fed whole, valid for every 2- and 3-way split)
        let whole = std::str::from_utf8(bytes).is_ok();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&bytes[..i]).is_ok()
                    && v.feed(&bytes[i..j]).is_ok()
                    && v.feed(&bytes[j..]).is_ok()
                    && v.is_complete();
                assert_eq!(ok, whole, "{bytes:x?} split {i} {j}");
            }
        }
        (whole, true)
    }

    #[test]
    fn agrees_with_std_on_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            b"\xf0\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64",
            b"ab\xe2\x82",
            b"\xff",
            b"",
        ];
        for s in samples {
            check_all_splits(s);
        }
    }

    #[test]
    fn fails_fast_on_invalid_prefix() {
        // 0xf4 0x90 can never start a valid code point: error on the second byte, before
        // the sequence would be complete.
        let mut v = Utf8Validator::new();
        v.feed(b"ok\xf4").unwrap();
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));
        // a truncated sequence is only an error at the end of the message
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        assert!(!v.is_complete());
    }
}
