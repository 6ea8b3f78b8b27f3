//! int8g: symmetric int8 with one f32 scale per group of G contiguous elements, lossy, for
//! f32, f16 and bf16. For a group whose largest magnitude is `amax`: `scale = amax / 127` and
//! `inv = 127 / amax` (both 0 when `amax < 2^-120`, so `inv` stays finite); `q =
//! round_ties_even(x * inv)` clamped to ±127; decoded `x' = q * scale`, rounded to the input
//! dtype (nearest even). A multiply instead of a division per element, and ties to even, because
//! the GPU does exactly this in two instructions (docs/FORMAT.md). Payload: the scales
//! (little-endian f32), then the q values (i8), then the bytes of a trailing partial element, raw.
//!
//! The encoder measures the block's own error and refuses the block (None) when it holds NaN
//! or Inf, when its largest magnitude is outside [2^-40, 2^40] (where the f32 error sums could
//! under- or overflow), when it has more than `MAX_GROUPS` groups, or when the relative L2 error
//! `||x' - x|| / ||x||` exceeds the caller's bound.
use crate::DType;

/// Most groups in one block: the GPU keeps a block's scales in shared memory.
pub const MAX_GROUPS: usize = 2048;
/// Threads of the GPU's per-block reduction; the error sums follow its order (see `block_sum`).
pub const LANES: usize = 256;
const TINY: f32 = f32::from_bits(7 << 23); // 2^-120
const MIN_BLOCK_AMAX: f32 = f32::from_bits(87 << 23); // 2^-40
const MAX_BLOCK_AMAX: f32 = f32::from_bits(167 << 23); // 2^40

pub struct Encoded {
    pub payload: Vec<u8>,
    pub decoded: Vec<u8>,
    /// Relative L2 error of the decoded block.
    pub rel_l2: f32,
    /// Largest |x' - x| / scale over the groups (quantization alone gives at most 0.5).
    pub max_abs_over_scale: f32,
}

pub fn payload_len(n: usize, group: usize, tail: usize) -> usize {
    n.div_ceil(group) * 4 + n + tail
}

/// A group's (scale, inverse scale).
pub fn scale_of(amax: f32) -> (f32, f32) {
    if amax < TINY {
        (0.0, 0.0)
    } else {
        (amax / 127.0, 127.0 / amax)
    }
}

/// The quantised value of x as a float integer in [-127, 127]: `round_ties_even(x * inv)`
/// clamped. Rounded by adding and taking away 1.5 * 2^23 (as the GPU does), which is exact for
/// |x * inv| < 2^22 and, past that, leaves a value beyond ±127 of the same sign for the clamp:
/// equal to `round_ties_even` for every input but the sign of a zero (q is stored as an i8),
/// and no libm call.
#[inline]
pub fn quantize(x: f32, inv: f32) -> f32 {
    const MAGIC: f32 = 12582912.0;
    ((x * inv + MAGIC) - MAGIC).clamp(-127.0, 127.0)
}

pub fn encode(bytes: &[u8], dtype: DType, group: usize, max_rel_l2: f32) -> Option<Encoded> {
    if !dtype.is_float() || group == 0 {
        return None;
    }
    let w = dtype.width();
    let n = bytes.len() / w;
    let tail = &bytes[n * w..];
    let groups = n.div_ceil(group);
    if groups > MAX_GROUPS {
        return None;
    }
    let x: Vec<f32> = (0..n).map(|i| dtype.load(bytes, i)).collect();
    if x.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let amax: Vec<f32> = x.chunks(group).map(|g| g.iter().fold(0f32, |m, v| m.max(v.abs()))).collect();
    let block_amax = amax.iter().fold(0f32, |m, &a| m.max(a));
    if block_amax != 0.0 && !(MIN_BLOCK_AMAX..=MAX_BLOCK_AMAX).contains(&block_amax) {
        return None;
    }
    let mut payload = Vec::with_capacity(payload_len(n, group, tail.len()));
    let scales: Vec<(f32, f32)> = amax.iter().map(|&a| scale_of(a)).collect();
    for (s, _) in &scales {
        payload.extend_from_slice(&s.to_le_bytes());
    }
    let mut decoded = vec![0u8; bytes.len()];
    let mut worst = 0f32;
    let (mut err, mut refs) = (vec![0f32; n], vec![0f32; n]);
    for (g, (xs, &(s, inv))) in x.chunks(group).zip(&scales).enumerate() {
        let mut group_worst = 0f32; // max |x' - x|: one division a group (division is monotone)
        for (j, &v) in xs.iter().enumerate() {
            let i = g * group + j;
            let q = quantize(v, inv);
            payload.push(q as i8 as u8);
            // exactly what `decode` computes from the stored byte (so a -0.0 quotient is +0)
            dtype.store(&mut decoded, i, (q as i8) as f32 * s);
            let diff = dtype.load(&decoded, i) - v;
            err[i] = diff * diff;
            refs[i] = v * v;
            group_worst = group_worst.max(diff.abs());
        }
        if s > 0.0 {
            worst = worst.max(group_worst / s);
        }
    }
    let per_vector = 16 / w;
    let (err2, ref2) = (block_sum(&err, per_vector), block_sum(&refs, per_vector));
    payload.extend_from_slice(tail);
    decoded[n * w..].copy_from_slice(tail);
    let rel_l2 = if ref2 > 0.0 { (err2 / ref2).sqrt() } else if err2 > 0.0 { f32::INFINITY } else { 0.0 };
    if rel_l2 > max_rel_l2 {
        return None;
    }
    Some(Encoded { payload, decoded, rel_l2, max_abs_over_scale: worst })
}

