#!/usr/bin/env bash
# Acceptance 6 of issue 11: the libs_mix workload (cuFFT, cuSOLVER, cuSPARSE, random, foreach,
# a side stream, torch.compile, a captured graph) in lossless down a sweep of LIMITS
# (80,60,50,40,30 % of its native peak), MIB (64) per phase. ONE file comes back,
# $OUT/libs_mix_sweep.tar.gz; the sweep's table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/libs_mix_sweep; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
timeout ${SWEEP_TIMEOUT:-500} python3 harness/compare.py --ltshim .dev/ltshim --workload libs_mix --workload-args "--mib ${MIB:-64}" --mode lossless \
  --limits ${LIMITS:-80,60,50,40,30} --timeout 120 --out $W/sweep > $W/sweep.txt 2>&1
echo "libs_mix sweep exit $?"
rm -f $W/sweep/outputs_*.pt
tar -C /tmp -czf $OUT/libs_mix_sweep.tar.gz libs_mix_sweep
tail -25 $W/sweep.txt
