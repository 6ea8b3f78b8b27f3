#!/usr/bin/env bash
# 3.6B decode, native vs ltshim observe, each process pinned to the same 4 cores (taskset),
# alternating; tokens/s per run into $OUT/decode_pinned.json. Process-to-process noise on the
# GPU machine was larger than the effect without pinning (docs/PERF.md).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/ltshim-pinned; mkdir -p $W
for i in $(seq ${RUNS:-5}); do
  taskset -c 4-7 python3 harness/workloads/infer.py --params 3b --tokens 64 --metrics $W/n_$i.json > /dev/null 2>&1
  taskset -c 4-7 .dev/ltshim run --lib .dev/libltshim.so --mode observe -- python3 harness/workloads/infer.py --params 3b --tokens 64 --metrics $W/l_$i.json > /dev/null 2>&1
done
python3 - "$W" "$OUT" "${RUNS:-5}" <<'PY'
import json, statistics, sys
w, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = [json.load(open(f"{w}/n_{i}.json"))["decode_tokens_per_s"] for i in range(1, runs + 1)]
l = [json.load(open(f"{w}/l_{i}.json"))["decode_tokens_per_s"] for i in range(1, runs + 1)]
json.dump({"native": n, "ltshim": l}, open(f"{out}/decode_pinned.json", "w"))
print("native", [round(x, 2) for x in n], "median", round(statistics.median(n), 3))
print("ltshim", [round(x, 2) for x in l], "median", round(statistics.median(l), 3), "ratio of medians", round(statistics.median(l) / statistics.median(n), 3))
PY
