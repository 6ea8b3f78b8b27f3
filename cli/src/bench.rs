//! `ltshim bench`: throughput, ratio and error of each codec on each kind of input.
//!
//! On a GPU (`gpu_bench`): the device-to-device copy bandwidth first, then per input kind the
//! encode and decode time of the kernels (CUDA events, median of 5 after a warm-up), the ratio
//! and the error, with every block compared byte for byte against the CPU reference and every
//! decoded byte checked; then `ltgpu::selfcheck` (odd lengths, group sizes, NaN, malformed
//! blocks) and decode of many 2 MiB and 20 MiB buffers in one launch; any difference from the
//! CPU reference makes the exit status 1. Without a GPU it says so and measures the CPU
//! reference codecs, one core. Inputs are generated (seeded): weights from a normal
//! distribution (int8g: bf16 at G = 128 and 16, f16 and f32 at G = 128; expf: the same weights
//! in lossless mode, with their size beside the blocks' exponent-entropy bound), post-ReLU
//! activations in bf16 and f32 at 50/90/99% zeros, random bytes, all zeros; GPU inputs repeat
//! a 64 MiB generated tile. Decode of many 2 MiB and 20 MiB buffers in one launch is measured
//! for zvc (90% zeros) and expf (lossless bf16 weights). `--input FILE` adds a lossless row for
//! the tensors of a .npy or .safetensors file (on the GPU repeated to the input size): real
//! trained weights, which `scripts/trained_weights.py` fetches from the package registry.
use std::process::ExitCode;
use std::time::Instant;

use ltblock::{DType, EncodeOptions, Mode};
use ltgpu::selfcheck::input;

use crate::CliError;

/// A row: name, generated input kind, dtype, zero fraction, mode, group.
type Generated = (&'static str, &'static str, DType, f64, Mode, u32);
const CASES: [Generated; 15] = [
    ("bf16 weights, normal", "weights", DType::BF16, 0.0, Mode::Lossy, 128),
    ("bf16 weights, normal, G=16", "weights", DType::BF16, 0.0, Mode::Lossy, 16),
    ("f16 weights, normal", "weights", DType::F16, 0.0, Mode::Lossy, 128),
    ("f32 weights, normal", "weights", DType::F32, 0.0, Mode::Lossy, 128),
    ("bf16 weights, lossless", "weights", DType::BF16, 0.0, Mode::Lossless, 128),
    ("f16 weights, lossless", "weights", DType::F16, 0.0, Mode::Lossless, 128),
    ("f32 weights, lossless", "weights", DType::F32, 0.0, Mode::Lossless, 128),
    ("bf16 post-ReLU 50% zeros", "relu", DType::BF16, 0.5, Mode::Lossless, 128),
    ("bf16 post-ReLU 90% zeros", "relu", DType::BF16, 0.9, Mode::Lossless, 128),
    ("bf16 post-ReLU 99% zeros", "relu", DType::BF16, 0.99, Mode::Lossless, 128),
    ("f32 post-ReLU 50% zeros", "relu", DType::F32, 0.5, Mode::Lossless, 128),
    ("f32 post-ReLU 90% zeros", "relu", DType::F32, 0.9, Mode::Lossless, 128),
    ("f32 post-ReLU 99% zeros", "relu", DType::F32, 0.99, Mode::Lossless, 128),
    ("random bytes", "random", DType::U8, 0.0, Mode::Lossy, 128),
    ("all zeros", "zeros", DType::BF16, 0.0, Mode::Lossless, 128),
];

/// One row's input: generated (seeded) or the tensors of a file (`--input`).
#[derive(Clone)]
struct Case {
    name: String,
    /// The generated kind ("weights", "relu", ...), or "file".
    kind: &'static str,
    dtype: DType,
    zeros: f64,
    mode: Mode,
    group: u32,
    file: Option<std::sync::Arc<Vec<u8>>>,
}

