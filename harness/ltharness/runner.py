"""Running one workload process, natively or under `ltshim run`, while sampling memory."""
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from . import packing


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
    tail: list = field(default_factory=list)  # the log's last lines when the run failed
    device_limit_bytes: int = None  # LTSHIM_DEVICE_LIMIT given to this run (ltshim runs only)

    def ok(self):
        return self.returncode == 0 and self.error is None

    def summary(self):
        d = {k: getattr(self, k) for k in ("kind", "repeat", "returncode", "wall_s", "nvml_peak_bytes", "metrics", "outputs_path", "log_path",
                                           "error", "tail", "device_limit_bytes")}
        if self.ltshim_stats:
            s = self.ltshim_stats

            def get(*path):
                v = s
                for k in path:
                    v = v.get(k) if isinstance(v, dict) else None
                return v
            fallbacks = get("fallbacks")
            d["ltshim"] = {"peak_bytes": get("allocations", "peak_bytes"), "kernels_seen": get("launches", "kernels_executed_seen"),
                           "fallbacks": {k: v for k, v in fallbacks.items() if v} if isinstance(fallbacks, dict) else None,
                           "state": get("config", "state"), "packing": packing.summarize(s)}
        return d


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# NVLink multicast stays off in every run the harness starts, natively and under ltshim, unless
# the caller's environment says otherwise: the GPU machines we measure on share their GPUs, and
# a program that uses multicast can put them out of service (docs/PERF.md, issue 13).
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def _run_in_own_group(cmd, log, env, timeout):
    """The command's exit code. It runs in a process group of its own so that a timeout ends
    the workload too, not only `ltshim run` above it (a workload left running would hold GPU
    memory through every later run)."""
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        return p.wait(timeout=timeout)
    except BaseException:  # the timeout, or ^C: end the whole group, then pass it on
        _signal_group(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(p.pid, signal.SIGKILL)  # whatever of the group is left (the workload under ltshim)
        p.wait()
        raise


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_once(kind, repeat, command, out_dir, sampler, ltshim_cli=None, mode="observe", lib=None, env_extra=None, timeout=None,
             device_limit_bytes=None, tag=None):
    """Runs `command` (a list) once. For kind "ltshim" it is wrapped in `ltshim run`, and
    `device_limit_bytes` (if any) is given to it alone as LTSHIM_DEVICE_LIMIT.
    The workload receives HARNESS_OUTPUTS / HARNESS_METRICS paths (named workloads also get
    --out / --metrics on their command line). `tag` names the run's files (default KIND_REPEAT).
    Never raises for what the command does: a failure is in the result."""
    tag = tag or f"{kind}_{repeat}"
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
    for k, v in MULTICAST_OFF.items():
        env.setdefault(k, v)
    env.pop("LTSHIM_DEVICE_LIMIT", None)  # the native run is the unlimited baseline; ltshim gets only ours
    if kind == "ltshim" and device_limit_bytes is not None:
        env["LTSHIM_DEVICE_LIMIT"] = str(int(device_limit_bytes))
    sampler.start()
    t0 = time.perf_counter()
    error = None
    with open(log, "w") as fh:
        try:
            rc = _run_in_own_group(cmd, fh, env, timeout)
        except OSError as e:
            rc, error = 127, f"cannot start {cmd[0]}: {e}"
        except subprocess.TimeoutExpired:
            rc, error = 124, f"timed out after {timeout}s"
    wall = time.perf_counter() - t0
    timeline = sampler.stop()
    tail = []
    if rc != 0:
        try:
            with open(log, errors="replace") as fh:
                tail = fh.read().strip().splitlines()[-8:]
        except OSError:
            pass
        if error is None:
            error = f"exit code {rc}: " + " | ".join(tail[-3:])
    return RunResult(kind=kind, repeat=repeat, returncode=rc, wall_s=wall, timeline=list(timeline),
                     nvml_peak_bytes=sampler.peak(), metrics=_read_json(metrics) or {},
                     ltshim_stats=_read_json(stats) if kind == "ltshim" else None,
                     outputs_path=outputs if os.path.exists(outputs) else None, log_path=log, error=error, tail=tail,
                     device_limit_bytes=device_limit_bytes if kind == "ltshim" else None)
