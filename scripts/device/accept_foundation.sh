#!/usr/bin/env bash
# Issue 3 acceptance on the GPU machine. Expects .dev/libltshim.so and .dev/ltshim (built on the
# dev machine, carried). Writes everything under $OUT and prints a summary table last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# Bulky outputs stay on the machine; $OUT gets the reports (at most 8 files come back).
WORK=/tmp/ltshim-accept; rm -rf "$WORK"; mkdir -p "$WORK"
RUNS=${RUNS:-7}
export PYTHONUNBUFFERED=1
W=harness/workloads
L=".dev/ltshim run --lib .dev/libltshim.so --mode observe"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$WORK/gpu.txt"
python3 -c 'import torch,transformers,accelerate;print("torch",torch.__version__,"transformers",transformers.__version__,"accelerate",accelerate.__version__)' | tee -a "$WORK/gpu.txt"
h=$(python3 -c "import nvidia.cudnn,os;print(os.path.dirname(nvidia.cudnn.__file__))" 2>/dev/null)/include/cudnn_graph.h
[ -f "$h" ] && grep -nE "CUDNN_ATTR_VARIANT_PACK_(DATA_POINTERS|WORKSPACE)|CUDNN_TYPE_VOID_PTR|CUDNN_TYPE_INT64 " "$h" | head

echo "== mix: native, then under ltshim (profiled)"
python3 $W/observe_mix.py --profile --out $WORK/mix_native.pt --counts $WORK/mix_native_counts.json 2>&1 | tail -3
$L --stats $OUT/mix_stats.json -- python3 $W/observe_mix.py --profile --out $WORK/mix_ltshim.pt --counts $OUT/mix_ltshim_counts.json 2>&1 | tail -5
.dev/ltshim stats $OUT/mix_stats.json > $WORK/mix_stats.txt
python3 - "$OUT" "$WORK" <<'PY'
import json, sys, torch
out, work = sys.argv[1], sys.argv[2]
a, b = torch.load(f"{work}/mix_native.pt"), torch.load(f"{work}/mix_ltshim.pt")
same = {k: bool(torch.equal(a[k], b[k])) for k in a}
print("bit-identical per phase:", same)
c = json.load(open(f"{out}/mix_ltshim_counts.json"))
for k, v in c.items():
    if isinstance(v, dict) and "profiler_kernels" in v:
        print(f"{k:18} profiler {v['profiler_kernels']:5}  ltshim saw {v.get('kernels','-'):5}  cudnn calls {v.get('cudnn_calls','-')}  "
              f"cublas ptrs {v.get('cublas_found','-')}/{v.get('cublas_not_found','-')} cudnn ptrs {v.get('cudnn_found','-')}/{v.get('cudnn_not_found','-')}")
json.dump({"bit_identical": same}, open(f"{out}/mix_compare.json", "w"))
PY

echo "== launch overhead (CUDA C, best of 7 x 200000 launches per process), 5 processes each, alternating"
cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null | sed 's/^/clocksource: /'
nvcc -O2 -arch=sm_90 -o $WORK/launch_overhead bench/launch_overhead.cu -lcuda || echo "nvcc failed"
for i in 1 2 3 4 5; do
  $WORK/launch_overhead > $WORK/lo_native_$i.json
  $L -- $WORK/launch_overhead > $WORK/lo_ltshim_$i.json
done
cat $WORK/lo_native_1.json $WORK/lo_ltshim_1.json

echo "== small-launch loop: $RUNS runs each, alternating"
for i in $(seq $RUNS); do
  python3 $W/observe_mix.py --only-small-launches --counts $WORK/small_native_$i.json >/dev/null
  $L -- python3 $W/observe_mix.py --only-small-launches --counts $WORK/small_ltshim_$i.json >/dev/null
done

echo "== 3B decode: $RUNS runs each, alternating"
for i in $(seq $RUNS); do
  python3 $W/infer.py --params 3b --tokens 64 --metrics $WORK/infer_native_$i.json --out $WORK/infer_native_$i.pt 2>&1 | tail -1
  $L --stats $WORK/infer_stats_$i.json -- python3 $W/infer.py --params 3b --tokens 64 --metrics $WORK/infer_ltshim_$i.json --out $WORK/infer_ltshim_$i.pt 2>&1 | tail -1
