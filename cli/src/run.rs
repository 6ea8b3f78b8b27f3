//! `ltshim run`: start a command with the library preloaded and the knobs set.
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::CliError;

const MODES: &[&str] = &["off", "observe", "lossless", "lossy"];

struct Options {
    mode: Option<String>,
    stats: Option<String>,
    lib: Option<PathBuf>,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, CliError> {
    let mut o = Options { mode: None, stats: None, lib: None, command: Vec::new() };
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
    let mut cmd = Command::new(&o.command[0]);
    cmd.args(&o.command[1..]).env("LD_PRELOAD", preload);
    if let Some(m) = &o.mode {
        cmd.env("LTSHIM_MODE", m);
    }
    if let Some(s) = &o.stats {
        cmd.env("LTSHIM_STATS", s);
    }
    let status = cmd.status().map_err(|e| CliError(format!("could not start {}: {e}", o.command[0])))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c as u8),
        None => {
            use std::os::unix::process::ExitStatusExt;
            ExitCode::from(128 + status.signal().unwrap_or(0) as u8)
        }
    })
}
