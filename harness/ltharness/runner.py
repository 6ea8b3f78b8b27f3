"""Running one workload process, natively or under `ltshim run`, while sampling memory."""
import json
import os
import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class RunResult:
    kind: str  # "native" or "ltshim"
    repeat: int
    returncode: int
    wall_s: float
    timeline: list = field(default_factory=list)
    nvml_peak_bytes: int = None
    metrics: dict = field(default_factory=dict)
    ltshim_stats: dict = None
    outputs_path: str = None
    log_path: str = None
    error: str = None

    def ok(self):
        return self.returncode == 0 and self.error is None

    def summary(self):
        d = {k: getattr(self, k) for k in ("kind", "repeat", "returncode", "wall_s", "nvml_peak_bytes", "metrics", "outputs_path", "log_path", "error")}
        if self.ltshim_stats:
            s = self.ltshim_stats
            d["ltshim"] = {"peak_bytes": s["allocations"]["peak_bytes"], "kernels_seen": s["launches"]["kernels_executed_seen"],
                           "fallbacks": {k: v for k, v in s["fallbacks"].items() if v}, "state": s["config"].get("state")}
        return d


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def run_once(kind, repeat, command, out_dir, sampler, ltshim_cli=None, mode="observe", lib=None, env_extra=None, timeout=None):
    """Runs `command` (a list) once. For kind "ltshim" it is wrapped in `ltshim run`.
    The workload receives HARNESS_OUTPUTS / HARNESS_METRICS paths (named workloads also get
    --out / --metrics on their command line)."""
    tag = f"{kind}_{repeat}"
    outputs = os.path.join(out_dir, f"outputs_{tag}.pt")
    metrics = os.path.join(out_dir, f"metrics_{tag}.json")
    stats = os.path.join(out_dir, f"ltshim_stats_{tag}.json")
    log = os.path.join(out_dir, f"log_{tag}.txt")
    for p in (outputs, metrics, stats):
        if os.path.exists(p):
            os.remove(p)
    cmd = [c.replace("{outputs}", outputs).replace("{metrics}", metrics) for c in command]
    if kind == "ltshim":
        wrap = [ltshim_cli, "run", "--mode", mode, "--stats", stats]
        if lib:
            wrap += ["--lib", lib]
        cmd = wrap + ["--"] + cmd
    env = dict(os.environ, HARNESS_OUTPUTS=outputs, HARNESS_METRICS=metrics, PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    sampler.start()
    t0 = time.perf_counter()
    error = None
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except FileNotFoundError as e:
            rc, error = 127, f"cannot start {cmd[0]}: {e}"
        except subprocess.TimeoutExpired:
            rc, error = 124, f"timed out after {timeout}s"
    wall = time.perf_counter() - t0
    timeline = sampler.stop()
    if rc != 0 and error is None:
        tail = open(log).read().strip().splitlines()[-3:]
        error = f"exit code {rc}: " + " | ".join(tail)
    return RunResult(kind=kind, repeat=repeat, returncode=rc, wall_s=wall, timeline=list(timeline),
                     nvml_peak_bytes=sampler.peak(), metrics=_read_json(metrics) or {},
                     ltshim_stats=_read_json(stats) if kind == "ltshim" else None,
                     outputs_path=outputs if os.path.exists(outputs) else None, log_path=log, error=error)
