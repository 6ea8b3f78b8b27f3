"""What the library's stats report says about packing (its top-level `packing` object).

The engine that writes these fields is newer than the harness and may drop or add some, so
every field is optional: a missing one is None here and "n/a" in the report, never an error."""
import statistics

FIELDS = ("enabled", "mode", "limit_bytes", "held_bytes", "held_peak_bytes", "resident_bytes", "packed_bytes",
          "packed_original_bytes", "passthrough_bytes", "scratch_bytes", "packs", "restores", "drops_clean",
          "pack_host_ns", "restore_host_ns", "steps", "host_copies_peak_bytes")


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summarize(stats):
    """A flat dict of the packing fields (None where absent), the packing ratio and restores per
    step; None when the report has no `packing` object at all."""
    if not isinstance(stats, dict) or not isinstance(stats.get("packing"), dict):
        return None
    p = stats["packing"]
    out = {k: (p.get(k) if k in ("enabled", "mode") else _num(p.get(k))) for k in FIELDS}
    orig, packed = out["packed_original_bytes"], out["packed_bytes"]
    out["ratio"] = orig / packed if orig and packed else None
    per_step = [x for x in p.get("restores_per_step") or [] if _num(x) is not None]
    out["restores_per_step_median"] = statistics.median(per_step) if per_step else None
    out["restores_per_step_max"] = max(per_step) if per_step else None
    for k in ("bytes_in_by_codec", "bytes_out_by_codec", "kept_resident", "encodes_by_cause", "encoded_bytes_by_cause",
              "copies_discarded", "copies_discarded_bytes"):
        v = p.get(k)
        out[k] = {str(a): b for a, b in v.items() if _num(b) is not None} if isinstance(v, dict) else None
    return out


def timeline(stats):
    """The library's coarse timeline as lists (seconds, resident, packed, held), or None."""
    try:
        rows = stats["packing"]["timeline"]
        rows = [r for r in rows if isinstance(r, (list, tuple)) and len(r) >= 4 and all(_num(x) is not None for x in r[:4])]
    except (KeyError, TypeError):
        return None
    if not rows:
        return None
    return ([r[0] / 1000.0 for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])


def na(v, fmt="{}"):
    return "n/a" if v is None else fmt.format(v)


def size(b):
    if b is None:
        return "n/a"
    if abs(b) >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.1f} MiB"


def codecs(summary):
    """`zvc 1.2 GiB -> 0.4 GiB, raw ...` from bytes_in/out_by_codec, or n/a."""
    bi, bo = summary.get("bytes_in_by_codec"), summary.get("bytes_out_by_codec")
    if not bi:
        return "n/a"
    return ", ".join(f"{c} {size(bi[c])} -> {size((bo or {}).get(c))}" for c in sorted(bi))


def by_name(summary, counts, byte_counts, order):
    """`first 3 (1.0 MiB), ...` from two dicts of the same names (the report's order first), or n/a
    (a library older than these fields)."""
    n, b = summary.get(counts), summary.get(byte_counts) or {}
    if not n:
        return "n/a"
    names = [k for k in order if k in n] + sorted(k for k in n if k not in order)
    return ", ".join(f"{k} {n[k]} ({size(b.get(k))})" for k in names)


def table(summaries):
    """Markdown rows (field | one column per run) for a list of (label, summary) pairs."""
    labels = [l for l, _ in summaries]
    rows = [("packing enabled / mode", lambda s: f"{na(s['enabled'])} / {na(s['mode'])}"),
            ("limit (library)", lambda s: size(s["limit_bytes"])),
            ("held peak (library)", lambda s: size(s["held_peak_bytes"])),
            ("held / resident / packed now", lambda s: f"{size(s['held_bytes'])} / {size(s['resident_bytes'])} / {size(s['packed_bytes'])}"),
            ("packed: original -> packed, ratio", lambda s: f"{size(s['packed_original_bytes'])} -> {size(s['packed_bytes'])}, " + na(s["ratio"], "{:.2f}x")),
            ("by codec", codecs),
            ("pass-through / scratch", lambda s: f"{size(s['passthrough_bytes'])} / {size(s['scratch_bytes'])}"),
            ("packs / restores / clean drops", lambda s: f"{na(s['packs'])} / {na(s['restores'])} / {na(s['drops_clean'])}"),
            ("steps; restores per step median (max)", lambda s: f"{na(s['steps'])}; {na(s['restores_per_step_median'], '{:g}')} ({na(s['restores_per_step_max'])})"),
            ("pack / restore host time", lambda s: f"{na(s['pack_host_ns'] and s['pack_host_ns'] / 1e6, '{:.1f} ms')} / {na(s['restore_host_ns'] and s['restore_host_ns'] / 1e6, '{:.1f} ms')}"),
            ("encodes by cause", lambda s: by_name(s, "encodes_by_cause", "encoded_bytes_by_cause", ("first", "changed", "discarded", "to_lossy"))),
            ("kept copies discarded", lambda s: by_name(s, "copies_discarded", "copies_discarded_bytes", ("of_written", "of_survivor", "lossless", "any"))),
            ("kept resident (reason: buffers)", lambda s: ", ".join(f"{k}: {v}" for k, v in sorted(s["kept_resident"].items())) if s["kept_resident"] else "n/a")]
    lines = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, f in rows:
        lines.append(f"| {name} | " + " | ".join(f(s) for _, s in summaries) + " |")
    return lines
