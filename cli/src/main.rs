//! `ltshim`: run a program under the library, read its stats report.
//!
//! The binary is thin: `main` → `run() -> Result<ExitCode, CliError>`; every error a user can
//! cause is one line on stderr and a non-zero exit. These messages are for people, not logs.
mod bench;
mod pack;
mod run;
mod stats;
mod tensor_file;

use std::process::ExitCode;

const USAGE: &str = "\
ltshim: transparent GPU-memory compression for CUDA programs

usage:
  ltshim run [--mode M] [--device-limit L] [--stats FILE] [--lib PATH] -- CMD [ARGS...]
        run CMD with libltshim preloaded (M: off, observe, lossless (default), lossy; L: bytes
        with a unit such as 12GiB, or a percentage of the card such as 60%); compiles the
        packing kernels into the cache first, and ends with a line on what packing saved
  ltshim stats FILE      print a stats report (LTSHIM_STATS) as a table
  ltshim pack IN OUT [--dtype bf16|f16|f32|u8] [--mode lossless|lossy] [--group G] [--max-err E]
        pack a file into LT-Blocks with the CPU codecs (.npy and .safetensors: dtype from the file)
  ltshim unpack IN OUT   decode a packed file (checksums verified)
  ltshim inspect FILE    per-codec block counts, ratio and error of a packed file
  ltshim bench [--size MiB] [--json FILE] [--rows TEXT] [--input FILE]...
        codec throughput, ratio and error on the GPU (default 1024 MiB), checked against the
        CPU reference; without a GPU, the CPU reference codecs (default 64 MiB); --rows: only
        the rows whose name contains TEXT (e.g. lossless: the expf rows); --input: a lossless
        row for a .npy/.safetensors file's tensors (scripts/trained_weights.py fetches some)
  ltshim --help          this text (also after any subcommand)
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
    // `ltshim SUB --help` too (the first word after the subcommand only, so that
    // `ltshim run -- prog --help` still reaches prog)
    if matches!(args.get(1).map(String::as_str), Some("--help") | Some("-h")) {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    match args.first().map(String::as_str) {
        Some("run") => run::run(&args[1..]),
        Some("stats") => stats::print(&args[1..]),
        Some("pack") => pack::pack(&args[1..]),
        Some("unpack") => pack::unpack(&args[1..]),
        Some("inspect") => pack::inspect(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
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
