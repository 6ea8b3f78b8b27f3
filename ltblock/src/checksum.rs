//! LTSUM32: the checksum of a block's bytes.
//!
//! `sum over i of fmix32(w_i XOR (i * 0x9E3779B9))  (mod 2^32)`, then mixed with the length,
//! where `w_i` are the little-endian 32-bit words of the bytes (the last one zero-padded).
//! Why this one: it is a sum, so GPU threads can each fold their words and reduce in any
//! order (addition mod 2^32 is associative and commutative); each term goes through murmur3's
//! `fmix32`, a bijection, so a change to any single word always changes the sum (a flipped bit
//! is always caught), and the position enters each term, so two swapped words change two
//! terms in a way that cancels only by coincidence (about 2^-32). It costs a multiply-xorshift
//! chain per word: far below memory bandwidth on either processor. It is not cryptographic.

const GOLDEN: u32 = 0x9E37_79B9;

#[inline]
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

pub fn ltsum32(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut chunks = bytes.chunks_exact(4);
    let mut i = 0u32;
    for c in &mut chunks {
        let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        sum = sum.wrapping_add(fmix32(w ^ i.wrapping_mul(GOLDEN)));
        i = i.wrapping_add(1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 4];
        b[..rest.len()].copy_from_slice(rest);
        sum = sum.wrapping_add(fmix32(u32::from_le_bytes(b) ^ i.wrapping_mul(GOLDEN)));
    }
    fmix32(sum ^ (bytes.len() as u32).wrapping_mul(0x27d4_eb2f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_bit_flip_is_caught() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 37 % 251) as u8).collect();
        let base = ltsum32(&data);
        for byte in 0..data.len() {
            for bit in 0..8 {
                let mut d = data.clone();
                d[byte] ^= 1 << bit;
                assert_ne!(ltsum32(&d), base, "flip at byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn swapped_words_are_caught() {
        let data: Vec<u8> = (0..256u32).flat_map(|i| (i.wrapping_mul(2654435761)).to_le_bytes()).collect();
        let base = ltsum32(&data);
        for a in 0..16 {
            for b in (a + 1)..16 {
                let mut d = data.clone();
                for k in 0..4 {
                    d.swap(a * 4 + k, b * 4 + k);
                }
                assert_ne!(ltsum32(&d), base, "swap of words {a} and {b}");
            }
        }
    }

    #[test]
    fn length_matters_even_for_zeros() {
        assert_ne!(ltsum32(&[0; 8]), ltsum32(&[0; 12]));
        assert_ne!(ltsum32(&[]), ltsum32(&[0]));
    }
}
