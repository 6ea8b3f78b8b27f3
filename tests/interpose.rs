//! Integration tests: small C programs linked against the host-memory CUDA double
//! (`tests/cudadouble`), run with `LD_PRELOAD=libltshim.so`. Each program checks its own
//! results and prints `did NAME COUNT` for what it did; the tests compare that with the
//! library's stats report. Build first: `cargo build --workspace` (the README's test command
//! does).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

fn target_dir() -> PathBuf {
    // target/<profile>/deps/interpose-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn library() -> PathBuf {
    let p = target_dir().join("libltshim.so");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` first", p.display());
    p
}

/// Compiles tests/c/interpose.c against the double once; returns (program, double's dir).
fn program() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let double = target_dir().join("libcudadouble.so");
        assert!(double.exists(), "{} is missing: run `cargo build --workspace` first", double.display());
        let dir = target_dir().join("ctests");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libcuda.so.1", "libcuda.so"] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&double, &link).unwrap();
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
        // each test program, linked against the double as libcuda
        for name in ["interpose", "packing"] {
            let out = Command::new("cc")
                .args(["-O1", "-Wall", "-Werror", "-o"])
                .arg(dir.join(name))
                .arg(src.join(format!("{name}.c")))
                .arg("-I")
                .arg(&src)
                .arg(format!("-L{}", dir.display()))
                .args(["-lcuda", "-ldl", "-lpthread"])
                .arg(format!("-Wl,-rpath,{}", dir.display()))
                .output()
                .expect("run cc");
            assert!(out.status.success(), "cc failed on {name}.c:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let exe = dir.join("interpose");
        // a program with no CUDA library, so that only the local scope defines its symbol
        let local = Command::new("cc").args(["-O1", "-Wall", "-Werror", "-o"]).arg(dir.join("local")).arg(src.join("local.c")).arg("-ldl").output().expect("run cc");
        assert!(local.status.success(), "cc failed on local.c:\n{}", String::from_utf8_lossy(&local.stderr));
        // the same library twice: loaded late into the global scope, and under NCCL's file
        // name into a local scope of its own
        for lib in ["liblate.so", "libnccl.so.2"] {
            let late = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(dir.join(lib)).arg(src.join("late.c")).output().expect("run cc");
            assert!(late.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&late.stderr));
        }
        (exe, dir)
    })
}

struct Run {
    out: Output,
    stats: Option<Value>,
    did: HashMap<String, u64>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn stats(&self) -> &Value {
        self.stats.as_ref().unwrap_or_else(|| panic!("no stats report; stderr:\n{}", self.stderr()))
    }
    fn did(&self, what: &str) -> u64 {
        *self.did.get(what).unwrap_or_else(|| panic!("program did not report {what}:\n{}", self.stdout()))
    }
    fn assert_ok(&self) {
        assert!(self.out.status.success(), "program failed ({:?})\nstdout:\n{}\nstderr:\n{}", self.out.status, self.stdout(), self.stderr());
    }
}

/// Runs a scenario; `preload` false runs it natively.
fn run(scenario: &str, preload: bool, env: &[(&str, &str)]) -> Run {
    run_args(&[scenario], preload, env)
}

fn run_args(args: &[&str], preload: bool, env: &[(&str, &str)]) -> Run {
    let (exe, _) = program();
    run_exe(exe, args, preload, env)
}

/// Runs a scenario of tests/c/packing.c under the library in `mode` with `limit`.
fn run_packing(args: &[&str], mode: &str, limit: &str) -> Run {
    run_packing_with(args, &[("LTSHIM_MODE", mode), ("LTSHIM_DEVICE_LIMIT", limit)])
}

fn run_packing_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let (exe, _) = program();
    run_exe(&exe.with_file_name("packing"), args, true, env)
}

fn run_exe(exe: &Path, args: &[&str], preload: bool, env: &[(&str, &str)]) -> Run {
    let scenario = args[0];
    let stats = tempfile_path(scenario);
    let mut cmd = Command::new(exe);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LTSHIM_") {
            cmd.env_remove(k);
        }
    }
    if preload {
        // the observe tests keep observe; packing tests name their mode
        cmd.env("LD_PRELOAD", library()).env("LTSHIM_STATS", &stats).env("LTSHIM_MODE", "observe");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run test program");
    let report = std::fs::read_to_string(&stats).ok().map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("stats JSON does not parse: {e}\n{s}")));
    let _ = std::fs::remove_file(&stats);
    let mut did = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some("did") {
            if let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                *did.entry(k.to_string()).or_insert(0) += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    Run { out, stats: report, did }
}

fn tempfile_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("ltshim-test-{}-{tag}-{n}.json", std::process::id()))
}

fn n(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_u64().unwrap_or_else(|| panic!("{path} is not a number in the report: {cur}"))
}

#[test]
fn every_path_is_seen_and_counted_as_the_program_did_it() {
    let r = run("paths", true, &[]);
    r.assert_ok();
    let s = r.stats();
    assert_eq!(n(s, "allocations.count"), r.did("alloc"), "allocations");
    assert_eq!(n(s, "allocations.frees"), r.did("free"));
    assert_eq!(n(s, "allocations.live_buffers"), 0);
    assert_eq!(n(s, "launches.runtime"), r.did("runtime_launch"));
    assert_eq!(n(s, "launches.driver"), r.did("driver_launch"));
    assert_eq!(n(s, "launches.captured"), r.did("captured"));
    assert_eq!(n(s, "launches.graph_launches"), r.did("graph_launch"));
    assert_eq!(n(s, "launches.graph_kernels"), r.did("graph_kernels"));
    assert_eq!(n(s, "launches.kernels_executed_seen"), r.did("runtime_launch") + r.did("driver_launch") + r.did("graph_kernels"));
    assert_eq!(n(s, "launches.cublas_calls"), r.did("cublas"));
    assert_eq!(n(s, "launches.cudnn_calls"), r.did("cudnn"));
    assert_eq!(n(s, "pointers.found.cublas"), r.did("cublas_pointers"));
    assert_eq!(n(s, "pointers.not_found.cublas"), 0);
    assert_eq!(n(s, "pointers.found.cudnn"), r.did("cudnn_pointers"));
    assert_eq!(n(s, "pointers.not_found.cudnn"), 0);
    assert_eq!(n(s, "allocations.user_maps"), r.did("user_maps"));
    assert_eq!(n(s, "buffers.ever_flagged.exported"), r.did("exported"));
    assert_eq!(n(s, "buffers.ever_flagged.user_mapped"), r.did("user_maps"));
    // Every launch's pointer arguments were found: add() has 3 pointers, scale() a struct of 2.
    assert!(n(s, "pointers.found.runtime_launch") >= 3 * r.did("runtime_launch") - 1);
    assert!(n(s, "pointers.found.driver_launch") >= 3 * r.did("driver_launch"));
    assert_eq!(n(s, "fallbacks.layout_unknown"), 0);
    assert_eq!(n(s, "fallbacks.panic"), 0);
    // The lookup hooks substituted our stubs: the program's dlsym(cuLaunchKernel),
    // cuGetProcAddress and cudaGetDriverEntryPoint(cuLaunchKernelEx) (the double's runtime
    // makes more lookups of its own); the launches through them reached our hooks:
    assert!(n(s, "lookups_substituted") >= 3);
    assert_eq!(n(s, "calls.cuLaunchKernel"), 3);
    assert_eq!(n(s, "calls.cuLaunchKernelEx"), 2);
    // The runtime reaches the driver through pointers our lookups handed out (as cudart does):
    // those nested calls are the same operation and are not counted again.
    assert!(s["calls"].get("cuGraphLaunch").is_none(), "a replay was counted twice: {}", s["calls"]);
    assert!(s["calls"].get("cuMemAlloc_v2").map_or(0, |v| v.as_u64().unwrap()) <= 1, "{}", s["calls"]);
    assert_eq!(n(s, "fallbacks.cudnn_pack_unreadable"), 0);
    assert!(r.stderr().contains("maps device memory itself"), "expected the one-line VMM warning:\n{}", r.stderr());
}

#[test]
fn passthrough_output_is_identical_to_a_native_run() {
    for scenario in ["paths", "pointer_array", "layout_unknown", "threads", "fork"] {
        let native = run(scenario, false, &[]);
        native.assert_ok();
        let shimmed = run(scenario, true, &[]);
        shimmed.assert_ok();
        assert_eq!(native.stdout(), shimmed.stdout(), "{scenario}: stdout differs");
    }
}

#[test]
fn lookup_hooks_hand_out_wrappers_only_for_what_we_hook() {
    // The program asserts: dlsym/cuGetProcAddress give ltshim's stub for hooked functions
    // (keeping the per-thread variant), the real pointer for others, and RTLD_NEXT still
    // resolves relative to the caller.
    let r = run("lookups", true, &[]);
    r.assert_ok();
    assert!(r.stdout().contains("did lookups ok"));
}

#[test]
fn host_to_device_pointer_arrays_flag_their_targets() {
    let r = run("pointer_array", true, &[]);
    r.assert_ok();
    let s = r.stats();
    assert_eq!(n(s, "buffers.live_by_flag.pointed_from_device"), r.did("pointed"));
    assert_eq!(n(s, "h2d_scan.pointer_words"), r.did("pointed"));
}

#[test]
fn a_library_loaded_after_the_lookups_still_gets_its_calls() {
    // Regression: a symbol not found at the first lookup was remembered as missing, so a
    // cuBLAS or cuDNN loaded later had every call through our stub answered "not initialized".
    let late = program().1.join("liblate.so");
    let r = run_args(&["late_library", late.to_str().unwrap()], true, &[]);
    r.assert_ok();
    assert!(r.stdout().contains("did late ok"));
    // the call made before the library was loaded failed with one line naming the function
    let err = r.stderr();
    assert_eq!(err.matches("the real cublasZgemmStridedBatched could not be found").count(), 1, "{err}");
}

#[test]
fn a_library_loaded_into_a_local_scope_still_gets_its_calls() {
    // Regression (the H200, 2026-12-01): PyTorch's libnccl.so.2 is a dependency of a Python
    // extension, loaded with RTLD_LOCAL, so dlsym(RTLD_NEXT) from the preloaded library cannot
    // see it, while the program's calls bind to our exported hook; NCCL had no family to
    // search, and every collective under the library failed ("the real ncclAllReduce could not
    // be found"), which killed the program.
    let (exe, dir) = program();
    let lib = dir.join("libnccl.so.2");
    let r = run_exe(&exe.with_file_name("local"), &["local", lib.to_str().unwrap()], true, &[]);
    r.assert_ok();
    assert!(r.stdout().contains("did local ok"), "{}", r.stdout());
    assert!(!r.stderr().contains("could not be found"), "{}", r.stderr());
}

#[test]
fn a_kernel_without_a_known_layout_is_a_counted_fallback_and_leaves_no_error() {
    let r = run("layout_unknown", true, &[]);
    r.assert_ok(); // the program checks cudaGetLastError() == 0 and the results
    assert_eq!(n(r.stats(), "fallbacks.layout_unknown"), 1);
}

#[test]
fn eight_threads_at_once_finish_with_correct_data() {
    let r = run("threads", true, &[]);
    r.assert_ok();
    let s = r.stats();
    assert_eq!(n(s, "allocations.count"), r.did("alloc"));
    assert_eq!(n(s, "allocations.frees"), r.did("free"));
    assert_eq!(n(s, "launches.runtime"), r.did("runtime_launch"));
    assert_eq!(n(s, "allocations.live_buffers"), 0);
}

#[test]
fn a_forked_child_passes_through_and_the_parent_reports() {
    let r = run("fork", true, &[]);
    r.assert_ok();
    let s = r.stats();
    assert!(s["pid"].is_u64());
    assert_eq!(n(s, "allocations.count"), r.did("alloc"), "the child's allocation must not be counted");
}

#[test]
fn a_bad_knob_prints_one_line_and_the_program_still_runs() {
    let r = run("paths", true, &[("LTSHIM_MODE", "fast")]);
    r.assert_ok();
    let lines: Vec<&str> = r.out.stderr.split(|&b| b == b'\n').filter_map(|l| std::str::from_utf8(l).ok()).filter(|l| l.contains("LTSHIM_MODE")).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr());
    assert!(lines[0].contains("\"fast\"") && lines[0].contains("off, observe, lossless, lossy"), "{}", lines[0]);
    // Passthrough: nothing observed, so no report either.
    assert!(r.stats.is_none());
}

#[test]
fn an_unknown_variable_is_named_and_the_program_still_runs() {
    let r = run("threads", true, &[("LTSHIM_MDOE", "off")]);
    r.assert_ok();
    assert!(r.stderr().contains("unknown variable LTSHIM_MDOE"), "{}", r.stderr());
}

#[test]
fn mode_off_observes_nothing() {
    let r = run("paths", true, &[("LTSHIM_MODE", "off")]);
    r.assert_ok();
    assert!(r.stats.is_none(), "mode off makes no CUDA call of ours and writes no report");
}

#[test]
fn only_the_hooks_and_the_control_api_are_exported() {
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(library()).output().expect("nm");
    let exported: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().nth(2).map(str::to_string)).collect();
    let script = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("shim/ltshim.map")).unwrap();
    let listed: Vec<&str> = script.lines().map(str::trim).filter(|l| l.ends_with(';') && !l.starts_with('}') && !l.contains('*') && !l.contains(':')).map(|l| l.trim_end_matches(';')).collect();
    for name in &exported {
        assert!(listed.contains(&name.as_str()) || name.starts_with("ltshim_"), "{name} is exported but not a hook");
    }
    for name in &listed {
        assert!(exported.iter().any(|e| e == name), "{name} is in the version script but not exported");
    }
    assert!(exported.iter().any(|e| e == "ltshim_stats_json"));
}

// ---- the CLI ---------------------------------------------------------------------------

fn cli() -> PathBuf {
    let p = target_dir().join("ltshim");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` first", p.display());
    p
}

