"""The device-limit sweep: the ltshim run at limits of 90%, 80%, ... of the native peak, and for
each whether it completed, how fast it ran against native, whether its outputs kept the mode's
promise, and what the library says it packed. Writes sweep.json, sweep.md and sweep.png.

The loop takes its runs from a function (`run_at`), so that its logic (order, stopping, the
verdicts, what is written) is tested with fake runs; compare.py gives it real ones. Every entry
is written as soon as it is measured: a crash, a ^C or a hung run later loses nothing before it."""
import os
import statistics

from . import limits as limits_mod
from . import packing
from .report import dump_json

# The throughput each named workload reports, higher is better.
SPEED_METRICS = {"infer": "decode_tokens_per_s", "sparse_mlp": "steps_per_s", "train": "tokens_per_s",
                 "vision": "inference_images_per_s", "two_models": "switches_per_s"}


def speed_metric(workload, native_runs, override=None):
    """The metric that speed is compared by: --speed-metric, the workload's own, or else the
    first `*_per_s` metric of the native runs; None means wall time."""
    if override:
        return override
    if workload in SPEED_METRICS:
        return SPEED_METRICS[workload]
    names = sorted({k for r in native_runs for k, v in r.metrics.items() if k.endswith("_per_s") and isinstance(v, (int, float))})
    return names[0] if names else None


def _median(values):
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(values) if values else None


def baseline(native_runs, metric):
    ok = [r for r in native_runs if r.ok()]
    return {"runs_ok": len(ok), "runs_failed": len(native_runs) - len(ok), "wall_s": _median([r.wall_s for r in ok]),
            "metric": metric, "metric_value": _median([r.metrics.get(metric) for r in ok]) if metric else None,
            "nvml_peak_bytes": _median([r.nvml_peak_bytes for r in ok])}


def speeds(entry, base):
    """Sets an entry's speed and wall time against `base` (baseline()): the sweep evaluates each
    limit against the native runs made before it, then again against those and the closing
    native run together (a single native run of these workloads may be off by a factor)."""
    entry["speed_vs_native"] = entry["wall_vs_native"] = None
    if base["metric"] and entry.get("metric_value") is not None and base["metric_value"]:
        entry["speed_vs_native"] = entry["metric_value"] / base["metric_value"]
    if entry.get("wall_s") and base["wall_s"]:
        entry["wall_vs_native"] = entry["wall_s"] / base["wall_s"]
        if entry["speed_vs_native"] is None and not base["metric"]:
            entry["speed_vs_native"] = base["wall_s"] / entry["wall_s"]


def evaluate(percent, limit_bytes, runs, base, judge):
    """One limit's entry. `runs`: its ltshim runs; `base`: baseline(); `judge(runs)` -> (fidelity
    summary or None, list of problems) for the runs that completed."""
    ok = [r for r in runs if r.ok()]
    completed = bool(runs) and len(ok) == len(runs)
    entry = {"limit_percent": percent, "limit_bytes": limit_bytes, "completed": completed, "runs_ok": len(ok), "runs": len(runs),
             "returncodes": [r.returncode for r in runs], "errors": [r.error for r in runs if r.error],
             "tail": next((r.tail for r in runs if not r.ok() and r.tail), []), "logs": [r.log_path for r in runs],
             "wall_s": _median([r.wall_s for r in ok]), "metric": base["metric"], "metric_value": None,
             "speed_vs_native": None, "wall_vs_native": None}
    if base["metric"]:
        entry["metric_value"] = _median([r.metrics.get(base["metric"]) for r in ok])
    speeds(entry, base)
    checks = [limits_mod.check(r, limit_bytes) for r in runs]
    entry["nvml_peak_bytes"] = max((c["nvml_peak_bytes"] for c in checks if c["nvml_peak_bytes"] is not None), default=None)
    entry["held_peak_bytes"] = max((c["held_peak_bytes"] for c in checks if c["held_peak_bytes"] is not None), default=None)
    under = lambda key: None if any(c[key] is None for c in checks) or not checks else all(c[key] for c in checks)  # noqa: E731
    entry["nvml_under_limit"], entry["library_under_limit"] = under("nvml_under_limit"), under("library_under_limit")
    pk = next((packing.summarize(r.ltshim_stats) for r in runs if packing.summarize(r.ltshim_stats)), None)
    entry["packing"] = pk
    entry["fidelity"], entry["fidelity_problems"] = (judge(ok) if ok else (None, []))
    f = entry["fidelity"]
    if not ok:
        entry["verdict"] = "not run to the end"
    elif f is None:
        entry["verdict"] = "not compared (no outputs)"
    elif entry["fidelity_problems"]:
        entry["verdict"] = "BROKEN: " + "; ".join(entry["fidelity_problems"])
    elif f.get("bit_exact"):
        entry["verdict"] = "bit-exact"
    else:
        lm = f.get("language_model")
        if lm:
            entry["verdict"] = f"within bounds (logits cosine {lm['logits_cosine_min']:.6f}, top-1 {lm['top1_agreement']:.4f})"
        else:  # the lossy bounds judge logits; these outputs had none to judge by
            entry["verdict"] = (f"differs, no bound applies (max abs err {f.get('max_abs_err', float('nan')):.3g}, "
                                f"max rel err {f.get('max_rel_err', float('nan')):.3g})")
    if entry["library_under_limit"] is False:
        entry.setdefault("problems", []).append(f"the library's held peak {limits_mod.gib(entry['held_peak_bytes'])} is over the limit {limits_mod.gib(limit_bytes)}")
    return entry


