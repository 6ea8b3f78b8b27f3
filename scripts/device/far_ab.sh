#!/usr/bin/env bash
# A/B of two builds under limits, in one call of at most ~9 minutes: each row's workload runs
# natively once (its outputs and metrics the reference), then under build A (.dev/base) and
# build B (.dev) in the order A B (B A for every other row), each with its stats, in MODE
# (lossless); every ltshim run's outputs are compared with native's (torch.equal on every
# tensor: a lossy row that is not exact says False, and its metrics file holds what it gives). ROWS lists
# workload:limit-bytes:metric[:extra args, commas for spaces]; a row that would start after
# DEADLINE seconds (480) is left out. ONE file comes back, $OUT/far_ab.tar.gz; a table last.
# Expects .dev/ltshim + .dev/libltshim.so (B) and .dev/base/ltshim + .dev/base/libltshim.so (A).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/far_ab; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
ROWS=${ROWS:-"train:6214962380:steps_per_s train:5438092083:steps_per_s two_models:3354991001:switches_per_s sparse_mlp:1777886822:steps_per_s infer:5727289344:decode_tokens_per_s:--params,3b,--tokens,16"}
for b in base/ltshim ltshim; do timeout 120 .dev/$b run -- true > /dev/null 2>&1; done  # kernels into the cache
START=$(date +%s); i=0
for row in $ROWS; do
  IFS=: read -r wl lim metric extra <<< "$row"; extra=${extra//,/ }
  [ $(( $(date +%s) - START )) -gt ${DEADLINE:-480} ] && { echo "$wl $lim: left out (past DEADLINE)" >> $W/summary.txt; continue; }
  tag=${wl}_$lim; i=$((i + 1))
  timeout 200 python3 harness/workloads/$wl.py $extra --out $W/${tag}_native.pt --metrics $W/${tag}_native.json > $W/${tag}_native.log 2>&1
  order="base/ltshim ltshim"; [ $((i % 2)) = 0 ] && order="ltshim base/ltshim"
  for b in $order; do
    k=$([ $b = ltshim ] && echo B || echo A)
    LTSHIM_STATS=$W/${tag}_$k.stats.json timeout 200 .dev/$b run --mode ${MODE:-lossless} --device-limit $lim -- \
      python3 harness/workloads/$wl.py $extra --out $W/${tag}_$k.pt --metrics $W/${tag}_$k.json > $W/${tag}_$k.log 2>&1
    echo "$tag $k exit $?" >> $W/summary.txt
  done
  python3 - "$W" "$tag" "$metric" >> $W/table.txt 2>&1 <<'PY'
import json, sys, torch
w, tag, metric = sys.argv[1:]
def load(k):
    try: return torch.load(f"{w}/{tag}_{k}.pt"), json.load(open(f"{w}/{tag}_{k}.json"))
    except Exception as e: return None, None
nat, nm = load("native")
for k in "AB":
    out, m = load(k)
    try: s = json.load(open(f"{w}/{tag}_{k}.stats.json"))["packing"]
    except Exception: s = {}
    exact = out is not None and nat is not None and out.keys() == nat.keys() and all(torch.equal(out[x], nat[x]) if torch.is_tensor(nat[x]) else out[x] == nat[x] for x in nat)
    speed = (m[metric] / nm[metric]) if m and nm else float("nan")
    enc = sum(s.get("encoded_bytes_by_cause", {}).values()) / 1e9
    print(f"{tag:<26}{k} {metric} {m[metric] if m else float('nan'):9.3f} native {nm[metric] if nm else float('nan'):9.3f} = {speed:5.2f}x  exact {exact}  "
          f"packs {s.get('packs')} restores {s.get('restores')} far {s.get('copies_moved_far')} moved {s.get('copies_moved_to_host')} "
          f"encoded {enc:.1f} GB host_move {s.get('host_move_host_ns', 0) / 1e9:.2f} s held {s.get('held_peak_bytes', 0) / 2**30:.2f} GiB host_peak {s.get('host_copies_peak_bytes', 0) / 2**30:.2f} GiB over {s.get('over_limit_peak_bytes')}")
PY
  rm -f $W/*.pt
  tar -C /tmp -czf $OUT/far_ab.tar.gz far_ab
done
tar -C /tmp -czf $OUT/far_ab.tar.gz far_ab
cat $W/summary.txt; cat $W/table.txt
