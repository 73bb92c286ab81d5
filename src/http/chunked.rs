//! Decoding `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! [`ChunkedDecoder`] is a byte-level state machine, so input may be split
//! anywhere and each byte of framing is examined once. Chunk data is handed
//! out as slices of the caller's input, never copied. Chunk extensions are
//! accepted and ignored (RFC 9112 §7.1.1 says to ignore unrecognised ones);
//! trailer fields are skipped (RFC 9112 §7.1.2 lets a recipient discard
//! them). Line ends must be CRLF: tolerating bare LF inside chunked framing
//! is a known request-smuggling vector when a proxy disagrees.
//!
//! Abuse limits: a chunk-size line (size plus extensions) longer than
//! [`MAX_SIZE_LINE`] bytes, a size that overflows `u64`, or a trailer
//! section longer than the trailer limit → 400. The body size limit is the
//! caller's, by summing the `Data` lengths.

use super::request::HttpError;

/// Longest chunk-size line accepted, extensions included, without CRLF.
pub const MAX_SIZE_LINE: usize = 1024;

/// Default limit on the trailer section's size, in bytes.
pub const DEFAULT_MAX_TRAILER: usize = 8192;

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Body bytes: a non-empty slice of the input.
    Data(&'a [u8]),
    /// All input was consumed without completing anything; supply more.
    NeedMore,
    /// The body, including trailers and the final CRLF, is complete. Bytes
    /// after the consumed count belong to the next request.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits (accumulated in `size`).
    Size,
    /// After the digits: optional whitespace and `;ext[=val]` up to CR.
    Ext,
    /// Size line's CR seen; LF must follow.
    SizeLf,
    /// Inside chunk-data.
    Data {
        remaining: u64,
    },
    /// Chunk-data ended; CR must follow.
    DataCr,
    /// Chunk-data's CR seen; LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Trailer field line's CR seen; LF must follow.
    TrailerLf,
    /// The final empty line's CR seen; LF must follow.
    FinalLf,
    Done,
    Failed(HttpError),
}

/// Incremental decoder for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, then the size of the chunk announced.
    size: u64,
    /// Hex digits read for `size`.
    digits: usize,
    /// Bytes in the current size line, to enforce [`MAX_SIZE_LINE`].
    line_len: usize,
    trailer_len: usize,
    max_trailer: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

