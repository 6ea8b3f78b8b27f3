//! Malformed or truncated input gives an error naming the block and the problem, never a
//! panic or an out-of-bounds read: every truncation and every single-byte change of a packed
//! buffer is decoded (the deterministic corpus beside the fuzz target in fuzz/).
mod common;

use common::{data, Rng};
use ltblock::{decode, decode_block, encode, inspect, Codec, CodecError, DType, EncodeOptions, Mode};

fn sample() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(20);
    let input = data(&mut rng, DType::BF16, 3000, 0.8, false);
    let packed = encode(&input, &EncodeOptions { dtype: DType::BF16, mode: Mode::Lossy, block_size: 1024, ..Default::default() });
    (input, packed)
}

/// Dense bf16 and f32 weights in lossless mode: expf blocks (two whole, one short, an odd
/// length with a partial element), beside a zvc block.
fn expf_samples() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = Rng::new(22);
    [(DType::BF16, 2048 * 2 + 905), (DType::F32, 4096 * 2 + 1503)]
        .into_iter()
        .map(|(dtype, len)| {
            let mut input = data(&mut rng, dtype, len, 0.0, false);
            input.extend(vec![0u8; 1024]);
            let packed = encode(&input, &EncodeOptions { dtype, block_size: len / 2 - len / 2 % 16, ..Default::default() });
            let codecs: Vec<Codec> = inspect(&packed).unwrap().blocks.iter().map(|b| b.codec).collect();
            assert!(codecs[..2].iter().all(|&c| c == Codec::Expf) && codecs.contains(&Codec::Zvc), "{dtype:?}: {codecs:?}");
            (input, packed)
        })
        .collect()
}

fn all_samples() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = vec![sample()];
    v.extend(expf_samples());
    v
}

#[test]
fn every_truncation_is_an_error() {
    for (_, packed) in all_samples() {
        every_truncation_of(&packed);
    }
}

#[test]
fn every_single_byte_change_is_an_error_or_exact() {
    for (input, packed) in all_samples() {
        every_byte_change_of(&input, &packed);
    }
}

/// Changes inside an expf block's streams, code and stream lengths come back as errors of
/// that block: never a panic, never wrong bytes.
#[test]
fn every_byte_change_of_an_expf_block_is_an_error_of_that_block() {
    for (input, packed) in expf_samples() {
        let off = |k: usize| u64::from_le_bytes(packed[40 + 8 * k..48 + 8 * k].try_into().unwrap()) as usize;
        let (start, end) = (off(1), off(2));
        for i in start..end {
            for delta in [1u8, 0x80, 0xff] {
                let mut bad = packed.clone();
                bad[i] ^= delta;
                match decode(&bad) {
                    Err(e) => {
                        let named = matches!(e, CodecError::Checksum { block: 1 } | CodecError::Inconsistent { block: Some(1), .. } | CodecError::BadMagic { block: Some(1) } | CodecError::UnsupportedVersion { block: Some(1), .. } | CodecError::UnknownCodec { block: 1, .. } | CodecError::UnknownDType { block: Some(1), .. });
                        assert!(named, "byte {} of block 1 ^ {delta:#x}: {e}", i - start);
                    }
                    Ok(out) => {
                        // only the stored error figure and group size (information only for
                        // a lossless block) may change unnoticed
                        assert!((24..30).contains(&(i - start)), "byte {} of block 1 ^ {delta:#x} decoded", i - start);
                        assert_eq!(out, input);
                    }
                }
            }
        }
    }
}

fn every_truncation_of(packed: &[u8]) {
    for n in 0..packed.len() {
        let e = decode(&packed[..n]).expect_err("truncated data decoded");
        let msg = e.to_string();
        assert!(msg.contains("truncated") || msg.contains("inconsistent") || msg.contains("bad magic"), "at {n}: {msg}");
        let _ = inspect(&packed[..n]);
    }
}

fn every_byte_change_of(input: &[u8], packed: &[u8]) {
    let lossless_input = input.to_vec();
    for i in 0..packed.len() {
        for delta in [1u8, 0x80] {
            let mut bad = packed.to_vec();
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

/// Regression: a buffer whose header says lossless must not hand out int8g (lossy) blocks,
/// even when its header checksum is consistent with the changed mode byte.
#[test]
fn a_lossy_block_inside_a_buffer_whose_header_says_lossless_is_refused() {
    let data: Vec<u8> = (0..32768u32).flat_map(|i| ltblock::dtype::f32_to_bf16(((i as f32) * 0.37).sin() * 0.02).to_le_bytes()).collect();
    let opts = ltblock::EncodeOptions { mode: ltblock::Mode::Lossy, dtype: ltblock::DType::BF16, ..Default::default() };
    let mut buf = ltblock::encode(&data, &opts);
    assert!(ltblock::inspect(&buf).unwrap().blocks.iter().any(|b| b.codec == ltblock::Codec::Int8g), "the data must go int8g");
    buf[7] = 0; // mode: lossless
    let n = u32::from_le_bytes(buf[12..16].try_into().unwrap()) as usize;
    let mut covered = buf[0..32].to_vec();
    covered.extend_from_slice(&buf[40..40 + 8 * (n + 1)]);
    let sum = ltblock::checksum::ltsum32(&covered);
    buf[32..36].copy_from_slice(&sum.to_le_bytes());
    let e = ltblock::decode(&buf).unwrap_err();
    assert!(matches!(e, ltblock::CodecError::Inconsistent { what, .. } if what.contains("lossy block")), "{e}");
}