impl Case {
    fn generated(c: Generated) -> Case {
        Case { name: c.0.to_string(), kind: c.1, dtype: c.2, zeros: c.3, mode: c.4, group: c.5, file: None }
    }

    /// A lossless row for the tensors of `path` (.npy or .safetensors of one float dtype).
    fn from_file(path: &str) -> Result<Case, CliError> {
        let bytes = std::fs::read(path).map_err(|e| CliError(format!("cannot read {path}: {e}")))?;
        let layout = crate::tensor_file::sniff(path, &bytes)?;
        let dtype = layout.dtype.filter(|d| d.is_float() && !layout.mixed).ok_or_else(|| CliError(format!("{path}: --input takes a .npy or .safetensors file of one float dtype (bf16, f16, f32)")))?;
        let mut data = bytes[layout.header_len..].to_vec();
        data.truncate(data.len() / dtype.width() * dtype.width());
        if data.is_empty() {
            return Err(CliError(format!("{path}: no tensor data")));
        }
        let base = std::path::Path::new(path).file_name().map_or(path.into(), |n| n.to_string_lossy().into_owned());
        Ok(Case { name: format!("{base}, lossless"), kind: "file", dtype, zeros: 0.0, mode: Mode::Lossless, group: 128, file: Some(std::sync::Arc::new(data)) })
    }

    /// `len` bytes of its input: generated, or the file's tensors repeated.
    fn input(&self, len: usize) -> Vec<u8> {
        match &self.file {
            None => input(self.kind, self.dtype, self.zeros, len),
            Some(d) => d.iter().copied().cycle().take(len / self.dtype.width() * self.dtype.width()).collect(),
        }
    }
}

/// One warm-up call, then the median of three.
fn median3(mut f: impl FnMut() -> f64) -> f64 {
    f();
    median(vec![f(), f(), f()])
}

