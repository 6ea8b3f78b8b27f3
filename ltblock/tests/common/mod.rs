//! A small deterministic generator (xorshift64*), so the property tests need no dependency and
//! a failure reproduces from its seed.
#![allow(dead_code)]
use ltblock::DType;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-300), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// `len` bytes of `dtype` elements, `zeros` of them zero; values normal, with NaN, Inf,
/// denormals and -0.0 sprinkled in when `specials`.
pub fn data(rng: &mut Rng, dtype: DType, len: usize, zeros: f64, specials: bool) -> Vec<u8> {
    let w = dtype.width();
    let mut out = vec![0u8; len];
    for i in 0..len / w {
        if rng.unit() < zeros {
            continue;
        }
        let mut v = rng.normal();
        if specials {
            match rng.next() % 50 {
                0 => v = f32::NAN,
                1 => v = f32::INFINITY,
                2 => v = -0.0,
                3 => v = f32::from_bits(1 + (rng.next() % 1000) as u32), // denormal
                _ => {}
            }
        }
        if dtype == DType::U8 {
            out[i] = (rng.next() % 255 + 1) as u8;
        } else {
            dtype.store(&mut out, i, v);
        }
    }
    for b in out[len / w * w..].iter_mut() {
        *b = rng.next() as u8;
    }
    out
}
