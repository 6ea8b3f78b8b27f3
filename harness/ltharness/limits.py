"""Device limits for the ltshim run: parsing `--device-limit` / `--limits`, and turning a
percentage of the native run's peak into bytes.

A limit is either bytes (`12GiB`, `500MiB`, `3.5GB`, `1073741824`) or a percentage (`60%`) of
the native run's peak GPU memory above idle. The percentage is of what the *native* run needed,
not of the card, because that is the question the harness asks: does the program run in less
than it natively takes? The library is always given plain bytes (LTSHIM_DEVICE_LIMIT=<bytes>),
so that it and the report agree on the number exactly."""
import re
import statistics
from dataclasses import dataclass

# Binary units (KiB, k) are powers of 1024; decimal ones (KB) powers of 1000, as everywhere else.
_UNITS = {"": 1, "b": 1,
          "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_ACCEPTED = "bytes with an optional unit (500MiB, 12GiB, 3GB, 1073741824) or a percentage of the native peak (60%)"


@dataclass(frozen=True)
class Limit:
    """`percent` of the native peak, or a fixed number of `bytes` (exactly one is set)."""
    text: str
    bytes: int = None
    percent: float = None

    def resolve(self, native_peak_bytes):
        """The limit in bytes; for a percentage, of `native_peak_bytes` (None: cannot tell)."""
        if self.bytes is not None:
            return self.bytes
        if native_peak_bytes is None:
            return None
        return int(native_peak_bytes * self.percent / 100)


def parse_limit(text):
    """A Limit from `12GiB`, `500MiB`, `60%`, ... Raises ValueError naming what is accepted."""
    t = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*%", t)
    if m:
        p = float(m.group(1))
        if not 0 < p <= 1000:
            raise ValueError(f"device limit {text!r}: a percentage must be above 0 and at most 1000")
        return Limit(text=t, percent=p)
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)", t)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"device limit {text!r} is not {_ACCEPTED}")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"device limit {text!r} must be more than 0 bytes")
    return Limit(text=t, bytes=n)


def parse_percent_list(text):
    """`90,80,70` (a `%` on each is allowed) -> [90.0, 80.0, 70.0], highest first, no repeats."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lim = parse_limit(part if part.endswith("%") else part + "%")
        out.append(lim.percent)
    if not out:
        raise ValueError(f"--limits {text!r}: give percentages of the native peak, e.g. 90,80,70")
    return sorted(set(out), reverse=True)


def native_peak(runs):
    """(bytes, where it came from) of the native runs' peak above idle: the median of their NVML
    peaks, or, without NVML, the median of the workload's own `peak_reserved_bytes` (torch's
    caching allocator, which misses the CUDA context); (None, why) when neither was measured."""
    ok = [r for r in runs if r.kind == "native" and r.ok()]
    nvml = [r.nvml_peak_bytes for r in ok if r.nvml_peak_bytes]
    if nvml:
        return int(statistics.median(nvml)), f"NVML peak above idle, median of {len(nvml)} native run(s)"
    torch_peak = [r.metrics["peak_reserved_bytes"] for r in ok if isinstance(r.metrics.get("peak_reserved_bytes"), (int, float))]
    if torch_peak:
        return int(statistics.median(torch_peak)), f"the workload's peak_reserved_bytes (no NVML samples), median of {len(torch_peak)} native run(s)"
    if not ok:
        return None, "no native run completed"
    return None, "the native runs measured no peak (no NVML samples and no peak_reserved_bytes metric)"


def gib(b):
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB"


def check(run, limit_bytes):
    """Did an ltshim run stay at or under the limit? By NVML (its peak above idle, which also
    holds the CUDA context and module images that the library never sees) and by the library's
    own count (`packing.held_peak_bytes`; the limit is each device's, so with several devices
    the largest of their own peaks, `packing.devices`, not their sum). None where it cannot be
    told."""
    held = None
    stats = run.ltshim_stats if isinstance(run.ltshim_stats, dict) else {}
    p = stats.get("packing")
    devices = p.get("devices") if isinstance(p, dict) else None
    peaks = [d.get("held_peak_bytes") for d in devices.values() if isinstance(d, dict)] if isinstance(devices, dict) else []
    peaks = [x for x in peaks if isinstance(x, (int, float))]
    if peaks:
        held = max(peaks)
    elif isinstance(p, dict) and isinstance(p.get("held_peak_bytes"), (int, float)):
        held = p["held_peak_bytes"]
    under = (lambda b: None if b is None or limit_bytes is None else b <= limit_bytes)
    return {"nvml_peak_bytes": run.nvml_peak_bytes, "nvml_under_limit": under(run.nvml_peak_bytes),
            "held_peak_bytes": held, "library_under_limit": under(held)}


def describe(limit, limit_bytes, native_peak_bytes, source):
    """The report's record of a limit: its text, bytes, and share of the native peak."""
    return {"spec": limit.text, "bytes": limit_bytes, "native_peak_bytes": native_peak_bytes, "native_peak_source": source,
            "percent_of_native_peak": (100.0 * limit_bytes / native_peak_bytes) if limit_bytes and native_peak_bytes else None}
