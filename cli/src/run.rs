//! `ltshim run`: start a command with the library preloaded and the knobs set.
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::CliError;

const MODES: &[&str] = &["off", "observe", "lossless", "lossy"];

struct Options {
    mode: Option<String>,
    stats: Option<String>,
    device_limit: Option<String>,
    lib: Option<PathBuf>,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, CliError> {
    let mut o = Options { mode: None, stats: None, device_limit: None, lib: None, command: Vec::new() };
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| args.get(i + 1).cloned().ok_or_else(|| CliError(format!("{} needs a value", args[i])));
        match args[i].as_str() {
            "--" => {
                o.command = args[i + 1..].to_vec();
                break;
            }
            "--mode" => {
                let m = value(i)?;
                if !MODES.contains(&m.as_str()) {
                    return Err(CliError(format!("--mode {m:?} is not one of {}", MODES.join(", "))));
                }
                o.mode = Some(m);
                i += 1;
            }
            "--stats" => {
                o.stats = Some(value(i)?);
                i += 1;
            }
            "--device-limit" => {
                o.device_limit = Some(value(i)?);
                i += 1;
            }
            "--lib" => {
                o.lib = Some(PathBuf::from(value(i)?));
                i += 1;
            }
            other if other.starts_with('-') => return Err(CliError(format!("unknown option {other:?}; see `ltshim --help`"))),
            _ => {
                o.command = args[i..].to_vec();
                break;
            }
        }
        i += 1;
    }
    if o.command.is_empty() {
        return Err(CliError("no command given: ltshim run [OPTIONS] -- CMD [ARGS...]".into()));
    }
    Ok(o)
}

/// libltshim.so beside this binary (the build puts both in target/<profile>/).
fn default_library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("libltshim.so"))
}

fn find_in_path(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Path::new(cmd).exists().then(|| PathBuf::from(cmd));
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(cmd)).find(|p| p.is_file())
}

/// True when a CUDA driver library can be loaded on this machine.
fn driver_present() -> bool {
    // SAFETY: loading the driver library runs no CUDA code until a function is called; we
    // call none and drop it at once.
    unsafe { libloading::Library::new("libcuda.so.1") }.is_ok()
}

pub fn run(args: &[String]) -> Result<ExitCode, CliError> {
    let o = parse(args)?;
    let lib = o.lib.clone().or_else(default_library).ok_or_else(|| CliError("cannot tell where libltshim.so is; pass --lib PATH".into()))?;
    if !lib.is_file() {
        return Err(CliError(format!("the library {} does not exist (build it with `cargo build --release`, or pass --lib PATH)", lib.display())));
    }
    let lib = lib.canonicalize()?;
    if find_in_path(&o.command[0]).is_none() {
        return Err(CliError(format!("command not found: {}", o.command[0])));
    }
    if !driver_present() {
        return Err(CliError("no CUDA driver on this machine (libcuda.so.1 cannot be loaded): nothing to run on".into()));
    }
    let mut preload = lib.display().to_string();
    if let Ok(existing) = std::env::var("LD_PRELOAD") {
        if !existing.is_empty() {
            preload = format!("{preload}:{existing}");
        }
    }
    let mode = o.mode.clone().or_else(|| std::env::var("LTSHIM_MODE").ok()).unwrap_or_else(|| "lossless".into());
    if mode == "lossless" || mode == "lossy" {
        warm_kernel_cache();
    }
    let mut cmd = Command::new(&o.command[0]);
    cmd.args(&o.command[1..]).env("LD_PRELOAD", preload);
    if let Some(m) = &o.mode {
        cmd.env("LTSHIM_MODE", m);
    }
    if let Some(l) = &o.device_limit {
        cmd.env("LTSHIM_DEVICE_LIMIT", l);
    }
    // a report to read the closing line from (the user's, or one of ours)
    let own_report = std::env::temp_dir().join(format!("ltshim-run-{}.json", std::process::id()));
    let report = o.stats.clone().or_else(|| std::env::var("LTSHIM_STATS").ok());
    match &report {
        Some(s) => cmd.env("LTSHIM_STATS", s),
        None => cmd.env("LTSHIM_STATS", &own_report),
    };
    let child = cmd.spawn().map_err(|e| CliError(format!("could not start {}: {e}", o.command[0])))?;
    let pid = child.id();
    let status = { child }.wait().map_err(|e| CliError(format!("waiting for {}: {e}", o.command[0])))?;
    let path = report.map(|r| PathBuf::from(r.replace("%p", &pid.to_string()))).unwrap_or_else(|| own_report.clone());
    if let Some(line) = std::fs::read_to_string(&path).ok().and_then(|s| saved_line(&s)) {
        eprintln!("{line}");
    }
    let _ = std::fs::remove_file(&own_report);
    Ok(match status.code() {
        Some(c) => ExitCode::from(c as u8),
        None => {
            use std::os::unix::process::ExitStatusExt;
            ExitCode::from(128 + status.signal().unwrap_or(0) as u8)
        }
    })
}

