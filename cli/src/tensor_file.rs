//! What a tensor file tells about itself: its element dtype and where its data starts (the
//! header before it is packed losslessly). `.npy` and `.safetensors`; anything else is bytes.
use ltblock::DType;

use crate::CliError;

pub struct Layout {
    pub dtype: Option<DType>,
    /// Bytes of header before the tensor data.
    pub header_len: usize,
    pub kind: &'static str,
    /// Set when the file mixes dtypes (lossy packing then needs one float dtype).
    pub mixed: bool,
}

pub fn sniff(path: &str, bytes: &[u8]) -> Result<Layout, CliError> {
    if bytes.starts_with(b"\x93NUMPY") {
        return npy(path, bytes);
    }
    if path.ends_with(".safetensors") {
        return safetensors(path, bytes);
    }
    Ok(Layout { dtype: None, header_len: 0, kind: "bytes", mixed: false })
}

fn npy(path: &str, b: &[u8]) -> Result<Layout, CliError> {
    let bad = |why: &str| CliError(format!("{path}: not a valid .npy file: {why}"));
    if b.len() < 10 {
        return Err(bad("too short"));
    }
    let (len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(&format!("version {v}"))),
    };
    let header = b.get(start..start + len).ok_or_else(|| bad("header runs past the end"))?;
    let header = String::from_utf8_lossy(header);
    let descr = header.split("'descr':").nth(1).and_then(|r| r.split('\'').nth(1)).ok_or_else(|| bad("no 'descr'"))?;
    let dtype = match descr {
        "<f4" => Some(DType::F32),
        "<f2" => Some(DType::F16),
        "|u1" | "|i1" | "|b1" => Some(DType::U8),
        d if d.contains("bfloat16") => Some(DType::BF16),
        _ => None,
    };
    Ok(Layout { dtype, header_len: start + len, kind: "npy", mixed: false })
}

fn safetensors(path: &str, b: &[u8]) -> Result<Layout, CliError> {
    let bad = |why: &str| CliError(format!("{path}: not a valid .safetensors file: {why}"));
    if b.len() < 8 {
        return Err(bad("too short"));
    }
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let json = b.get(8..8usize.saturating_add(n)).ok_or_else(|| bad("header runs past the end"))?;
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| bad("header is not an object"))?;
    let mut bytes_by: Vec<(DType, u64)> = Vec::new();
    let mut other = 0u64;
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let off = t["data_offsets"].as_array().ok_or_else(|| bad(&format!("{name}: no data_offsets")))?;
        let size = off.get(1).and_then(|x| x.as_u64()).unwrap_or(0).saturating_sub(off.first().and_then(|x| x.as_u64()).unwrap_or(0));
        let d = match t["dtype"].as_str().unwrap_or("") {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            "U8" | "I8" | "BOOL" => Some(DType::U8),
            _ => None,
        };
        match d {
            Some(d) => match bytes_by.iter_mut().find(|(x, _)| *x == d) {
                Some((_, s)) => *s += size,
                None => bytes_by.push((d, size)),
            },
            None => other += size,
        }
    }
    bytes_by.sort_by_key(|x| std::cmp::Reverse(x.1));
    let mixed = bytes_by.len() > 1 || (other > 0 && !bytes_by.is_empty());
    Ok(Layout { dtype: bytes_by.first().map(|x| x.0), header_len: 8 + n, kind: "safetensors", mixed })
}