done

echo "== expandable segments"
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $L --stats $OUT/expandable_stats.json -- python3 $W/infer.py --params tiny --tokens 4 2>&1 | tail -3

cp $WORK/infer_stats_1.json $OUT/infer_stats.json
python3 - "$OUT" "$WORK" "$RUNS" <<'PY'
import json, statistics, sys, torch
out, work, runs = sys.argv[1], sys.argv[2], range(1, int(sys.argv[3]) + 1)
def med(paths, key, sub=None):
    vals = []
    for p in paths:
        d = json.load(open(p))
        vals.append(d[key][sub] if sub else d[key])
    return statistics.median(vals), vals
sn, snv = med([f"{work}/small_native_{i}.json" for i in runs], "small_launch_loop_s", "median")
sl, slv = med([f"{work}/small_ltshim_{i}.json" for i in runs], "small_launch_loop_s", "median")
dn, dnv = med([f"{work}/infer_native_{i}.json" for i in runs], "decode_tokens_per_s")
dl, dlv = med([f"{work}/infer_ltshim_{i}.json" for i in runs], "decode_tokens_per_s")
same = all(torch.equal(torch.load(f"{work}/infer_native_{i}.pt")["logits"], torch.load(f"{work}/infer_ltshim_{i}.pt")["logits"]) and
           torch.equal(torch.load(f"{work}/infer_native_{i}.pt")["generated"], torch.load(f"{work}/infer_ltshim_{i}.pt")["generated"]) for i in runs)
st = json.load(open(f"{out}/infer_stats.json"))
calls = sum(st["calls"].values())
ex = json.load(open(f"{out}/expandable_stats.json"))
lo = {k: [json.load(open(f"{work}/lo_{k}_{i}.json")) for i in range(1, 6)] for k in ("native", "ltshim")}
lo_rt = {k: [r["runtime_ns"] for r in v] for k, v in lo.items()}
lo_drv = {k: [r["driver_ns"] for r in v] for k, v in lo.items()}
summary = {
  "launch_runtime_ns": lo_rt, "launch_driver_ns": lo_drv,
  "small_launch_s_native": snv, "small_launch_s_ltshim": slv, "small_launch_ratio": sl / sn,
  "decode_tok_s_native": dnv, "decode_tok_s_ltshim": dlv, "decode_ratio": dl / dn, "infer_bit_identical": same,
  "infer_stats": {"kernels": st["launches"]["kernels_executed_seen"], "cublas": st["launches"]["cublas_calls"],
                  "cublas_ptrs": [st["pointers"]["found"]["cublas"], st["pointers"]["not_found"]["cublas"]],
                  "time_in_library_ms": st["time_in_library_ns"] / 1e6, "hook_calls": calls, "ns_per_call": st["time_in_library_ns"] / max(calls, 1), "fallbacks": st["fallbacks"], "allocs": st["allocations"]},
  "expandable": {"user_maps": ex["allocations"]["user_maps"], "fallbacks": ex["fallbacks"]},
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print("| measure | native | ltshim observe | ratio |")
print("|---|---|---|---|")
for name, d in (("runtime <<<>>>", lo_rt), ("driver cuLaunchKernel", lo_drv)):
    a, b = statistics.median(d["native"]), statistics.median(d["ltshim"])
    print(f"| launch cost, {name} (ns, median of 5 processes, each best of 7) | {a:.0f} | {b:.0f} | {b/a:.3f} (+{b-a:.0f} ns) |")
print(f"| small-launch loop, 20000 add_ (s, median of runs) | {sn:.4f} | {sl:.4f} | {sl/sn:.3f} |")
print(f"| small-launch loop (s, min of runs) | {min(snv):.4f} | {min(slv):.4f} | {min(slv)/min(snv):.3f} |")
print(f"| 3B decode tok/s (median of runs) | {dn:.2f} | {dl:.2f} | {dl/dn:.3f} |")
print(f"| 3B decode tok/s (max of runs) | {max(dnv):.2f} | {max(dlv):.2f} | {max(dlv)/max(dnv):.3f} |")
print(f"| 3B outputs bit-identical | | {same} | |")
print("infer stats:", summary["infer_stats"])
print("expandable:", summary["expandable"])
PY
