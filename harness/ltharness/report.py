"""report.json, report.md and the plots of a comparison."""
import json
import math
import os
import statistics

from . import limits as limits_mod
from . import packing


def _gib(b):
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB"


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _fmt(s, unit="", spec=".3g"):
    if not s:
        return "n/a"
    if s["n"] == 1:
        return f"{s['median']:{spec}}{unit}"
    return f"{s['median']:{spec}}{unit} ({s['min']:{spec}}-{s['max']:{spec}}, n={s['n']})"


def aggregate(runs):
    """Per kind: wall time, NVML peak, workload metrics, each with its spread over repeats."""
    out = {}
    for kind in ("native", "ltshim"):
        rs = [r for r in runs if r.kind == kind and r.ok()]
        keys = sorted({k for r in rs for k, v in r.metrics.items() if isinstance(v, (int, float))})
        out[kind] = {
            "runs_ok": len(rs), "runs_failed": len([r for r in runs if r.kind == kind and not r.ok()]),
            "wall_s": _spread([r.wall_s for r in rs]),
            "nvml_peak_bytes": _spread([r.nvml_peak_bytes for r in rs]),
            "metrics": {k: _spread([r.metrics.get(k) for r in rs]) for k in keys},
        }
    return out


COLORS = {"native": "#1f77b4", "ltshim": "#d62728"}


