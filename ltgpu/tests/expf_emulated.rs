//! expf's device code without a GPU: `kernels/expf.cuh` (with the `common.cuh` helpers it
//! calls) compiled by the host C++ compiler against `tests/emu/emu.h`, a small emulation of
//! the CUDA subset it uses (a std::thread per CUDA thread, barriers for `__syncthreads` and the
//! warp exchanges), and run as one CTA on blocks the CPU reference encoded: the emulated GPU
//! encode must give the same payload byte for byte, the decode the same bytes and checksum,
//! and corrupted payloads must never read out of bounds (AddressSanitizer where it links) nor
//! decode unnoticed. A second test runs the whole kernels of `kernels/ltblock.cu` the same way
//! (pack, buffer header and decode, every codec, CTA by CTA in ticket order) against
//! `ltblock::encode` and `decode`. This is what CI can check of the kernels' logic; timing,
//! occupancy and the real hardware's memory model stay for `scripts/device/accept_float.sh`.
//! Without a C++20 compiler the tests say so loudly and return (LTGPU_REQUIRE_CXX=1 makes that
//! a failure).
use std::io::Write;
use std::path::Path;
use std::process::Command;

use ltblock::codec::expf;
use ltblock::{DType, EncodeOptions, Mode};

/// `src` without its inline-assembly statements (`asm(...);`): the host compiler cannot take
/// them, and the functions holding them (f16 to f32 by the hardware, paired conversions) are
/// not used by expf.
fn strip_asm(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("asm(") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(");").map_or(rest.len(), |e| i + e + 2);
        out.push_str("(void)0;");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.replace("float f;", "float f = 0;").replace("u32 r;\n    if (dt == DT_BF16)", "u32 r = 0;\n    if (dt == DT_BF16)")
}

/// emu.h, common.cuh (no asm), ltblock.cu's vec_terms, expf.cuh: one header.
fn kernels_header() -> String {
    let lt = ltgpu::LTBLOCK;
    let start = lt.find("__device__ __forceinline__ u32 vec_terms(").expect("vec_terms in ltblock.cu");
    let end = start + lt[start..].find("\n}\n").expect("end of vec_terms") + 3;
    let vpt = lt.lines().find(|l| l.starts_with("#define VPT ")).expect("VPT in ltblock.cu");
    format!("#pragma once\n#include \"emu.h\"\n{vpt}\n{}\n{}\n{}", strip_asm(&ltgpu::COMMON.replace("#pragma once", "")), &lt[start..end], ltgpu::EXPF.replace("#pragma once", ""))
}

use ltgpu::selfcheck::Rng;

