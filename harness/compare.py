#!/usr/bin/env python3
"""Run a workload natively and under ltshim, one after the other on the same GPU, and report
what changed: memory (NVML timeline and peak, the library's stats), speed (wall time and the
workload's own throughput, with their spread over repeats) and the outputs themselves.

  python3 harness/compare.py --workload infer --mode observe --repeat 3 --out /tmp/cmp
  python3 harness/compare.py --out /tmp/cmp -- python3 my_script.py   (any command)

Writes DIR/report.md, DIR/report.json and PNG plots. Exit codes: 0 fine; 1 outputs broke the
mode's promise (not bit-exact in observe/lossless, outside the given bounds in lossy); 2 usage
or environment error (no GPU, no library); 3 a run failed. What was measured is written in
every case."""
import argparse
import datetime
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ltharness import report  # noqa: E402
from ltharness.memory import Sampler  # noqa: E402
from ltharness.runner import run_once  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = {
    "infer": ["--params", "3b", "--tokens", "32"],
    "sparse_mlp": [],
    "train": [],
    "vision": [],
    "two_models": [],
    "observe_mix": ["--small-launches", "2000"],
}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--workload", choices=sorted(WORKLOADS), help="a workload of harness/workloads (default: infer, unless a command is given)")
    ap.add_argument("--workload-args", default="", help="extra arguments for the workload, one string")
    ap.add_argument("--mode", default="observe", choices=["observe", "lossless", "lossy"])
    ap.add_argument("--device-limit", help="cap GPU memory for both runs, e.g. 20GiB (workloads apply it as torch's per-process fraction)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each kind; the order alternates (native first in odd repeats, ltshim first in even ones)")
    ap.add_argument("--warmup", type=int, default=0, help="discarded native runs before measuring (the first run on a fresh machine is slower: cold caches)")
    ap.add_argument("--out", default="ltshim-compare", help="report directory")
    ap.add_argument("--ltshim", default=os.path.join(ROOT, "target", "release", "ltshim"), help="the ltshim CLI")
    ap.add_argument("--lib", help="libltshim.so (default: beside the CLI)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run")
    ap.add_argument("--max-abs-err", type=float, help="lossy bound: largest absolute error allowed")
    ap.add_argument("--max-rel-err", type=float, help="lossy bound: largest relative error allowed")
    ap.add_argument("--min-cosine", type=float, help="lossy bound: smallest logits cosine allowed")
    ap.add_argument("--min-top1", type=float, help="lossy bound: smallest top-1 agreement allowed")
    ap.add_argument("--allow-no-gpu", action="store_true", help="run without NVML memory sampling (tests, dry runs)")
    ap.add_argument("command", nargs="*", help="after --: any command instead of a workload")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.command and args.workload:
        ap.error("give --workload or a command after --, not both")
    if not args.command and not args.workload:
        args.workload = "infer"
    return args


def build_command(args):
    if args.command:
        return list(args.command)
    script = os.path.join(HERE, "workloads", f"{args.workload}.py")
    extra = args.workload_args.split() if args.workload_args else WORKLOADS[args.workload]
    cmd = [sys.executable, script] + extra + ["--out", "{outputs}", "--metrics", "{metrics}"]
    if args.device_limit:
        cmd += ["--device-limit", args.device_limit]
    return cmd


def say(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    meta = {"workload": args.workload, "command": build_command(args), "mode": args.mode, "repeat": args.repeat, "warmup": args.warmup,
            "device_limit": args.device_limit, "date": datetime.datetime.now().isoformat(timespec="seconds"), "gpu": None}
    notes, problems, runs = [], [], []
    sampler = Sampler()
    if sampler.available:
        try:
            meta["gpu"] = sampler._nvml.nvmlDeviceGetName(sampler._handle)
            meta["gpu"] = meta["gpu"].decode() if isinstance(meta["gpu"], bytes) else meta["gpu"]
        except Exception:
            pass
    elif not args.allow_no_gpu:
        msg = f"no GPU to measure on ({sampler.error}); nothing was run (use --allow-no-gpu for a dry run)"
        report.write(args.out, meta, runs, None, [msg], notes)
        print(f"compare: {msg}", file=sys.stderr)
        return 2
    else:
        notes.append(f"memory not sampled: {sampler.error}")
    cli = shutil.which(args.ltshim) or (args.ltshim if os.path.isfile(args.ltshim) else None)
    lib = args.lib or (os.path.join(os.path.dirname(cli), "libltshim.so") if cli else None)
    if not cli or not lib or not os.path.isfile(lib):
        msg = f"the ltshim CLI or library is missing (looked for {args.ltshim} and {lib}); build with `cargo build --release`"
        report.write(args.out, meta, runs, None, [msg], notes)
        print(f"compare: {msg}", file=sys.stderr)
        return 2
    env = {"HARNESS_DEVICE_LIMIT": args.device_limit} if args.device_limit else {}
    for w in range(args.warmup):
        say(f"warm-up {w + 1}/{args.warmup} (native, not recorded) ...")
        run_once("native", 0, meta["command"], args.out, sampler, env_extra=env, timeout=args.timeout)
    total = 2 * args.repeat
    for i in range(args.repeat):
        for kind in (("native", "ltshim") if i % 2 == 0 else ("ltshim", "native")):
            say(f"run {len(runs) + 1}/{total}: {kind}, repeat {i + 1} ...")
            r = run_once(kind, i + 1, meta["command"], args.out, sampler, ltshim_cli=cli, mode=args.mode, lib=lib, env_extra=env, timeout=args.timeout)
            runs.append(r)
            peak = f", peak {r.nvml_peak_bytes / 2**30:.2f} GiB" if r.nvml_peak_bytes is not None else ""
            say(f"run {len(runs)}/{total}: {kind} {'ok' if r.ok() else 'FAILED'} in {r.wall_s:.1f}s{peak}")
            if not r.ok():
                problems.append(f"{kind} run {i + 1} failed: {r.error} (log: {r.log_path})")
            report.write(args.out, meta, runs, None, problems, notes)  # what we have so far
    from ltharness import fidelity  # numpy: only needed once there is something to compare
    fid = None
    natives = [r for r in runs if r.kind == "native" and r.outputs_path]
    shimmed = [r for r in runs if r.kind == "ltshim" and r.outputs_path]
    bounds = {"max_abs_err": args.max_abs_err, "max_rel_err": args.max_rel_err, "min_cosine": args.min_cosine, "min_top1": args.min_top1}
    if natives and shimmed:
        base = fidelity.load(natives[0].outputs_path)
        per_run = [fidelity.compare(base, fidelity.load(r.outputs_path)) for r in shimmed]
        worst = max(per_run, key=lambda f: (not f["bit_exact"], f["max_abs_err"]))
        fid = worst
        problems += fidelity.check_bounds(worst, args.mode, bounds)
        if len(natives) > 1:
            nat = [fidelity.compare(base, fidelity.load(r.outputs_path))["bit_exact"] for r in natives[1:]]
            if not all(nat):
                notes.append("native runs are not bit-exact among themselves: the workload is not deterministic, so differences are not ltshim's alone")
    elif not any(r.outputs_path for r in runs):
        notes.append("outputs not compared: the command saved none (named workloads save them; a command may write to $HARNESS_OUTPUTS)")
    report.write(args.out, meta, runs, fid, problems, notes)
    print(open(os.path.join(args.out, "report.md")).read())
    if any(not r.ok() for r in runs):
        return 3
    if fid and fidelity.check_bounds(fid, args.mode, bounds):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
