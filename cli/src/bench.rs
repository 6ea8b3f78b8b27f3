//! `ltshim bench`: throughput, ratio and error of each codec on each kind of input.
//!
//! The GPU kernels are not built yet, so this measures the CPU reference codecs, one core,
//! and says so. Inputs are generated (seeded): bf16 weights from a normal distribution,
//! post-ReLU activations in bf16 and f32 at 50/90/99% zeros, random bytes, all zeros. Each
//! figure is the median of 3 timed runs after one warm-up.
use std::process::ExitCode;
use std::time::Instant;

use ltblock::{DType, EncodeOptions, Mode};

use crate::CliError;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
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

fn input(kind: &str, dtype: DType, zeros: f64, len: usize) -> Vec<u8> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = vec![0u8; len];
    match kind {
        "random" => out.iter_mut().for_each(|b| *b = rng.next() as u8),
        "zeros" => {}
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

fn median3(mut f: impl FnMut() -> f64) -> f64 {
    f();
    let mut t = [f(), f(), f()];
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[1]
}

pub fn run(args: &[String]) -> Result<ExitCode, CliError> {
    let mut size_mib = 64usize;
    let mut json_path = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--size" => {
                size_mib = args.get(i + 1).and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or_else(|| CliError("--size takes MiB, e.g. 1024".into()))?;
                i += 1;
            }
            "--json" => {
                json_path = Some(args.get(i + 1).cloned().ok_or_else(|| CliError("--json needs a path".into()))?);
                i += 1;
            }
            o => return Err(CliError(format!("unknown option {o:?} for bench"))),
        }
        i += 1;
    }
    println!("ltshim bench: the GPU kernels are not built yet; CPU reference codecs, one core, {size_mib} MiB inputs");
    let len = size_mib << 20;
    let cases: [(&str, &str, DType, f64, Mode); 9] = [
        ("bf16 weights, normal", "weights", DType::BF16, 0.0, Mode::Lossy),
        ("bf16 post-ReLU 50% zeros", "relu", DType::BF16, 0.5, Mode::Lossless),
        ("bf16 post-ReLU 90% zeros", "relu", DType::BF16, 0.9, Mode::Lossless),
        ("bf16 post-ReLU 99% zeros", "relu", DType::BF16, 0.99, Mode::Lossless),
        ("f32 post-ReLU 50% zeros", "relu", DType::F32, 0.5, Mode::Lossless),
        ("f32 post-ReLU 90% zeros", "relu", DType::F32, 0.9, Mode::Lossless),
        ("f32 post-ReLU 99% zeros", "relu", DType::F32, 0.99, Mode::Lossless),
        ("random bytes", "random", DType::U8, 0.0, Mode::Lossy),
        ("all zeros", "zeros", DType::BF16, 0.0, Mode::Lossless),
    ];
    let mut rows = Vec::new();
    println!("{:<28} {:>7} {:>8} {:>12} {:>12} {:>10}", "input", "codec", "ratio", "encode GB/s", "decode GB/s", "max err %");
    for (name, kind, dtype, zeros, mode) in cases {
        let data = input(kind, dtype, zeros, len);
        let opts = EncodeOptions { mode, dtype, ..Default::default() };
        let mut packed = Vec::new();
        let enc = median3(|| {
            let t = Instant::now();
            packed = ltblock::encode(&data, &opts);
            t.elapsed().as_secs_f64()
        });
        let dec = median3(|| {
            let t = Instant::now();
            let out = ltblock::decode(&packed).expect("bench data decodes");
            std::hint::black_box(out);
            t.elapsed().as_secs_f64()
        });
        let s = ltblock::inspect(&packed).expect("bench data inspects");
        let mut codecs: Vec<&str> = s.blocks.iter().map(|b| b.codec.name()).collect();
        codecs.sort();
        codecs.dedup();
        let err = s.blocks.iter().map(|b| b.rel_l2).fold(0f32, f32::max) as f64 * 100.0;
        let (eg, dg) = (len as f64 / enc / 1e9, len as f64 / dec / 1e9);
        println!("{:<28} {:>7} {:>7.3}x {:>12.2} {:>12.2} {:>10.4}", name, codecs.join("+"), s.ratio(), eg, dg, err);
        rows.push(serde_json::json!({"input": name, "codecs": codecs, "ratio": s.ratio(), "encode_gbps": eg, "decode_gbps": dg,
                                     "max_rel_l2": err / 100.0, "bytes": len, "mode": if mode == Mode::Lossy { "lossy" } else { "lossless" }}));
    }
    if let Some(p) = json_path {
        let doc = serde_json::json!({"device": "cpu (one core): GPU kernels not built yet", "inputs_mib": size_mib, "rows": rows});
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| CliError(format!("cannot write {p}: {e}")))?;
    }
    Ok(ExitCode::SUCCESS)
}
