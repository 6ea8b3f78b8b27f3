"""How close two runs' outputs are.

Outputs are dicts of arrays saved by a workload (`torch.save`, or `numpy.savez` for programs
without torch). For every key present in both: bit-exact or not, max absolute error, max
relative error (|a-b| / max(|a|, tiny)). For language models (keys `logits` and
`prompt_ids`): cosine similarity of the logits, top-1 agreement, and the perplexity of the
fixed prompt under each run's logits."""
import math

import numpy as np


def _is_npz(path):
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        return bool(names) and all(n.endswith(".npy") for n in names)
    except (zipfile.BadZipFile, OSError):
        return False


def load(path):
    """An output dict from a torch.save or numpy.savez file (told apart by content)."""
    if _is_npz(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import torch
    data = torch.load(path, map_location="cpu", weights_only=False)
    out = {}
    for k, v in data.items():
        if hasattr(v, "detach"):
            out[k] = {"array": v.detach().float().numpy() if v.is_floating_point() else v.detach().numpy(),
                      "raw": v.detach().contiguous().view(-1).view(torch.uint8).numpy() if v.numel() else np.zeros(0, np.uint8)}
        else:
            out[k] = np.asarray(v)
    return out


def _arrays(v):
    """(values for arithmetic, raw bytes for bit-exactness)."""
    if isinstance(v, dict):
        return v["array"], v["raw"]
    a = np.asarray(v)
    return a, np.ascontiguousarray(a).view(np.uint8).reshape(-1)


def compare_arrays(a, b):
    va, ra = _arrays(a)
    vb, rb = _arrays(b)
    res = {"shape": list(np.shape(va)), "bit_exact": bool(np.shape(va) == np.shape(vb) and ra.shape == rb.shape and np.array_equal(ra, rb))}
    if np.shape(va) != np.shape(vb):
        res.update(max_abs_err=math.inf, max_rel_err=math.inf, shape_mismatch=True)
        return res
    fa, fb = np.asarray(va, dtype=np.float64), np.asarray(vb, dtype=np.float64)
    if fa.size == 0:
        res.update(max_abs_err=0.0, max_rel_err=0.0)
        return res
    # values that went NaN or infinite where native's are finite (a diverged training run)
    res["nonfinite_new"] = int((np.isfinite(fa) & ~np.isfinite(fb)).sum())
    both_nan = np.isnan(fa) & np.isnan(fb)
    diff = np.where(both_nan, 0.0, np.abs(fa - fb))
    diff = np.where(np.isnan(diff), math.inf, diff)
    rel = diff / np.maximum(np.abs(fa), 1e-12)
    res.update(max_abs_err=float(diff.max()), max_rel_err=float(rel.max()))
    return res


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def perplexity(logits, ids):
    """exp(mean cross-entropy) of predicting ids[1:] from logits[:-1]."""
    lp = _log_softmax(np.asarray(logits, dtype=np.float64)[:-1])
    ids = np.asarray(ids).astype(np.int64)[1:]
    return float(math.exp(-lp[np.arange(len(ids)), ids].mean()))


def language_model(native, other):
    la, lb = _arrays(native["logits"])[0], _arrays(other["logits"])[0]
    fa, fb = np.asarray(la, np.float64).reshape(-1, la.shape[-1]), np.asarray(lb, np.float64).reshape(-1, lb.shape[-1])
    cos = (fa * fb).sum(-1) / (np.linalg.norm(fa, axis=-1) * np.linalg.norm(fb, axis=-1) + 1e-30)
    res = {"logits_cosine_min": float(cos.min()), "logits_cosine_mean": float(cos.mean()),
           "top1_agreement": float((fa.argmax(-1) == fb.argmax(-1)).mean())}
    if "prompt_ids" in native:
        ids = _arrays(native["prompt_ids"])[0]
        res["perplexity_native"] = perplexity(la, ids)
        res["perplexity_ltshim"] = perplexity(lb, ids)
    return res


def compare(native, other):
    """Everything we can say about two output dicts."""
    keys = sorted(set(native) | set(other))
    per_key = {}
    for k in keys:
        if k not in native or k not in other:
            per_key[k] = {"missing_in": "ltshim" if k not in other else "native", "bit_exact": False}
            continue
        per_key[k] = compare_arrays(native[k], other[k])
    summary = {
        "bit_exact": all(v.get("bit_exact") for v in per_key.values()),
        "max_abs_err": max((v.get("max_abs_err", math.inf) for v in per_key.values()), default=0.0),
        "max_rel_err": max((v.get("max_rel_err", math.inf) for v in per_key.values()), default=0.0),
        "keys": per_key,
    }
    if "logits" in native and "logits" in other:
        summary["language_model"] = language_model(native, other)
    return summary


def check_bounds(summary, mode, bounds):
    """Violations of the run's promise: lossless modes must be bit-exact; lossy must stay
    inside the bounds given. Returns a list of sentences (empty = fine)."""
    problems = []
    # in any mode: an output that is not finite where native's is, whatever the bounds say
    nonfinite = {k: v["nonfinite_new"] for k, v in summary["keys"].items() if v.get("nonfinite_new")}
    if nonfinite:
        problems.append("not finite where native's are: " + ", ".join(f"{k} ({n} values)" for k, n in sorted(nonfinite.items())))
    if mode in ("observe", "lossless"):
        if not summary["bit_exact"]:
            bad = [k for k, v in summary["keys"].items() if not v.get("bit_exact")]
            problems.append(f"mode {mode} must be bit-exact, but these outputs differ: {', '.join(bad)}")
        return problems
    if bounds.get("max_abs_err") is not None and summary["max_abs_err"] > bounds["max_abs_err"]:
        problems.append(f"max abs error {summary['max_abs_err']:.3g} > {bounds['max_abs_err']}")
    if bounds.get("max_rel_err") is not None and summary["max_rel_err"] > bounds["max_rel_err"]:
        problems.append(f"max rel error {summary['max_rel_err']:.3g} > {bounds['max_rel_err']}")
    lm = summary.get("language_model", {})
    if bounds.get("min_cosine") is not None and lm and lm["logits_cosine_min"] < bounds["min_cosine"]:
        problems.append(f"logits cosine {lm['logits_cosine_min']:.6f} < {bounds['min_cosine']}")
    if bounds.get("min_top1") is not None and lm and lm["top1_agreement"] < bounds["min_top1"]:
        problems.append(f"top-1 agreement {lm['top1_agreement']:.4f} < {bounds['min_top1']}")
    return problems
