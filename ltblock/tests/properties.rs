//! Round trips on random data: every dtype, sparsity from 0 to 100%, lengths that are not
//! multiples of a block or of an element, NaN/Inf/denormal/-0.0. Lossless is bit-exact; lossy
//! blocks stay within their bound or are not lossy.
mod common;

use common::{data, Rng};
use ltblock::{decode, decode_block, encode, inspect, Codec, DType, EncodeOptions, Mode};

const DTYPES: [DType; 4] = [DType::U8, DType::F16, DType::BF16, DType::F32];

#[test]
fn lossless_round_trips_are_bit_exact() {
    let mut rng = Rng::new(1);
    for dtype in DTYPES {
        for zeros in [0.0, 0.5, 0.9, 0.99, 1.0] {
            for len in [0, 1, 3, 4095, 65536, 65537, 200_003] {
                let input = data(&mut rng, dtype, len, zeros, true);
                let opts = EncodeOptions { dtype, ..Default::default() };
                let packed = encode(&input, &opts);
                let out = decode(&packed).unwrap_or_else(|e| panic!("{dtype:?} zeros {zeros} len {len}: {e}"));
                assert!(out == input, "{dtype:?} zeros {zeros} len {len}: lossless round trip differs");
            }
        }
    }
}

#[test]
fn lossy_blocks_stay_within_their_bound_and_specials_fall_back_to_lossless() {
    let mut rng = Rng::new(2);
    for dtype in [DType::F16, DType::BF16, DType::F32] {
        for specials in [false, true] {
            let input = data(&mut rng, dtype, 300_001, 0.3, specials);
            let opts = EncodeOptions { dtype, mode: Mode::Lossy, max_rel_l2: 0.01, ..Default::default() };
            let packed = encode(&input, &opts);
            let summary = inspect(&packed).unwrap();
            let out = decode(&packed).unwrap();
            assert_eq!(out.len(), input.len());
            let mut start = 0;
            for (k, b) in summary.blocks.iter().enumerate() {
                let end = start + b.original_len as usize;
                let (orig, dec) = (&input[start..end], &out[start..end]);
                if b.codec.is_lossy() {
                    assert!(!specials || !has_special(dtype, orig), "block {k} with NaN/Inf went lossy");
                    let e = rel_l2(dtype, orig, dec);
                    assert!(e <= 0.01 + 1e-6, "{dtype:?} block {k}: error {e} over the bound");
                    assert!((e - b.rel_l2 as f64).abs() < 1e-4, "stored error {} vs measured {e}", b.rel_l2);
                } else {
                    assert!(orig == dec, "{dtype:?} block {k}: lossless block differs");
                }
                start = end;
            }
            if !specials {
                assert!(summary.blocks.iter().any(|b| b.codec == Codec::Int8g), "{dtype:?}: no block went lossy on plain normal data");
            }
        }
    }
}

fn has_special(dtype: DType, bytes: &[u8]) -> bool {
    (0..bytes.len() / dtype.width()).any(|i| !dtype.load(bytes, i).is_finite())
}

fn rel_l2(dtype: DType, a: &[u8], b: &[u8]) -> f64 {
    let (mut e, mut r) = (0f64, 0f64);
    for i in 0..a.len() / dtype.width() {
        let (x, y) = (dtype.load(a, i) as f64, dtype.load(b, i) as f64);
        e += (x - y).powi(2);
        r += x * x;
    }
    if r == 0.0 { 0.0 } else { (e / r).sqrt() }
}

#[test]
fn any_block_decodes_alone_and_equals_its_part_of_the_whole() {
    let mut rng = Rng::new(3);
    let input = data(&mut rng, DType::BF16, 5 * 65536 + 1234, 0.9, false);
    let packed = encode(&input, &EncodeOptions { dtype: DType::BF16, ..Default::default() });
    let whole = decode(&packed).unwrap();
    let mut start = 0;
    for k in 0..6 {
        let part = decode_block(&packed, k).unwrap();
        assert!(part[..] == whole[start..start + part.len()], "block {k}");
        start += part.len();
    }
    assert!(decode_block(&packed, 6).is_err());
}

#[test]
fn a_lossless_prefix_is_never_lossy_and_starts_the_data_on_a_block() {
    let mut rng = Rng::new(4);
    let mut input = b"{\"header\": \"json that must survive\"}    ".to_vec();
    let prefix = input.len();
    input.extend(data(&mut rng, DType::F32, 3 * 65536, 0.0, false));
    let opts = EncodeOptions { dtype: DType::F32, mode: Mode::Lossy, lossless_prefix: prefix, ..Default::default() };
    let packed = encode(&input, &opts);
    let s = inspect(&packed).unwrap();
    assert_eq!(s.blocks[0].original_len as usize, prefix);
    assert!(!s.blocks[0].codec.is_lossy());
    assert!(decode(&packed).unwrap()[..prefix] == input[..prefix]);
    assert!(s.blocks[1..].iter().all(|b| b.codec == Codec::Int8g));
}

#[test]
fn encoding_on_several_threads_gives_the_same_bytes_and_reports_every_block() {
    let mut rng = Rng::new(5);
    for (dtype, mode) in [(DType::BF16, Mode::Lossy), (DType::F32, Mode::Lossless), (DType::U8, Mode::Lossless)] {
        let input = data(&mut rng, dtype, 40 * 65536 + 77, 0.5, true);
        let one = EncodeOptions { dtype, mode, lossless_prefix: 100, ..Default::default() };
        let expected = encode(&input, &one);
        for threads in [2, 3, 16, 1000] {
            let (mut calls, mut last_done) = (0, 0);
            let got = ltblock::encode_with_progress(&input, &EncodeOptions { threads, ..one }, |done, total, _| {
                calls += 1;
                assert!(done == last_done + 1 && done <= total, "progress {done}/{total} after {last_done}");
                last_done = done;
            });
            assert!(got == expected, "{dtype:?} {mode:?} on {threads} threads differs from one thread");
            assert_eq!(calls, inspect(&got).unwrap().blocks.len());
        }
    }
}