/// The f32 sum of a block's per-element terms in the order the GPU's 256 threads compute it,
/// so that both agree to the bit. Element i is in 16-byte vector `i / per_vector`; thread
/// `vector % 256` adds its elements in increasing i (the elements of a last, partial vector
/// are thread 0's, after its others); each warp of 32 threads combines in an xor butterfly
/// (offsets 16, 8, 4, 2, 1); the 8 warp sums are added in order.
pub fn block_sum(terms: &[f32], per_vector: usize) -> f32 {
    let mut lanes = [0f32; LANES];
    let vectors = terms.chunks_exact(per_vector);
    let partial = vectors.remainder();
    for (v, vector) in vectors.enumerate() {
        let lane = &mut lanes[v % LANES];
        for t in vector {
            *lane += t;
        }
    }
    for t in partial {
        lanes[0] += t;
    }
    let mut total = 0f32;
    for warp in lanes.chunks_mut(32) {
        for off in [16, 8, 4, 2, 1] {
            let mut prev = [0f32; 32];
            prev.copy_from_slice(warp);
            for (l, lane) in warp.iter_mut().enumerate() {
                *lane = prev[l] + prev[l ^ off];
            }
        }
        total += warp[0];
    }
    total
}

/// None when the payload's length does not match.
pub fn decode(payload: &[u8], dtype: DType, group: usize, original_len: usize) -> Option<Vec<u8>> {
    if !dtype.is_float() || group == 0 {
        return None;
    }
    let w = dtype.width();
    let n = original_len / w;
    let tail = original_len - n * w;
    let groups = n.div_ceil(group);
    if payload.len() != payload_len(n, group, tail) {
        return None;
    }
    let (scales, rest) = payload.split_at(groups * 4);
    let scales: Vec<f32> = scales.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut out = vec![0u8; original_len];
    for i in 0..n {
        dtype.store(&mut out, i, rest[i] as i8 as f32 * scales[i / group]);
    }
    out[n * w..].copy_from_slice(&rest[n..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn quantisation_equals_round_ties_even_then_clamp_as_an_i8() {
        let reference = |x: f32, inv: f32| (x * inv).round_ties_even().clamp(-127.0, 127.0);
        let mut special = vec![0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 126.5, 127.49, 127.5, -127.5, 4194303.5, 4194304.0, -4194305.0, 1e30, -1e30];
        special.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, f32::MAX, -f32::MAX]);
        let mut bits = 0x9E37_79B9u32;
        let randoms = (0..1_000_000).map(|_| {
            bits ^= bits << 13;
            bits ^= bits >> 17;
            bits ^= bits << 5;
            f32::from_bits(bits)
        });
        for x in special.into_iter().chain(randoms) {
            for inv in [1.0, 127.0 / 3.0, 1e-3, 1e20, 0.0] {
                let (got, want) = (quantize(x, inv), reference(x, inv));
                assert!(got.is_nan() == want.is_nan() && (got.is_nan() || got as i8 == want as i8), "x {x} inv {inv}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn quantisation_rounds_ties_to_even_and_stays_within_127() {
        assert_eq!(quantize(2.5, 1.0), 2.0);
        assert_eq!(quantize(-3.5, 1.0), -4.0);
        assert_eq!(quantize(1000.0, 1.0), 127.0);
        let (s, inv) = scale_of(3.0);
        assert_eq!(quantize(3.0, inv), 127.0);
        assert_eq!(quantize(-3.0, inv), -127.0);
        assert!(s > 0.0 && (127.0 * s - 3.0).abs() < 1e-6);
    }

    #[test]
    fn a_group_below_two_to_the_minus_120_decodes_to_zero() {
        assert_eq!(scale_of(1e-37), (0.0, 0.0));
        // a tiny group beside a normal one: the tiny one gets scale 0, the block still packs
        let mut v = vec![1e-37f32; 16];
        v.extend((0..16).map(|i| i as f32 / 16.0));
        let e = encode(&f32_bytes(&v), DType::F32, 16, 0.5).expect("packs");
        assert_eq!(&e.payload[..4], &0f32.to_le_bytes());
        assert_eq!(&e.decoded[..4], &0f32.to_le_bytes());
    }

    #[test]
    fn blocks_outside_the_safe_magnitude_range_or_with_too_many_groups_are_refused() {
        assert!(encode(&f32_bytes(&[1e13, 1.0, -2.0, 3.0]), DType::F32, 2, 1.0).is_none());
        assert!(encode(&f32_bytes(&[1e-13, 1e-14, 0.0, 0.0]), DType::F32, 2, 1.0).is_none());
        assert!(encode(&f32_bytes(&[0.0; 8]), DType::F32, 2, 1.0).is_some(), "all zeros pack, error 0");
        let many = vec![0.5f32; MAX_GROUPS + 1];
        assert!(encode(&f32_bytes(&many), DType::F32, 1, 1.0).is_none());
        assert!(encode(&f32_bytes(&many[..MAX_GROUPS]), DType::F32, 1, 1.0).is_some());
    }

    #[test]
    fn reencoding_what_int8g_decoded_gives_it_back() {
        // The packing engine packs a weight whose lossy copy it threw away (a buffer it keeps
        // resident) from the bytes that copy decoded to, lossy again: the error must not grow.
        // Each group's largest value decodes to 127 scales rounded to the dtype, so the second
        // scale is within that rounding of the first and every code comes back the same; this
        // checks that what they decode to does too.
        let n = 1024 * 128;
        for dtype in [DType::BF16, DType::F16, DType::F32] {
            for kind in 0..4 {
                let mut bits = 0x2545_F491u32 + kind;
                let mut x = vec![0u8; n * dtype.width()];
                for i in 0..n {
                    // roughly normal: a sum of four uniforms
                    let mut g = 0f32;
                    for _ in 0..4 {
                        bits ^= bits << 13;
                        bits ^= bits >> 17;
                        bits ^= bits << 5;
                        g += (bits >> 8) as f32 / 16_777_216.0 - 0.5;
                    }
                    let v = match kind {
                        0 => g * 0.02,
                        1 if i % 3 == 0 => 0.0,
                        1 => g * 0.01,
                        2 => g * (1.0 + (i % 1000) as f32) * 1e-3,
                        _ => g * 300.0,
                    };
                    dtype.store(&mut x, i, v);
                }
                let first = encode(&x, dtype, 128, 0.01).expect("within the bound");
                let again = encode(&first.decoded, dtype, 128, 0.01).expect("within the bound");
                assert!(again.decoded == first.decoded, "{} kind {kind}: a second encode changed what decodes", dtype.name());
            }
        }
    }

    #[test]
    fn block_sum_follows_the_gpu_order() {
        // one term per 16-byte vector of f32 (4 elements): thread k gets vectors k, k+256, ...
        let terms: Vec<f32> = (0..4 * 600 + 3).map(|i| (i % 7) as f32 * 0.1).collect();
        let direct: f64 = terms.iter().map(|&t| t as f64).sum();
        assert!((block_sum(&terms, 4) as f64 - direct).abs() < 1e-3);
        // the partial vector's terms are thread 0's
        let mut only_tail = vec![0f32; 8];
        only_tail.push(1.5);
        assert_eq!(block_sum(&only_tail, 4), 1.5);
    }
}