pub fn run(args: &[String]) -> Result<ExitCode, CliError> {
    let mut size_mib: Option<usize> = None;
    let mut json_path = None;
    let mut rows_filter: Option<String> = None;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--size" => {
                size_mib = Some(args.get(i + 1).and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or_else(|| CliError("--size takes MiB, e.g. 1024".into()))?);
                i += 1;
            }
            "--json" => {
                json_path = Some(args.get(i + 1).cloned().ok_or_else(|| CliError("--json needs a path".into()))?);
                i += 1;
            }
            "--rows" => {
                rows_filter = Some(args.get(i + 1).cloned().ok_or_else(|| CliError("--rows needs a text that row names contain, e.g. lossless".into()))?);
                i += 1;
            }
            "--input" => {
                files.push(Case::from_file(args.get(i + 1).ok_or_else(|| CliError("--input needs a .npy or .safetensors file".into()))?)?);
                i += 1;
            }
            o => return Err(CliError(format!("unknown option {o:?} for bench"))),
        }
        i += 1;
    }
    let cases: Vec<Case> =
        CASES.into_iter().map(Case::generated).chain(files).filter(|c| rows_filter.as_ref().is_none_or(|f| c.name.contains(f.as_str()))).collect();
    if cases.is_empty() {
        return Err(CliError(format!("--rows {:?} matches no row", rows_filter.unwrap_or_default())));
    }
    match ltgpu::Gpu::new(0) {
        Ok(gpu) => return gpu_bench(&gpu, size_mib.unwrap_or(1024).max(2), json_path, &cases),
        Err(e) => println!("ltshim bench: no GPU to measure on ({e}); CPU reference codecs instead, one core, {} MiB inputs", size_mib.unwrap_or(64)),
    }
    let size_mib = size_mib.unwrap_or(64);
    let len = size_mib << 20;
    let mut rows = Vec::new();
    println!("{:<28} {:>7} {:>8} {:>7} {:>7} {:>12} {:>12} {:>8} {:>10}", "input", "codec", "ratio", "size %", "bound %", "encode GB/s", "decode GB/s", "err %", "max err %");
    for case in cases {
        let (name, dtype, mode, group) = (case.name.as_str(), case.dtype, case.mode, case.group);
        // a file's tensors as they are; generated inputs at the asked size
        let data = match &case.file {
            Some(d) => d.to_vec(),
            None => case.input(len),
        };
        let len = data.len();
        let opts = EncodeOptions { mode, dtype, group: group as usize, ..Default::default() };
        let mut packed = Vec::new();
        let enc = median3(|| {
            let t = Instant::now();
            packed = ltblock::encode(&data, &opts);
            t.elapsed().as_secs_f64()
        });
        let mut out = Vec::new();
        let dec = median3(|| {
            let t = Instant::now();
            out = ltblock::decode(&packed).expect("bench data decodes");
            t.elapsed().as_secs_f64()
        });
        let overall = overall_rel_l2(dtype, &data, &out) * 100.0;
        let s = ltblock::inspect(&packed).expect("bench data inspects");
        let mut codecs: Vec<&str> = s.blocks.iter().map(|b| b.codec.name()).collect();
        codecs.sort();
        codecs.dedup();
        let err = s.blocks.iter().map(|b| b.rel_l2).fold(0f32, f32::max) as f64 * 100.0;
        let (eg, dg) = (len as f64 / enc / 1e9, len as f64 / dec / 1e9);
        let bound = if mode == Mode::Lossless { entropy_bound(dtype, &data) } else { None };
        println!("{:<28} {:>7} {:>7.3}x {:>6.2}% {:>7} {:>12.2} {:>12.2} {:>8.4} {:>10.4}", name, codecs.join("+"), s.ratio(), 100.0 / s.ratio(), show_bound(bound), eg, dg, overall, err);
        rows.push(serde_json::json!({"input": name, "codecs": codecs, "ratio": s.ratio(), "size_fraction": 1.0 / s.ratio(), "entropy_bound_fraction": bound, "encode_gbps": eg, "decode_gbps": dg,
                                     "rel_l2": overall / 100.0, "max_rel_l2": err / 100.0, "bytes": len, "mode": if mode == Mode::Lossy { "lossy" } else { "lossless" }}));
    }
    if let Some(p) = json_path {
        let doc = serde_json::json!({"device": "cpu (one core): no GPU found", "inputs_mib": size_mib, "rows": rows});
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| CliError(format!("cannot write {p}: {e}")))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The blocks' exponent-entropy bound (`ltblock::codec::expf::entropy_bound`, summed over
/// 64 KiB blocks) as a fraction of the input; None for u8 (shown for lossless rows only).
fn entropy_bound(dtype: DType, data: &[u8]) -> Option<f64> {
    dtype.is_float().then(|| data.chunks(ltblock::format::DEFAULT_BLOCK_SIZE).map(|b| ltblock::codec::expf::entropy_bound(b, dtype)).sum::<f64>() / data.len() as f64)
}

fn show_bound(b: Option<f64>) -> String {
    b.map_or("-".into(), |b| format!("{:.2}%", b * 100.0))
}

