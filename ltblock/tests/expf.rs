//! expf, the lossless float codec: bit-exact round trips over the values that break float
//! code (NaN, Inf, subnormals, -0.0, every exponent, one exponent only, odd lengths), the
//! encoder's choice among the lossless codecs, and its ratio against the per-block
//! exponent-entropy bound on normal weights.
mod common;

use common::Rng;
use ltblock::codec::expf;
use ltblock::{decode, encode, inspect, Codec, DType, EncodeOptions, Mode};

fn weights(rng: &mut Rng, dtype: DType, len: usize, sigma: f32) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for i in 0..len / dtype.width() {
        dtype.store(&mut out, i, rng.normal() * sigma);
    }
    for b in out[len / dtype.width() * dtype.width()..].iter_mut() {
        *b = rng.next() as u8;
    }
    out
}

fn lossless(dtype: DType) -> EncodeOptions {
    EncodeOptions { dtype, ..Default::default() }
}

fn codecs(packed: &[u8]) -> Vec<Codec> {
    inspect(packed).unwrap().blocks.iter().map(|b| b.codec).collect()
}

fn round_trip(input: &[u8], dtype: DType) -> Vec<u8> {
    let packed = encode(input, &lossless(dtype));
    let out = decode(&packed).unwrap_or_else(|e| panic!("{dtype:?} {} B: {e}", input.len()));
    assert!(out == input, "{dtype:?} {} B: round trip differs", input.len());
    packed
}

/// The block payloads' share of raw and the blocks' exponent-entropy bound, over a buffer.
fn size_and_bound(input: &[u8], dtype: DType) -> (f64, f64) {
    let packed = encode(input, &lossless(dtype));
    let bound: f64 = input.chunks(65536).map(|b| expf::entropy_bound(b, dtype)).sum();
    (packed.len() as f64 / input.len() as f64, bound / input.len() as f64)
}

#[test]
fn normal_bf16_weights_are_expf_at_most_67_percent_and_within_1_5_points_of_the_bound() {
    let mut rng = Rng::new(30);
    let input = weights(&mut rng, DType::BF16, 8 << 20, 0.02);
    let packed = round_trip(&input, DType::BF16);
    assert!(codecs(&packed).iter().all(|&c| c == Codec::Expf));
    let (size, bound) = size_and_bound(&input, DType::BF16);
    eprintln!("bf16 normal(0, 0.02): {:.2}% of raw, bound {:.2}%", size * 100.0, bound * 100.0);
    assert!(size <= 0.67, "{size}");
    assert!(size - bound <= 0.015, "{size} vs bound {bound}");
}

#[test]
fn f16_and_f32_weights_are_expf_within_1_5_points_of_the_bound() {
    let mut rng = Rng::new(31);
    for dtype in [DType::F16, DType::F32] {
        let input = weights(&mut rng, dtype, 4 << 20, 0.02);
        let packed = round_trip(&input, dtype);
        assert!(codecs(&packed).iter().all(|&c| c == Codec::Expf), "{dtype:?}");
        let (size, bound) = size_and_bound(&input, dtype);
        eprintln!("{dtype:?} normal(0, 0.02): {:.2}% of raw, bound {:.2}%", size * 100.0, bound * 100.0);
        assert!(size - bound <= 0.015, "{dtype:?}: {size} vs bound {bound}");
        // sign and mantissa are 11 (f16) or 24 (f32) random bits: the bound itself is high
        assert!(size < if dtype == DType::F16 { 0.86 } else { 0.85 }, "{dtype:?}: {size}");
    }
}

#[test]
fn special_values_round_trip_bit_exactly() {
    let specials: [&[u16]; 2] = [
        // bf16: NaNs (quiet, signalling, negative, payloads), +-Inf, subnormals, -0.0, max
        &[0x7fc0, 0x7f81, 0xffc1, 0x7fff, 0x7f80, 0xff80, 0x0001, 0x807f, 0x8000, 0x0000, 0x7f7f, 0xff7f],
        // f16
        &[0x7e00, 0x7c01, 0xfe01, 0x7fff, 0x7c00, 0xfc00, 0x0001, 0x83ff, 0x8000, 0x0000, 0x7bff, 0xfbff],
    ];
    let mut rng = Rng::new(32);
    for (dtype, sp) in [(DType::BF16, specials[0]), (DType::F16, specials[1])] {
        let mut input = weights(&mut rng, dtype, 65536 * 2 + 10, 0.02);
        for (i, k) in (0..input.len() / 2).step_by(97).enumerate() {
            input[2 * k..2 * k + 2].copy_from_slice(&sp[i % sp.len()].to_le_bytes());
        }
        let packed = round_trip(&input, dtype);
        assert_eq!(codecs(&packed)[0], Codec::Expf, "{dtype:?}");
    }
    let mut input = weights(&mut rng, DType::F32, 65536 + 7, 1.0);
    let f32s = [f32::NAN.to_bits(), 0x7f80_0001, 0xffc0_1234, f32::INFINITY.to_bits(), f32::NEG_INFINITY.to_bits(), 1, 0x8000_0001, 0x8000_0000, f32::MAX.to_bits()];
    for (i, k) in (0..input.len() / 4).step_by(51).enumerate() {
        input[4 * k..4 * k + 4].copy_from_slice(&f32s[i % f32s.len()].to_le_bytes());
    }
    let packed = round_trip(&input, DType::F32);
    assert_eq!(codecs(&packed)[0], Codec::Expf);
}

