#!/usr/bin/env python3
"""A mix of the CUDA paths PyTorch takes, run phase by phase: bf16 Linear layers (cuBLAS),
LayerNorm, SDPA, a cuDNN conv2d, a torch.compile'd (Triton) function, a captured CUDA graph
replayed, and a loop of small launches.

Saves every phase's output (`--out FILE`, torch.save) so that a native run and a run under
ltshim can be compared bit for bit. With `--profile`, counts each phase's kernels with
torch.profiler and, when libltshim is preloaded, the kernels the library saw in that phase
(through its `ltshim_stats_json` control API), and writes both to `--counts FILE` (JSON).
Times the small-launch loop (`--small-launches N`, median of 3 runs).
Runs alone: `python3 observe_mix.py --out native.pt`.
"""
import argparse
import ctypes
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def ltshim_stats():
    """The library's live stats (None when it is not loaded)."""
    try:
        fn = ctypes.CDLL(None).ltshim_stats_json
    except AttributeError:
        return None
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    n = fn(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    fn(buf, n + 1)
    return json.loads(buf.value.decode())


def seen(stats):
    l = stats["launches"]
    return {"kernels": l["kernels_executed_seen"], "cudnn_calls": l["cudnn_calls"], "cublas_calls": l["cublas_calls"],
            "cublas_found": stats["pointers"]["found"]["cublas"], "cublas_not_found": stats["pointers"]["not_found"]["cublas"],
            "cudnn_found": stats["pointers"]["found"]["cudnn"], "cudnn_not_found": stats["pointers"]["not_found"]["cudnn"]}


def phases(dev):
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(64, 1024, device=dev, dtype=torch.bfloat16, generator=g)
    w1 = torch.randn(4096, 1024, device=dev, dtype=torch.bfloat16, generator=g) * 0.02
    w2 = torch.randn(1024, 4096, device=dev, dtype=torch.bfloat16, generator=g) * 0.02
    q = torch.randn(2, 16, 512, 64, device=dev, dtype=torch.bfloat16, generator=g)
    img = torch.randn(8, 32, 64, 64, device=dev, dtype=torch.float16, generator=g)
    cw = torch.randn(64, 32, 3, 3, device=dev, dtype=torch.float16, generator=g) * 0.05
    v = torch.randn(1 << 20, device=dev, generator=g)

    def linear():
        return F.linear(F.relu(F.linear(x, w1)), w2)

    def layernorm():
        return F.layer_norm(x.float(), (1024,))

    def sdpa():
        return F.scaled_dot_product_attention(q, q, q, is_causal=True)

    def conv():
        return F.conv2d(img, cw, padding=1)

    compiled = torch.compile(lambda t: F.gelu(t) * 1.5 + t.sin())

    def triton():
        return compiled(v)

    static_in = torch.randn(64, 1024, device=dev, dtype=torch.bfloat16, generator=g)
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            F.layer_norm(F.linear(static_in, w1).float(), (4096,))
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(graph):
        static_out = F.layer_norm(F.linear(static_in, w1).float(), (4096,))

    def cuda_graph():
        outs = []
        for i in range(3):
            static_in.copy_(x * (i + 1))
            graph.replay()
            outs.append(static_out.clone())
        return torch.stack(outs)

    return [("linear", linear), ("layernorm", layernorm), ("sdpa", sdpa), ("conv2d_cudnn", conv),
            ("triton_compiled", triton), ("cuda_graph", cuda_graph)]


def small_launch_loop(n, dev):
    t = torch.zeros(16, device=dev)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        t.add_(1.0)
    torch.cuda.synchronize()
    return time.perf_counter() - start, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="save phase outputs here (torch.save)")
    ap.add_argument("--counts", help="write per-phase kernel counts here (JSON)")
    ap.add_argument("--metrics", help="write metrics here (JSON): the small-launch loop's time (the harness passes it)")
    ap.add_argument("--profile", action="store_true", help="count kernels with torch.profiler")
    ap.add_argument("--small-launches", type=int, default=20000)
    ap.add_argument("--only-small-launches", action="store_true", help="skip the phases (for timing runs)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("observe_mix: no GPU here", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    ph = [] if args.only_small_launches else phases(dev)
    for _, f in ph:  # warm-up: compilation, autotuning, library handles
        f()
    torch.cuda.synchronize()
    outputs, counts = {}, {}
    for name, f in ph:
        before = ltshim_stats()
        if args.profile:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                out = f()
                torch.cuda.synchronize()
            kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith("Memcpy") and not e.name.startswith("Memset"))
        else:
            out = f()
            torch.cuda.synchronize()
            kernels = None
        after = ltshim_stats()
        entry = {"profiler_kernels": kernels}
        if before and after:
            b, a = seen(before), seen(after)
            entry.update({k: a[k] - b[k] for k in a})
        counts[name] = entry
        outputs[name] = out.detach().cpu()
    times = []
    for _ in range(3):
        dt, t = small_launch_loop(args.small_launches, dev)
        times.append(dt)
    outputs["small_launches"] = t.cpu()
    counts["small_launch_loop_s"] = {"runs": times, "median": statistics.median(times), "launches": args.small_launches}
    if args.out:
        torch.save(outputs, args.out)
    if args.counts:
        with open(args.counts, "w") as fh:
            json.dump(counts, fh, indent=1)
    if args.metrics:
        with open(args.metrics, "w") as fh:
            json.dump({"small_launch_loop_s": statistics.median(times)}, fh)
    print(f"observe_mix: {len(ph)} phases, small-launch loop median {statistics.median(times) * 1e6 / args.small_launches:.2f} us/launch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
