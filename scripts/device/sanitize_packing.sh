#!/usr/bin/env bash
# Acceptance 7 of issue 11: compute-sanitizer memcheck over a small packing workload. sparse_mlp
# at a small size (ARGS) runs natively once for its peak and outputs, then under memcheck with
# the library in lossless at PERCENT (60) % of that peak: the sanitizer's summary, the library's
# packs and restores, and whether the outputs are bit-identical with the native run's. One file
# comes back, $OUT/sanitize_packing.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/sanitize_packing; rm -rf $W; mkdir -p $W
cd "$(dirname "$0")/../.."
export PATH=/usr/local/cuda/bin:$PATH
ARGS=${ARGS:---width 4096 --batch 2048 --layers 8 --steps 2}
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
python3 harness/workloads/sparse_mlp.py $ARGS --out $W/native.pt --metrics $W/native.json > $W/native.txt 2>&1
limit=$(python3 -c "import json; print(int(json.load(open('$W/native.json'))['peak_reserved_bytes'] * ${PERCENT:-60} / 100))")
echo "native peak $(python3 -c "import json; print(json.load(open('$W/native.json'))['peak_reserved_bytes'])"), limit $limit"
timeout ${SAN_TIMEOUT:-300} compute-sanitizer --tool memcheck --target-processes all --print-limit 20 \
  .dev/ltshim run --mode lossless --device-limit $limit --stats $W/stats.json -- \
  python3 harness/workloads/sparse_mlp.py $ARGS --out $W/packed.pt --metrics $W/packed.json > $W/memcheck.txt 2>&1
echo "memcheck exit $?"
grep -E "ERROR SUMMARY|Invalid|ltshim:" $W/memcheck.txt | head -8
python3 - $W <<'PY'
import json, sys, torch
w = sys.argv[1]
try:
    p = json.load(open(f"{w}/stats.json"))["packing"]
    print("packs", p["packs"], "restores", p["restores"], "held peak", p["held_peak_bytes"], "limit", p["limit_bytes"])
except Exception as e:
    print("no stats:", e)
try:
    a, b = torch.load(f"{w}/native.pt"), torch.load(f"{w}/packed.pt")
    flat = lambda o: [t for t in (o.values() if isinstance(o, dict) else o)] if isinstance(o, (dict, list, tuple)) else [o]
    same = all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in zip(flat(a), flat(b))) and len(flat(a)) == len(flat(b))
    print("outputs bit-identical with native:", same)
except Exception as e:
    print("outputs not compared:", e)
PY
rm -f $W/*.pt
tar -C /tmp -czf $OUT/sanitize_packing.tar.gz sanitize_packing
