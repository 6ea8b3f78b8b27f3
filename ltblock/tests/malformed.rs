//! Malformed or truncated input gives an error naming the block and the problem, never a
//! panic or an out-of-bounds read: every truncation and every single-byte change of a packed
//! buffer is decoded (the deterministic corpus beside the fuzz target in fuzz/).
mod common;

use common::{data, Rng};
use ltblock::{decode, decode_block, encode, inspect, CodecError, DType, EncodeOptions, Mode};

fn sample() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(20);
    let input = data(&mut rng, DType::BF16, 3000, 0.8, false);
    let packed = encode(&input, &EncodeOptions { dtype: DType::BF16, mode: Mode::Lossy, block_size: 1024, ..Default::default() });
    (input, packed)
}

#[test]
fn every_truncation_is_an_error() {
    let (_, packed) = sample();
    for n in 0..packed.len() {
        let e = decode(&packed[..n]).expect_err("truncated data decoded");
        let msg = e.to_string();
        assert!(msg.contains("truncated") || msg.contains("inconsistent") || msg.contains("bad magic"), "at {n}: {msg}");
        let _ = inspect(&packed[..n]);
    }
}

#[test]
fn every_single_byte_change_is_an_error_or_exact() {
    let (input, packed) = sample();
    let lossless_input = input.clone();
    for i in 0..packed.len() {
        for delta in [1u8, 0x80] {
            let mut bad = packed.clone();
            bad[i] ^= delta;
            match decode(&bad) {
                Err(e) => assert!(!e.to_string().is_empty()),
                // A change can only go unnoticed where it changes nothing decoded (e.g. the
                // stored error figure of a lossy block, which is information only).
                Ok(out) => assert_eq!(out.len(), lossless_input.len(), "byte {i} ^ {delta:#x} changed the length"),
            }
            let _ = inspect(&bad);
            let _ = decode_block(&bad, 1);
        }
    }
}

#[test]
fn a_flipped_payload_bit_is_a_checksum_error_naming_its_block() {
    let (_, packed) = sample();
    let s = inspect(&packed).unwrap();
    // the last byte of the buffer is inside the last block's payload
    let mut bad = packed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    match decode(&bad) {
        Err(CodecError::Checksum { block }) => assert_eq!(block as usize, s.blocks.len() - 1),
        Err(CodecError::Inconsistent { block: Some(b), .. }) => assert_eq!(b as usize, s.blocks.len() - 1),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng::new(21);
    for len in [0usize, 1, 39, 40, 41, 100, 1000] {
        for _ in 0..200 {
            let mut g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 4 && rng.next() % 2 == 0 {
                g[..4].copy_from_slice(b"LTBF");
            }
            assert!(decode(&g).is_err());
        }
    }
}
