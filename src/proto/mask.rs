//! Payload masking (RFC 6455 §5.3).
//!
//! Client-to-server frames are XORed with a 4-byte key. Unmasking sits on the hot path of
//! every received byte, so it works on 32-byte blocks that the compiler turns into vector
//! XORs, with a scalar prologue/epilogue only for the ragged ends.

/// XORs `buf` with `key`, where `buf[0]` is payload byte number `offset` of its frame.
///
/// `offset` lets a frame be unmasked in pieces as its bytes arrive: pass the number of
/// payload bytes of the same frame already unmasked. Masking and unmasking are the same
/// operation.
///
/// ```
/// use wsreactor::proto::mask::apply_mask;
/// let key = [1, 2, 3, 4];
/// let mut data = *b"hello world";
/// apply_mask(&mut data, key, 0);
/// // unmask in two pieces, as a decoder would when the frame arrives split
/// let (a, b) = data.split_at_mut(5);
/// apply_mask(a, key, 0);
/// apply_mask(b, key, 5);
/// assert_eq!(&data, b"hello world");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as a little-endian word, rotated so that byte 0 of `buf` lines up with key
    // byte `offset % 4`; doubled to 8 bytes for word-wise XOR.
    let k4 = u32::from_le_bytes(key).rotate_right(8 * (offset & 3) as u32);
    let k8 = u64::from(k4) | u64::from(k4) << 32;
    let mut rest = buf;
    if rest.len() >= 32 {
        let k = k8.to_le_bytes();
        let wide: [u8; 32] = std::array::from_fn(|i| k[i & 7]);
        let mut blocks = rest.chunks_exact_mut(32);
        for block in &mut blocks {
            // Fixed-size loop over a fixed-size block: LLVM emits two 16-byte (or one
            // 32-byte) XORs.
            for (b, m) in block.iter_mut().zip(wide.iter()) {
                *b ^= m;
            }
        }
        rest = blocks.into_remainder();
    }
    // Small frames (the common chat-sized message) are all tail: a word at a time, since a
    // byte loop costs about four instructions per byte. Whole blocks and words are
    // multiples of 4, so the tail starts at key phase 0 again.
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        xor_word(w, k8);
    }
    let k = k4.to_le_bytes();
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

#[inline(always)]
fn xor_word(w: &mut [u8], k8: u64) {
    let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ k8;
    w.copy_from_slice(&v.to_le_bytes());
}

/// Copies `src` into `dst` while masking it, for encoders that build frames in one pass.
///
/// `dst` must be exactly as long as `src`.
#[inline]
pub fn mask_into(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    debug_assert_eq!(dst.len(), src.len());
    dst.copy_from_slice(src);
    apply_mask(dst, key, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn matches_bytewise_for_all_lengths_and_offsets() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..200 {
            for off in 0..8 {
                let orig: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut a = orig.clone();
                let mut b = orig.clone();
                apply_mask(&mut a, key, off);
                naive(&mut b, key, off);
                assert_eq!(a, b, "len {len} off {off}");
            }
        }
    }

    #[test]
    fn split_unmasking_equals_whole() {
        let key = [9, 8, 7, 6];
        let orig: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        for cut in [1, 3, 4, 5, 33, 999] {
            let mut parts = orig.clone();
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            assert_eq!(parts, whole, "cut {cut}");
        }
    }
}
