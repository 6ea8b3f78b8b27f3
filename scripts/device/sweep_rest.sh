#!/usr/bin/env bash
# The rows of issue 11's sweep table (acceptance 3) that earlier sessions left out or stopped
# at, in one call of at most ~9 minutes: each workload's sweep (`compare.py --limits`, one
# native run, then ltshim at each limit, lowest last) in lossless and lossy, each step with its
# own timeout and its table printed as it ends. LL_* and LY_* name the limits of each workload
# in lossless and lossy (empty: left out; infer and libs_mix are left out unless named); a step
# that would start after DEADLINE seconds (540) is left out, so the call ends with its tar.
# Expects .dev/ltshim and .dev/libltshim.so.
# Everything goes into ONE file, $OUT/sweep_rest.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/sweep_rest; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
START=$(date +%s)
run() {  # workload mode limits timeout-per-run
  [ -z "$3" ] && return
  [ $(( $(date +%s) - START )) -gt ${DEADLINE:-540} ] && { echo "== $1 $2 at $3: left out (past DEADLINE)"; return; }
  echo "== $1 $2 at $3"
  timeout $((${4} * 4 + 60)) python3 harness/compare.py --ltshim .dev/ltshim --workload $1 --mode $2 --limits $3 --timeout $4 \
      --out $W/$1_$2 > $W/$1_$2.txt 2>&1
  echo "exit $?"; cat $W/$1_$2/sweep.md 2>/dev/null | grep -E "^\|" | head -8 || tail -3 $W/$1_$2.txt
  find $W -name "outputs_*.pt" -delete
  tar -C /tmp -czf $OUT/sweep_rest.tar.gz sweep_rest  # after each step: a later limit loses nothing
}
run train lossy "${LY_TRAIN-80,70}" 90
run vision lossy "${LY_VISION-70,60}" 60
run two_models lossy "${LY_TWO-80,70}" 60
run sparse_mlp lossy "${LY_SPARSE-40}" 50
run vision lossless "${LL_VISION-60}" 60
run two_models lossless "${LL_TWO-70}" 60
run train lossless "${LL_TRAIN-70}" 90
run sparse_mlp lossless "${LL_SPARSE-30}" 50
run infer lossless "${LL_INFER-}" 120
run infer lossy "${LY_INFER-}" 120
run libs_mix lossless "${LL_LIBS-}" 120
run libs_mix lossy "${LY_LIBS-}" 120
