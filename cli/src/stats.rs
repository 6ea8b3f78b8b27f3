//! `ltshim stats FILE`: the JSON report as a readable table.
use std::process::ExitCode;

use serde_json::Value;

use crate::CliError;

pub fn print(args: &[String]) -> Result<ExitCode, CliError> {
    let [path] = args else { return Err(CliError("usage: ltshim stats FILE".into())) };
    let text = std::fs::read_to_string(path).map_err(|e| CliError(format!("cannot read {path}: {e}")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| CliError(format!("{path} is not a stats report: {e}")))?;
    print!("{}", render(&v));
    Ok(ExitCode::SUCCESS)
}

fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{x:.1} {}", units[u]) }
}

/// `name count (bytes), ...` from an object of counts and one of bytes by the same names: the
/// `known` names in that order (the report's), then any other; None without the counts.
fn counted(counts: &Value, byte_counts: &Value, known: &[&str]) -> Option<String> {
    let counts = counts.as_object()?;
    let mut names: Vec<&str> = known.iter().copied().filter(|k| counts.contains_key(*k)).collect();
    names.extend(counts.keys().map(String::as_str).filter(|k| !known.contains(k)));
    let s: Vec<String> = names.iter().map(|k| format!("{k} {} ({})", counts[*k].as_u64().unwrap_or(0), bytes(byte_counts[*k].as_u64().unwrap_or(0)))).collect();
    Some(s.join(", "))
}

