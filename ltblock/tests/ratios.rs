//! The format's ratios against its own bounds (issue 4's targets), on 8 MiB inputs.
mod common;

use common::{data, Rng};
use ltblock::{encode, inspect, DType, EncodeOptions, Mode};

const LEN: usize = 8 << 20;

fn ratio(input: &[u8], dtype: DType, mode: Mode) -> f64 {
    let packed = encode(input, &EncodeOptions { dtype, mode, ..Default::default() });
    inspect(&packed).unwrap().ratio()
}

#[test]
fn zvc_bf16_at_90_percent_zeros_is_within_2_percent_of_its_bound() {
    let mut rng = Rng::new(10);
    let input = data(&mut rng, DType::BF16, LEN, 0.9, false);
    let r = ratio(&input, DType::BF16, Mode::Lossless);
    // bound 16 / (1 + 1.6) = 6.15x for exactly 10% non-zeros
    assert!(r >= 6.0, "zvc bf16 90% zeros: {r:.3}x");
}

#[test]
fn int8g_ratios_from_bf16_and_f32() {
    let mut rng = Rng::new(11);
    let bf = data(&mut rng, DType::BF16, LEN, 0.0, false);
    let f = data(&mut rng, DType::F32, LEN, 0.0, false);
    let (rb, rf) = (ratio(&bf, DType::BF16, Mode::Lossy), ratio(&f, DType::F32, Mode::Lossy));
    assert!(rb >= 1.9, "int8g from bf16: {rb:.3}x");
    assert!(rf >= 3.8, "int8g from f32: {rf:.3}x");
}

#[test]
fn random_bytes_stay_within_a_tenth_of_a_percent_of_raw() {
    let mut rng = Rng::new(12);
    let input: Vec<u8> = (0..LEN).map(|_| rng.next() as u8).collect();
    let packed = encode(&input, &EncodeOptions { dtype: DType::U8, mode: Mode::Lossy, ..Default::default() });
    assert!(packed.len() as f64 <= input.len() as f64 * 1.001, "{} vs {}", packed.len(), input.len());
}

#[test]
fn int8g_error_on_normal_bf16_weights_is_measured() {
    // The issue asks for <= 0.5% relative L2 at G=128; symmetric absmax int8 cannot reach it
    // on normal data (the quantization step is max|x|/127 ~ 2.9 sigma/127 for 128 normals,
    // giving ~0.65%). This test pins what the format does, so a change shows.
    let mut rng = Rng::new(13);
    let input = data(&mut rng, DType::BF16, LEN, 0.0, false);
    let packed = encode(&input, &EncodeOptions { dtype: DType::BF16, mode: Mode::Lossy, ..Default::default() });
    let s = inspect(&packed).unwrap();
    let worst = s.blocks.iter().map(|b| b.rel_l2).fold(0f32, f32::max);
    assert!(worst > 0.004 && worst < 0.008, "int8g bf16 normal: {worst}");
}

#[test]
fn int8g_with_groups_of_16_stays_under_half_a_percent_on_normal_bf16_weights() {
    // The way to the 0.5% with this codec: smaller groups, at ratio 16 / (8 + 2) = 1.6x.
    let mut rng = Rng::new(13);
    let input = data(&mut rng, DType::BF16, LEN, 0.0, false);
    let packed = encode(&input, &EncodeOptions { dtype: DType::BF16, mode: Mode::Lossy, group: 16, ..Default::default() });
    let s = inspect(&packed).unwrap();
    assert!(s.blocks.iter().all(|b| b.codec == ltblock::Codec::Int8g), "every block packs as int8g");
    // over the whole tensor; single 64 KiB blocks scatter around it (the worst ~0.50%)
    let out = ltblock::decode(&packed).unwrap();
    let (mut err, mut refs) = (0f64, 0f64);
    for i in 0..LEN / 2 {
        let (x, d) = (DType::BF16.load(&input, i) as f64, DType::BF16.load(&out, i) as f64);
        err += (d - x) * (d - x);
        refs += x * x;
    }
    let overall = (err / refs).sqrt();
    assert!(overall <= 0.005, "int8g bf16 normal, G=16: {overall}");
    let worst = s.blocks.iter().map(|b| b.rel_l2).fold(0f32, f32::max);
    assert!(worst < 0.0052, "worst block {worst}");
    assert!(s.ratio() > 1.58, "ratio {}", s.ratio());
}
