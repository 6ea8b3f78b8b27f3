//! int8g: symmetric int8 with one f32 scale per group of G contiguous elements, lossy, for
//! f32, f16 and bf16. `scale = max|x| / 127` (0 for an all-zero group); `q = round(x / scale)`
//! (ties away from zero, clamped to ±127); decoded `x' = q * scale`, rounded to the input
//! dtype (nearest even). Payload: the scales (little-endian f32), then the q values (i8), then
//! the bytes of a trailing partial element, raw.
//!
//! The encoder measures the block's own error and refuses the block (None) when it holds NaN
//! or Inf, or when the relative L2 error `||x' - x|| / ||x||` exceeds the caller's bound.
use crate::DType;

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

pub fn encode(bytes: &[u8], dtype: DType, group: usize, max_rel_l2: f32) -> Option<Encoded> {
    if !dtype.is_float() || group == 0 {
        return None;
    }
    let w = dtype.width();
    let n = bytes.len() / w;
    let tail = &bytes[n * w..];
    let x: Vec<f32> = (0..n).map(|i| dtype.load(bytes, i)).collect();
    if x.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let groups = n.div_ceil(group);
    let mut payload = Vec::with_capacity(payload_len(n, group, tail.len()));
    let mut scales = Vec::with_capacity(groups);
    for g in x.chunks(group) {
        let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = amax / 127.0;
        scales.push(s);
        payload.extend_from_slice(&s.to_le_bytes());
    }
    let mut decoded = vec![0u8; bytes.len()];
    let mut worst = 0f32;
    let mut diff = vec![0f64; n];
    for (i, &v) in x.iter().enumerate() {
        let s = scales[i / group];
        let q = if s > 0.0 { (v / s).round().clamp(-127.0, 127.0) as i8 } else { 0 };
        payload.push(q as u8);
        // exactly what `decode` computes from the stored byte (so a -0.0 quotient is +0)
        dtype.store(&mut decoded, i, q as f32 * s);
        let d = dtype.load(&decoded, i);
        diff[i] = d as f64 - v as f64;
        if s > 0.0 {
            worst = worst.max((d - v).abs() / s);
        }
    }
    let (mut err2, mut ref2) = (0f64, 0f64);
    for g in 0..groups {
        let r = g * group..((g + 1) * group).min(n);
        err2 += warp_sum_of_squares(&diff[r.clone()]);
        ref2 += warp_sum_of_squares(&x[r].iter().map(|&v| v as f64).collect::<Vec<_>>());
    }
    payload.extend_from_slice(tail);
    decoded[n * w..].copy_from_slice(tail);
    let rel_l2 = if ref2 > 0.0 { (err2 / ref2).sqrt() as f32 } else if err2 > 0.0 { f32::INFINITY } else { 0.0 };
    if rel_l2 > max_rel_l2 {
        return None;
    }
    Some(Encoded { payload, decoded, rel_l2, max_abs_over_scale: worst })
}

/// The sum of squares of one group in the order a GPU warp computes it, so that the GPU and
/// this reference agree to the bit: lane `l` adds the squares of elements `l, l+32, l+64, ...`
/// in turn, then the 32 lane sums combine in an xor butterfly (offsets 16, 8, 4, 2, 1), and
/// lane 0's value is the result. (Addition is commutative, so both lanes of a pair agree.)
pub fn warp_sum_of_squares(v: &[f64]) -> f64 {
    let mut lanes = [0f64; 32];
    for (j, x) in v.iter().enumerate() {
        lanes[j % 32] += x * x;
    }
    for off in [16, 8, 4, 2, 1] {
        let prev = lanes;
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane = prev[l] + prev[l ^ off];
        }
    }
    lanes[0]
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
