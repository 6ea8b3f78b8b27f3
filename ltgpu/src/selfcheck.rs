//! The GPU kernels checked against the CPU reference: generated inputs, an exactness sweep over
//! the kernels' paths, and malformed blocks that must come back as errors. `ltshim bench` runs
//! and prints these on every GPU run; `tests/gpu.rs` asserts them (and skips loudly without a
//! GPU). Here, not in the CLI, so that both use one definition.
use ltblock::{DType, EncodeOptions, Mode};

use crate::{descs_for, Gpu, GpuEncode, GpuError, Packed};

/// A seeded xorshift64* generator: inputs are the same on every run and machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn normal(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
        let v = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// `len` bytes of one kind of input: "weights" (normal, σ = 0.02), "relu" (|normal| + 1e-3 with
/// a fraction `zeros` of zeros), "random" bytes, "zeros", "oneexp" (every element in [1, 2):
/// one exponent) or "everyexp" (random bits, the exponent field cycling through all 256
/// values; f16: random bits).
pub fn input(kind: &str, dtype: DType, zeros: f64, len: usize) -> Vec<u8> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = vec![0u8; len];
    match kind {
        "random" => out.iter_mut().for_each(|b| *b = rng.next() as u8),
        "zeros" => {}
        "oneexp" => (0..len / dtype.width()).for_each(|i| dtype.store(&mut out, i, 1.0 + (rng.next() % 1000) as f32 / 1000.0)),
        "everyexp" => {
            let w = dtype.width();
            for i in 0..len / w {
                let bits = rng.next() as u32;
                let e = (i % 256) as u32;
                let bits = match dtype {
                    DType::BF16 => (bits & !(0xff << 7)) | (e << 7),
                    DType::F32 => (bits & !(0xff << 23)) | (e << 23),
                    _ => bits,
                };
                out[i * w..i * w + w].copy_from_slice(&bits.to_le_bytes()[..w]);
            }
        }
        _ => {
            for i in 0..len / dtype.width() {
                let v = rng.normal();
                let keep = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 >= zeros;
                if kind == "weights" {
                    dtype.store(&mut out, i, v * 0.02);
                } else if keep {
                    dtype.store(&mut out, i, v.abs() + 1e-3);
                }
            }
        }
    }
    out
}

pub struct SweepCase {
    pub name: String,
    pub packed_identical: bool,
    pub decode_identical: bool,
    /// What differed, in words, when something did.
    pub problem: Option<String>,
}

