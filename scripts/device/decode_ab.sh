#!/usr/bin/env bash
# 3.6B decode: native, ltshim with LTSHIM_MODE=off (preloaded, pure passthrough) and ltshim
# observe, interleaved in that order, each pinned to cores 4-7; tokens/s into
# $OUT/decode_ab.json. Separates the cost of observing from process-to-process noise.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/ltshim-ab; mkdir -p $W
INF="python3 harness/workloads/infer.py --params 3b --tokens 64"
for i in $(seq ${RUNS:-4}); do
  taskset -c 4-7 $INF --metrics $W/native_$i.json > /dev/null 2>&1
  taskset -c 4-7 .dev/ltshim run --lib .dev/libltshim.so --mode off -- $INF --metrics $W/off_$i.json > /dev/null 2>&1
  taskset -c 4-7 .dev/ltshim run --lib .dev/libltshim.so --mode observe --stats $W/stats_$i.json -- $INF --metrics $W/observe_$i.json > /dev/null 2>&1
done
python3 - "$W" "$OUT" "${RUNS:-4}" <<'PY'
import json, statistics, sys
w, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = {k: [json.load(open(f"{w}/{k}_{i}.json"))["decode_tokens_per_s"] for i in range(1, runs + 1)] for k in ("native", "off", "observe")}
st = json.load(open(f"{w}/stats_1.json"))
r["observe_time_in_library_ms"] = st["time_in_library_ns"] / 1e6
r["observe_hook_calls"] = sum(st["calls"].values())
json.dump(r, open(f"{out}/decode_ab.json", "w"))
for k in ("native", "off", "observe"):
    print(k, [round(x, 2) for x in r[k]], "median", round(statistics.median(r[k]), 3))
m = {k: statistics.median(r[k]) for k in ("native", "off", "observe")}
print("observe/native", round(m["observe"] / m["native"], 3), "off/native", round(m["off"] / m["native"], 3), "observe/off", round(m["observe"] / m["off"], 3))
print("time in library (sampled) ms", round(r["observe_time_in_library_ms"], 1), "hook calls", r["observe_hook_calls"])
PY
