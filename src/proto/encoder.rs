//! Sans-IO frame encoding into a caller's buffer.
//!
//! Servers send unmasked frames, so the payload is copied once, straight into the output
//! buffer that is later written to the socket. Clients pass a masking key and the payload is
//! masked while it is copied.

use super::frame::{header_len, FrameHeader, OpCode};
use super::mask::apply_mask;

/// Appends one frame to `out`.
///
/// ```
/// use wsreactor::proto::{encoder::encode_frame, OpCode};
/// let mut out = Vec::new();
/// encode_frame(&mut out, OpCode::Text, true, None, b"hi");
/// assert_eq!(out, [0x81, 2, b'h', b'i']);
/// ```
// Always inlined: with a constant `None` mask the server's path folds to a header write and
// one copy; left to itself the compiler keeps it out of line once a masked (client) call
// site exists too (~30 instructions more per echoed message, callgrind b).
#[inline(always)]
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) {
    encode_frame_rsv(out, opcode, fin, 0, mask, payload)
}

/// [`encode_frame`] with RSV bits, for extensions.
#[inline(always)]
pub fn encode_frame_rsv(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let h = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    out.reserve(h.encoded_len() + payload.len());
    h.write_to_vec(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k, 0);
    }
}

/// Writes one frame into `buf` and returns its length, or `None` if `buf` is too small.
///
/// This is the form for callers with a fixed buffer (a ring, a stack array, a shared send
/// buffer); it never allocates.
pub fn encode_frame_into(
    buf: &mut [u8],
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Option<usize> {
    let hl = header_len(payload.len() as u64, mask.is_some());
    let total = hl.checked_add(payload.len())?;
    if buf.len() < total {
        return None;
    }
    let h = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    h.write(buf);
    buf[hl..total].copy_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut buf[hl..total], k, 0);
    }
    Some(total)
}

/// Appends a close frame with an optional code and reason.
///
/// The reason is cut (at a character boundary) so that the payload fits the 125-byte
/// limit of control frames.
pub fn encode_close(out: &mut Vec<u8>, code: Option<u16>, reason: &str, mask: Option<[u8; 4]>) {
    let mut payload = [0u8; 125];
    let n = match code {
        None => 0,
        Some(c) => {
            payload[..2].copy_from_slice(&c.to_be_bytes());
            let mut r = reason.len().min(123);
            while !reason.is_char_boundary(r) {
                r -= 1;
            }
            payload[2..2 + r].copy_from_slice(&reason.as_bytes()[..r]);
            2 + r
        }
    };
    encode_frame(out, OpCode::Close, true, mask, &payload[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_decodes_back() {
        let mut out = Vec::new();
        let key = [5, 6, 7, 8];
        encode_frame(&mut out, OpCode::Binary, false, Some(key), &[1u8; 300]);
        let (h, n) = FrameHeader::parse(&out).unwrap().unwrap();
        assert_eq!((h.payload_len, h.fin, h.mask, n), (300, false, Some(key), 8));
        let mut p = out[n..].to_vec();
        apply_mask(&mut p, key, 0);
        assert_eq!(p, vec![1u8; 300]);
        let mut fixed = [0u8; 400];
        let len = encode_frame_into(&mut fixed, OpCode::Binary, false, Some(key), &[1u8; 300]).unwrap();
        assert_eq!(&fixed[..len], &out[..]);
        assert_eq!(
            encode_frame_into(&mut fixed[..100], OpCode::Binary, true, None, &[0; 300]),
            None
        );
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let mut out = Vec::new();
        encode_close(&mut out, Some(1000), &"é".repeat(100), None);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
