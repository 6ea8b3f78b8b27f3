//! `ltshim`: run a program under the library, read its stats report.
//!
//! The binary is thin: `main` → `run() -> Result<ExitCode, CliError>`; every error a user can
//! cause is one line on stderr and a non-zero exit. These messages are for people, not logs.
mod run;
mod stats;

use std::process::ExitCode;

const USAGE: &str = "\
ltshim: transparent GPU-memory compression for CUDA programs

usage:
  ltshim run [--mode M] [--stats FILE] [--lib PATH] -- CMD [ARGS...]
        run CMD with libltshim preloaded (M: off, observe, lossless, lossy)
  ltshim stats FILE      print a stats report (LTSHIM_STATS) as a table
  ltshim --help          this text
";

pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(CliError(msg)) => {
            eprintln!("ltshim: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode, CliError> {
    match args.first().map(String::as_str) {
        Some("run") => run::run(&args[1..]),
        Some("stats") => stats::print(&args[1..]),
        Some("--help") | Some("-h") | Some("help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(CliError(format!("unknown subcommand {other:?}; see `ltshim --help`"))),
        None => {
            eprint!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}