const fn bad(reason: &'static str) -> HttpError {
    HttpError::new(400, reason)
}

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Bytes allowed inside extensions and trailer lines: visible characters,
/// SP, HTAB and obs-text; no other controls.
fn is_line_byte(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

impl ChunkedDecoder {
    /// A decoder at the start of a body, with [`DEFAULT_MAX_TRAILER`].
    pub fn new() -> Self {
        Self::with_trailer_limit(DEFAULT_MAX_TRAILER)
    }

    /// A decoder allowing at most `max_trailer` bytes of trailer fields.
    pub fn with_trailer_limit(max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
            max_trailer,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, which starts right after what the previous call
    /// consumed. Returns how many bytes were consumed and what was found;
    /// the caller drops the consumed bytes and calls again (with more input
    /// after `NeedMore`) until `Done`.
    ///
    /// Framing bytes are remembered in the decoder's state, so `NeedMore`
    /// always consumes all of `input`. After an error every further call
    /// returns the same error.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Chunk<'a>), HttpError> {
        let mut i = 0;
        loop {
            match self.state {
                State::Done => return Ok((i, Chunk::Done)),
                State::Failed(e) => return Err(e),
                _ if i == input.len() => return Ok((i, Chunk::NeedMore)),
                State::Data { remaining } => {
                    let avail = input.len() - i;
                    let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok((i + n, Chunk::Data(&input[i..i + n])));
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Advances the framing state machine by one byte (never in `Data`).
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size => {
                if b != b'\r' {
                    self.count_line()?;
                }
                if let Some(v) = hex_value(b) {
                    // Leading zeros are harmless; only significant digits
                    // can overflow.
                    if self.size > u64::MAX >> 4 {
                        return Err(bad("chunk size overflows"));
                    }
                    self.size = self.size << 4 | v;
                    self.digits += 1;
                    State::Size
                } else if self.digits == 0 {
                    return Err(bad("missing chunk size"));
                } else {
                    match b {
                        b'\r' => State::SizeLf,
                        // BWS before ';' is allowed by the chunk-ext rule.
                        b';' | b' ' | b'\t' => State::Ext,
                        _ => return Err(bad("invalid chunk size")),
                    }
                }
            }
            State::Ext => {
                if b != b'\r' {
                    self.count_line()?;
                }
                match b {
                    b'\r' => State::SizeLf,
                    _ if is_line_byte(b) => State::Ext,
                    _ => return Err(bad("invalid byte in chunk extension")),
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(bad("chunk size line not ended by CRLF"));
                }
                match self.size {
                    0 => State::TrailerStart,
                    n => State::Data { remaining: n },
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => {
                self.size = 0;
                self.digits = 0;
                self.line_len = 0;
                State::Size
            }
            State::DataCr | State::DataLf => return Err(bad("chunk data not followed by CRLF")),
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                // A line starting with whitespace would be obs-fold.
                _ if is_line_byte(b) && b != b' ' && b != b'\t' => {
                    self.count_trailer()?;
                    State::TrailerLine
                }
                _ => return Err(bad("invalid trailer field")),
            },
            State::TrailerLine => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::TrailerLf,
                    _ if is_line_byte(b) => State::TrailerLine,
                    _ => return Err(bad("invalid byte in trailer field")),
                }
            }
            State::TrailerLf if b == b'\n' => {
                self.count_trailer()?;
                State::TrailerStart
            }
            State::TrailerLf => return Err(bad("trailer field not ended by CRLF")),
            State::FinalLf if b == b'\n' => State::Done,
            State::FinalLf => return Err(bad("chunked body not ended by CRLF")),
            // `decode` handles these without calling `step`.
            State::Data { .. } | State::Done | State::Failed(_) => self.state,
        };
        Ok(())
    }

    fn count_line(&mut self) -> Result<(), HttpError> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(bad("chunk size line too long"));
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), HttpError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailer {
            return Err(bad("trailer section too large"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"4\r\nWiki\r\n5;name=val;q=\"a b\"\r\npedia\r\nE \t;x\r\n in\r\n\r\nchunks.\r\n000\r\nTrailer: x\r\nOther: y\r\n\r\n";
    const DATA: &[u8] = b"Wikipedia in\r\n\r\nchunks.";
    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\n";

    /// Runs a decoder over `parts` the way a connection would: append each
    /// read to a buffer, decode until `NeedMore`, drain what was consumed.
    /// Returns (data, leftover after Done, done?).
    fn drive(dec: &mut ChunkedDecoder, parts: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), HttpError> {
        let mut buf = Vec::new();
        let mut data = Vec::new();
        for part in parts {
            buf.extend_from_slice(part);
            loop {
                let (n, chunk) = dec.decode(&buf)?;
                match chunk {
                    Chunk::Data(d) => {
                        assert!(!d.is_empty());
                        data.extend_from_slice(d);
                        buf.drain(..n);
                    }
                    Chunk::NeedMore => {
                        assert_eq!(n, buf.len(), "NeedMore must consume everything");
                        buf.drain(..n);
                        break;
                    }
                    Chunk::Done => {
                        buf.drain(..n);
                        return Ok((data, buf, true));
                    }
                }
            }
        }
        Ok((data, buf, false))
    }

    fn body_with_next() -> Vec<u8> {
        [BODY, NEXT].concat()
    }

    #[test]
    fn decodes_whole() {
        let input = body_with_next();
        let mut dec = ChunkedDecoder::new();
        let (data, rest, done) = drive(&mut dec, &[&input]).unwrap();
        assert!(done && dec.is_done());
        assert_eq!(data, DATA);
        assert_eq!(rest, NEXT);
        // Further calls keep saying Done without consuming.
        assert_eq!(dec.decode(NEXT).unwrap(), (0, Chunk::Done));
    }

    #[test]
    fn data_is_borrowed_from_input() {
        let mut dec = ChunkedDecoder::new();
        let (n, chunk) = dec.decode(BODY).unwrap();
        assert_eq!(n, 7);
        let Chunk::Data(d) = chunk else { panic!() };
        assert_eq!(d, b"Wiki");
        assert_eq!(d.as_ptr(), BODY[3..].as_ptr());
    }

    #[test]
    fn byte_at_a_time() {
        let input = body_with_next();
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        let mut dec = ChunkedDecoder::new();
        let (data, rest, done) = drive(&mut dec, &parts).unwrap();
        assert!(done);
        assert_eq!(data, DATA);
        // Done on the body's last byte, before any of the next request.
        assert!(rest.is_empty());
    }

    #[test]
    fn every_two_way_split() {
        let input = body_with_next();
        for cut in 0..=input.len() {
            let mut dec = ChunkedDecoder::new();
            let (data, rest, done) = drive(&mut dec, &[&input[..cut], &input[cut..]]).unwrap();
            assert!(done, "cut {cut}");
            assert_eq!(data, DATA, "cut {cut}");
            let expect_rest = if cut >= BODY.len() {
                &input[BODY.len()..cut]
            } else {
                NEXT
            };
            assert_eq!(rest, expect_rest, "cut {cut}");
        }
    }

    #[test]
    fn partial_body_needs_more() {
        let mut dec = ChunkedDecoder::new();
        let (data, _, done) = drive(&mut dec, &[&BODY[..BODY.len() - 1]]).unwrap();
        assert!(!done && !dec.is_done());
        assert_eq!(data, DATA);
    }

    #[test]
    fn sizes_at_the_limits() {
        let mut dec = ChunkedDecoder::new();
        assert_eq!(
            dec.decode(b"0000000000000000000000004\r\n").unwrap().1,
            Chunk::NeedMore
        );
        assert_eq!(dec.decode(b"abcd").unwrap(), (4, Chunk::Data(b"abcd")));

        // The largest size parses; the data would simply never end.
        let mut dec = ChunkedDecoder::new();
        let (n, c) = dec.decode(b"FFFFFFFFFFFFFFFF\r\nxy").unwrap();
        assert_eq!((n, c), (20, Chunk::Data(b"xy")));
        assert_eq!(
            dec.state,
            State::Data {
                remaining: u64::MAX - 2
            }
        );

        let mut dec = ChunkedDecoder::new();
        let e = dec.decode(b"1FFFFFFFFFFFFFFFF\r\n").unwrap_err();
        assert_eq!((e.status, e.reason), (400, "chunk size overflows"));

        // Exactly MAX_SIZE_LINE bytes of size line is accepted...
        let mut line = b"1;".to_vec();
        line.resize(MAX_SIZE_LINE, b'x');
        line.extend_from_slice(b"\r\nZ\r\n0\r\n\r\n");
        let (data, _, done) = drive(&mut ChunkedDecoder::new(), &[&line]).unwrap();
        assert!(done);
        assert_eq!(data, b"Z");
        // ...one more is not.
        let mut line = b"1;".to_vec();
        line.resize(MAX_SIZE_LINE + 1, b'x');
        line.extend_from_slice(b"\r\n");
        let e = drive(&mut ChunkedDecoder::new(), &[&line]).unwrap_err();
        assert_eq!(e.reason, "chunk size line too long");
        // Endless leading zeros hit the same limit.
        let e = ChunkedDecoder::new().decode(&[b'0'; 2000]).unwrap_err();
        assert_eq!(e.reason, "chunk size line too long");
    }

    #[test]
    fn trailer_limit() {
        let body = b"0\r\nA: 123456\r\n\r\n"; // trailer section is 11 bytes
        let (_, _, done) = drive(&mut ChunkedDecoder::with_trailer_limit(11), &[body]).unwrap();
        assert!(done);
        let e = drive(&mut ChunkedDecoder::with_trailer_limit(10), &[body]).unwrap_err();
        assert_eq!((e.status, e.reason), (400, "trailer section too large"));
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            &b"\r\n"[..],
            b"x\r\n",
            b" 4\r\nWiki\r\n",
            b"-4\r\n",
            b"0x4\r\n",
            b"4x\r\n",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\r\n",
            b"4;a\nb\r\n",
            b"4;a\x00\r\n",
            b"4\r\nWikiX\r\n",
            b"4\r\nWiki\n0\r\n\r\n",
            b"4\r\nWiki\r\r",
            b"0\r\nA: b\n\r\n",
            b"0\r\nA: b\r\n folded\r\n\r\n",
            b"0\r\nA: \x01\r\n\r\n",
            b"0\r\n\n",
            b"0\r\n\rX",
        ] {
            let mut dec = ChunkedDecoder::new();
            let e = drive(&mut dec, &[body]).expect_err(&format!("{:?}", String::from_utf8_lossy(body)));
            assert_eq!(e.status, 400);
            // The decoder stays failed.
            assert_eq!(dec.decode(b"0\r\n\r\n"), Err(e));
        }
    }

    #[test]
    fn random_bodies_random_splits() {
        // xorshift64: deterministic, no crate needed.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rng = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..500 {
            let mut body = Vec::new();
            let mut data = Vec::new();
            for _ in 0..rng(5) {
                let size = 1 + rng(40);
                let chunk: Vec<u8> = (0..size).map(|_| rng(256) as u8).collect();
                let hex = if rng(2) == 0 {
                    format!("{size:x}")
                } else {
                    format!("{size:04X}")
                };
                body.extend_from_slice(hex.as_bytes());
                if rng(3) == 0 {
                    body.extend_from_slice(b" ; e=\"v;\\\"x\"");
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(&chunk);
                body.extend_from_slice(b"\r\n");
                data.extend_from_slice(&chunk);
            }
            body.extend_from_slice(b"0\r\n");
            for i in 0..rng(3) {
                body.extend_from_slice(format!("T{i}: v\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            let total = body.len();
            body.extend_from_slice(NEXT);

            let mut parts = Vec::new();
            let mut at = 0;
            while at < body.len() {
                let n = (1 + rng(12)).min(body.len() - at);
                parts.push(&body[at..at + n]);
                at += n;
            }
            let mut dec = ChunkedDecoder::new();
            let (got, rest, done) = drive(&mut dec, &parts).unwrap();
            assert!(done);
            assert_eq!(got, data);
            // Whatever was left over is exactly the start of the next request.
            let fed: usize = parts
                .iter()
                .map(|p| p.len())
                .scan(0, |a, l| {
                    *a += l;
                    Some(*a)
                })
                .find(|&fed| fed >= total)
                .unwrap();
            assert_eq!(rest, &body[total..fed]);
        }
    }
}