def draw_timeline(ax, runs, title, limit_bytes=None):
    """NVML's memory over time for every run; the library's resident and packed bytes (the
    stats' packing.timeline, its clock from the library's start, close to the process's) from
    the first ltshim run that has them; the device limit as a horizontal line."""
    colors = COLORS
    drawn = set()
    for r in runs:
        if not r.timeline:
            continue
        t = [s for s, _ in r.timeline]
        m = [b / 2**30 for _, b in r.timeline]
        label = r.kind if r.kind not in drawn else None
        drawn.add(r.kind)
        ax.plot(t, m, color=colors[r.kind], alpha=0.9 if r.repeat == 1 else 0.35, lw=1.6, label=label)
    lib_drawn = False
    for r in runs:  # the library's count, from the first ltshim run whose stats have a timeline
        tl = packing.timeline(r.ltshim_stats) if r.kind == "ltshim" else None
        if not tl:
            continue
        t, resident, packed, _held = tl
        ax.plot(t, [b / 2**30 for b in resident], color="#2ca02c", ls="--", lw=1.4, label=f"library: resident (ltshim run {r.repeat})")
        ax.plot(t, [b / 2**30 for b in packed], color="#9467bd", ls=":", lw=1.8, label=f"library: packed copies (ltshim run {r.repeat})")
        lib_drawn = True
        break
    if limit_bytes:
        ax.axhline(limit_bytes / 2**30, color="black", ls="-.", lw=1.2, label=f"device limit {limit_bytes / 2**30:.2f} GiB (ltshim runs)")
    if not drawn and not lib_drawn:
        ax.text(0.5, 0.5, "no memory samples (NVML unavailable)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("GPU memory in use (GiB, above idle)")
    ax.set_title(f"{title}: device memory over time (every repeat; first one solid)")
    ax.grid(alpha=0.3)
    if drawn or lib_drawn or limit_bytes:
        ax.legend(loc="upper left", fontsize=8)


def plots(runs, out_dir, title, limit_bytes=None):
    """Memory timeline (with the device limit as a line, and the library's own resident and
    packed bytes where its stats carry a timeline), peak memory and wall time. Returns the
    files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = COLORS
    files = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    draw_timeline(ax, runs, title, limit_bytes)
    fig.tight_layout()
    p = os.path.join(out_dir, "memory_timeline.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(p)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, label in ((a1, "nvml_peak_bytes", "peak GPU memory (GiB)"), (a2, "wall_s", "wall time (s)")):
        for i, kind in enumerate(("native", "ltshim")):
            vals = [getattr(r, key) for r in runs if r.kind == kind and r.ok() and getattr(r, key) is not None]
            if key == "nvml_peak_bytes":
                vals = [v / 2**30 for v in vals]
            if vals:
                med = statistics.median(vals)
                ax.bar(i, med, color=colors[kind], alpha=0.8)
                ax.errorbar(i, med, yerr=[[med - min(vals)], [max(vals) - med]], color="black", capsize=6)
        ax.set_xticks([0, 1], ["native", "ltshim"])
        ax.set_title(label + " (median, min-max)")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    p = os.path.join(out_dir, "peak_and_time.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(p)
    return files


def dump_json(path, data):
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1, default=lambda o: None if isinstance(o, float) and math.isinf(o) else str(o))


def write(out_dir, meta, runs, fidelity, problems, notes):
    agg = aggregate(runs)
    limit = meta.get("device_limit") if isinstance(meta.get("device_limit"), dict) else None
    limit_bytes = limit.get("bytes") if limit else None
    checks = [(r, limits_mod.check(r, limit_bytes)) for r in runs if r.kind == "ltshim"] if limit else []
    report = {"meta": meta, "aggregate": agg, "runs": [r.summary() for r in runs], "fidelity": fidelity,
              "problems": problems, "notes": notes}
    if limit:
        report["limit_checks"] = [dict(repeat=r.repeat, ok=r.ok(), **c) for r, c in checks]
    dump_json(os.path.join(out_dir, "report.json"), report)
    try:
        files = plots(runs, out_dir, meta.get("workload") or "command", limit_bytes)
    except Exception as e:  # a plot must never cost the numbers
        files, notes = [], notes + [f"plots failed: {e}"]
    n, l = agg["native"], agg["ltshim"]
    lines = [f"# ltshim comparison: {meta.get('workload') or ' '.join(meta['command'])}", "",
             f"mode `{meta['mode']}`, {meta['repeat']} repeat(s), {meta.get('gpu') or 'no GPU name'}, {meta['date']}", "",
             "| | native | ltshim |", "|---|---|---|",
             f"| runs ok / failed | {n['runs_ok']} / {n['runs_failed']} | {l['runs_ok']} / {l['runs_failed']} |",
             f"| peak GPU memory (NVML, above idle) | {_fmt(_scale(n['nvml_peak_bytes']), ' GiB', '.2f')} | {_fmt(_scale(l['nvml_peak_bytes']), ' GiB', '.2f')} |",
             f"| wall time | {_fmt(n['wall_s'], ' s')} | {_fmt(l['wall_s'], ' s')} |"]
    for k in sorted(set(n["metrics"]) | set(l["metrics"])):
        lines.append(f"| {k} | {_fmt(n['metrics'].get(k))} | {_fmt(l['metrics'].get(k))} |")
    if limit:
        pct = limit.get("percent_of_native_peak")
        lines += ["", "## Device limit (ltshim runs only; the native run is unlimited)", "",
                  f"limit `{limit['spec']}` = {limit_bytes if limit_bytes is not None else 'n/a'} bytes ({_gib(limit_bytes)}), "
                  f"{'n/a' if pct is None else f'{pct:.1f}%'} of the native peak {_gib(limit.get('native_peak_bytes'))} "
                  f"({limit.get('native_peak_source') or 'not measured'}); given to the library as LTSHIM_DEVICE_LIMIT", ""]
        if checks:
            yes = {True: "yes", False: "**NO**", None: "n/a"}
            lines += ["| ltshim run | completed | NVML peak above idle | at or under the limit (NVML) | library held peak | at or under the limit (library) |",
                      "|---|---|---|---|---|---|"]
            for r, c in checks:
                lines.append(f"| {r.repeat} | {'yes' if r.ok() else 'no'} | {_gib(c['nvml_peak_bytes'])} | {yes[c['nvml_under_limit']]} | "
                             f"{_gib(c['held_peak_bytes'])} | {yes[c['library_under_limit']]} |")
            lines += ["", "NVML counts the CUDA context and loaded modules too, which the library does not hold: "
                      "its peak may exceed the limit by that much while the library's own count stays under it."]
    summaries = [(f"ltshim run {r.repeat}", packing.summarize(r.ltshim_stats)) for r in runs if r.kind == "ltshim"]
    summaries = [(label, s) for label, s in summaries if s is not None]
    if summaries:
        lines += ["", "## Packing (library stats)", ""] + packing.table(summaries)
    elif any(r.kind == "ltshim" and r.ltshim_stats for r in runs):
        lines += ["", "## Packing (library stats)", "", "n/a: the stats report has no `packing` object (a library without the packing engine)"]
    lines += ["", "## Outputs", ""]
    if fidelity:
        f = fidelity
        lines.append(f"bit-exact: **{f['bit_exact']}**; max abs error {f['max_abs_err']:.3g}, max rel error {f['max_rel_err']:.3g}")
        if "language_model" in f:
            lm = f["language_model"]
            lines.append(f"logits cosine min {lm['logits_cosine_min']:.6f}, top-1 agreement {lm['top1_agreement']:.4f}" +
                         (f", perplexity native {lm['perplexity_native']:.4g} vs ltshim {lm['perplexity_ltshim']:.4g}" if "perplexity_native" in lm else ""))
    else:
        lines.append("not compared (no outputs from one of the runs)")
    lines += ["", "## Verdict", ""] + ([f"- {p}" for p in problems] or ["- outputs within the mode's promise"])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {x}" for x in notes]
    lines += ["", "## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in files]
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return report


def _scale(s):
    if not s:
        return None
    return {k: (v / 2**30 if k != "n" else v) for k, v in s.items()}
