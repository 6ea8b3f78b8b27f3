//! Element types, and the float conversions the lossy codec needs (round to nearest even).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    U8,
    F16,
    BF16,
    F32,
}

impl DType {
    pub fn id(self) -> u8 {
        match self {
            DType::U8 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
            DType::F32 => 3,
        }
    }

    pub fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::U8,
            1 => DType::F16,
            2 => DType::BF16,
            3 => DType::F32,
            _ => return None,
        })
    }

    pub fn width(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }

    pub fn is_float(self) -> bool {
        self != DType::U8
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "u8" => DType::U8,
            "f16" | "float16" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "f32" | "float32" => DType::F32,
            _ => return None,
        })
    }

    /// Element `i` of little-endian bytes as f32 (floats only).
    #[inline]
    pub fn load(self, bytes: &[u8], i: usize) -> f32 {
        let w = self.width();
        let b = &bytes[i * w..i * w + w];
        match self {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            DType::U8 => b[0] as f32,
        }
    }

    /// Writes `v` as element `i` (rounded to nearest even for the narrow floats).
    #[inline]
    pub fn store(self, out: &mut [u8], i: usize, v: f32) {
        let w = self.width();
        let o = &mut out[i * w..i * w + w];
        match self {
            DType::F32 => o.copy_from_slice(&v.to_le_bytes()),
            DType::BF16 => o.copy_from_slice(&f32_to_bf16(v).to_le_bytes()),
            DType::F16 => o.copy_from_slice(&f32_to_f16(v).to_le_bytes()),
            DType::U8 => o[0] = v as u8,
        }
    }
}

pub fn f32_to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    let rounding = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(rounding) >> 16) as u16
}

pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: value = m * 2^-24
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

pub fn f32_to_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00; // overflow to infinity
    }
    if e <= 0 {
        if e < -10 {
            return sign; // underflow to zero
        }
        // subnormal: shift the mantissa (with its implicit 1) right, round to nearest even
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1; // may carry into the exponent, which is the right answer
    }
    sign | r as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trips_every_value() {
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if v.is_nan() {
                assert!(f16_to_f32(f32_to_f16(v)).is_nan());
            } else {
                assert_eq!(f32_to_f16(v), h, "{h:#x} -> {v}");
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even stays
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd rounds up
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
    }
}
