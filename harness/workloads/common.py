"""What every workload shares: the --out / --metrics / --device-limit arguments, determinism,
saving, and `step()` (ltshim's end-of-step mark, when the library is loaded). Workloads are plain
scripts: `python3 harness/workloads/NAME.py --help`."""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# The control module (python/ltshim.py at the repository root), when it is there; a workload
# copied elsewhere runs without it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
try:
    import ltshim as _ltshim
except ImportError:
    _ltshim = None
_stepping = None  # None: not yet asked; then True/False


def ltshim_loaded():
    """True when libltshim is loaded in this process (through ltshim run or LD_PRELOAD)."""
    return bool(_ltshim and _ltshim.available())


def step():
    """Tells libltshim that one step of the workload ended (its stats count restores per
    step). Nothing without the library, or with one that has no step call (said once)."""
    global _stepping
    if _stepping is None:
        _stepping = ltshim_loaded()
    if not _stepping:
        return
    try:
        _ltshim.step()
    except RuntimeError as e:
        print(f"{os.path.basename(sys.argv[0])}: steps not marked: {e}", file=sys.stderr)
        _stepping = False


def parser(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", help="save the outputs here (torch.save) for comparison")
    ap.add_argument("--metrics", help="write metrics (JSON) here")
    ap.add_argument("--device-limit", help="cap this process's GPU memory, e.g. 8GiB (torch's per-process fraction)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = s.strip().lower().replace("ib", "").replace("b", "")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def distributed():
    """(rank, world size, local rank) under torchrun (its environment), else (0, 1, 0)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def setup(args, deterministic=True):
    """Checks the GPU, seeds, applies the device limit; under torchrun (WORLD_SIZE > 1) joins
    the NCCL process group and takes the GPU of its local rank. Exits 2 without a GPU."""
    import torch
    if not torch.cuda.is_available():
        print(f"{os.path.basename(sys.argv[0])}: no GPU here", file=sys.stderr)
        sys.exit(2)
    rank, world, local = distributed()
    if world > 1:
        import torch.distributed as dist
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    torch.manual_seed(args.seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    apply_device_limit(args.device_limit)
    return torch.device("cuda", local)


def apply_device_limit(limit):
    """Caps this process's GPU memory (--device-limit, else $HARNESS_DEVICE_LIMIT from compare.py)."""
    import torch
    limit = limit or os.environ.get("HARNESS_DEVICE_LIMIT")
    if limit:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, parse_size(limit) / total))


def finish(args, outputs, metrics):
    """Saves outputs and metrics (adding peak memory) and prints a one-line summary; under
    torchrun rank 0 does, after every rank arrived, and the process group ends."""
    import torch
    torch.cuda.synchronize()
    rank, world, _ = distributed()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return
    metrics = dict(metrics)
    metrics["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    metrics["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    if args.out:
        torch.save({k: (v.detach().cpu() if hasattr(v, "detach") else v) for k, v in outputs.items()}, args.out)
    if args.metrics:
        with open(args.metrics, "w") as fh:
            json.dump(metrics, fh, indent=1)
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    print(f"{os.path.basename(sys.argv[0])}: {shown}")


class Timer:
    def __enter__(self):
        import torch
        torch.cuda.synchronize()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch
        torch.cuda.synchronize()
        self.s = time.perf_counter() - self.t0


def int8g_decoded(w, group):
    """What int8g (docs/FORMAT.md) decodes the float tensor `w` to, computed in torch: per group
    of `group` contiguous elements (the codec's groups, since PyTorch places tensors 512 bytes
    apart and a 64 KiB block holds whole groups), `scale = amax / 127`, `q = round_ties_even(x *
    127 / amax)` clamped to ±127, decoded as `q * scale` in f32 rounded to w's dtype; a group
    with `amax < 2^-120` decodes to zeros, and a q of -0 to +0. It leaves out the codec's refusals (a block with NaN
    or Inf, or over LTSHIM_INT8_MAX_ERR, stays lossless), so it is the most a lossy run can
    quantize. `harness/tests/test_int8_reference.py` checks it against `ltshim pack --mode lossy`
    byte for byte."""
    import torch
    flat = w.reshape(-1).float()
    pad = (-flat.numel()) % group
    g = torch.nn.functional.pad(flat, (0, pad)).view(-1, group)
    amax = g.abs().amax(1, keepdim=True)
    tiny = amax < 2.0 ** -120
    # both divisions tensor by tensor: torch turns `127 / t` into `t.reciprocal() * 127` (two
    # roundings, not the codec's one), and may turn `t / 127` into a multiply
    k = torch.full_like(amax, 127.0)
    scale = torch.where(tiny, torch.zeros_like(amax), amax / k)
    inv = torch.where(tiny, torch.zeros_like(amax), k / torch.where(tiny, torch.ones_like(amax), amax))
    q = torch.round(g * inv).clamp_(-127, 127) + 0.0  # (+ 0.0: a q of -0 is the i8 0, which decodes to +0)
    return (q * scale).view(-1)[:flat.numel()].to(w.dtype).view_as(w)


def fake_int8(model, group, skip=()):
    """Replaces the weight of every torch.nn.Linear of `model` (those a lossy run may quantize:
    GEMM operands; embeddings and norms stay lossless) by `int8g_decoded`, except the modules
    named in `skip`. Returns how many weights and elements it quantized."""
    import torch
    count = elements = 0
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name not in skip:
                mod.weight.copy_(int8g_decoded(mod.weight, group))
                count += 1
                elements += mod.weight.numel()
    return count, elements