/// Blocks of every float dtype: normal weights at full and odd lengths (partial vectors and
/// elements, a block of one partial vector), NaN/Inf/subnormal/-0.0 sprinkled, one exponent,
/// all 256 exponents.
fn blocks() -> Vec<(DType, Vec<u8>)> {
    let mut out = Vec::new();
    let cases: [(DType, usize, &str); 20] = [
        (DType::BF16, 65536, "weights"),
        (DType::F16, 65536, "weights"),
        (DType::F32, 65536, "weights"),
        (DType::BF16, 65536 - 4099, "weights"),
        (DType::F16, 1003, "weights"),
        (DType::F32, 65536 - 1003, "weights"),
        (DType::BF16, 1000, "weights"),
        (DType::BF16, 65536, "special"),
        (DType::F16, 65536, "special"),
        (DType::F32, 65536, "special"),
        (DType::BF16, 65536 - 14, "oneexp"),
        (DType::F32, 7, "weights"),
        (DType::BF16, 3, "weights"),
        (DType::BF16, 16384, "everyexp"),
        (DType::F32, 65536, "everyexp"),
        (DType::BF16, 65536, "skewed"),
        (DType::F32, 65536 - 36, "skewed"),
        (DType::F16, 65536, "skewed"),
        (DType::F16, 65536, "wide"),
        (DType::BF16, 65536 - 2, "wide"),
    ];
    for (dtype, len, kind) in cases {
        let w = dtype.width();
        let mut rng = Rng(len as u64 * 31 + w as u64);
        let mut data = if kind == "skewed" {
            // exponent 100 + k with probability 2^-(k+1) (k: the trailing zeros of i + 1), so
            // the Huffman tree is deeper than EXPF_L and the lengths must be limited
            (0..len / w)
                .flat_map(|i| {
                    let e = 100 + ((i + 1).trailing_zeros() as u32).min(40);
                    let b = if w == 4 { (e << 23) | (rng.next() as u32 & 0x807f_ffff) } else { (e << 7) | (rng.next() as u32 & 0x807f) };
                    b.to_le_bytes()[..w].to_vec()
                })
                .chain(std::iter::repeat(0).take(len % w))
                .collect()
        } else if kind == "wide" {
            // every high byte, skewed toward 0 (256 u^3): as many symbols as a block can have,
            // most of them rare, so the tree is wide and deep (a trained f16 block has 116-155)
            (0..len / w)
                .flat_map(|_| {
                    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                    let hi = ((256.0 * u * u * u) as u32).min(255);
                    ((hi << 8) | (rng.next() as u32 & 0xff)).to_le_bytes()[..2].to_vec()
                })
                .chain(std::iter::repeat(0).take(len % w))
                .collect()
        } else {
            ltgpu::selfcheck::input(if kind == "special" { "weights" } else { kind }, dtype, 0.0, len)
        };
        if kind == "special" {
            for i in (0..len / w).step_by(37) {
                let inf_nan = if w == 4 { 0x7f80_0000 } else if dtype == DType::BF16 { 0x7f80 } else { 0x7c00 };
                let b = rng.next() as u32 | inf_nan;
                data[i * w..i * w + w].copy_from_slice(&b.to_le_bytes()[..w]);
            }
            for i in (0..len / w).step_by(41) {
                let sub = if w == 4 { 0x807f_ffff } else { 0x807f };
                let b = rng.next() as u32 & sub;
                data[i * w..i * w + w].copy_from_slice(&b.to_le_bytes()[..w]);
            }
        }
        for b in data[len / w * w..].iter_mut() {
            *b = rng.next() as u8;
        }
        out.push((dtype, data));
    }
    out
}

/// ltblock.cu whole for the host: common.cuh's conversions by their C versions (the hardware's
/// cvt rounds the same way), cp.async as plain 16-byte copies (the waits and commits vanish),
/// launch bounds and `extern "C" __global__` dropped, shared memory as function statics (one
/// CTA runs at a time, so they are its shared memory), `__ldcg` as a volatile load.
fn whole_kernels_header() -> String {
    let common = ltgpu::COMMON
        .replace("#pragma once", "")
        .replace("asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));", "f = emu_f16_to_f32(h);")
        .replace(
            "if (dt == DT_BF16) asm(\"cvt.rn.bf16x2.f32 %0, %1, %2;\" : \"=r\"(r) : \"f\"(hi), \"f\"(lo));\n    else asm(\"cvt.rn.f16x2.f32 %0, %1, %2;\" : \"=r\"(r) : \"f\"(hi), \"f\"(lo));",
            "if (dt == DT_BF16) r = f32_to_bf16(lo) | ((u32)f32_to_bf16(hi) << 16);\n    else r = f32_to_f16(lo) | ((u32)f32_to_f16(hi) << 16);",
        );
    let mut k = ltgpu::LTBLOCK.replace("#include \"common.cuh\"", &common).replace("#include \"expf.cuh\"", &ltgpu::EXPF.replace("#pragma once", ""));
    k = k.replace(
        "        u32 dst = (u32)__cvta_generic_to_shared(stage + v);\n        asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16;\" ::\"r\"(dst), \"l\"(src + 16 * v) : \"memory\");",
        "        stage[v] = ((const uint4*)src)[v];",
    );
    for g in ["wait_group 0", "wait_group 1", "wait_group 2", "wait_group 3", "commit_group", "wait_all"] {
        k = k.replace(&format!("asm volatile(\"cp.async.{g};\" ::: \"memory\");"), "(void)0;");
    }
    for b in ["__launch_bounds__(LTB_THREADS, 3)", "__launch_bounds__(LTB_THREADS, 4)", "__launch_bounds__(LTB_THREADS)"] {
        k = k.replace(b, "");
    }
    k = k.replace("extern \"C\" __global__", "").replace("extern __shared__ uint4 dyn[];", "uint4* dyn = g_dyn;").replace("__shared__", "static").replace("__ldcg(", "emu_ldcg(");
    assert!(!k.contains("asm"), "ltblock.cu has assembly this emulation does not know: update whole_kernels_header");
    format!("#pragma once\n#include \"emu.h\"\n{k}")
}