/// Odd lengths, partial blocks and elements, every int8g group-size path of the kernels (a
/// power of two, a multiple of the vector that is not one, one that splits vectors, groups
/// larger than a warp, too many groups for one block), NaN, Inf, a group below 2^-120 (bf16) or
/// of f16 subnormals, and -0.0; expf on every float dtype, odd lengths, special values, one
/// exponent and all 256: the whole GPU buffer (header, index, blocks) must equal the CPU
/// reference's, and so must its decode.
pub fn exactness_sweep(gpu: &Gpu) -> Result<Vec<SweepCase>, GpuError> {
    let mut cases: Vec<(&str, DType, f64, Mode, u32, usize)> = Vec::new();
    for g in [128, 32, 48, 100, 1024, 16, 8] {
        cases.push(("weights", DType::BF16, 0.0, Mode::Lossy, g, 3 * 65536 + 4099));
    }
    for dtype in [DType::F16, DType::F32] {
        for g in [128, 100, 16] {
            cases.push(("weights", dtype, 0.0, Mode::Lossy, g, 2 * 65536 + 1003));
        }
    }
    cases.push(("special", DType::BF16, 0.0, Mode::Lossy, 128, 4 * 65536));
    cases.push(("special", DType::F16, 0.0, Mode::Lossy, 128, 4 * 65536));
    cases.push(("relu", DType::BF16, 0.9, Mode::Lossless, 128, 65536 + 77));
    cases.push(("relu", DType::F32, 0.5, Mode::Lossy, 128, 2 * 65536 + 30));
    cases.push(("random", DType::U8, 0.0, Mode::Lossy, 128, 65536 + 5));
    cases.push(("zeros", DType::F32, 0.0, Mode::Lossless, 128, 100));
    // expf: odd lengths (a partial vector and a partial element), a short block, every dtype,
    // NaN/Inf/subnormals/-0.0, one exponent only, all 256 exponents, blocks int8g refuses in
    // lossy mode
    cases.push(("weights", DType::BF16, 0.0, Mode::Lossless, 128, 3 * 65536 + 4099));
    cases.push(("weights", DType::F16, 0.0, Mode::Lossless, 128, 2 * 65536 + 1003));
    cases.push(("weights", DType::F32, 0.0, Mode::Lossless, 128, 2 * 65536 + 1003));
    cases.push(("weights", DType::BF16, 0.0, Mode::Lossless, 128, 1000));
    cases.push(("weights", DType::F32, 0.0, Mode::Lossless, 128, 4 * 65536));
    cases.push(("special", DType::BF16, 0.0, Mode::Lossless, 128, 4 * 65536));
    cases.push(("special", DType::F16, 0.0, Mode::Lossless, 128, 4 * 65536));
    cases.push(("oneexp", DType::BF16, 0.0, Mode::Lossless, 128, 65536 + 14));
    cases.push(("oneexp", DType::F32, 0.0, Mode::Lossless, 128, 65536 + 7));
    cases.push(("everyexp", DType::BF16, 0.0, Mode::Lossless, 128, 2 * 65536));
    cases.push(("everyexp", DType::F32, 0.0, Mode::Lossless, 128, 65536 + 16384));
    cases.push(("special", DType::BF16, 0.0, Mode::Lossy, 16, 4 * 65536));
    let mut results = Vec::new();
    for (kind, dtype, zeros, mode, group, len) in cases {
        let data = case_input(kind, dtype, zeros, len);
        let opts = GpuEncode { dtype, lossy: mode == Mode::Lossy, group, max_rel_l2: 0.01 };
        let cpu = ltblock::encode(&data, &EncodeOptions { mode, dtype, group: group as usize, ..Default::default() });
        let dev_in = gpu.upload(&data)?;
        let packed = gpu.encode(dev_in.ptr, len, opts)?;
        let gpu_bytes = gpu.download(packed.buf.ptr, packed.len)?;
        let out = gpu.alloc(len)?;
        let decoded = gpu.decode(&descs_for(&packed, out.ptr)).and_then(|_| gpu.download(out.ptr, len));
        let expect = ltblock::decode(&cpu).expect("the CPU reference decodes its own output");
        let name = format!("{kind} {dtype:?} G={group} {len} B");
        let packed_identical = gpu_bytes == cpu;
        let decode_identical = matches!(&decoded, Ok(d) if *d == expect);
        let problem = (!packed_identical || !decode_identical).then(|| {
            let dec = match &decoded {
                Ok(_) if decode_identical => "same".to_string(),
                Ok(_) => "DIFFERS".to_string(),
                Err(e) => e.to_string(),
            };
            format!("packed {} ({} vs {} B), decode {dec}", if packed_identical { "same" } else { "DIFFERS" }, gpu_bytes.len(), cpu.len())
        });
        results.push(SweepCase { name, packed_identical, decode_identical, problem });
    }
    Ok(results)
}

pub struct MalformedCase {
    pub what: &'static str,
    pub expected_status: u32,
    /// The decode's outcome: Ok(ms) or the error (a `GpuError::Block` when reported right).
    pub got: Result<f32, GpuError>,
}

impl MalformedCase {
    pub fn reported(&self) -> bool {
        matches!(self.got, Err(GpuError::Block { block: 0, status }) if status == self.expected_status)
    }
}

