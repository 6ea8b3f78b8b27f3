#!/usr/bin/env bash
# The 3B decode, ROUNDS (5) rounds of the KINDS (native lossless lossy) in an order that
# rotates each round, every process pinned to CORES (2-9): with no limit (acceptance 5: as fast
# as native, outputs bit-identical, the library's own time against each process's wall time),
# or with LIMIT_BYTES set (LTSHIM_DEVICE_LIMIT for the library's runs; the natives run
# unlimited). infer.py directly, TOKENS (32) tokens; the prompt's logits after generation
# compared with the first native run's (bit-exact, or cosine and top-1). TAG names the run.
# A kind ending in _base (lossy_base) runs that mode under build A, .dev/base/ltshim: an A/B
# of two builds in the same rotation; one ending in _h0 (lossy_h0) runs it with
# LTSHIM_HOST_COPIES=0 (no packed copy in host memory).
# ONE file comes back, $OUT/infer_rounds_$TAG.tar.gz; a table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; TAG=${TAG:-nolimit}; W=/tmp/infer_rounds_$TAG; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
CORES=${CORES:-2-9}
read -r -a kinds <<< "${KINDS:-native lossless lossy}"
n=${#kinds[@]}
for b in .dev/ltshim .dev/base/ltshim; do [ -x $b ] && timeout 120 $b run -- true > /dev/null 2>&1; done  # the kernels into the cache
# WARMUP (1) native runs first, not counted: the first process of a call ran slowest in every
# call of P89 (0.49-0.66x for the kind that rotation put first), whatever the kind
for r in $(seq 1 ${WARMUP:-1}); do
  timeout ${RUN_TIMEOUT:-120} taskset -c $CORES python3 harness/workloads/infer.py --params 3b --tokens ${TOKENS:-32} > $W/warmup_$r.txt 2>&1
done
for r in $(seq 1 ${ROUNDS:-5}); do
  for j in $(seq 0 $((n - 1))); do
    k=${kinds[$(( (r + j) % n ))]}
    a=$(date +%s.%N)
    args="harness/workloads/infer.py --params 3b --tokens ${TOKENS:-32} --out $W/out_${k}_$r.pt --metrics $W/metrics_${k}_$r.json"
    if [ $k = native ]; then
      timeout ${RUN_TIMEOUT:-120} taskset -c $CORES python3 $args > $W/run_${k}_$r.txt 2>&1
    else
      lim=(); [ -n "${LIMIT_BYTES:-}" ] && lim=(--device-limit $LIMIT_BYTES)
      mode=${k%_base}; bin=.dev/ltshim; [ $mode != $k ] && bin=.dev/base/ltshim
      host=(); [ ${mode%_h0} != $mode ] && { mode=${mode%_h0}; host=(LTSHIM_HOST_COPIES=0); }
      env "${host[@]}" LTSHIM_STATS=$W/stats_${k}_$r.json timeout ${RUN_TIMEOUT:-120} taskset -c $CORES $bin run --mode $mode "${lim[@]}" -- python3 $args > $W/run_${k}_$r.txt 2>&1
    fi
    echo "$k $r $? $a $(date +%s.%N)" >> $W/walls.txt
  done
done
python3 - $W > $W/summary.txt 2>&1 <<'PY'
import glob, json, os, statistics, sys
import torch
sys.path.insert(0, "harness")
from ltharness import fidelity
w = sys.argv[1]
runs = [l.split() for l in open(f"{w}/walls.txt")]
ref = None
for k, r, rc, a, b in runs:
    if k == "native" and rc == "0":
        ref = torch.load(f"{w}/out_native_{r}.pt"); break
by = {}
for k, r, rc, a, b in runs:
    row = {"round": int(r), "rc": int(rc), "wall": float(b) - float(a)}
    m = f"{w}/metrics_{k}_{r}.json"
    if os.path.exists(m):
        row["tok_s"] = json.load(open(m))["decode_tokens_per_s"]
    o = f"{w}/out_{k}_{r}.pt"
    if os.path.exists(o) and ref is not None:
        out = torch.load(o)
        row["exact"] = bool(torch.equal(out["logits"], ref["logits"]) and torch.equal(out["generated"], ref["generated"]))
        lm = fidelity.language_model(ref, out)
        row["cos"], row["top1"] = lm["logits_cosine_min"], lm["top1_agreement"]
    s = f"{w}/stats_{k}_{r}.json"
    if os.path.exists(s):
        st = json.load(open(s))
        row["lib_pct"] = 100 * st["time_in_library_ns"] / 1e9 / row["wall"]
        p = st.get("packing") or {}
        row["held_gib"] = (p.get("held_peak_bytes") or 0) / 2**30
        row["packs"], row["restores"] = p.get("packs"), p.get("restores")
    by.setdefault(k, []).append(row)
    print(k, row)
nat = [x["tok_s"] for x in by.get("native", []) if "tok_s" in x]
print()
print(f"{'kind':<10}{'median tok/s':>13}{'range':>16}{'x native':>9}  exact / cos min / top1 / library % of wall / held GiB")
for k, rows in by.items():
    t = [x["tok_s"] for x in rows if "tok_s" in x]
    if not t: print(k, "no completed run"); continue
    ratio = statistics.median(t) / statistics.median(nat) if nat else float("nan")
    print(f"{k:<10}{statistics.median(t):>13.2f}{min(t):>8.2f}-{max(t):<7.2f}{ratio:>9.3f}  {[x.get('exact') for x in rows]} "
          f"{min((x.get('cos', 1.0) for x in rows), default=None):.6f} {min((x.get('top1', 1.0) for x in rows), default=None):.4f} "
          f"{[round(x['lib_pct'], 2) for x in rows if 'lib_pct' in x]} {[round(x['held_gib'], 2) for x in rows if 'held_gib' in x]}")
PY
rm -f $W/out_*.pt
tar -C /tmp -czf $OUT/infer_rounds_$TAG.tar.gz infer_rounds_$TAG
tail -5 $W/summary.txt