/// Buffers of every codec and path (the exactness sweep's kinds): expf at odd lengths and with
/// special values, in lossy mode beside int8g, zvc, int8g's group sizes, raw, tiny buffers.
fn buffers() -> Vec<(&'static str, DType, f64, Mode, u32, usize)> {
    vec![
        ("weights", DType::BF16, 0.0, Mode::Lossless, 128, 3 * 65536 + 4099),
        ("weights", DType::F16, 0.0, Mode::Lossless, 128, 2 * 65536 + 1003),
        ("weights", DType::F32, 0.0, Mode::Lossless, 128, 2 * 65536 + 1003),
        ("weights", DType::BF16, 0.0, Mode::Lossless, 128, 1000),
        ("relu", DType::BF16, 0.9, Mode::Lossless, 128, 65536 + 77),
        ("relu", DType::F32, 0.5, Mode::Lossless, 128, 2 * 65536),
        ("weights", DType::BF16, 0.0, Mode::Lossy, 128, 2 * 65536 + 4099),
        ("weights", DType::BF16, 0.0, Mode::Lossy, 16, 65536 + 30),
        ("weights", DType::BF16, 0.0, Mode::Lossy, 100, 65536 + 30),
        ("weights", DType::F16, 0.0, Mode::Lossy, 128, 65536 + 1003),
        ("weights", DType::F32, 0.0, Mode::Lossy, 128, 65536 + 1003),
        ("special", DType::BF16, 0.0, Mode::Lossy, 16, 4 * 65536),
        ("special", DType::BF16, 0.0, Mode::Lossless, 128, 4 * 65536),
        ("special", DType::F16, 0.0, Mode::Lossless, 128, 4 * 65536),
        ("oneexp", DType::BF16, 0.0, Mode::Lossless, 128, 65536 + 14),
        ("everyexp", DType::F32, 0.0, Mode::Lossless, 128, 65536 + 16384),
        ("random", DType::U8, 0.0, Mode::Lossy, 128, 65536 + 5),
        ("zeros", DType::F32, 0.0, Mode::Lossless, 128, 100),
    ]
}

fn compile(cxx: &str, dir: &Path, asan: bool) -> bool {
    compile_one(cxx, dir, "harness", asan)
}

