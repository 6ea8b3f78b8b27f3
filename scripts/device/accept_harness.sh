#!/usr/bin/env bash
# Issue 5 acceptance on the GPU machine: compare.py on infer, sparse_mlp and vision in observe
# mode, and the accelerate CPU-offload baseline beside native. Expects .dev/ (the release
# library and CLI) and, when matplotlib or nvidia-ml-py are missing there, .whl/.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
WORK=/tmp/ltshim-harness; rm -rf "$WORK"; mkdir -p "$WORK"
export PYTHONUNBUFFERED=1
if ! python3 -c "import matplotlib, pynvml" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -c "import matplotlib, pynvml; print('matplotlib', matplotlib.__version__)"
C="python3 harness/compare.py --ltshim .dev/ltshim --mode observe"
$C --workload infer --workload-args "--params 3b --tokens 32" --repeat ${REPEAT:-1} --out $WORK/infer > $WORK/infer.txt; echo "infer exit $?"
$C --workload sparse_mlp --repeat ${REPEAT:-1} --out $WORK/sparse_mlp > $WORK/sparse.txt; echo "sparse_mlp exit $?"
$C --workload vision --repeat ${REPEAT:-1} --out $WORK/vision > $WORK/vision.txt; echo "vision exit $?"
echo "== accelerate offload baseline (3b, GPU capped at 40% of the bf16 weights)"
python3 harness/workloads/infer.py --params 3b --tokens 8 --offload accelerate --max-gpu-memory 2.9GiB --metrics $WORK/offload.json 2>&1 | tail -1
cp $WORK/infer/report.md $OUT/infer_report.md; cp $WORK/infer/memory_timeline.png $OUT/infer_memory_timeline.png
cp $WORK/sparse_mlp/report.md $OUT/sparse_mlp_report.md; cp $WORK/vision/report.md $OUT/vision_report.md
cp $WORK/vision/memory_timeline.png $OUT/vision_memory_timeline.png; cp $WORK/infer/peak_and_time.png $OUT/infer_peak_and_time.png
python3 - "$WORK" <<'PY' | tee $OUT/summary.txt
import json, sys
w = sys.argv[1]
for name in ("infer", "sparse_mlp", "vision"):
    r = json.load(open(f"{w}/{name}/report.json"))
    a, f = r["aggregate"], r["fidelity"] or {}
    print(f"{name}: bit_exact={f.get('bit_exact')} problems={r['problems']}")
    for kind in ("native", "ltshim"):
        k = a[kind]
        print(f"  {kind}: wall {k['wall_s'] and round(k['wall_s']['median'], 2)} s, nvml peak {k['nvml_peak_bytes'] and round(k['nvml_peak_bytes']['median'] / 2**30, 2)} GiB, "
              + ", ".join(f"{m} {v['median']:.4g}" for m, v in k["metrics"].items() if v))
o = json.load(open(f"{w}/offload.json"))
n = json.load(open(f"{w}/infer/report.json"))["aggregate"]["native"]["metrics"]["decode_tokens_per_s"]["median"]
print(f"accelerate offload: decode {o['decode_tokens_per_s']:.3f} tok/s vs native {n:.3f} ({o['decode_tokens_per_s'] / n:.3f}x), peak {o['peak_allocated_bytes'] / 2**30:.2f} GiB")
PY