def sweep(percents, native_peak_bytes, run_at, evaluate_entry, stop_after=2, on_entry=None):
    """Runs the limits highest first: `run_at(percent, limit_bytes)` -> runs, then
    `evaluate_entry(percent, limit_bytes, runs)` -> entry. After `stop_after` consecutive limits
    that did not complete (0: never stop), the rest are recorded as skipped. `on_entry(entries)`
    is called after each (to write what is known)."""
    entries, failed_in_a_row = [], 0
    for p in sorted(percents, reverse=True):
        limit_bytes = int(native_peak_bytes * p / 100)
        if stop_after and failed_in_a_row >= stop_after:
            entries.append({"limit_percent": p, "limit_bytes": limit_bytes, "completed": False, "skipped": True,
                            "verdict": f"not run: the {stop_after} limits above it did not complete"})
        else:
            try:
                runs = run_at(p, limit_bytes)
                entry = evaluate_entry(p, limit_bytes, runs)
            except Exception as e:  # a harness bug at one limit must not cost the others
                entry = {"limit_percent": p, "limit_bytes": limit_bytes, "completed": False, "verdict": f"harness error: {e!r}",
                         "harness_error": repr(e)}
            entries.append(entry)
            failed_in_a_row = 0 if entry.get("completed") else failed_in_a_row + 1
        if on_entry:
            on_entry(entries)
    return entries


def lowest(entries, within_fidelity=False):
    """The entry with the lowest limit that completed (and, if asked, kept the mode's promise)."""
    ok = [e for e in entries if e.get("completed") and (not within_fidelity or not e.get("fidelity_problems"))]
    return min(ok, key=lambda e: e["limit_percent"], default=None)