fn compile_one(cxx: &str, dir: &Path, name: &str, asan: bool) -> bool {
    let mut c = Command::new(cxx);
    c.args(["-std=c++20", "-O1", "-g", "-pthread", "-w", "-I"]).arg(dir).arg(dir.join(format!("{name}.cpp"))).arg("-o").arg(dir.join(name));
    if asan {
        c.arg("-fsanitize=address");
    }
    c.output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn the_expf_device_code_emulated_on_the_host_equals_the_cpu_reference() {
    let dir = std::env::temp_dir().join(format!("ltgpu-expf-emu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let emu = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emu");
    std::fs::copy(emu.join("emu.h"), dir.join("emu.h")).unwrap();
    std::fs::copy(emu.join("harness.cpp"), dir.join("harness.cpp")).unwrap();
    std::fs::write(dir.join("kernels.h"), kernels_header()).unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let asan = compile(&cxx, &dir, true);
    if !asan && !compile(&cxx, &dir, false) {
        assert!(std::env::var_os("LTGPU_REQUIRE_CXX").is_none(), "{cxx} cannot compile the emulation (C++20 with <barrier> needed)");
        eprintln!("SKIPPED (loudly): {cxx} cannot compile the emulation (C++20 with <barrier>); set LTGPU_REQUIRE_CXX=1 to make this a failure");
        return;
    }
    let mut records = std::fs::File::create(dir.join("blocks.bin")).unwrap();
    let mut count = 0;
    for (dtype, data) in blocks() {
        let payload = expf::encode(&data, dtype).expect("the CPU reference encodes the block");
        assert_eq!(expf::decode(&payload, dtype, data.len()).unwrap(), data);
        for part in [&(dtype.id() as u32).to_le_bytes()[..], &(data.len() as u32).to_le_bytes(), &data, &(payload.len() as u32).to_le_bytes(), &payload, &ltblock::checksum::ltsum32(&data).to_le_bytes()] {
            records.write_all(part).unwrap();
        }
        count += 1;
    }
    drop(records);
    let corruptions = std::env::var("LTGPU_EMU_CORRUPTIONS").unwrap_or_else(|_| "6".into());
    let run = Command::new(dir.join("harness")).arg(&corruptions).arg(dir.join("blocks.bin")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "emulated expf kernels (AddressSanitizer: {asan}):\n{text}");
    assert!(text.contains(&format!("{count} cases, 0 failures")), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_assembled_header_has_no_assembly_left() {
    let h = kernels_header();
    assert!(!h.contains("asm("), "an asm statement survived");
    assert!(h.contains("expf_analyse") && h.contains("vec_terms") && h.contains("block_exclusive_scan"));
}

#[test]
fn the_whole_kernels_emulated_on_the_host_equal_the_cpu_reference() {
    let dir = std::env::temp_dir().join(format!("ltgpu-whole-emu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let emu = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emu");
    std::fs::copy(emu.join("emu.h"), dir.join("emu.h")).unwrap();
    std::fs::copy(emu.join("full.cpp"), dir.join("full.cpp")).unwrap();
    std::fs::write(dir.join("full.h"), whole_kernels_header()).unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    if !compile_one(&cxx, &dir, "full", false) {
        assert!(std::env::var_os("LTGPU_REQUIRE_CXX").is_none(), "{cxx} cannot compile the emulation (C++20 with <barrier> needed)");
        eprintln!("SKIPPED (loudly): {cxx} cannot compile the emulation; set LTGPU_REQUIRE_CXX=1 to make this a failure");
        return;
    }
    let mut records = std::fs::File::create(dir.join("full.bin")).unwrap();
    let mut expf_blocks = 0;
    for (kind, dtype, zeros, mode, group, len) in buffers() {
        let data = ltgpu::selfcheck::case_input(kind, dtype, zeros, len);
        let cpu = ltblock::encode(&data, &EncodeOptions { mode, dtype, group: group as usize, ..Default::default() });
        let dec = ltblock::decode(&cpu).unwrap();
        expf_blocks += ltblock::inspect(&cpu).unwrap().blocks.iter().filter(|b| b.codec == ltblock::Codec::Expf).count();
        let head = [dtype.id() as u32, (mode == Mode::Lossy) as u32, group, len as u32];
        for part in [&head.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()[..], &data, &(cpu.len() as u32).to_le_bytes(), &cpu, &(dec.len() as u32).to_le_bytes(), &dec] {
            records.write_all(part).unwrap();
        }
    }
    drop(records);
    assert!(expf_blocks >= 15, "the buffers hold {expf_blocks} expf blocks");
    let run = Command::new(dir.join("full")).arg(dir.join("full.bin")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success() && text.contains(&format!("{} cases, 0 failures", buffers().len())), "emulated kernels:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
