//! zvc: zero-value compression, lossless. One bit per element (1 = non-zero; an element is
//! zero when all its bits are zero, so -0.0 is kept), as little-endian u32 words, LSB first;
//! then the non-zero elements in order; then the bytes of a trailing partial element, raw.
use crate::DType;

pub fn mask_words(n: usize) -> usize {
    n.div_ceil(32)
}

pub fn encode(bytes: &[u8], dtype: DType) -> Vec<u8> {
    let w = dtype.width();
    let n = bytes.len() / w;
    let tail = &bytes[n * w..];
    let mut mask = vec![0u32; mask_words(n)];
    let mut packed = Vec::with_capacity(bytes.len() / 4);
    for (i, e) in bytes[..n * w].chunks_exact(w).enumerate() {
        if e.iter().any(|&b| b != 0) {
            mask[i / 32] |= 1 << (i % 32);
            packed.extend_from_slice(e);
        }
    }
    let mut out = Vec::with_capacity(mask.len() * 4 + packed.len() + tail.len());
    for m in mask {
        out.extend_from_slice(&m.to_le_bytes());
    }
    out.extend_from_slice(&packed);
    out.extend_from_slice(tail);
    out
}

/// None when the payload's length does not match its mask.
pub fn decode(payload: &[u8], dtype: DType, original_len: usize) -> Option<Vec<u8>> {
    let w = dtype.width();
    let n = original_len / w;
    let tail = original_len - n * w;
    let mask_bytes = mask_words(n) * 4;
    if payload.len() < mask_bytes {
        return None;
    }
    let (mask, rest) = payload.split_at(mask_bytes);
    let mut ones = 0usize;
    let words: Vec<u32> = mask.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    for (k, &m) in words.iter().enumerate() {
        // bits past n in the last word must be clear
        let valid = if (k + 1) * 32 <= n { u32::MAX } else { (1u32 << (n - k * 32)) - 1 };
        if m & !valid != 0 {
            return None;
        }
        ones += m.count_ones() as usize;
    }
    if rest.len() != ones * w + tail {
        return None;
    }
    let mut out = vec![0u8; original_len];
    let mut src = 0usize;
    for (k, &m) in words.iter().enumerate() {
        let mut bits = m;
        while bits != 0 {
            let i = k * 32 + bits.trailing_zeros() as usize;
            out[i * w..i * w + w].copy_from_slice(&rest[src..src + w]);
            src += w;
            bits &= bits - 1;
        }
    }
    out[n * w..].copy_from_slice(&rest[src..]);
    Some(out)
}
