//! The frame header codec (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! ```

use std::fmt;

/// Largest header: 2 bytes, 8 of extended length, 4 of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: first frame of a text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode; reserved values give `None`.
    #[inline]
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    #[inline]
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames: at most 125 bytes, never fragmented.
    #[inline]
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100), for extensions.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The opcode is one of the reserved values.
    ReservedOpcode(u8),
    /// The 64-bit length has its most significant bit set.
    LengthOverflow,
    /// A 16- or 64-bit length that would fit in fewer bytes (RFC 6455 §5.2: "the minimal
    /// number of bytes MUST be used"): a 16-bit length below 126, or a 64-bit length
    /// below 65536.
    NonMinimalLength,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            HeaderError::LengthOverflow => f.write_str("payload length has its top bit set"),
            HeaderError::NonMinimalLength => f.write_str("payload length not minimally encoded"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, otherwise the
    /// header and its length in bytes. Nothing is consumed or changed. A length not in its
    /// minimal form fails with [`HeaderError::NonMinimalLength`] as soon as the length
    /// field is complete.
    ///
    /// ```
    /// use wsreactor::proto::frame::{FrameHeader, OpCode};
    /// let (h, n) = FrameHeader::parse(&[0x81, 0x05, b'h']).unwrap().unwrap();
    /// assert_eq!((h.opcode, h.fin, h.payload_len, n), (OpCode::Text, true, 5, 2));
    /// assert!(FrameHeader::parse(&[0x81]).unwrap().is_none());
    /// ```
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(HeaderError::ReservedOpcode(b0 & 0x0f))?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut n) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let len = u16::from_be_bytes([buf[2], buf[3]]);
                if len < 126 {
                    return Err(HeaderError::NonMinimalLength);
                }
                (len as u64, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(HeaderError::LengthOverflow);
                }
                if len <= u16::MAX as u64 {
                    return Err(HeaderError::NonMinimalLength);
                }
                (len, 10)
            }
            l => (l as u64, 2),
        };
        let mask = if masked {
            if buf.len() < n + 4 {
                return Ok(None);
            }
            let k = [buf[n], buf[n + 1], buf[n + 2], buf[n + 3]];
            n += 4;
            Some(k)
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv: (b0 >> 4) & 0x7,
                opcode,
                mask,
                payload_len,
            },
            n,
        )))
    }

    /// Length in bytes of this header on the wire.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        header_len(self.payload_len, self.mask.is_some())
    }

    /// Writes this header into `out`, which must hold at least [`encoded_len`] bytes;
    /// returns the number of bytes written.
    ///
    /// [`encoded_len`]: FrameHeader::encoded_len
    #[inline]
    pub fn write(&self, out: &mut [u8]) -> usize {
        out[0] = (self.fin as u8) << 7 | (self.rsv & 7) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
            2
        } else if self.payload_len <= u16::MAX as u64 {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            10
        };
        if let Some(k) = self.mask {
            out[n..n + 4].copy_from_slice(&k);
            n += 4;
        }
        n
    }

    /// Appends this header to a vector.
    #[inline]
    pub fn write_to_vec(&self, out: &mut Vec<u8>) {
        let mut tmp = [0u8; MAX_HEADER_LEN];
        let n = self.write(&mut tmp);
        out.extend_from_slice(&tmp[..n]);
    }
}

/// Header length for a payload of `payload_len` bytes.
#[inline]
pub fn header_len(payload_len: u64, masked: bool) -> usize {
    let base = if payload_len < 126 {
        2
    } else if payload_len <= u16::MAX as u64 {
        4
    } else {
        10
    };
    base + if masked { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_lengths_and_masks() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for op in [OpCode::Text, OpCode::Binary, OpCode::Continuation, OpCode::Ping] {
                    let h = FrameHeader {
                        fin: len % 2 == 0,
                        rsv: 0b101,
                        opcode: op,
                        mask,
                        payload_len: len,
                    };
                    let mut buf = [0u8; MAX_HEADER_LEN];
                    let n = h.write(&mut buf);
                    assert_eq!(n, h.encoded_len());
                    // every strict prefix is "need more"
                    for cut in 0..n {
                        assert_eq!(FrameHeader::parse(&buf[..cut]).unwrap(), None);
                    }
                    assert_eq!(FrameHeader::parse(&buf[..n]).unwrap(), Some((h, n)));
                }
            }
        }
    }

    #[test]
    fn rejects_reserved_opcodes_and_huge_lengths() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0x80]),
                Err(HeaderError::ReservedOpcode(op))
            );
        }
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(FrameHeader::parse(&b), Err(HeaderError::LengthOverflow));
    }

    /// A header with an explicit length form: 126 (16-bit) or 127 (64-bit), masked.
    fn with_form(form: u8, len: u64) -> Vec<u8> {
        let mut b = vec![0x82, 0x80 | form];
        if form == 126 {
            b.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            b.extend_from_slice(&len.to_be_bytes());
        }
        b.extend_from_slice(&[1, 2, 3, 4]);
        b
    }

    #[test]
    fn rejects_non_minimal_lengths() {
        // 16-bit form carrying what fits in 7 bits
        for len in [0u64, 1, 5, 100, 125] {
            let b = with_form(126, len);
            assert_eq!(
                FrameHeader::parse(&b),
                Err(HeaderError::NonMinimalLength),
                "{len}"
            );
            // reported as soon as the length field is complete, before the mask key
            assert_eq!(FrameHeader::parse(&b[..4]), Err(HeaderError::NonMinimalLength));
            assert_eq!(FrameHeader::parse(&b[..3]), Ok(None));
        }
        // 64-bit form carrying what fits in 7 or 16 bits
        for len in [0u64, 5, 125, 126, 1000, 65535] {
            let b = with_form(127, len);
            assert_eq!(
                FrameHeader::parse(&b),
                Err(HeaderError::NonMinimalLength),
                "{len}"
            );
            assert_eq!(FrameHeader::parse(&b[..10]), Err(HeaderError::NonMinimalLength));
            assert_eq!(FrameHeader::parse(&b[..9]), Ok(None));
        }
        // a close frame too: control frames get no exemption
        let mut b = vec![0x88, 0x80 | 126, 0, 2, 1, 2, 3, 4];
        assert_eq!(FrameHeader::parse(&b), Err(HeaderError::NonMinimalLength));
        b[1] = 0x80 | 2;
        assert!(FrameHeader::parse(&b).unwrap().is_some());
    }

    #[test]
    fn accepts_boundaries_in_their_minimal_forms() {
        for (len, form, hlen) in [
            (125u64, None, 6),
            (126, Some(126u8), 8),
            (65535, Some(126), 8),
            (65536, Some(127), 14),
            ((1 << 63) - 1, Some(127), 14),
        ] {
            let b = match form {
                None => vec![0x82, 0x80 | len as u8, 1, 2, 3, 4],
                Some(f) => with_form(f, len),
            };
            let (h, n) = FrameHeader::parse(&b).unwrap().unwrap();
            assert_eq!((h.payload_len, n), (len, hlen), "{len}");
            // and the encoder produces exactly that form
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = h.write(&mut out);
            assert_eq!(&out[..n], &b[..]);
        }
    }
}
