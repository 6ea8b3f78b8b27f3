#!/usr/bin/env bash
# An A/B of two library builds on the 3B decode under a limit, in one call: ROUNDS rounds of
# `compare.py` with build B (.dev/ltshim) then build A (.dev/base/ltshim, beside its
# libltshim.so), each round one native run and one ltshim run, so natives alternate with both.
# MODE (lossy), LIMIT (70%), TOKENS (32). Everything goes into ONE file, $OUT/ab_infer_$MODE.tar.gz;
# a table is printed last: decode tok/s against the round's native, fidelity, held peak,
# bytes each codec encoded.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/ab_infer_${MODE:-lossy}; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
.dev/ltshim run -- true > /dev/null 2>&1; .dev/base/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
for r in $(seq 1 ${ROUNDS:-2}); do
  for b in new base; do
    bin=.dev/ltshim; [ $b = base ] && bin=.dev/base/ltshim
    timeout ${RUN_TIMEOUT:-200} python3 harness/compare.py --ltshim $bin --workload infer --workload-args "--params 3b --tokens ${TOKENS:-32}" --mode ${MODE:-lossy} \
      --device-limit ${LIMIT:-70%} --min-cosine 0.999 --min-top1 0.99 --repeat 1 --warmup 0 --out $W/${b}_$r > $W/${b}_$r.txt 2>&1
    echo "$b round $r exit $?"
    grep -E "decode_tokens_per_s|cosine|held peak" $W/${b}_$r/report.md | head -4
    rm -f $W/${b}_$r/outputs_*.pt  # 65 MB of logits each: the report has what they said
  done
done
tar -C /tmp -czf $OUT/ab_infer_${MODE:-lossy}.tar.gz ab_infer_${MODE:-lossy}
python3 - $W <<'PY'
import json, sys, glob, os
w = sys.argv[1]
print(f"{'run':<8}{'ltshim':>8}{'native':>8}{'ratio':>7}{'cos min':>10}{'top1':>7}{'held GiB':>9}{'limit':>7}  codec bytes in (GB)")
for d in sorted(glob.glob(f"{w}/*_[0-9]")):
    try: r = json.load(open(f"{d}/report.json"))
    except Exception as e: print(os.path.basename(d), "no report:", e); continue
    runs = {x["kind"]: x for x in r["runs"]}
    m = lambda k: (runs.get(k, {}).get("metrics") or {}).get("decode_tokens_per_s") or float("nan")
    lm = (r.get("fidelity") or {}).get("language_model") or {}
    lc = (r.get("limit_checks") or [{}])[0]
    st = {}
    for f in glob.glob(f"{d}/ltshim_stats_ltshim_*.json"):
        st = json.load(open(f)).get("packing", {})
    codecs = {k: round(v / 1e9, 1) for k, v in (st.get("bytes_in_by_codec") or {}).items()}
    print(f"{os.path.basename(d):<8}{m('ltshim'):>8.2f}{m('native'):>8.2f}{m('ltshim')/m('native'):>7.2f}{lm.get('logits_cosine_min', float('nan')):>10.6f}{lm.get('top1_agreement', float('nan')):>7.3f}"
          f"{(lc.get('held_peak_bytes') or 0)/2**30:>9.2f}{(r['meta'].get('device_limit') or {}).get('bytes', 0)/2**30:>7.2f}  {codecs} ahead {st.get('restores_ahead')}/{st.get('restores')} problems {len(r.get('problems') or [])}")
PY
