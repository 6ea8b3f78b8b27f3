//! `ltshim pack | unpack | inspect`: the CPU reference codecs on files.
use std::io::Write;
use std::process::ExitCode;

use ltblock::{Codec, DType, EncodeOptions, Mode};

use crate::tensor_file;
use crate::CliError;

fn read(path: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError(format!("cannot read {path}: {e}")))
}

fn write(path: &str, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|e| CliError(format!("cannot write {path}: {e}")))
}

/// A knob's value as the default of a flag (the library reads the same variables).
fn env_default<T: std::str::FromStr>(name: &str, fallback: T) -> Result<T, CliError> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| CliError(format!("{name}={v:?} is not valid"))),
        Err(_) => Ok(fallback),
    }
}

pub fn pack(args: &[String]) -> Result<ExitCode, CliError> {
    let mut pos = Vec::new();
    let (mut dtype, mut mode) = (None, Mode::Lossless);
    let mut group: usize = env_default("LTSHIM_INT8_GROUP", 128)?;
    let mut max_err: f32 = env_default("LTSHIM_INT8_MAX_ERR", 0.01)?;
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().ok_or_else(|| CliError(format!("{} needs a value", args[i])));
        match args[i].as_str() {
            "--dtype" => {
                let v = value()?;
                dtype = Some(DType::parse(&v).ok_or_else(|| CliError(format!("--dtype {v:?} is not one of bf16, f16, f32, u8")))?);
                i += 1;
            }
            "--mode" => {
                mode = match value()?.as_str() {
                    "lossless" => Mode::Lossless,
                    "lossy" => Mode::Lossy,
                    v => return Err(CliError(format!("--mode {v:?} is not one of lossless, lossy"))),
                };
                i += 1;
            }
            "--group" => {
                group = value()?.parse().ok().filter(|g| (1..=65535).contains(g)).ok_or_else(|| CliError("--group takes 1..65535".into()))?;
                i += 1;
            }
            "--max-err" => {
                max_err = value()?.parse().ok().filter(|e: &f32| *e >= 0.0).ok_or_else(|| CliError("--max-err takes a relative L2 error such as 0.01".into()))?;
                i += 1;
            }
            o if o.starts_with("--") => return Err(CliError(format!("unknown option {o:?} for pack"))),
            _ => pos.push(args[i].clone()),
        }
        i += 1;
    }
    let [input, output] = &pos[..] else { return Err(CliError("usage: ltshim pack IN OUT [--dtype bf16|f16|f32|u8] [--mode lossless|lossy] [--group G] [--max-err E]".into())) };
    let data = read(input)?;
    let layout = tensor_file::sniff(input, &data)?;
    let dtype = match (dtype, layout.dtype) {
        (Some(d), _) => d,
        (None, Some(d)) => d,
        (None, None) if mode == Mode::Lossy => return Err(CliError(format!("{input}: cannot tell the element type; pass --dtype"))),
        (None, None) => DType::U8,
    };
    if mode == Mode::Lossy && (!dtype.is_float() || layout.mixed) {
        return Err(CliError(format!("{input}: lossy packing needs one float dtype (this {} holds {}); use --mode lossless", layout.kind, if layout.mixed { "several dtypes" } else { dtype.name() })));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = EncodeOptions { mode, dtype, group, max_rel_l2: max_err, lossless_prefix: layout.header_len, threads, ..Default::default() };
    let show = data.len() > 64 << 20;
    let mut last = 0;
    let (mut int8g_blocks, mut worst_l2, mut worst_abs) = (0usize, 0f32, 0f32);
    let packed = ltblock::encode_with_progress(&data, &opts, |done, total, report| {
        if report.codec == ltblock::Codec::Int8g {
            int8g_blocks += 1;
            worst_l2 = worst_l2.max(report.rel_l2);
            worst_abs = worst_abs.max(report.max_abs_over_scale);
        }
        let pct = done * 100 / total.max(1);
        if show && pct >= last + 10 {
            last = pct;
            eprint!("\rpacking {input}: {pct}%");
            let _ = std::io::stderr().flush();
        }
    });
    if show {
        eprintln!();
    }
    write(output, &packed)?;
    let s = ltblock::inspect(&packed).map_err(|e| CliError(format!("internal error: the packed data does not read back: {e}")))?;
    println!("{input} ({}, {}): {} -> {} bytes, {:.3}x", layout.kind, dtype.name(), data.len(), packed.len(), s.ratio());
    if int8g_blocks > 0 {
        println!("  {int8g_blocks} int8g blocks: relative L2 error max {:.4}%, max |x' - x| / group scale {worst_abs:.4}", worst_l2 * 100.0);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unpack(args: &[String]) -> Result<ExitCode, CliError> {
    let [input, output] = args else { return Err(CliError("usage: ltshim unpack IN OUT".into())) };
    let packed = read(input)?;
    let data = ltblock::decode(&packed).map_err(|e| CliError(format!("{input}: {e}")))?;
    write(output, &data)?;
    println!("{input}: {} -> {} bytes", packed.len(), data.len());
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(args: &[String]) -> Result<ExitCode, CliError> {
    let [input] = args else { return Err(CliError("usage: ltshim inspect FILE".into())) };
    let packed = read(input)?;
    let s = ltblock::inspect(&packed).map_err(|e| CliError(format!("{input}: {e}")))?;
    println!("{input}: {} mode, dtype {}, {} blocks", if s.mode == Mode::Lossy { "lossy" } else { "lossless" }, s.dtype.name(), s.blocks.len());
    println!("  original {} bytes, packed {} bytes, ratio {:.3}x, lossless header {} bytes", s.original_len, s.packed_len, s.ratio(), s.lossless_prefix);
    println!("  {:<6} {:>8} {:>14} {:>14} {:>8}", "codec", "blocks", "original", "payload", "ratio");
    for c in Codec::ALL {
        let bs: Vec<_> = s.blocks.iter().filter(|b| b.codec == c).collect();
        if bs.is_empty() {
            continue;
        }
        let o: u64 = bs.iter().map(|b| b.original_len as u64).sum();
        let p: u64 = bs.iter().map(|b| b.payload_len as u64).sum();
        println!("  {:<6} {:>8} {:>14} {:>14} {:>7.3}x", c.name(), bs.len(), o, p, o as f64 / p.max(1) as f64);
    }
    let lossy: Vec<f32> = s.blocks.iter().filter(|b| b.codec.is_lossy()).map(|b| b.rel_l2).collect();
    if !lossy.is_empty() {
        let mean = lossy.iter().map(|&e| e as f64).sum::<f64>() / lossy.len() as f64;
        println!("  lossy blocks: relative L2 error max {:.4}%, mean {:.4}%", lossy.iter().fold(0f32, |a, &b| a.max(b)) * 100.0, mean * 100.0);
    }
    Ok(ExitCode::SUCCESS)
}
