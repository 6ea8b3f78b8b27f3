#!/usr/bin/env bash
# Kept copies of survivors (docs/ARCHITECTURE.md): the 3B decode under 5690 MiB (about 70% of
# its native peak, as in P18-P25), two builds alternating, each run's restores per step, bytes
# at the end and encodes by cause. Expects the builds' `ltshim` and `libltshim.so` in $NEW
# (default .dev) and $OLD (default .dev/old); RUNS names the runs (build:mode ...).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
NEW=${NEW:-.dev}; OLD=${OLD:-.dev/old}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" 2>&1 | tail -1
i=0
for run in ${RUNS:-new:lossless old:lossless new:lossy old:lossy}; do
  b=${run%%:*}; m=${run##*:}; i=$((i + 1)); dir=$NEW; [ "$b" = old ] && dir=$OLD
  s=$OUT/${i}_${b}_$m.json; t0=$(date +%s)
  timeout ${PER:-140} $dir/ltshim run --mode $m --device-limit 5690MiB --stats $s -- python3 harness/workloads/infer.py --params 3b --tokens 32 > /tmp/log_$i.txt 2>&1
  echo "$i $b $m exit $? $(( $(date +%s) - t0 )) s"; grep -E "^infer:|^ltshim: physical" /tmp/log_$i.txt | cut -c1-200
  [ -f $s ] && python3 - "$s" <<'PY'
import json, statistics, sys
p = json.load(open(sys.argv[1]))['packing']; r = p['restores_per_step']; g = lambda k: round(p[k] / 1e9, 2)
print('  restores a step median', statistics.median(r) if r else None, 'last', r[-5:], '; at the end resident', g('resident_bytes'),
      'packed', g('packed_bytes'), 'standing for', g('packed_original_bytes'), 'GB; packs', p['packs'], 'reused', p['packs_reused_copy'])
print('  encoded by cause', p.get('encoded_bytes_by_cause'), 'copies discarded', p.get('copies_discarded_bytes'))
PY
done
