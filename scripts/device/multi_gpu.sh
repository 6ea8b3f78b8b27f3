#!/usr/bin/env bash
# Issue 13's acceptance on a machine with two GPUs (kind nvidia-h200-x2); not yet run (no such
# machine was lent when it was written). NVLink multicast stays off (the machine requires it;
# the harness also sets these for every run it starts).
#  1. DDP training of the harness's train workload, torchrun --nproc-per-node 2, lossless, down
#     LIMITS (90,80 % of rank 0's native NVML peak; each rank gets the limit): losses and final
#     weights must be bit-identical with the native 2-GPU run.
#  2. The 3B model split over the two GPUs (infer.py --devices 2, a pipeline through
#     accelerate's device map), lossy at LIMIT (70%) of device 0's native peak: fidelity and
#     decode tokens/s against native.
#  3. A rank killed mid-run: the other must fail as natively (timeout, not a hang past it).
# Expects .dev/ltshim and .dev/libltshim.so. ONE file comes back, $OUT/multi_gpu.tar.gz.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/multi_gpu; rm -rf $W; mkdir -p $W
cd "$(dirname "$0")/../.."
nvidia-smi -L | tee $W/gpus.txt
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
TR="torchrun --standalone --nproc-per-node 2"
timeout ${DDP_TIMEOUT:-400} python3 harness/compare.py --ltshim .dev/ltshim --mode lossless --limits ${LIMITS:-90,80} --keep-going --timeout 150 \
  --out $W/ddp -- $TR harness/workloads/train.py --out {outputs} --metrics {metrics} > $W/ddp.txt 2>&1
echo "ddp sweep exit $?"; tail -12 $W/ddp.txt
timeout ${INFER_TIMEOUT:-300} python3 harness/compare.py --ltshim .dev/ltshim --workload infer --workload-args "--params 3b --tokens 32 --devices 2" \
  --mode lossy --device-limit ${LIMIT:-70%} --min-cosine 0.999 --min-top1 0.99 --repeat ${REPEAT:-2} --out $W/pipeline > $W/pipeline.txt 2>&1
echo "pipeline exit $?"; grep -E "decode_tokens_per_s|cosine|top1|held" $W/pipeline/report.md | head -8
# a rank killed: rank 1 exits at its second step; rank 0 must end (NCCL's own timeout/error)
cat > /tmp/kill_rank.py <<'PY'
import os, sys, torch, torch.distributed as dist
rank = int(os.environ["RANK"]); torch.cuda.set_device(rank)
dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
x = torch.ones(64 << 20, device="cuda")
for step in range(4):
    if rank == 1 and step == 2:
        os._exit(7)
    dist.all_reduce(x)
    torch.cuda.synchronize()
print("rank", rank, "finished")
PY
for how in native ltshim; do
  run=""; [ $how = ltshim ] && run=".dev/ltshim run --device-limit 1GiB --"
  t0=$(date +%s); timeout 180 $run $TR /tmp/kill_rank.py > $W/kill_$how.txt 2>&1; rc=$?
  echo "killed rank, $how: exit $rc after $(( $(date +%s) - t0 )) s"
done
find $W -name "*.pt" -delete; find $W -name "*.png" -delete
tar -C /tmp -czf $OUT/multi_gpu.tar.gz multi_gpu
