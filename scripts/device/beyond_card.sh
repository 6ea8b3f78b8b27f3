#!/usr/bin/env bash
# More weights than the card holds, with no limit set (the card is the limit): the synthetic
# `beyond_card.py` (1.15x the card in 1 GiB bf16 tensors, each used by a GEMV, then PASSES
# passes over all of them) and the random 77B Llama decode (`infer.py --params 77b`, 155 GB of
# bf16), each natively once (expected: out of memory) and under `ltshim run --mode lossless`
# once for each of AHEAD (the working-ahead thread's knobs, LTSHIM_PACK_AHEAD and
# LTSHIM_RESTORE_AHEAD, both on or both off: "on off on" alternates them), with the library's
# stats (SYNTH=0 or INFER=0 leaves either out). A step that would start after DEADLINE seconds (480) is left out. Expects
# .dev/ltshim and .dev/libltshim.so. ONE file comes back, $OUT/beyond_card.tar.gz; a short
# table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/beyond_card; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
START=$(date +%s)
step() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  if [ $(( $(date +%s) - START )) -gt ${DEADLINE:-480} ]; then echo "$name: left out (past DEADLINE)" >> $W/summary.txt; return; fi
  local t0=$(date +%s.%N)
  timeout $limit "$@" > $W/$name.txt 2>&1
  local rc=$?
  printf "%-24s exit %3d %6.1f s  %s\n" $name $rc $(awk "BEGIN{print $(date +%s.%N) - $t0}") "$(grep -E "out of memory|OutOfMemory|beyond_card:|ltshim: physical" $W/$name.txt | tail -1 | cut -c1-240)" >> $W/summary.txt
  tar -C /tmp -czf $OUT/beyond_card.tar.gz beyond_card
}
lossless() {  # name timeout ahead command...
  local name=$1 limit=$2 ahead=$3; shift 3
  step $name $limit env LTSHIM_PACK_AHEAD=$ahead LTSHIM_RESTORE_AHEAD=$ahead LTSHIM_STATS=$W/${name}_stats.json .dev/ltshim run --mode lossless -- "$@" --metrics $W/$name.json
}
BC="python3 harness/workloads/beyond_card.py --passes ${PASSES:-3}"
INF="python3 harness/workloads/infer.py --params 77b --tokens ${TOKENS:-8} --prompt-len 64"
[ "${SYNTH:-1}" = 1 ] && step synthetic_native 150 $BC --metrics $W/synthetic_native.json
i=0; [ "${SYNTH:-1}" = 1 ] && for a in ${AHEAD:-on off on}; do i=$((i+1)); lossless synthetic_${a}_$i ${SYN_TIMEOUT:-240} $a $BC; done
[ "${INFER:-1}" = 1 ] && step infer77_native 150 $INF --metrics $W/infer77_native.json
i=0; [ "${INFER:-1}" = 1 ] && for a in ${AHEAD:-on off on}; do i=$((i+1)); lossless infer77_${a}_$i ${INF_TIMEOUT:-300} $a $INF --out $W/infer77_${a}_$i.pt; done
for f in $W/infer77_*.pt; do [ -f $f ] && python3 -c "
import torch; d = torch.load('$f')
print('$(basename $f .pt): logits after generation equal to the first forward\'s:', torch.equal(d['logits'], d['logits_first']))" >> $W/summary.txt 2>&1; done
rm -f $W/*.pt
for s in $W/*_stats.json; do [ -f $s ] && .dev/ltshim stats $s > ${s%.json}.txt 2>&1; done
tar -C /tmp -czf $OUT/beyond_card.tar.gz beyond_card
python3 - $W <<'PY'
import json, os, sys
w = sys.argv[1]
print(f"{'run':24} {'result':48} {'packs':>6} {'restores':>8} {'ahead r':>7} {'pack/restore host s':>20}")
for name in sorted(f[:-5] for f in os.listdir(w) if f.endswith(".json") and not f.endswith("_stats.json")):
    m = json.load(open(f"{w}/{name}.json"))
    if "pass_s" in m:
        res = f"passes {', '.join(f'{s:.2f}' for s in m['pass_s'])} s, exact {m['exact']}"
    else:
        res = f"prefill {m['prefill_tokens_per_s']:.1f}, decode {m['decode_tokens_per_s']:.3f} tok/s"
    try:
        p = json.load(open(f"{w}/{name}_stats.json"))["packing"]
        st = f"{p['packs']:>6} {p['restores']:>8} {p['restores_ahead']:>7} {p['pack_host_ns'] / 1e9:>9.2f} / {p['restore_host_ns'] / 1e9:.2f}"
    except (OSError, KeyError):
        st = ""
    print(f"{name:24} {res:48} {st}")
    if "decode_tokens_per_s" in m and st:
        print(f"{'':24} restores a step: {p['restores_per_step']}")
PY
cat $W/summary.txt