/// Renders a report; sections a report lacks are skipped.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let mut row = |k: &str, val: String| out.push_str(&format!("  {k:<34} {val}\n"));
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    row("pid", num(&v["pid"]).to_string());
    if let Some(cfg) = v["config"].as_object() {
        for (k, val) in cfg {
            row(k, val.as_str().unwrap_or("").to_string());
        }
    }
    let a = &v["allocations"];
    row("allocations / frees", format!("{} / {}", num(&a["count"]), num(&a["frees"])));
    row("live buffers", format!("{} ({})", num(&a["live_buffers"]), bytes(num(&a["live_bytes"]))));
    row("peak allocated", bytes(num(&a["peak_bytes"])));
    row("program-mapped ranges (cuMemMap)", num(&a["user_maps"]).to_string());
    let l = &v["launches"];
    row("kernels executed, seen", num(&l["kernels_executed_seen"]).to_string());
    row("  runtime / driver / graph", format!("{} / {} / {}", num(&l["runtime"]), num(&l["driver"]), num(&l["graph_kernels"])));
    row("  captured (run at replay)", num(&l["captured"]).to_string());
    row("graph launches", num(&l["graph_launches"]).to_string());
    row("cuBLAS / cuDNN calls", format!("{} / {}", num(&l["cublas_calls"]), num(&l["cudnn_calls"])));
    if let (Some(found), Some(missing)) = (v["pointers"]["found"].as_object(), v["pointers"]["not_found"].as_object()) {
        for (path, f) in found {
            let m = missing.get(path).map(num).unwrap_or(0);
            row(&format!("pointers via {path}"), format!("{} found, {} not found", num(f), m));
        }
    }
    if let Some(flags) = v["buffers"]["live_by_flag"].as_object() {
        let s: Vec<String> = flags.iter().map(|(k, n)| format!("{k} {}", num(n))).collect();
        row("live buffers by flag", s.join(", "));
    }
    let p = &v["packing"];
    if p["enabled"].is_boolean() {
        row("packing", format!("{} ({})", if p["enabled"].as_bool() == Some(true) { "on" } else { "off" }, p["mode"].as_str().unwrap_or("")));
        row("  held now / at peak / limit", format!("{} / {} / {}", bytes(num(&p["held_bytes"])), bytes(num(&p["held_peak_bytes"])), bytes(num(&p["limit_bytes"]))));
        row("  resident / packed copies / stand for", format!("{} / {} / {}", bytes(num(&p["resident_bytes"])), bytes(num(&p["packed_bytes"])), bytes(num(&p["packed_original_bytes"]))));
        row("  packs (kept copy reused) / restores", format!("{} ({}) / {}", num(&p["packs"]), num(&p["packs_reused_copy"]), num(&p["restores"])));
        row("  restores over the limit / corrupt", format!("{} / {}", num(&p["restores_over_limit"]), num(&p["restores_corrupt"])));
        if p["host_copies_peak_bytes"].is_u64() {
            row("  copies in host memory now / at peak", format!("{} / {}", bytes(num(&p["host_copies_bytes"])), bytes(num(&p["host_copies_peak_bytes"]))));
        }
        if p["host_pinned_peak_bytes"].is_u64() {
            row("  pinned host memory now / at peak", format!("{} / {} ({} copies moved ahead of encodes)", bytes(num(&p["host_pinned_bytes"])), bytes(num(&p["host_pinned_peak_bytes"])), num(&p["copies_moved_far"])));
        }
        // (reports older than these fields lack them: no row)
        if let Some(s) = counted(&p["encodes_by_cause"], &p["encoded_bytes_by_cause"], &["first", "changed", "discarded", "to_lossy"]) {
            row("  encodes by cause", s);
        }
        if let Some(s) = counted(&p["copies_discarded"], &p["copies_discarded_bytes"], &["of_written", "of_survivor", "lossless", "any"]) {
            row("  kept copies discarded", s);
        }
        if let (Some(i), Some(o)) = (p["bytes_in_by_codec"].as_object(), p["bytes_out_by_codec"].as_object()) {
            let s: Vec<String> = i.iter().map(|(k, n)| format!("{k} {} -> {}", bytes(num(n)), bytes(o.get(k).map(num).unwrap_or(0)))).collect();
            row("  encoded by codec", if s.is_empty() { "none".into() } else { s.join(", ") });
        }
        row("  pack / restore host time", format!("{:.1} ms / {:.1} ms", num(&p["pack_host_ns"]) as f64 / 1e6, num(&p["restore_host_ns"]) as f64 / 1e6));
    }
    row("time inside the library", format!("{:.3} ms", num(&v["time_in_library_ns"]) as f64 / 1e6));
    if let Some(by) = v["time_in_library_ns_by_hook"].as_object() {
        // where it went: the hooks with the most, and their time a call
        let mut t: Vec<(&String, u64)> = by.iter().map(|(k, n)| (k, num(n))).collect();
        t.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let s: Vec<String> = t
            .iter()
            .take(5)
            .map(|(k, n)| {
                let calls = num(&v["calls"][k.as_str()]).max(1);
                format!("{k} {:.1} ms ({:.2} us a call)", *n as f64 / 1e6, *n as f64 / 1e3 / calls as f64)
            })
            .collect();
        if !s.is_empty() {
            row("  most of it in", s.join(", "));
        }
    }
    if let Some(f) = v["fallbacks"].as_object() {
        let s: Vec<String> = f.iter().filter(|(_, n)| num(n) > 0).map(|(k, n)| format!("{k} {}", num(n))).collect();
        row("fallbacks", if s.is_empty() { "none".into() } else { s.join(", ") });
    }
    if let Some(calls) = v["calls"].as_object() {
        out.push_str("  calls per hook:\n");
        let mut c: Vec<(&String, u64)> = calls.iter().map(|(k, n)| (k, num(n))).collect();
        c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (k, n) in c {
            out.push_str(&format!("    {k:<32} {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_sections_of_a_report() {
        let v: Value = serde_json::from_str(r#"{"pid":7,"allocations":{"count":3,"frees":1,"live_buffers":2,"live_bytes":4096,"peak_bytes":8192},
            "launches":{"kernels_executed_seen":10,"runtime":6,"driver":4,"graph_kernels":0},
            "pointers":{"found":{"cublas":5},"not_found":{"cublas":1}},"fallbacks":{"panic":0,"layout_unknown":2},
            "calls":{"cudaMalloc":3}}"#).unwrap();
        let t = render(&v).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(t.contains("allocations / frees 3 / 1"), "{t}");
        assert!(t.contains("4.0 KiB") && t.contains("8.0 KiB"), "{t}");
        assert!(t.contains("pointers via cublas 5 found, 1 not found"), "{t}");
        assert!(t.contains("fallbacks layout_unknown 2"), "{t}");
        assert!(t.contains("cudaMalloc"), "{t}");
        assert!(!t.contains("packing"), "no packing section without one in the report: {t}");
        let p: Value = serde_json::from_str(r#"{"packing":{"enabled":true,"mode":"lossless","held_bytes":1024,"held_peak_bytes":2048,"limit_bytes":4096,
            "packs":5,"packs_reused_copy":2,"restores":4,"bytes_in_by_codec":{"zvc":8192},"bytes_out_by_codec":{"zvc":1024}}}"#).unwrap();
        let t = render(&p).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(t.contains("packing on (lossless)") && t.contains("held now / at peak / limit 1.0 KiB / 2.0 KiB / 4.0 KiB"), "{t}");
        assert!(t.contains("packs (kept copy reused) / restores 5 (2) / 4") && t.contains("zvc 8.0 KiB -> 1.0 KiB"), "{t}");
        assert!(!t.contains("encodes by cause") && !t.contains("copies discarded"), "no rows for fields an older report lacks: {t}");
        let p: Value = serde_json::from_str(r#"{"packing":{"enabled":true,"mode":"lossy","encodes_by_cause":{"first":3,"discarded":1},
            "encoded_bytes_by_cause":{"first":3072,"discarded":2048},"copies_discarded":{"of_survivor":2},"copies_discarded_bytes":{"of_survivor":1024}}}"#).unwrap();
        let t = render(&p).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(t.contains("encodes by cause first 3 (3.0 KiB), discarded 1 (2.0 KiB)"), "{t}");
        assert!(t.contains("kept copies discarded of_survivor 2 (1.0 KiB)"), "{t}");
    }

    #[test]
    fn byte_sizes_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