def _f(v, spec, unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def _yes(v):
    return {True: "yes", False: "**no**", None: "n/a"}[v]


def markdown(meta, base, entries):
    title = meta.get("workload") or " ".join(meta.get("command") or [])
    metric = base.get("metric") or "wall time"
    lines = [f"# ltshim device-limit sweep: {title}", "",
             f"mode `{meta.get('mode')}`, {meta.get('repeat')} ltshim run(s) per limit, {meta.get('gpu') or 'no GPU name'}, {meta.get('date')}", "",
             f"native baseline (unlimited): peak {limits_mod.gib(meta.get('native_peak_bytes'))} ({meta.get('native_peak_source')}), "
             f"wall {_f(base.get('wall_s'), '.3g', ' s')}, {metric} {_f(base.get('metric_value'), '.4g')}, "
             f"{base.get('runs_ok')} run(s) ok, {base.get('runs_failed')} failed", ""]
    lo, lo_fid = lowest(entries), lowest(entries, within_fidelity=True)
    if lo is None:
        lines.append("**It completed at none of the limits tried.**")
    else:
        lines.append(f"**Lowest limit at which it completed: {lo['limit_percent']:g}% of the native peak ({limits_mod.gib(lo['limit_bytes'])})**, "
                     f"speed {_f(lo.get('speed_vs_native'), '.2f', 'x')} native, outputs {lo.get('verdict')}.")
        if lo_fid is not lo:
            lines.append(f"Lowest that completed within the mode's promise: " +
                         (f"{lo_fid['limit_percent']:g}% ({limits_mod.gib(lo_fid['limit_bytes'])})." if lo_fid else "none."))
    lines += ["", f"| limit (% of native peak) | limit | completed | wall | {metric} vs native | wall vs native | outputs | "
                  "NVML peak (at/under limit) | library held peak (at/under) | copies in host memory (peak) | packed: original -> packed (ratio) | packs / restores | restores per step (median, max) | failure |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        pk = e.get("packing") or {}
        failure = ""
        if not e.get("completed") and not e.get("skipped"):
            failure = " / ".join(x for x in ([f"exit {', '.join(map(str, e.get('returncodes', [])))}"] + e.get("tail", [])[-3:]) if x)
            failure = failure.replace("|", "\\|")[:300]
        lines.append(
            f"| {e['limit_percent']:g}% | {limits_mod.gib(e['limit_bytes'])} | {'skipped' if e.get('skipped') else _yes(e.get('completed'))} | "
            f"{_f(e.get('wall_s'), '.3g', ' s')} | {_f(e.get('speed_vs_native'), '.2f', 'x')} | {_f(e.get('wall_vs_native'), '.2f', 'x')} | "
            f"{e.get('verdict', '').replace('|', '/')} | "
            f"{limits_mod.gib(e.get('nvml_peak_bytes'))} ({_yes(e.get('nvml_under_limit'))}) | "
            f"{limits_mod.gib(e.get('held_peak_bytes'))} ({_yes(e.get('library_under_limit'))}) | "
            f"{packing.size(pk.get('host_copies_peak_bytes'))} | "
            f"{packing.size(pk.get('packed_original_bytes'))} -> {packing.size(pk.get('packed_bytes'))} ({packing.na(pk.get('ratio'), '{:.2f}x')}) | "
            f"{packing.na(pk.get('packs'))} / {packing.na(pk.get('restores'))} | "
            f"{packing.na(pk.get('restores_per_step_median'), '{:g}')}, {packing.na(pk.get('restores_per_step_max'))} | {failure} |")
    lines += ["", "Speed is the ltshim run's median against the native runs' median (above 1 is faster); the limit is given to the "
              "ltshim run alone as LTSHIM_DEVICE_LIMIT (bytes). NVML's peak also counts the CUDA context and loaded modules, which "
              "the library does not hold."]
    problems = [p for e in entries for p in (e.get("fidelity_problems") or []) + (e.get("problems") or [])]
    if meta.get("problems") or problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in (meta.get("problems") or []) + problems]
    if meta.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    lines += ["", "![speed against the limit](sweep.png)"]
    return "\n".join(lines) + "\n"


def plot(meta, entries, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    done = [e for e in entries if e.get("completed") and e.get("speed_vs_native") is not None]
    xs = [e["limit_percent"] for e in done]
    ax.plot(xs, [e["speed_vs_native"] for e in done], color="#555555", lw=1, zorder=1)
    styles = {"bit-exact": ("o", "#2ca02c", "bit-exact"), "within bounds": ("s", "#ff7f0e", "within the lossy bounds"),
              "broken": ("X", "#d62728", "outputs broke the mode's promise"), "other": ("D", "#7f7f7f", "outputs not compared")}
    seen = set()
    for e in done:
        v = e.get("verdict", "")
        key = "bit-exact" if v == "bit-exact" else "within bounds" if v.startswith("within bounds") else "broken" if v.startswith("BROKEN") else "other"
        m, c, label = styles[key]
        ax.scatter([e["limit_percent"]], [e["speed_vs_native"]], marker=m, color=c, s=70, zorder=3, label=None if key in seen else label)
        seen.add(key)
    failed = [e for e in entries if not e.get("completed")]
    if failed:
        ax.scatter([e["limit_percent"] for e in failed], [0] * len(failed), marker="x", color="black", s=60, zorder=3,
                   label="did not complete (or skipped)")
    ax.axhline(1.0, color="#1f77b4", ls="--", lw=1, label="native speed")
    lo = lowest(entries)
    if lo:
        ax.axvline(lo["limit_percent"], color="#9467bd", ls=":", lw=1.2, label=f"lowest completed: {lo['limit_percent']:g}%")
    ax.set_xlabel("device limit (% of the native run's peak GPU memory)")
    ax.set_ylabel(f"speed vs native ({meta.get('speed_metric') or 'wall time'})")
    ax.set_title(f"{meta.get('workload') or 'command'}, mode {meta.get('mode')}: speed and fidelity against the limit")
    if entries:
        ax.set_xlim(max(e["limit_percent"] for e in entries) + 5, min(e["limit_percent"] for e in entries) - 5)  # highest on the left, as the sweep runs
    ax.set_ylim(bottom=-0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out_dir, meta, base, entries):
    """sweep.json, sweep.md, sweep.png; a plot that fails costs only the plot."""
    lo, lo_fid = lowest(entries), lowest(entries, within_fidelity=True)
    data = {"meta": meta, "native": base, "entries": entries,
            "lowest_completed_percent": lo["limit_percent"] if lo else None,
            "lowest_completed_bytes": lo["limit_bytes"] if lo else None,
            "lowest_within_promise_percent": lo_fid["limit_percent"] if lo_fid else None}
    dump_json(os.path.join(out_dir, "sweep.json"), data)
    try:
        plot(meta, entries, os.path.join(out_dir, "sweep.png"))
    except Exception as e:
        meta = dict(meta, notes=(meta.get("notes") or []) + [f"sweep plot failed: {e!r}"])
    with open(os.path.join(out_dir, "sweep.md"), "w") as fh:
        fh.write(markdown(meta, base, entries))
    return data
