#!/usr/bin/env bash
# Sweep rows rerun on a new build to see the library's held peak against the limit: sparse_mlp
# in lossless at 50% of its native peak (REPEAT alternating runs: acceptance 1 of issue 11)
# and the training workload in lossless at 80%. ONE file comes back,
# $OUT/limit_rows.tar.gz; a short table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/limit_rows; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
timeout ${SPARSE_TIMEOUT:-150} python3 harness/compare.py --ltshim .dev/ltshim --workload sparse_mlp --mode lossless --device-limit 50% \
  --repeat ${REPEAT:-2} --warmup 0 --out $W/sparse_mlp > $W/sparse_mlp.txt 2>&1; echo "sparse_mlp lossless 50% exit $?" >> $W/summary.txt
timeout ${TRAIN_TIMEOUT:-150} python3 harness/compare.py --ltshim .dev/ltshim --workload train --mode lossless --limits 80 --timeout 90 \
  --out $W/train > $W/train.txt 2>&1; echo "train lossless 80% exit $?" >> $W/summary.txt
find $W -name "*.pt" -delete; find $W -name "*.png" -delete
tar -C /tmp -czf $OUT/limit_rows.tar.gz limit_rows
cat $W/summary.txt
grep -E "^\| (wall time|steps_per_s|peak GPU)|bit-exact|^\| [12] \|" $W/sparse_mlp/report.md 2>/dev/null | head -8
grep -E "^\| 80%" $W/train/sweep.md 2>/dev/null | cut -c1-400