#[test]
fn one_exponent_only_takes_one_bit_an_element() {
    // every element in [1, 2): one symbol, code length 1
    let mut rng = Rng::new(33);
    let mut input = vec![0u8; 65536];
    for i in 0..32768 {
        DType::BF16.store(&mut input, i, 1.0 + (rng.next() % 128) as f32 / 128.0);
    }
    let packed = round_trip(&input, DType::BF16);
    let s = inspect(&packed).unwrap();
    assert_eq!(s.blocks[0].codec, Codec::Expf);
    // 32768 rest bytes, 4 + 1 code bytes, 256 lengths, 32768 bits
    assert_eq!(s.blocks[0].payload_len as usize, 32768 + 5 + 256 + 4096);
}

#[test]
fn every_exponent_value_in_one_block_round_trips() {
    for dtype in [DType::BF16, DType::F32, DType::F16] {
        let w = dtype.width();
        let mut rng = Rng::new(34);
        let mut input = vec![0u8; 65536];
        for i in 0..65536 / w {
            let e = (i % 256) as u32;
            let bits = if dtype == DType::F32 { (e << 23) | (rng.next() as u32 & 0x807f_ffff) } else { (rng.next() as u32 & 0xffff & !(0xff << 7)) | (e << 7) };
            input[i * w..i * w + w].copy_from_slice(&bits.to_le_bytes()[..w]);
        }
        let packed = encode(&input, &lossless(dtype));
        assert_eq!(decode(&packed).unwrap(), input, "{dtype:?}");
        // 256 equally likely symbols: 8 bits each, so expf cannot beat raw and must not be taken
        assert_eq!(codecs(&packed), vec![Codec::Raw], "{dtype:?}");
        // 16-bit dtypes: its streams (8 bits a symbol) exceed MAX_STREAM_BYTES; a quarter
        // block of them still round-trips with all 256 symbols in the table
        assert_eq!(expf::encode(&input, dtype).is_none(), w == 2, "{dtype:?}");
        let p = expf::encode(&input[..16384], dtype).unwrap();
        assert_eq!(p[16384 / w * expf::rest_width(dtype) + 1], 255, "256 symbols");
        assert_eq!(expf::decode(&p, dtype, 16384).unwrap(), &input[..16384]);
    }
}

#[test]
fn odd_lengths_and_short_blocks_round_trip() {
    let mut rng = Rng::new(35);
    for dtype in [DType::BF16, DType::F16, DType::F32] {
        for len in [1usize, 2, 3, 5, 17, 31, 100, 4097, 65535, 65537, 3 * 65536 + 4099] {
            let input = weights(&mut rng, dtype, len, 0.02);
            round_trip(&input, dtype);
            // each block by the codec itself, whichever codec the encoder took
            for block in input.chunks(65536).filter(|b| b.len() >= dtype.width()) {
                let p = expf::encode(block, dtype).unwrap();
                assert_eq!(expf::decode(&p, dtype, block.len()).unwrap(), block, "{dtype:?} {len}");
            }
        }
    }
}

#[test]
fn the_encoder_takes_the_smallest_lossless_codec() {
    let mut rng = Rng::new(36);
    // sparse blocks stay zvc, random bytes stay raw, dense weights go expf
    let sparse = common::data(&mut rng, DType::BF16, 4 * 65536, 0.9, false);
    assert!(codecs(&encode(&sparse, &lossless(DType::BF16))).iter().all(|&c| c == Codec::Zvc));
    let random: Vec<u8> = (0..4 * 65536).map(|_| rng.next() as u8).collect();
    assert!(codecs(&encode(&random, &lossless(DType::BF16))).iter().all(|&c| c == Codec::Raw));
    let dense = weights(&mut rng, DType::BF16, 4 * 65536, 0.02);
    assert!(codecs(&encode(&dense, &lossless(DType::BF16))).iter().all(|&c| c == Codec::Expf));
    // u8 buffers never use it
    assert!(codecs(&encode(&dense, &lossless(DType::U8))).iter().all(|&c| c != Codec::Expf));
    // each block's payload is no larger than either other lossless codec's
    for (input, dtype) in [(&sparse, DType::BF16), (&dense, DType::BF16), (&common::data(&mut rng, DType::F32, 3 * 65536, 0.5, true), DType::F32)] {
        let s = inspect(&encode(input, &lossless(dtype))).unwrap();
        for (k, b) in s.blocks.iter().enumerate() {
            let block = &input[k * 65536..(k + 1) * 65536];
            let z = ltblock::codec::zvc::encode(block, dtype).len();
            let e = expf::encode(block, dtype).map_or(usize::MAX, |p| p.len());
            assert_eq!(b.payload_len as usize, z.min(e).min(65536), "block {k}: zvc {z}, expf {e}");
        }
    }
}

#[test]
fn lossy_mode_keeps_int8g_and_uses_expf_for_blocks_int8g_refuses() {
    let mut rng = Rng::new(37);
    let mut input = weights(&mut rng, DType::BF16, 2 * 65536, 0.02);
    input[65536 + 100..65536 + 102].copy_from_slice(&0x7fc0u16.to_le_bytes()); // a NaN: not int8g
    let packed = encode(&input, &EncodeOptions { dtype: DType::BF16, mode: Mode::Lossy, ..Default::default() });
    assert_eq!(codecs(&packed), vec![Codec::Int8g, Codec::Expf]);
    assert_eq!(&decode(&packed).unwrap()[65536..], &input[65536..]);
}
