//! `ltshim pack | unpack | inspect` on files: round trips, tensor-file headers kept exact,
//! clear one-line errors for malformed input; and `--help` after any subcommand.
use std::path::PathBuf;
use std::process::{Command, Output};

fn ltshim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ltshim")).args(args).env_remove("LTSHIM_INT8_GROUP").env_remove("LTSHIM_INT8_MAX_ERR").output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ltshim-pack-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn s(p: &PathBuf) -> &str {
    p.to_str().unwrap()
}

/// A .npy file of f32 post-ReLU-like values (every other zero).
fn npy_f32(n: usize) -> Vec<u8> {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n},), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for i in 0..n {
        let v = if i % 2 == 0 { 0.0f32 } else { ((i * 7919) % 1000) as f32 / 100.0 - 5.0 };
        out.extend_from_slice(&v.max(0.0).to_le_bytes());
    }
    out
}

#[test]
fn lossless_pack_and_unpack_round_trip_a_npy_file_exactly() {
    let (input, packed, output) = (tmp("a.npy"), tmp("a.lt"), tmp("a.out"));
    let data = npy_f32(300_000);
    std::fs::write(&input, &data).unwrap();
    let p = ltshim(&["pack", s(&input), s(&packed)]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(String::from_utf8_lossy(&p.stdout).contains("(npy, f32)"));
    assert!(ltshim(&["unpack", s(&packed), s(&output)]).status.success());
    assert!(std::fs::read(&output).unwrap() == data);
    let i = ltshim(&["inspect", s(&packed)]);
    let text = String::from_utf8_lossy(&i.stdout);
    assert!(text.contains("lossless mode, dtype f32") && text.contains("zvc"), "{text}");
}

#[test]
fn lossy_pack_keeps_the_file_header_exact_and_reports_its_error() {
    let (input, packed, output) = (tmp("b.npy"), tmp("b.lt"), tmp("b.out"));
    let data = npy_f32(300_000);
    std::fs::write(&input, &data).unwrap();
    let p = ltshim(&["pack", s(&input), s(&packed), "--mode", "lossy", "--max-err", "0.05"]);
    assert!(p.status.success());
    // each int8g block's max |x' - x| / scale: 0.5 from rounding to the nearest step (f32 adds nothing)
    let said = String::from_utf8_lossy(&p.stdout).into_owned();
    let worst: f64 = said.rsplit("group scale ").next().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("{said}"));
    assert!(worst > 0.45 && worst <= 0.5001, "{said}");
    assert!(ltshim(&["unpack", s(&packed), s(&output)]).status.success());
    let out = std::fs::read(&output).unwrap();
    assert_eq!(out.len(), data.len());
    let header_len = 10 + u16::from_le_bytes([data[8], data[9]]) as usize;
    assert!(out[..header_len] == data[..header_len], "the .npy header must survive lossy packing");
    let text = String::from_utf8_lossy(&ltshim(&["inspect", s(&packed)]).stdout).into_owned();
    assert!(text.contains("lossy blocks: relative L2 error max"), "{text}");
}

#[test]
fn safetensors_dtype_comes_from_the_file() {
    let (input, packed) = (tmp("c.safetensors"), tmp("c.lt"));
    let n = 100_000usize;
    let header = format!("{{\"w\":{{\"dtype\":\"BF16\",\"shape\":[{n}],\"data_offsets\":[0,{}]}}}}", 2 * n);
    let mut data = (header.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(header.as_bytes());
    data.extend((0..n).flat_map(|i| if i % 10 == 0 { 0x3f80u16 } else { 0 }.to_le_bytes()));
    std::fs::write(&input, &data).unwrap();
    let p = ltshim(&["pack", s(&input), s(&packed)]);
    assert!(String::from_utf8_lossy(&p.stdout).contains("(safetensors, bf16)"), "{}", String::from_utf8_lossy(&p.stdout));
}

fn one_line_error(args: &[&str]) -> String {
    let o = ltshim(args);
    assert!(!o.status.success(), "{args:?} should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    e
}

#[test]
fn malformed_input_is_one_line_naming_the_problem() {
    let (input, packed) = (tmp("d.bin"), tmp("d.lt"));
    std::fs::write(&input, vec![7u8; 200_000]).unwrap();
    assert!(ltshim(&["pack", s(&input), s(&packed)]).status.success());
    let mut bad = std::fs::read(&packed).unwrap();
    let n = bad.len();
    bad[n - 3] ^= 0x10;
    std::fs::write(&packed, &bad).unwrap();
    let e = one_line_error(&["unpack", s(&packed), s(&tmp("d.out"))]);
    assert!(e.contains("block 3") && (e.contains("checksum") || e.contains("inconsistent")), "{e}");
    std::fs::write(&packed, &bad[..n / 2]).unwrap();
    assert!(one_line_error(&["inspect", s(&packed)]).contains("truncated"));
    assert!(one_line_error(&["pack", s(&input), s(&packed), "--mode", "lossy"]).contains("pass --dtype"));
    assert!(one_line_error(&["pack", s(&input), s(&packed), "--dtype", "f64"]).contains("--dtype \"f64\" is not one of"));
}

#[test]
fn help_after_a_subcommand_prints_the_usage() {
    for sub in ["bench", "pack", "unpack", "inspect", "stats", "run"] {
        let o = ltshim(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help: {:?}", o.status);
        assert!(String::from_utf8_lossy(&o.stdout).contains("usage:"), "{sub} --help printed no usage");
    }
}

#[test]
fn lossless_pack_of_dense_bf16_weights_uses_expf_and_round_trips() {
    let (input, packed, output) = (tmp("e.safetensors"), tmp("e.lt"), tmp("e.out"));
    let n = 300_000usize;
    let header = format!("{{\"w\":{{\"dtype\":\"BF16\",\"shape\":[{n}],\"data_offsets\":[0,{}]}}}}", 2 * n);
    let mut data = (header.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(header.as_bytes());
    // dense weights: a sum of uniforms (close to normal), sigma ~0.02, rounded to bf16
    let mut x = 0x2545_F491u64;
    for _ in 0..n {
        let mut v = 0f32;
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v += (x % 10_000) as f32 / 10_000.0 - 0.5;
        }
        data.extend_from_slice(&((v * 0.035).to_bits() >> 16).to_le_bytes()[..2]);
    }
    std::fs::write(&input, &data).unwrap();
    let p = ltshim(&["pack", s(&input), s(&packed), "--mode", "lossless"]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let text = String::from_utf8_lossy(&ltshim(&["inspect", s(&packed)]).stdout).into_owned();
    let expf_line = text.lines().find(|l| l.trim_start().starts_with("expf")).unwrap_or_else(|| panic!("no expf blocks:\n{text}"));
    let blocks: usize = expf_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(blocks >= 9, "{text}");
    let size = std::fs::metadata(&packed).unwrap().len() as f64 / data.len() as f64;
    assert!(size < 0.72, "packed to {size} of the file");
    assert!(ltshim(&["unpack", s(&packed), s(&output)]).status.success());
    assert!(std::fs::read(&output).unwrap() == data);
}