/// Malformed blocks on the GPU: a flipped payload byte, a header claiming more than the block's
/// extent, a misaligned output and a bad magic must each come back as that block's error
/// status (never a fault). Returns the cases and whether a good decode right after them was
/// exact (the context stayed usable).
pub fn malformed_checks(gpu: &Gpu) -> Result<(Vec<MalformedCase>, bool), GpuError> {
    let data = input("relu", DType::BF16, 0.9, 2 * 65536);
    let opts = GpuEncode { dtype: DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let dev_in = gpu.upload(&data)?;
    let packed = gpu.encode(dev_in.ptr, data.len(), opts)?;
    let good = gpu.download(packed.buf.ptr, packed.len)?;
    let out = gpu.alloc(data.len() + 64)?;
    let b0 = packed.offsets[0] as usize;
    let payload_len = u32::from_le_bytes(good[b0 + 12..b0 + 16].try_into().unwrap()) as usize;
    let decode_with = |bytes: &[u8], extent_cut: u64, out_shift: u64| -> Result<Result<f32, GpuError>, GpuError> {
        let dev = gpu.upload(bytes)?;
        let copy = Packed { buf: dev, len: packed.len, offsets: packed.offsets.clone(), choices: Vec::new(), encode_ms: 0.0 };
        let mut descs = descs_for(&copy, out.ptr);
        descs[0].extent -= extent_cut;
        descs[0].out += out_shift;
        Ok(gpu.decode(&descs))
    };
    let mut flipped = good.clone();
    flipped[b0 + 32 + payload_len - 1] ^= 0x01;
    let mut bad_magic = good.clone();
    bad_magic[b0] = b'X';
    let inputs: [(&'static str, Vec<u8>, u64, u64, u32); 4] = [
        ("flipped payload byte", flipped, 0, 0, 4),
        ("header longer than the extent", good.clone(), 16, 0, 3),
        ("misaligned output", good.clone(), 0, 8, 6),
        ("bad magic", bad_magic, 0, 0, 1),
    ];
    let mut cases = Vec::new();
    for (what, bytes, cut, shift, expected_status) in inputs {
        cases.push(MalformedCase { what, expected_status, got: decode_with(&bytes, cut, shift)? });
    }
    let healthy = decode_with(&good, 0, 0)?.is_ok() && gpu.download(out.ptr, data.len())? == data;
    let (expf_cases, expf_healthy) = malformed_expf(gpu)?;
    cases.extend(expf_cases);
    Ok((cases, healthy && expf_healthy))
}

/// expf blocks (lossless bf16 weights): a flipped rest byte (status 4), a changed stream
/// length (3), a code length over 12 (3), a flipped stream byte (3 or 4: the stream no longer
/// ends where its length says, or decodes to other bytes; this case expects 4 only when the
/// CPU reference says checksum).
fn malformed_expf(gpu: &Gpu) -> Result<(Vec<MalformedCase>, bool), GpuError> {
    let data = input("weights", DType::BF16, 0.0, 2 * 65536);
    let opts = GpuEncode { dtype: DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let dev_in = gpu.upload(&data)?;
    let packed = gpu.encode(dev_in.ptr, data.len(), opts)?;
    let good = gpu.download(packed.buf.ptr, packed.len)?;
    let out = gpu.alloc(data.len())?;
    let b0 = packed.offsets[0] as usize;
    let p = b0 + 32; // the payload: 32768 rest bytes, then the code
    let nsyms = good[p + 32768 + 1] as usize + 1;
    let lens_at = p + 32768 + 4 + nsyms.div_ceil(2);
    let decode_with = |bytes: &[u8]| -> Result<Result<f32, GpuError>, GpuError> {
        let dev = gpu.upload(bytes)?;
        let copy = Packed { buf: dev, len: packed.len, offsets: packed.offsets.clone(), choices: Vec::new(), encode_ms: 0.0 };
        Ok(gpu.decode(&descs_for(&copy, out.ptr)))
    };
    let mut rest = good.clone();
    rest[p + 100] ^= 0x01;
    let mut stream_len = good.clone();
    stream_len[lens_at + 7] ^= 0x01;
    let mut code = good.clone();
    code[p + 32768 + 4] |= 0x0f; // the first symbol's length 15
    let mut stream = good.clone();
    stream[lens_at + 256 + 40] ^= 0x10;
    let cpu_status = match ltblock::decode(&stream) {
        Err(ltblock::CodecError::Checksum { .. }) => 4,
        _ => 3,
    };
    let mut cases = Vec::new();
    for (what, bytes, expected_status) in [("expf: flipped rest byte", rest, 4), ("expf: changed stream length", stream_len, 3), ("expf: code length over 12", code, 3), ("expf: flipped stream byte", stream, cpu_status)] {
        cases.push(MalformedCase { what, expected_status, got: decode_with(&bytes)? });
    }
    let healthy = decode_with(&good)?.is_ok() && gpu.download(out.ptr, data.len())? == data;
    Ok((cases, healthy))
}

/// The input of one exactness case: `input`'s kinds, and "special": weights whose block 1
/// holds a NaN, block 2 a group of denormals and -0.0, block 3 a value past 2^40 in bf16 (an
/// Inf in f16: f16 to f32 is the hardware's conversion on the GPU).
pub fn case_input(kind: &str, dtype: DType, zeros: f64, len: usize) -> Vec<u8> {
    let mut data = input(if kind == "special" { "weights" } else { kind }, dtype, zeros, len);
    if kind == "special" {
        let (nan, big) = if dtype == DType::F16 { (0x7e00u16, 0x7c00u16) } else { (0x7fc0, 0x7e00) };
        data[65536 + 10..65536 + 12].copy_from_slice(&nan.to_le_bytes());
        for i in 0..128 {
            data[2 * 65536 + 2 * i..2 * 65536 + 2 * i + 2].copy_from_slice(&(if i % 2 == 0 { 0x0001u16 } else { 0x8000 }).to_le_bytes());
        }
        data[3 * 65536 + 6..3 * 65536 + 8].copy_from_slice(&big.to_le_bytes());
    }
    data
}
