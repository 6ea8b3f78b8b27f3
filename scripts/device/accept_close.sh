#!/usr/bin/env bash
# The closing runs of a session on the GPU machine, in one call of at most ~9 minutes, each
# step with its own timeout and printed as it ends (nothing is lost to a later step's limit):
#   0. compute-sanitizer memcheck, racecheck and synccheck on `ltshim bench --size 2 --rows
#      lossless` (the kernels as built, every block checked against the CPU inside bench);
#   1. the 3B decode in lossless at 70% (bit-exact, speed), one run against one native;
#   2. the same in lossy with LTSHIM_INT8_GROUP=16 (fidelity after generation);
#   3. the lossy sweep of the 3B decode at LOSSY_LIMITS (60,50) of the native peak;
#   4. the lossless sweep of sparse_mlp at SPARSE_LIMITS (40,30);
#   5. with no limit, a loop of 200,000 tiny launches (`observe_mix.py --only-small-launches`,
#      the median of 3 loops a process): native, .dev/base/ltshim (when there) and .dev/ltshim
#      in lossless, 3 processes each, alternating.
# Expects .dev/ltshim and .dev/libltshim.so (README, "Testing without a GPU"). Everything,
# less the outputs' logits files, goes into ONE file, $OUT/accept_close.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/accept_close; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
C="python3 harness/compare.py --ltshim .dev/ltshim"
INFER=(--workload infer --workload-args "--params 3b --tokens 32")
show() { grep -E "decode_tokens_per_s|steps_per_s|wall time|cosine|bit-exact|held peak|by codec|Verdict|problem|lowest|^\|.*%" "$1" 2>/dev/null | head -${2:-8}; }
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
for tool in memcheck racecheck synccheck; do
  LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 .dev/ltshim bench --size 2 --rows lossless > $W/sanitizer_$tool.txt 2>&1
  echo "== 0. $tool exit $? (0 clean, 9 errors)"; grep -E "(ERROR|RACECHECK) SUMMARY|MISMATCH" $W/sanitizer_$tool.txt | head -2
done
echo "== 1. infer lossless 70%"
timeout 150 $C "${INFER[@]}" --mode lossless --device-limit 70% --repeat 1 --warmup 0 --out $W/lossless > $W/lossless.txt 2>&1; echo "exit $?"; show $W/lossless/report.md
echo "== 2. infer lossy 70%, LTSHIM_INT8_GROUP=16"
LTSHIM_INT8_GROUP=16 timeout 150 $C "${INFER[@]}" --mode lossy --device-limit 70% --min-cosine 0.999 --min-top1 0.99 --repeat 1 --warmup 0 --out $W/lossy_g16 > $W/lossy_g16.txt 2>&1; echo "exit $?"; show $W/lossy_g16/report.md
echo "== 3. infer lossy sweep ${LOSSY_LIMITS:-60,50}"
timeout 260 $C "${INFER[@]}" --mode lossy --limits ${LOSSY_LIMITS:-60,50} --min-cosine 0.999 --min-top1 0.99 --timeout 100 --out $W/sweep_infer > $W/sweep_infer.txt 2>&1; echo "exit $?"; cat $W/sweep_infer/sweep.md 2>/dev/null | head -12
echo "== 4. sparse_mlp lossless sweep ${SPARSE_LIMITS:-40,30}"
timeout 120 $C --workload sparse_mlp --mode lossless --limits ${SPARSE_LIMITS:-40,30} --timeout 50 --out $W/sweep_sparse > $W/sweep_sparse.txt 2>&1; echo "exit $?"; cat $W/sweep_sparse/sweep.md 2>/dev/null | head -12
echo "== 5. small launches (us a launch; native, base, new)"
for i in 1 2 3; do
  python3 harness/workloads/observe_mix.py --only-small-launches --small-launches 200000 2>&1 | grep small-launch | sed "s/^/native /"
  [ -x .dev/base/ltshim ] && .dev/base/ltshim run --mode lossless -- python3 harness/workloads/observe_mix.py --only-small-launches --small-launches 200000 2>&1 | grep small-launch | sed "s/^/base /"
  .dev/ltshim run --mode lossless -- python3 harness/workloads/observe_mix.py --only-small-launches --small-launches 200000 2>&1 | grep small-launch | sed "s/^/new /"
done | tee $W/small.txt
find $W -name "outputs_*.pt" -delete
tar -C /tmp -czf $OUT/accept_close.tar.gz accept_close