/// Relative L2 error of `decoded` against `original` over the whole buffer (0 for u8).
fn overall_rel_l2(dtype: DType, original: &[u8], decoded: &[u8]) -> f64 {
    if !dtype.is_float() {
        return 0.0;
    }
    let (mut err, mut refs) = (0f64, 0f64);
    for i in 0..original.len() / dtype.width() {
        let (x, d) = (dtype.load(original, i) as f64, dtype.load(decoded, i) as f64);
        err += (d - x) * (d - x);
        refs += x * x;
    }
    if refs > 0.0 { (err / refs).sqrt() } else { 0.0 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn gerr(e: ltgpu::GpuError) -> CliError {
    CliError(format!("GPU: {e}"))
}

/// The blocks of a packed buffer, as byte slices (header, payload, padding).
fn blocks(packed: &[u8]) -> Vec<&[u8]> {
    let count = u32::from_le_bytes(packed[12..16].try_into().unwrap()) as usize;
    let off = |i: usize| u64::from_le_bytes(packed[40 + 8 * i..48 + 8 * i].try_into().unwrap()) as usize;
    (0..count).map(|b| &packed[off(b)..off(b + 1)]).collect()
}

/// `ltgpu::selfcheck`'s sweep and malformed blocks, printed; true when all went as they must.
fn selfcheck(gpu: &ltgpu::Gpu) -> Result<(serde_json::Value, bool), CliError> {
    let sweep = ltgpu::selfcheck::exactness_sweep(gpu).map_err(gerr)?;
    let bad: Vec<String> = sweep.iter().filter_map(|c| c.problem.as_ref().map(|p| format!("{}: {p}", c.name))).collect();
    if bad.is_empty() {
        println!("exactness sweep: {} cases (odd lengths, group sizes, NaN, tiny groups): GPU buffers and decodes identical to the CPU reference", sweep.len());
    } else {
        println!("exactness sweep: MISMATCH in {} of {} cases:\n  {}", bad.len(), sweep.len(), bad.join("\n  "));
    }
    let (malformed, healthy) = ltgpu::selfcheck::malformed_checks(gpu).map_err(gerr)?;
    for c in malformed.iter().filter(|c| !c.reported()) {
        println!("malformed block ({}): expected status {} ({}), got {:?}", c.what, c.expected_status, ltgpu::status_name(c.expected_status), c.got.as_ref().map_err(|e| e.to_string()));
    }
    let reported = malformed.iter().all(|c| c.reported());
    println!("malformed blocks on the GPU: flipped byte, overlong header, misaligned output, bad magic, expf rest/stream/length/code changes {}; a good decode afterwards {}",
             if reported { "reported as their errors" } else { "NOT all reported as expected" }, if healthy { "exact" } else { "FAILED" });
    let json = serde_json::json!({
        "sweep": sweep.iter().map(|c| serde_json::json!({"case": c.name, "packed_identical": c.packed_identical, "decode_identical": c.decode_identical})).collect::<Vec<_>>(),
        "malformed_reported": reported, "healthy_after": healthy});
    Ok((json, bad.is_empty() && reported && healthy))
}

fn gpu_bench(gpu: &ltgpu::Gpu, size_mib: usize, json_path: Option<String>, cases: &[Case]) -> Result<ExitCode, CliError> {
    let len = size_mib << 20;
    let tile_len = (64usize << 20).min(len);
    println!("ltshim bench: {} ({}), {size_mib} MiB inputs (a 64 MiB generated tile repeated), CUDA events, median of 5 after a warm-up", gpu.name, gpu.arch);
    let res: Vec<String> = gpu.kernel_resources().iter().map(|(n, r, l)| format!("{n} {r} regs/{l} B local")).collect();
    println!("kernels: {} (cubin: {})", res.join(", "), gpu.cubin_source);
    let src = gpu.alloc(len).map_err(gerr)?;
    let dst = gpu.alloc(len).map_err(gerr)?;
    let _ = gpu.copy_ms(&dst, &src, len).map_err(gerr)?;
    let copy_ms = median((0..5).map(|_| gpu.copy_ms(&dst, &src, len).map(|m| m as f64)).collect::<Result<Vec<_>, _>>().map_err(gerr)?);
    let copy_gbps = 2.0 * len as f64 / (copy_ms * 1e-3) / 1e9;
    println!("device-to-device copy: {copy_gbps:.0} GB/s counting bytes read plus written ({:.2} ms for {size_mib} MiB)", copy_ms);
    println!("{:<26} {:>6} {:>8} {:>7} {:>7} {:>9} {:>7} {:>9} {:>7} {:>7} {:>9}  check", "input", "codec", "ratio", "size %", "bound %", "enc GB/s", "enc %cp", "dec GB/s", "dec %cp", "err %", "max err %");
    let mut rows = Vec::new();
    let mut zvc90: Option<Vec<u8>> = None;
    let mut expf_tile: Option<Vec<u8>> = None;
    let mut all_exact = true;
    for case in cases {
        let (name, kind, dtype, zeros, mode, group) = (case.name.as_str(), case.kind, case.dtype, case.zeros, case.mode, case.group);
        let tile = case.input(tile_len);
        let tile_len = tile.len();
        let mut host = Vec::with_capacity(len);
        while host.len() < len {
            host.extend_from_slice(&tile[..tile_len.min(len - host.len())]);
        }
        let opts = ltgpu::GpuEncode { dtype, lossy: mode == Mode::Lossy, group, max_rel_l2: 0.01 };
        let cpu_opts = EncodeOptions { mode, dtype, group: group as usize, ..Default::default() };
        let dev_in = gpu.upload(&host).map_err(gerr)?;
        let packed = gpu.encode(dev_in.ptr, len, opts).map_err(gerr)?;
        // every GPU block against the CPU reference's block of the same tile position
        let gpu_bytes = gpu.download(packed.buf.ptr, packed.len).map_err(gerr)?;
        let cpu_tile = ltblock::encode(&tile, &cpu_opts);
        let (gb, cb) = (blocks(&gpu_bytes), blocks(&cpu_tile));
        let mismatched = gb.iter().enumerate().filter(|(b, g)| **g != cb[b % cb.len()]).count();
        let summary = ltblock::inspect(&gpu_bytes).map_err(|e| CliError(format!("GPU-packed buffer does not parse: {e}")))?;
        let enc_ms = median((0..5).map(|_| gpu.reencode_ms(dev_in.ptr, len, opts, &packed).map(|m| m as f64)).collect::<Result<Vec<_>, _>>().map_err(gerr)?);
        let out = gpu.alloc(len).map_err(gerr)?;
        let descs = ltgpu::descs_for(&packed, out.ptr);
        let _ = gpu.decode(&descs).map_err(gerr)?;
        let dec_ms = median((0..5).map(|_| gpu.decode(&descs).map(|m| m as f64)).collect::<Result<Vec<_>, _>>().map_err(gerr)?);
        let decoded = gpu.download(out.ptr, len).map_err(gerr)?;
        let expect_tile = ltblock::decode(&cpu_tile).map_err(|e| CliError(e.to_string()))?;
        let decode_ok = decoded.chunks(tile_len).all(|c| c == &expect_tile[..c.len()]);
        if kind == "relu" && dtype == DType::BF16 && zeros == 0.9 {
            zvc90 = Some(tile.clone());
        }
        if kind == "weights" && dtype == DType::BF16 && mode == Mode::Lossless {
            expf_tile = Some(tile.clone());
        }
        let ratio = summary.ratio();
        let enc_gbps = len as f64 / (enc_ms * 1e-3) / 1e9;
        let dec_gbps = len as f64 / (dec_ms * 1e-3) / 1e9;
        // traffic: encode reads the input once (the pack kernel stages each block in shared
        // memory) and writes the packed bytes; decode reads the packed bytes and writes the output
        let enc_frac = (len + packed.len) as f64 / (enc_ms * 1e-3) / 1e9 / copy_gbps;
        let dec_frac = (len + packed.len) as f64 / (dec_ms * 1e-3) / 1e9 / copy_gbps;
        let mut codecs: Vec<&str> = summary.blocks.iter().map(|b| b.codec.name()).collect();
        codecs.sort();
        codecs.dedup();
        let err = summary.blocks.iter().map(|b| b.rel_l2).fold(0f32, f32::max) as f64 * 100.0;
        let check = if mismatched == 0 && decode_ok { "bit-exact with CPU".to_string() } else { format!("MISMATCH: {mismatched} blocks differ, decode ok {decode_ok}") };
        let overall = overall_rel_l2(dtype, &tile, &expect_tile) * 100.0;
        let bound = if mode == Mode::Lossless { entropy_bound(dtype, &tile) } else { None };
        println!("{:<26} {:>6} {:>7.3}x {:>6.2}% {:>7} {:>9.0} {:>6.0}% {:>9.0} {:>6.0}% {:>7.4} {:>9.4}  {}", name, codecs.join("+"), ratio, 100.0 / ratio, show_bound(bound), enc_gbps, enc_frac * 100.0, dec_gbps, dec_frac * 100.0, overall, err, check);
        rows.push(serde_json::json!({"input": name, "codecs": codecs, "ratio": ratio, "size_fraction": 1.0 / ratio, "entropy_bound_fraction": bound, "encode_ms": enc_ms, "decode_ms": dec_ms,
            "encode_gbps_input": enc_gbps, "decode_gbps_input": dec_gbps, "encode_fraction_of_copy": enc_frac, "decode_fraction_of_copy": dec_frac,
            "first_encode_ms": packed.encode_ms, "rel_l2": overall / 100.0, "max_rel_l2": err / 100.0, "blocks": gb.len(), "blocks_mismatched": mismatched, "decode_exact": decode_ok}));
        if mismatched != 0 || !decode_ok {
            all_exact = false;
            eprintln!("ltshim bench: GPU output differs from the CPU reference for {name}");
        }
    }
    let (checks, checks_ok) = selfcheck(gpu)?;
    all_exact &= checks_ok;
    // many small buffers (PyTorch segments), decoded in one launch
    let mut small = Vec::new();
    // (for the rows that ran: --rows may have left one out)
    let tiles: Vec<(&str, Vec<u8>)> = [("bf16 90%-zero (zvc)", zvc90), ("bf16 weights (expf)", expf_tile)].into_iter().filter_map(|(w, t)| t.map(|t| (w, t))).collect();
    for ((what, tile), seg_mib) in tiles.iter().flat_map(|t| [(t, 2usize), (t, 20)]) {
        let seg = seg_mib << 20;
        let count = (len / seg).max(1);
        let dev_in = gpu.upload(&tile[..seg.min(tile.len())].repeat(seg.div_ceil(tile.len()))[..seg]).map_err(gerr)?;
        let opts = ltgpu::GpuEncode { dtype: DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
        let packs: Vec<ltgpu::Packed> = (0..count).map(|_| gpu.encode(dev_in.ptr, seg, opts)).collect::<Result<_, _>>().map_err(gerr)?;
        let out = gpu.alloc(count * seg).map_err(gerr)?;
        let descs: Vec<ltgpu::DecodeDesc> = packs.iter().enumerate().flat_map(|(i, p)| ltgpu::descs_for(p, out.ptr + (i * seg) as u64)).collect();
        let _ = gpu.decode(&descs).map_err(gerr)?;
        let ms = median((0..5).map(|_| gpu.decode(&descs).map(|m| m as f64)).collect::<Result<Vec<_>, _>>().map_err(gerr)?);
        let packed_total: usize = packs.iter().map(|p| p.len).sum();
        let frac = (count * seg + packed_total) as f64 / (ms * 1e-3) / 1e9 / copy_gbps;
        let check = gpu.download(out.ptr + ((count - 1) * seg) as u64, seg).map_err(gerr)? == tile[..seg.min(tile.len())].repeat(seg.div_ceil(tile.len()))[..seg];
        all_exact &= check;
        println!("decode of {count} x {seg_mib} MiB {what} buffers in one launch: {:.0} GB/s of output, {:.0}% of copy, last buffer exact: {check}", (count * seg) as f64 / (ms * 1e-3) / 1e9, frac * 100.0);
        small.push(serde_json::json!({"input": what, "buffer_mib": seg_mib, "buffers": count, "decode_ms": ms, "fraction_of_copy": frac, "exact": check}));
    }
    if let Some(p) = json_path {
        let doc = serde_json::json!({"device": gpu.name, "arch": gpu.arch, "inputs_mib": size_mib, "copy_gbps_read_plus_write": copy_gbps, "rows": rows, "small_buffers": small, "selfcheck": checks});
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| CliError(format!("cannot write {p}: {e}")))?;
    }
    if !all_exact {
        eprintln!("ltshim bench: the GPU's output differs from the CPU reference (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
