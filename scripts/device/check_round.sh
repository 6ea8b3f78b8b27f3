#!/usr/bin/env bash
# One device call that checks a build on the runs that moved last: the NCCL smoke test, the 3B
# decode at LIMIT (70%) of its native peak in lossless and lossy (MODES), one run of each kind,
# and the training workload in lossy at 80%. Everything goes into ONE file,
# $OUT/check_round.tar.gz; a short table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/check_round; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
bash scripts/device/nccl_smoke.sh > $W/nccl.txt 2>&1; cp /tmp/nccl_smoke.json $W/ 2>/dev/null
for m in ${MODES:-lossless lossy}; do
  timeout ${RUN_TIMEOUT:-200} python3 harness/compare.py --ltshim .dev/ltshim --workload infer --workload-args "--params 3b --tokens 32" \
    --mode $m --device-limit ${LIMIT:-70%} --min-cosine 0.999 --min-top1 0.99 --repeat ${REPEAT:-1} --warmup 0 --out $W/infer_$m > $W/infer_$m.txt 2>&1
  echo "infer $m exit $?" >> $W/summary.txt
  rm -f $W/infer_$m/outputs_*.pt
done
if [ "${TRAIN:-1}" = 1 ]; then
  timeout 300 python3 harness/compare.py --ltshim .dev/ltshim --workload train --mode lossy --limits 80 --timeout 90 --out $W/train_lossy > $W/train_lossy.txt 2>&1
  echo "train lossy 80 exit $?" >> $W/summary.txt
fi
find $W -name "*.pt" -delete; find $W -name "*.png" -delete
tar -C /tmp -czf $OUT/check_round.tar.gz check_round
cat $W/summary.txt; cat $W/nccl.txt | tail -3
python3 - $W <<'PY'
import json, sys, glob, os
w = sys.argv[1]
for d in sorted(glob.glob(f"{w}/infer_*/")):
    try: r = json.load(open(f"{d}/report.json"))
    except Exception as e: print(d, "no report:", e); continue
    ms = lambda k: [ (x.get("metrics") or {}).get("decode_tokens_per_s") for x in r["runs"] if x["kind"] == k]
    lm = (r.get("fidelity") or {}).get("language_model") or {}
    lc = (r.get("limit_checks") or [{}])[0]
    st = {}
    for f in glob.glob(f"{d}/ltshim_stats_ltshim_*.json"):
        st = json.load(open(f)).get("packing", {})
    print(os.path.basename(d.rstrip("/")), "native", ms("native"), "ltshim", ms("ltshim"), "cos", lm.get("logits_cosine_min"), "top1", lm.get("top1_agreement"),
          "held GiB", round((lc.get("held_peak_bytes") or 0) / 2**30, 2), "limit GiB", round(((r["meta"].get("device_limit") or {}).get("bytes") or 0) / 2**30, 2),
          "encodes", st.get("encodes_by_cause"), "restores over limit / in pieces", st.get("restores_over_limit"), st.get("restores_in_pieces"),
          "problems", len(r.get("problems") or []))
for d in glob.glob(f"{w}/train_*/"):
    try: r = json.load(open(f"{d}/sweep.json"))
    except Exception as e: print(d, "no sweep:", e); continue
    for e in r.get("entries", []):
        f = e.get("fidelity") or {}
        print("train", {k: e.get(k) for k in ("limit_percent", "completed", "verdict", "speed_vs_native")}, "bit_exact", f.get("bit_exact"), "max_abs_err", f.get("max_abs_err"))
PY