#[test]
fn cli_run_preloads_the_library_and_stats_prints_the_report() {
    let (exe, dir) = program();
    let stats = tempfile_path("cli");
    let out = Command::new(cli())
        .args(["run", "--mode", "observe", "--stats"])
        .arg(&stats)
        .arg("--")
        .arg(exe)
        .arg("threads")
        .env("LD_LIBRARY_PATH", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = Command::new(cli()).arg("stats").arg(&stats).output().unwrap();
    let _ = std::fs::remove_file(&stats);
    let text = String::from_utf8_lossy(&table.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(table.status.success());
    assert!(text.contains("allocations / frees 4800 / 4800"), "{text}");
    assert!(text.contains("LTSHIM_MODE observe"), "{text}");
}

#[test]
fn cli_run_passes_the_exit_code_through() {
    let (exe, dir) = program();
    let out = Command::new(cli()).args(["run", "--"]).arg(exe).arg("no-such-scenario").env("LD_LIBRARY_PATH", dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn one_line_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let (_, dir) = program();
    let mut cmd = Command::new(cli());
    cmd.args(args).env("LD_LIBRARY_PATH", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "expected failure for {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got:\n{err}");
    err
}

#[test]
fn cli_errors_are_one_clear_line() {
    assert!(one_line_error(&["run", "--lib", "/nonexistent/libltshim.so", "--", "true"], &[]).contains("does not exist"));
    assert!(one_line_error(&["run", "--", "no-such-command-ltshim"], &[]).contains("command not found: no-such-command-ltshim"));
    assert!(one_line_error(&["run", "--mode", "fast", "--", "true"], &[]).contains("--mode \"fast\" is not one of"));
    assert!(one_line_error(&["frobnicate"], &[]).contains("unknown subcommand"));
    assert!(one_line_error(&["stats", "/nonexistent.json"], &[]).contains("cannot read"));
}

#[test]
fn cli_run_without_a_gpu_driver_says_so() {
    let empty = std::env::temp_dir().join("ltshim-no-driver");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(cli()).args(["run", "--", "true"]).env("LD_LIBRARY_PATH", &empty).output().unwrap();
    if out.status.success() {
        eprintln!("SKIPPED (loudly): this machine has a real CUDA driver, so the no-driver message cannot be provoked here");
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no CUDA driver on this machine"), "{err}");
}

// ---------------------------------------------------------------- packing (tests/c/packing.c)

#[test]
fn allocations_past_a_tiny_limit_pack_cold_buffers_and_every_path_restores_them_exactly() {
    let r = run_packing(&["limit"], "lossless", "16MiB");
    r.assert_ok();
    let s = r.stats();
    assert_eq!(r.did("mem_get_info_total"), 16 << 20);
    assert!(n(s, "packing.packs") >= 3, "packs: {}", s["packing"]);
    assert!(n(s, "packing.restores") >= 2, "restores: {}", s["packing"]);
    // the limit holds, also while a pack has its copy and the buffer's memory at once (the
    // reserve under the limit is for copies: engine/budget.rs)
    assert!(n(s, "packing.held_peak_bytes") <= 16 << 20, "held peak over the limit: {}", s["packing"]);
    assert!(n(s, "packing.out_of_memory_returned") >= 1);
    // and says once where the memory is (the program's own message counts the reserve as free)
    let err = r.stderr();
    assert_eq!(err.matches("did not fit under LTSHIM_DEVICE_LIMIT").count(), 1, "{err}");
    assert!(err.contains("kept free for packed copies"), "{err}");
    assert!(r.did("incompressible_allocated") >= 1, "some random buffers fit once the others were packed");
    assert!(n(s, "packing.bytes_in_by_codec.zvc") > 0, "{}", s["packing"]);
}

#[test]
fn a_buffer_only_read_since_its_restore_drops_again_without_a_check_and_a_written_one_is_reencoded() {
    let r = run_packing(&["clean"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("clean_ok"), 1);
    let s = r.stats();
    // the copy's source read, then the copy into `sink` and the refill: clean drops are the
    // first re-pack only (a launch counts as a write, and the sink was written by the copy)
    assert_eq!(n(s, "packing.packs_clean_copy"), 1, "{}", s["packing"]);
    // the reading launch: checked, unchanged, its copy reused
    assert!(n(s, "packing.packs_reused_copy") >= 2, "{}", s["packing"]);
    assert!(n(s, "packing.checks") >= 1 && n(s, "packing.checks") > n(s, "packing.checks_found_changed"), "{}", s["packing"]);
    // the codec's host time, split by what it was spent on, adds up to it
    let work: u64 = ["encode", "check", "decode", "discard"].iter().map(|w| n(s, &format!("packing.codec_host_ns_by_work.{w}"))).sum();
    assert_eq!(work, n(s, "packing.codec_host_ns"), "{}", s["packing"]);
    assert!(n(s, "packing.codec_host_ns_by_work.encode") > 0 && n(s, "packing.codec_host_ns_by_work.check") > 0, "{}", s["packing"]);
}

#[test]
fn the_debug_log_says_what_each_pack_and_restore_did() {
    let r = run_packing_with(&["lossy_weights"], &[("LTSHIM_MODE", "lossy"), ("LTSHIM_DEVICE_LIMIT", "64MiB"), ("LTSHIM_LOG", "debug")]);
    r.assert_ok();
    let err = r.stderr();
    assert!(err.contains(" us: encoded (first), copy "), "{err}");
    assert!(err.contains("encoded (to_lossy), lossy allowed, copy ") && err.contains("int8g 4194304 -> "), "{err}");
    assert!(err.contains("restore 0x"), "{err}");
}

#[test]
fn lossy_mode_quantizes_only_a_buffer_that_is_only_read_since_its_restore() {
    let r = run_packing(&["lossy_weights"], "lossy", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("lossy_weights_ok"), 1);
    let s = r.stats();
    // the weight's 4 MiB, once (its upgrade from the lossless copy of the first pack); the
    // written activation never
    assert_eq!(n(s, "packing.bytes_in_by_codec.int8g"), 4 << 20, "{}", s["packing"]);
}

#[test]
fn a_buffer_that_no_gemm_operand_spans_never_goes_lossy() {
    // GEMMs read the two halves of one 4 MiB buffer: with `hint_float`'s rule (an operand must
    // start at the buffer and leave under 1 MiB of it) neither marks it as floats, and it comes
    // back exact. Before, any operand inside a buffer made all of it a float weight.
    let r = run_packing(&["partial_operand"], "lossy", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("partial_operand_ok"), 1);
    let s = r.stats();
    assert_eq!(s["packing"]["bytes_in_by_codec"]["int8g"].as_u64().unwrap_or(0), 0, "{}", s["packing"]);
    assert!(n(s, "packing.packs") >= 4, "{}", s["packing"]);
}

#[test]
fn a_float_type_seen_by_a_gemm_ends_when_the_buffer_is_written() {
    // a segment read whole as bf16, then written with other bf16 data that only reads follow
    // (a GEMM over its first half, a copy's source): never lossy, every byte exact
    let r = run_packing(&["reused_segment"], "lossy", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("reused_segment_ok"), 1);
    let s = r.stats();
    assert_eq!(s["packing"]["bytes_in_by_codec"]["int8g"].as_u64().unwrap_or(0), 0, "{}", s["packing"]);
    // and a call that may write anything ends it too: a weight read whole, then a 3-D set of
    // another buffer (opaque), then only read: exact
    let r = run_packing(&["opaque_outdates"], "lossy", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("opaque_outdates_ok"), 1);
    let s = r.stats();
    assert_eq!(s["packing"]["bytes_in_by_codec"]["int8g"].as_u64().unwrap_or(0), 0, "{}", s["packing"]);
    assert!(n(s, "packing.packs") >= 3, "{}", s["packing"]);
    assert!(n(s, "packing.packs") >= 5, "{}", s["packing"]);
}

#[test]
fn cublaslt_operands_span_their_buffers_by_their_layouts() {
    // three 4 MiB weights read through cublasLtMatmul: whole (column-major), whole (row-major,
    // the order attribute set), and as its first half; the first two go lossy, the third never
    let r = run_packing(&["lt_layouts"], "lossy", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("lt_layouts_ok"), 1);
    let s = r.stats();
    assert_eq!(n(s, "packing.bytes_in_by_codec.int8g"), 8 << 20, "a and b, once each: {}", s["packing"]);
}

#[test]
fn a_lossy_weight_that_an_update_wrote_packs_lossless_from_then_on() {
    // A GEMM's weight goes lossy once, a copy then writes a few of its elements (an optimizer
    // step), and four more cycles must give back exactly the updated bytes: without
    // `Entry::lossy_barred` each later pack of the clean weight quantized them again (int8g
    // encoded 4 MiB more a cycle, and the group holding the update came back changed).
    let r = run_packing(&["train_step"], "lossy", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("train_step_ok"), 1, "the updated weight came back exact");
    let s = r.stats();
    assert_eq!(n(s, "packing.bytes_in_by_codec.int8g"), 4 << 20, "lossy once: {}", s["packing"]);
    assert_eq!(n(s, "packing.lossy_barred"), 1, "{}", s["packing"]);
}

#[test]
fn lossy_weights_cycling_under_a_limit_go_lossy_each_once_and_read_back_within_the_bound() {
    // 12 weights of 1 MiB (lossless copies ~0.67 MiB) read by GEMMs in a loop under a limit
    // that holds about a third of them resident. (The rule also keeps our thread from dropping
    // a weight by its lossless copy, `Entry::copy_goes_lossy`; here the program's own packs
    // take most weights first, so this does not single that path out.)
    let r = run_packing_with(&["cycle_gemm"], &[("LTSHIM_MODE", "lossy"), ("LTSHIM_DEVICE_LIMIT", "12MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("cycle_gemm_ok"), 1, "every weight within the error bound");
    let s = r.stats();
    assert!(n(s, "packing.restores") >= 24, "the limit must force restores: {}", s["packing"]);
    // the weights that cycle went lossy, each once: their lossy copies are then kept and
    // dropped by
    let int8g = n(s, "packing.bytes_in_by_codec.int8g");
    assert!(int8g >= 4 << 20, "at least the cycling weights go lossy: {}", s["packing"]);
    assert!(int8g <= 12 << 20, "each weight goes lossy once: {}", s["packing"]);
    assert!(n(s, "packing.packs_clean_copy") >= 12, "{}", s["packing"]);
    // a weight whose copy is to go lossy is encoded, not spared by moving other weights'
    // copies to host memory (host copies are allowed here: before `policy::far_beyond` weighed
    // a clean victim, 7 copies moved and 5 weights of 12 never went lossy; the 3B decode
    // then read its weights over the bus, at 0.77x of native, docs/PERF.md P88)
    assert_eq!(n(s, "packing.copies_moved_far"), 0, "{}", s["packing"]);
    assert!(int8g >= 10 << 20, "most weights go lossy: {}", s["packing"]);
}

#[test]
fn a_weight_whose_lossy_encode_made_no_lossy_block_keeps_that_copy_instead_of_encoding_it_at_every_pack() {
    // 12 weights of 1 MiB, three elements in four zero: zvc's copy is smaller than int8g's, so
    // the lossy encode of a weight only read since its restore makes a lossless copy again.
    // Before `Entry::copy_tried_lossy` every later pack saw a clean weight with a lossless copy,
    // threw the copy away and encoded the same one again (measured on this scenario: 34 such
    // encodes and 0 of 63 packs reusing a copy; with it 6, and 54 of 73).
    let r = run_packing_with(&["cycle_gemm_sparse"], &[("LTSHIM_MODE", "lossy"), ("LTSHIM_DEVICE_LIMIT", "12MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("cycle_gemm_ok"), 1, "every weight read back exact");
    let s = r.stats();
    assert!(n(s, "packing.restores") >= 24, "the limit must force restores: {}", s["packing"]);
    assert!(n(s, "packing.encodes_by_cause.to_lossy") <= 12, "each weight is tried lossy once at most: {}", s["packing"]);
    let (packs, reused) = (n(s, "packing.packs"), n(s, "packing.packs_reused_copy"));
    assert!(reused * 2 >= packs, "{reused} of {packs} packs reused a kept copy: {}", s["packing"]);
}

#[test]
fn once_the_program_enables_peer_access_our_mappings_let_the_peer_in_also_after_a_restore() {
    for scenario in ["peer_access", "peer_access_driver"] {
        let r = run_packing(&[scenario], "lossless", "64MiB");
        r.assert_ok();
        assert_eq!(r.did("peer_access_ok"), 1, "{scenario}");
        assert!(n(r.stats(), "packing.restores") >= 2, "{scenario}: {}", r.stats()["packing"]);
    }
}

#[test]
fn nccl_calls_restore_their_buffers_hold_packing_off_inside_a_group_and_keep_captured_and_registered_buffers() {
    let r = run_packing(&["nccl_calls"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("nccl_calls_ok"), 1);
    let s = r.stats();
    assert!(n(s, "packing.restores") >= 3, "{}", s["packing"]);
    assert!(n(s, "pointers.found.nccl") >= 4, "{}", s["pointers"]);
    assert_eq!(n(s, "packing.kept_resident.exported"), 1, "{}", s["packing"]);
    assert_eq!(n(s, "packing.kept_resident.captured"), 1, "{}", s["packing"]);
}

#[test]
fn a_failed_end_capture_ends_no_capture_so_packing_stays_off_until_the_real_end() {
    let r = run_packing(&["capture_count"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("capture_count_ok"), 1);
}

#[test]
fn graphs_instantiated_and_destroyed_at_once_on_threads_never_leave_a_live_graphs_buffer_unflagged() {
    let r = run_packing(&["graph_race"], "lossless", "64MiB");
    r.assert_ok();
    let buffers = r.did("graph_race_buffers");
    assert_eq!(buffers, 6);
    assert_eq!(n(r.stats(), "packing.kept_resident.graph"), buffers, "{}", r.stats()["packing"]);
}

#[test]
fn a_victim_is_packed_only_if_its_copy_fits_the_room_left_so_the_limit_is_never_passed() {
    let r = run_packing(&["limit_smallest"], "lossless", "24MiB");
    r.assert_ok();
    assert_eq!(r.did("limit_smallest_ok"), 1);
    let s = r.stats();
    assert!(n(s, "packing.packs") >= 1, "{}", s["packing"]);
    // a 2 MiB buffer's copy (~1.1 MiB) fits the 3 MiB reserve; the coldest, the 8 MiB
    // buffer, would need ~4.3 MiB
    assert!(n(s, "packing.held_peak_bytes") <= 24 << 20, "held peak {} over the limit: {}", n(s, "packing.held_peak_bytes"), s["packing"]);
    assert_eq!(n(s, "packing.packs_over_limit"), 0, "{}", s["packing"]);
}

#[test]
fn a_large_buffer_whose_copy_fits_no_room_is_packed_piece_by_piece_without_passing_the_limit() {
    let r = run_packing(&["limit_large_copy"], "lossless", "24MiB");
    r.assert_ok();
    assert_eq!(r.did("limit_large_copy_ok"), 1, "it read back exact");
    let s = r.stats();
    // its whole copy (~9 MiB) has no room beside it (16 MiB held of 24, 3 reserved for
    // copies); backed in 1 MiB pieces (the CPU codec's chunk), each piece goes back once its
    // chunk is in the copy, so one chunk's copy is all the room it needs (before the pieces,
    // this pack passed the limit by that whole copy: held peak up to 34 MiB)
    assert!(n(s, "packing.packs") >= 1, "{}", s["packing"]);
    assert_eq!(n(s, "packing.packs_over_limit"), 0, "{}", s["packing"]);
    assert_eq!(n(s, "packing.packs_past_margin"), 0, "{}", s["packing"]);
    let peak = r.did("limit_large_copy_peak_kib");
    assert!(peak <= 24 << 10, "held peak {peak} KiB up to the pack, over the 24 MiB limit: {}", s["packing"]);
}

#[test]
fn with_no_limit_a_program_that_outgrows_the_card_runs_on() {
    // a 64 MiB card of which 8 MiB are the context's (no hook sees them), no
    // LTSHIM_DEVICE_LIMIT, 24 compressible buffers of 4 MiB made and read one by one, as a
    // model's weights are: natively the 15th allocation fails (before the card's room was
    // learnt from the driver, the budget took the card as 64 MiB free and the real allocation
    // failed first; on the H200 nothing was packed at all, docs/PERF.md P64)
    let r = run_packing_with(&["card_full", "24"], &[("LTSHIM_MODE", "lossless"), ("CUDADOUBLE_TOTAL_MIB", "64"), ("CUDADOUBLE_OTHERS_MIB", "8")]);
    r.assert_ok();
    assert_eq!(r.did("verified"), 24, "every buffer read back exact");
    let s = r.stats();
    assert!(n(s, "packing.packs") >= 10, "{}", s["packing"]);
    assert_eq!(n(s, "packing.out_of_memory_returned"), 0, "{}", s["packing"]);
    assert_eq!(n(s, "packing.packs_over_limit"), 0, "{}", s["packing"]);
    let (peak, limit) = (n(s, "packing.held_peak_bytes"), n(s, "packing.limit_bytes"));
    // (the double keeps the CPU codec's copies and scratch in host memory: the card's room the
    // budget learns is its 56 MiB free plus those, ~6 MiB here; the card is 64)
    assert!(limit < 64 << 20, "the limit {limit} is the card's, not what it has free: {}", s["packing"]);
    assert!(peak <= limit, "held peak {peak} past the card's room {limit}: {}", s["packing"]);
}

#[test]
fn with_no_other_room_packed_copies_move_to_host_memory_and_the_limit_holds() {
    // ten buffers of 2 MiB named by one launch, beside four packed ones' copies, pass the
    // 24 MiB limit with nothing left to pack: without host memory for copies the restores go
    // over it (the sweep's rows over the limit on the H200, docs/PERF.md P61-P62)
    let run = |host: &str| run_packing_with(&["host_copies"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "24MiB"), ("LTSHIM_HOST_COPIES", host)]);
    let off = run("0");
    off.assert_ok();
    assert_eq!(off.did("host_copies_ok"), 1, "every buffer read back exact");
    let s = off.stats();
    assert!(n(s, "packing.restores_over_limit") >= 1, "the scenario must pass the limit without host copies: {}", s["packing"]);
    assert_eq!(n(s, "packing.copies_moved_to_host"), 0, "{}", s["packing"]);
    let on = run("64MiB");
    on.assert_ok();
    assert_eq!(on.did("host_copies_ok"), 1, "every buffer read back exact, those decoded from host memory too");
    let s = on.stats();
    assert!(n(s, "packing.copies_moved_to_host") >= 1, "{}", s["packing"]);
    assert!(n(s, "packing.host_copies_peak_bytes") >= 1 << 20, "{}", s["packing"]);
    assert!(n(s, "packing.host_copies_peak_bytes") <= 64 << 20, "within LTSHIM_HOST_COPIES: {}", s["packing"]);
    assert_eq!(n(s, "packing.restores_over_limit"), 0, "{}", s["packing"]);
    assert_eq!(n(s, "packing.packs_over_limit"), 0, "{}", s["packing"]);
    assert!(n(s, "packing.held_peak_bytes") <= 24 << 20, "held peak {} over the limit: {}", n(s, "packing.held_peak_bytes"), s["packing"]);
    assert_eq!(n(s, "packing.host_copies_bytes"), 0, "every buffer was freed, its host copy with it: {}", s["packing"]);
}

#[test]
fn when_host_memory_for_copies_runs_out_copies_kept_beside_resident_buffers_give_it_back() {
    // the second launch brings back buffers whose copies went to host memory, their copies
    // kept there; the four it leaves out then need host memory for theirs, and 4 MiB is not
    // enough for both (before 2026-12-03's second session that restore passed the limit)
    let r = run_packing_with(&["host_room_reclaimed"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "24MiB"), ("LTSHIM_HOST_COPIES", "4MiB")]);
    r.assert_ok();
    assert_eq!(r.did("host_copies_ok"), 1, "every buffer read back exact after both launches");
    let s = r.stats();
    assert!(n(s, "packing.copies_discarded.for_host_room") >= 1, "{}", s["packing"]);
    assert_eq!(n(s, "packing.restores_over_limit"), 0, "{}", s["packing"]);
    assert_eq!(n(s, "packing.packs_over_limit"), 0, "{}", s["packing"]);
    assert!(n(s, "packing.held_peak_bytes") <= 24 << 20, "held peak {} over the limit: {}", n(s, "packing.held_peak_bytes"), s["packing"]);
    assert!(n(s, "packing.host_copies_peak_bytes") <= 4 << 20, "within LTSHIM_HOST_COPIES: {}", s["packing"]);
}

#[test]
fn in_a_training_loop_the_optimizer_states_copies_go_to_host_memory_instead_of_activations_being_encoded_again() {
    // 12 MiB of dense buffers under 13 MiB: their copies (~78%) beside the activations in use
    // leave room for few. On the CUDA double: 64 MiB of encodes with the states' copies moved,
    // 102 MiB without (90 packs against 74)
    let run = |host: &str| {
        let r = run_packing_with(&["train_loop"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "13MiB"), ("LTSHIM_MIN_BYTES", "64KiB"), ("LTSHIM_HOST_COPIES", host)]);
        r.assert_ok();
        assert_eq!(r.did("train_loop_ok"), 1, "every activation and state read back exact");
        r
    };
    let (moved, kept) = (run("64MiB"), run("0"));
    let (m, k) = (moved.stats(), kept.stats());
    assert!(n(m, "packing.copies_moved_far") >= 1, "no state's copy went to host memory: {}", m["packing"]);
    assert_eq!(n(k, "packing.copies_moved_far"), 0, "LTSHIM_HOST_COPIES=0 moves nothing: {}", k["packing"]);
    let encoded = |s: &serde_json::Value| ["first", "changed", "discarded", "to_lossy"].iter().map(|c| n(s, &format!("packing.encoded_bytes_by_cause.{c}"))).sum::<u64>();
    assert!(encoded(m) < encoded(k), "moving the states' copies must save encodes: {} bytes against {}", encoded(m), encoded(k));
    for s in [m, k] {
        assert_eq!(n(s, "packing.restores_over_limit") + n(s, "packing.packs_over_limit"), 0, "{}", s["packing"]);
    }
}

#[test]
fn a_large_buffer_with_no_room_beside_its_copy_is_restored_piece_by_piece_under_the_limit() {
    let r = run_packing(&["restore_pieces"], "lossless", "24MiB");
    r.assert_ok();
    assert_eq!(r.did("restore_pieces_ok"), 1, "it read back exact, twice");
    let s = r.stats();
    // 16 MiB beside its ~9 MiB copy is more than the 24 MiB limit: whole, this restore went
    // over it (held peak ~25 MiB, restores_over_limit 1)
    // (three began: the second found no memory for its second piece, put its last one back
    // into the copy and left the buffer packed; the read after it restored it)
    assert_eq!(n(s, "packing.restores_in_pieces"), 2, "{}", s["packing"]);
    assert_eq!(n(s, "packing.restores_corrupt"), 0, "nothing was lost: {}", s["packing"]);
    assert_eq!(n(s, "packing.restores_over_limit"), 0, "{}", s["packing"]);
    assert!(n(s, "packing.held_peak_bytes") <= 24 << 20, "held peak over the limit: {}", s["packing"]);
    // the second pack encodes anew, and so does the put-back of the stopped restore's piece
    assert_eq!(n(s, "packing.encodes_by_cause.discarded"), 2, "{}", s["packing"]);
    assert!(n(s, "packing.bytes_in_by_codec.zvc") >= (32 << 20) + (1 << 20), "the piece put back was encoded again: {}", s["packing"]);
}

#[test]
fn restore_all_packs_nothing_even_when_a_restore_in_pieces_finds_the_card_full() {
    let r = run_packing(&["restore_all_card_full"], "lossless", "24MiB");
    r.assert_ok();
    assert_eq!(r.did("packs_during_restore_all"), 0, "{}", r.stats()["packing"]);
    assert_eq!(r.did("restore_all_result"), 1, "it says it could not restore everything");
    assert_eq!(n(r.stats(), "packing.restores_corrupt"), 0, "nothing was lost: {}", r.stats()["packing"]);
}

#[test]
fn pointer_queries_before_each_launch_cost_no_extra_restores() {
    // (each query once took a sequence number of its own, so the first queried buffer was
    // no longer among the "last calls" by the launch it was queried for: 96 restores against
    // 72 at the two smallest limits)
    for limit in ["5MiB", "6MiB", "7MiB", "8MiB"] {
        let env = [("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", limit), ("LTSHIM_MIN_BYTES", "64KiB"), ("LTSHIM_PACK_AHEAD", "off"), ("LTSHIM_RESTORE_AHEAD", "off")];
        let plain = run_packing_with(&["query_loop"], &env);
        plain.assert_ok();
        let queried = run_packing_with(&["query_loop_queried"], &env);
        queried.assert_ok();
        let (a, b) = (plain.did("loop_restores"), queried.did("loop_restores"));
        assert!(b <= a, "limit {limit}: {b} restores with queries, {a} without");
    }
}

#[test]
fn read_only_buffers_cycling_under_a_limit_are_encoded_once_and_then_dropped_by_their_copies() {
    let r = run_packing_with(&["cycle_read"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("cycle_read_ok"), 1);
    let s = r.stats();
    assert!(n(s, "packing.restores") >= 12, "the limit must force restores: {}", s["packing"]);
    // 12 buffers of 1 MiB, each encoded once (the kept copies of clean buffers are never
    // thrown away to make room while a victim can be packed)
    assert!(n(s, "packing.bytes_in_by_codec.zvc") <= 12 << 20, "{}", s["packing"]);
    assert!(n(s, "packing.packs_clean_copy") >= 12, "{}", s["packing"]);
}

#[test]
fn a_copy_thrown_away_as_likely_stale_is_followed_by_a_check_not_an_encode_every_time() {
    let r = run_packing_with(&["cycle_launch"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("cycle_launch_ok"), 1);
    let s = r.stats();
    assert!(n(s, "packing.restores") >= 24, "the limit must force restores: {}", s["packing"]);
    assert!(n(s, "packing.encodes_by_cause.changed") <= 2 * 12, "{}", s["packing"]);
}

#[test]
fn buffers_rewritten_every_cycle_pay_a_check_at_most_every_other_pack() {
    let r = run_packing_with(&["cycle_write"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("cycle_write_ok"), 1);
    let s = r.stats();
    assert!(n(s, "packing.packs") >= 36, "the limit must force packs: {}", s["packing"]);
    assert!(2 * n(s, "packing.checks") <= n(s, "packing.packs") + 12, "a check nearly every pack: {}", s["packing"]);
    assert!(n(s, "packing.copies_discarded.of_written") >= 6, "no copy was thrown away as likely stale: {}", s["packing"]);
}

#[test]
fn clean_buffers_are_dropped_ahead_by_a_thread_of_ours_and_every_read_finds_its_data() {
    let r = run_packing_with(&["cycle_read"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("cycle_read_ok"), 1);
    let s = r.stats();
    assert!(n(s, "packing.packs_ahead") >= 1, "{}", s["packing"]);
    assert!(n(s, "packing.held_peak_bytes") <= 9 << 20, "{}", s["packing"]);
    // clean buffers are dropped for nothing: no copy goes to host memory ahead of them
    assert_eq!(n(s, "packing.copies_moved_far"), 0, "{}", s["packing"]);
    let off = run_packing_with(
        &["cycle_read"],
        &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB"), ("LTSHIM_PACK_AHEAD", "off"), ("LTSHIM_RESTORE_AHEAD", "off")],
    );
    off.assert_ok();
    assert_eq!(n(off.stats(), "packing.packs_ahead"), 0, "LTSHIM_PACK_AHEAD=off");
}

#[test]
fn a_loop_over_read_only_buffers_finds_many_of_them_restored_ahead_and_reads_them_exactly() {
    // 12 buffers of 1 MiB read in the same order 6 times under a limit that holds about 6:
    // after the first pass the thread predicts each next one from its reuse period
    let env = [("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB")];
    let r = run_packing_with(&["cycle_read"], &env);
    r.assert_ok();
    assert_eq!(r.did("cycle_read_ok"), 1, "every word read back as written");
    let s = r.stats();
    let (restores, ahead) = (n(s, "packing.restores"), n(s, "packing.restores_ahead"));
    assert!(restores >= 24, "the limit must force restores: {}", s["packing"]);
    // (on an idle machine about 45 of 56; the bound leaves room for a loaded CI machine, where
    // the thread runs late more often and the program restores for itself)
    assert!(ahead * 4 >= restores, "restores ahead of the calls that need them: {ahead} of {restores}: {}", s["packing"]);
    assert!(n(s, "packing.held_peak_bytes") <= 9 << 20, "restores ahead never pass the limit: {}", s["packing"]);
    let off = run_packing_with(&["cycle_read"], &[env[0], env[1], env[2], ("LTSHIM_RESTORE_AHEAD", "off")]);
    off.assert_ok();
    assert_eq!(off.did("cycle_read_ok"), 1);
    assert_eq!(n(off.stats(), "packing.restores_ahead"), 0, "LTSHIM_RESTORE_AHEAD=off");
    assert!(n(off.stats(), "packing.restores") >= 24, "{}", off.stats()["packing"]);
}

#[test]
fn a_buffer_reached_through_a_pointer_in_device_memory_stays_resident() {
    let r = run_packing(&["pointer_table"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("pointer_table_ok"), 1);
    assert!(n(r.stats(), "packing.kept_resident.pointed_from_device") >= 1);
}

#[test]
fn a_packed_buffer_is_really_unmapped_a_direct_touch_faults() {
    let r = run_packing(&["touch_packed"], "lossless", "64MiB");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(r.out.status.signal(), Some(libc_sigsegv()), "the read of a packed buffer must fault: {:?}\n{}", r.out.status, r.stdout());
}

fn libc_sigsegv() -> i32 {
    11
}

#[test]
fn a_pointer_query_on_a_packed_buffer_restores_it_and_answers_as_for_a_resident_one() {
    let r = run_packing(&["pointer_query"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("query_answered"), 4);
    assert!(n(r.stats(), "packing.restores") >= 4, "each query restored its buffer");
    assert!(n(r.stats(), "pointers.found.pointer_query") >= 4);
}

#[test]
fn a_flipped_bit_in_a_packed_copy_is_reported_at_restore_and_never_handed_over() {
    let r = run_packing(&["corrupt"], "lossless", "64MiB");
    r.assert_ok();
    assert_ne!(r.did("corrupt_copy_rc"), 0);
    assert_eq!(r.did("corrupt_gemm_rc"), 13, "cuBLAS callers get a cuBLAS status");
    let err = r.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("is corrupt")).collect();
    assert_eq!(lines.len(), 1, "one line naming the buffer and the block:\n{err}");
    assert!(lines[0].contains("block") && lines[0].contains("0x"), "{}", lines[0]);
    assert_eq!(n(r.stats(), "packing.restores_corrupt"), 1);
}

#[test]
fn an_injected_failure_drains_everything_back_and_stops_packing() {
    let r = run_packing(&["drain"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("drained"), 1);
    assert_eq!(n(r.stats(), "fallbacks.engine_failure"), 1);
    assert_eq!(r.stats()["packing"]["enabled"], false);
}

#[test]
fn a_buffer_in_pieces_whose_first_chunk_packs_and_the_rest_not_is_packed_and_counted_past_the_margin() {
    let r = run_packing(&["past_margin"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("past_margin_ok"), 1);
    let s = r.stats();
    assert_eq!(n(s, "packing.packs_past_margin"), 1, "{}", s["packing"]);
    assert_eq!(n(s, "packing.packs_refused"), 0, "{}", s["packing"]);
}

#[test]
fn a_kept_copy_loses_only_the_chunks_room_needs_and_the_next_pack_encodes_just_those() {
    let r = run_packing(&["kept_partial"], "lossless", "16MiB");
    r.assert_ok();
    assert_eq!(r.did("kept_partial_ok"), 1);
    let s = r.stats();
    // one chunk of the copy (~0.56 MiB) made the 0.5 MiB that were needed; encoded again: its MiB
    let dropped = n(s, "packing.copies_discarded_bytes.lossless") + n(s, "packing.copies_discarded_bytes.any");
    assert!(dropped > 0 && dropped < 1 << 20, "dropped {dropped} bytes of the kept copy: {}", s["packing"]);
    assert_eq!(n(s, "packing.encoded_bytes_by_cause.discarded"), 1 << 20, "{}", s["packing"]);
}

#[test]
fn each_device_packs_its_own_buffers_under_its_own_limit() {
    let r = run_packing(&["two_devices"], "lossless", "16MiB");
    r.assert_ok();
    assert_eq!(r.did("two_devices_ok"), 1);
    let s = r.stats();
    let dev = |d: &str, f: &str| n(s, &format!("packing.devices.{d}.{f}"));
    for d in ["0", "1"] {
        assert_eq!(dev(d, "limit_bytes"), 16 << 20, "{}", s["packing"]);
        assert!(dev(d, "held_peak_bytes") <= 16 << 20, "device {d} over its limit: {}", s["packing"]);
    }
    // device 0's three buffers fit: never packed; device 1's five did not
    assert_eq!(dev("0", "held_peak_bytes"), 12 << 20, "{}", s["packing"]);
    assert!(n(s, "packing.packs") >= 1, "{}", s["packing"]);
    // each device's free memory is its own: 4 MiB on device 0 (12 of 16 held)
    assert_eq!(r.did("two_devices_free0_mib"), 4);
    assert!(r.did("two_devices_free1_mib") < 4, "device 1 holds more than device 0");
    assert_eq!(n(s, "packing.limit_bytes"), 32 << 20, "the top level sums the devices: {}", s["packing"]);
    // each device's threads wait on its own condvars (one shared between two engines' mutexes
    // panicked a packing-ahead thread at once: parking_lot allows one mutex a condvar)
    assert!(!r.stderr().contains("panicked"), "a thread of ours panicked:\n{}", r.stderr());
}

#[test]
fn memory_info_before_any_allocation_reports_the_emulated_card_on_every_device() {
    let r = run_packing(&["info_first"], "lossless", "16MiB");
    r.assert_ok();
    assert_eq!(r.did("info_first_ok"), 1);
    assert_eq!(r.did("info_first_total0_mib"), 16, "device 0, asked first");
    assert!(r.did("info_first_free0_mib") <= 16);
    assert_eq!(r.did("info_first_total1_mib"), 16, "device 1, never allocated on");
}

#[test]
fn buffers_bound_to_a_multicast_object_are_made_resident_and_never_packed_again() {
    let r = run_packing(&["multicast"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("multicast_ok"), 1);
    assert_ne!(r.did("multicast_rc"), 0, "the double has no multicast: the real call is missing");
    // of the three, only the one outside the bound range packs again
    assert_eq!(r.did("multicast_repacked"), 1);
}

#[test]
fn a_failure_midway_through_a_pack_in_pieces_puts_the_pieces_given_back_back_with_their_bytes() {
    let r = run_packing(&["drain_midway"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("drained_midway"), 1);
    let s = r.stats();
    assert_eq!(n(s, "fallbacks.engine_failure"), 1, "{}", s["fallbacks"]);
    assert_eq!(n(s, "packing.restores_corrupt"), 0, "nothing lost: {}", s["packing"]);
    assert!(r.stderr().contains("after a piece was given back"), "the failure was not midway: {}", r.stderr());
}

#[test]
fn eight_threads_of_random_operations_under_a_tiny_limit_keep_every_byte() {
    // 8 threads x 6 slots of 64-192 KiB want ~6 MiB: a 3 MiB limit keeps the engine busy
    let r = run_packing_with(&["threads", "12500"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "3MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("operations"), 100_000);
    let s = r.stats();
    assert!(n(s, "packing.packs") > 100 && n(s, "packing.restores") > 100, "the limit must force packing: {}", s["packing"]);
}

#[test]
fn a_graphs_buffers_are_restored_before_replay_and_never_packed_while_it_lives() {
    let r = run_packing(&["graph"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("graph_replays"), 2);
}

#[test]
fn a_forked_child_passes_through_and_the_parents_packed_buffers_survive() {
    let r = run_packing(&["fork"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("fork"), 1);
}

#[test]
fn a_launch_whose_layout_is_unknown_finds_every_packed_buffer_resident() {
    let r = run_packing(&["opaque"], "lossless", "16MiB");
    r.assert_ok();
    assert_eq!(r.did("opaque_launches"), 6);
    let s = r.stats();
    assert!(n(s, "fallbacks.layout_unknown") >= 6, "{}", s["fallbacks"]);
    assert!(n(s, "packing.restores") >= 5, "{}", s["packing"]);
}

#[test]
fn a_3d_set_over_packed_buffers_finds_them_restored() {
    let r = run_packing(&["three_d"], "lossless", "64MiB");
    r.assert_ok();
    assert_eq!(r.did("three_d"), 1);
    assert!(n(r.stats(), "packing.restores") >= 3, "the opaque 3-D set restores every packed buffer: {}", r.stats()["packing"]);
}

#[test]
fn idle_packing_packs_cold_buffers_while_the_program_sleeps_and_they_come_back_exact() {
    let r = run_packing_with(&["idle"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_IDLE_MS", "200"), ("LTSHIM_COLD_MS", "300")]);
    r.assert_ok();
    assert_eq!(r.did("idle"), 1);
    let s = r.stats();
    assert_eq!(n(s, "packing.idle_packs"), 2, "{}", s["packing"]);
    assert!(n(s, "packing.restores") >= 2, "{}", s["packing"]);
}

#[test]
fn without_idle_packing_a_quiet_program_keeps_its_buffers() {
    let r = run_packing_with(&["idle"], &[("LTSHIM_MODE", "lossless")]);
    r.assert_ok();
    assert_eq!(n(r.stats(), "packing.packs"), 0);
}

#[test]
fn restores_are_counted_per_step_and_a_loop_keeps_a_stable_resident_set() {
    // twelve 1 MiB buffers used in a loop under a 9 MiB limit: about six fit beside the kept
    // copies (~1 MiB) and the reserve for copies (1/8 of so small a limit)
    let r = run_packing_with(&["steps"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "9MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    let s = r.stats();
    let per_step: Vec<u64> = s["packing"]["restores_per_step"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(per_step.len(), 4, "{per_step:?}");
    assert_eq!(n(s, "packing.steps"), 4);
    // after the first pass: Belady's 12 - 6 = 6 a step, plus at most the RECENT = 2 last uses
    // that may not be evicted (LRU restores all 12; this build measured 6, 6, 8)
    assert!(per_step[1..].iter().all(|&x| x <= 8), "restores per step {per_step:?}");
    assert!(per_step[1..].iter().sum::<u64>() > 0, "the limit must force restores: {per_step:?}");
    // a launch may write its buffers, so none is clean; but a check finds them unchanged, so
    // their copies are kept and most packs are checks, not encodes
    let (packs, reused) = (n(s, "packing.packs"), n(s, "packing.packs_reused_copy"));
    assert!(reused * 2 >= packs, "{reused} of {packs} packs reused a kept copy: {}", s["packing"]);
}

#[test]
fn a_loop_keeps_a_stable_set_resident_without_copies_and_only_the_buffers_that_cycle_keep_theirs() {
    // 24 buffers of 2 MiB (half their words random: copies ~56%), all packed first, then read by
    // launches in the same order for 10 steps under a 48 MiB limit. If every buffer keeps its
    // copy (27 MiB of them) only ~7 fit resident beside the copies and ~19 cycle a step. Ideally
    // the buffers that stay resident keep no copy: with K cycling, the other 24 - K fit beside
    // the K copies when K (1 - c) >= 24 + RECENT - room / 2 MiB (RECENT = 2: the last calls'
    // buffers are never victims). Measured on this build: 13 a step from the fifth step on, no
    // survivor packed again. Verified to fail without the change: without the survivors' pass
    // in `make_room` and the weight in the policy (the build before), 19 a step; with the
    // survivors' pass alone, 15 a step and 17 encodes of buffers whose copies it threw away (the
    // policy's victim on a loop, the buffer used just before the last calls, was as often a
    // survivor); with the weight alone, 19. (The ideal is one short of the measure: a buffer that
    // cycles joins the stable set only once a whole buffer's room is free beside its copy, since
    // it must stay resident a period to be a survivor.)
    let limit = 48u64 << 20;
    let r = run_packing_with(&["survivors"], &[("LTSHIM_MODE", "lossless"), ("LTSHIM_DEVICE_LIMIT", "48MiB"), ("LTSHIM_MIN_BYTES", "64KiB")]);
    r.assert_ok();
    assert_eq!(r.did("survivors_ok"), 1, "every word read back as written");
    let s = r.stats();
    let per_step: Vec<u64> = s["packing"]["restores_per_step"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(per_step.len(), 10, "{per_step:?}");
    // the copy's share of a buffer, as the encodes made them
    let c = n(s, "packing.bytes_out_by_codec.zvc") as f64 / n(s, "packing.bytes_in_by_codec.zvc") as f64;
    // the room for buffers and copies: the limit less its reserve for copies (an eighth of so
    // small a limit, engine/ahead.rs `headroom`), in buffers
    let room = (limit - limit / 8) as f64 / (2 << 20) as f64;
    let ideal = ((24.0 + 2.0 - room) / (1.0 - c)).ceil() as u64;
    assert!(per_step[6..].iter().all(|&x| x <= ideal + 1), "restores per step {per_step:?}, the ideal {ideal} (copies {c:.2} of a buffer): {}", s["packing"]);
    assert!(per_step[6..].iter().all(|&x| x > 0), "the limit must force restores: {per_step:?}");
    assert!(n(s, "packing.copies_discarded.of_survivor") >= 1, "{}", s["packing"]);
    // the survivors stay: few of them are packed again, which would be an encode each
    assert!(n(s, "packing.encodes_by_cause.discarded") <= 2, "{}", s["packing"]);
}
