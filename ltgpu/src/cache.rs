//! The compiled kernels, cached on disk: NVRTC takes seconds for these kernels, and a program
//! that packs memory must not wait for that on every start. The file name carries a hash of
//! everything that shapes the cubin (source, options, architecture, NVRTC's version), so a
//! changed kernel or a new NVRTC never meets a stale file. The cache is a convenience: when its
//! folder cannot be made or written, kernels are compiled as before and nothing is reported.
use std::path::PathBuf;

use crate::GpuError;

/// `$XDG_CACHE_HOME/ltshim` or `$HOME/.cache/ltshim`; None when neither is set.
pub fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = base.or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ltshim"))
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not promised to be).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The cache file for `arch` under `dir`, given the NVRTC version.
pub fn path(dir: &std::path::Path, arch: &str, nvrtc_version: (i32, i32)) -> PathBuf {
    let version = format!("{}.{}", nvrtc_version.0, nvrtc_version.1);
    let key = fnv1a(&[crate::source().as_bytes(), crate::OPTIONS.join(" ").as_bytes(), arch.as_bytes(), version.as_bytes()]);
    dir.join(format!("ltblock-{arch}-{key:016x}.cubin"))
}

/// The cubin for `arch`: from the cache when a valid-looking file is there, else from
/// `compile` (then stored, written to a temporary name and renamed so that a reader never
/// sees half a file). Returns the cubin and where it came from.
pub fn compile_cached(dir: Option<PathBuf>, arch: &str, compile: impl Fn(&str) -> Result<Vec<u8>, GpuError>) -> Result<(Vec<u8>, String), GpuError> {
    let file = match (dir, crate::nvrtc_version()) {
        (Some(d), Some(v)) => Some(path(&d, arch, v)),
        _ => None,
    };
    if let Some(f) = &file {
        if let Ok(bytes) = std::fs::read(f) {
            if bytes.len() > 1000 && bytes.starts_with(b"\x7fELF") {
                return Ok((bytes, f.display().to_string()));
            }
        }
    }
    let cubin = compile(arch)?;
    if let Some(f) = &file {
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        let stored = f.parent().map(std::fs::create_dir_all).transpose().is_ok() && std::fs::write(&tmp, &cubin).is_ok() && std::fs::rename(&tmp, f).is_ok();
        if !stored {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok((cubin, "compiled".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_each_input() {
        let d = std::path::Path::new("/c");
        let base = path(d, "sm_90", (13, 0));
        assert_ne!(base, path(d, "sm_80", (13, 0)));
        assert_ne!(base, path(d, "sm_90", (13, 1)));
        assert_eq!(base, path(d, "sm_90", (13, 0)));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]), "parts are separated");
    }

    #[test]
    fn a_cached_file_is_used_and_a_broken_one_is_replaced() {
        let tmp = std::env::temp_dir().join(format!("ltgpu-cache-test-{}", std::process::id()));
        let Some(version) = crate::nvrtc_version() else {
            eprintln!("SKIPPED (loudly): NVRTC is not loadable, so the cache key cannot be formed");
            return;
        };
        let file = path(&tmp, "sm_90", version);
        let fake = |_: &str| -> Result<Vec<u8>, GpuError> { Ok([b"\x7fELF".as_slice(), &[7u8; 2000]].concat()) };
        let (first, from) = compile_cached(Some(tmp.clone()), "sm_90", fake).unwrap();
        assert_eq!(from, "compiled");
        assert_eq!(std::fs::read(&file).unwrap(), first);
        let (_, from) = compile_cached(Some(tmp.clone()), "sm_90", |_: &str| -> Result<Vec<u8>, GpuError> { panic!("must come from the cache") }).unwrap();
        assert_eq!(from, file.display().to_string());
        std::fs::write(&file, b"truncated").unwrap();
        let (again, from) = compile_cached(Some(tmp.clone()), "sm_90", fake).unwrap();
        assert_eq!((again, from.as_str()), (first, "compiled"));
        std::fs::remove_dir_all(&tmp).unwrap();
        // an unwritable place: compiled, nothing stored, no error
        let (_, from) = compile_cached(Some(PathBuf::from("/proc/ltshim-cannot-write")), "sm_90", fake).unwrap();
        assert_eq!(from, "compiled");
    }
}