/// Compiles the packing kernels into the cache before the program starts (a first compile takes
/// ~25 s of NVRTC; the library then loads the cached cubin in about a second). Best effort.
fn warm_kernel_cache() {
    // cudarc panics when the driver lacks a symbol it loads (a stand-in driver, an old one):
    // that only means there is nothing to warm
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let warmed = std::panic::catch_unwind(|| ltgpu::warm_cache(0));
    std::panic::set_hook(quiet);
    match warmed {
        Ok(Ok(Some(arch))) => eprintln!("ltshim: compiled the packing kernels for {arch} (cached for later runs)"),
        Ok(Err(e)) => eprintln!("ltshim: the packing kernels could not be prepared ({e}); the program will run without packing"),
        Ok(Ok(None)) | Err(_) => {}
    }
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// The closing line: what packing saved, when anything was packed, and by how much the held
/// memory passed the limit when it did (the restores and packs that found no room under it).
pub fn saved_line(report: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(report).ok()?;
    let p = &v["packing"];
    let packs = p["packs"].as_u64()?;
    if packs == 0 {
        return None;
    }
    let sum = |k: &str| p[k].as_object().map_or(0, |o| o.values().filter_map(|x| x.as_u64()).sum::<u64>());
    let (input, output) = (sum("bytes_in_by_codec"), sum("bytes_out_by_codec"));
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    let (peak, limit) = (n("held_peak_bytes"), n("limit_bytes"));
    // (a report from before over_limit_peak_bytes: the peak against the limit at the end)
    let over_by = p["over_limit_peak_bytes"].as_u64().unwrap_or(peak.saturating_sub(limit));
    let over = if over_by > 0 {
        format!(
            ": over it by {:.2} GiB, {} restores and {} packs found no room under it (README, Limits)",
            gib(over_by),
            n("restores_over_limit"),
            n("packs_over_limit")
        )
    } else {
        String::new()
    };
    // without LTSHIM_DEVICE_LIMIT the limit is what the card has for the library at the end
    let what = if p["limit_set"].as_bool() == Some(false) { "the card's room" } else { "limit" };
    // the device's saving was partly host memory's cost: said, not hidden
    let host = match (n("host_copies_peak_bytes"), n("host_pinned_peak_bytes")) {
        (0, _) => String::new(),
        // (the spare slabs kept for the next moves held more at some point)
        (b, pinned) if pinned > b => format!(", {:.2} GiB of copies moved to host memory at peak ({:.2} GiB pinned; LTSHIM_HOST_COPIES)", gib(b), gib(pinned)),
        (b, _) => format!(", {:.2} GiB of copies moved to host memory at peak (LTSHIM_HOST_COPIES)", gib(b)),
    };
    Some(format!(
        "ltshim: physical peak {:.2} GiB ({what} {:.2} GiB{over}) for {:.2} GiB allocated at peak; {} packs encoded {:.2} GiB in all at {:.2}x; {} restores{host}",
        gib(peak),
        gib(limit),
        gib(v["allocations"]["peak_bytes"].as_u64().unwrap_or(0)),
        packs,
        gib(input),
        input as f64 / output.max(1) as f64,
        n("restores")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closing_line_says_what_was_saved_and_nothing_when_nothing_was_packed() {
        let r = r#"{"allocations":{"peak_bytes":4294967296},"packing":{"packs":3,"restores":2,"held_peak_bytes":2147483648,"limit_bytes":2147483648,"bytes_in_by_codec":{"zvc":1073741824},"bytes_out_by_codec":{"zvc":268435456}}}"#;
        let line = saved_line(r).unwrap();
        assert!(line.contains("peak 2.00 GiB (limit 2.00 GiB) for 4.00 GiB") && line.contains("3 packs encoded 1.00 GiB in all at 4.00x; 2 restores"), "{line}");
        let over = r#"{"allocations":{"peak_bytes":4294967296},"packing":{"packs":3,"restores":2,"held_peak_bytes":2684354560,"limit_bytes":2147483648,"restores_over_limit":5,"packs_over_limit":1,"bytes_in_by_codec":{"zvc":1073741824},"bytes_out_by_codec":{"zvc":268435456}}}"#;
        let line = saved_line(over).unwrap();
        assert!(line.contains("(limit 2.00 GiB: over it by 0.50 GiB, 5 restores and 1 packs found no room under it"), "{line}");
        assert!(!saved_line(r).unwrap().contains("over it"), "under the limit nothing is said of it");
        // no limit set: the card's room, learnt again as memory ran short, fell below a peak
        // that was under it at the time
        let card = r#"{"allocations":{"peak_bytes":4294967296},"packing":{"limit_set":false,"packs":3,"restores":2,"held_peak_bytes":2684354560,"limit_bytes":2147483648,"over_limit_peak_bytes":0,"bytes_in_by_codec":{"zvc":1073741824},"bytes_out_by_codec":{"zvc":268435456}}}"#;
        let line = saved_line(card).unwrap();
        assert!(line.contains("peak 2.50 GiB (the card's room 2.00 GiB) for") && !line.contains("over it"), "{line}");
        assert!(!saved_line(r).unwrap().contains("host memory"), "no copy went to host memory: nothing said of it");
        let host = r#"{"allocations":{"peak_bytes":4294967296},"packing":{"packs":3,"restores":2,"held_peak_bytes":2147483648,"limit_bytes":2147483648,"host_copies_peak_bytes":536870912,"bytes_in_by_codec":{"zvc":1073741824},"bytes_out_by_codec":{"zvc":268435456}}}"#;
        let line = saved_line(host).unwrap();
        assert!(line.ends_with("2 restores, 0.50 GiB of copies moved to host memory at peak (LTSHIM_HOST_COPIES)"), "{line}");
        let pinned = host.replace(r#""host_copies_peak_bytes":536870912"#, r#""host_copies_peak_bytes":536870912,"host_pinned_peak_bytes":805306368"#);
        let line = saved_line(&pinned).unwrap();
        assert!(line.ends_with("0.50 GiB of copies moved to host memory at peak (0.75 GiB pinned; LTSHIM_HOST_COPIES)"), "{line}");
        assert!(saved_line(r#"{"packing":{"packs":0}}"#).is_none());
        assert!(saved_line("not json").is_none());
    }
}
