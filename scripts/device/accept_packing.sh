#!/usr/bin/env bash
# Issue 11 on the GPU machine, part STEP (1-5). Expects .dev/ (libltshim.so, ltshim, and
# the ltgpu GPU test binary as .dev/ltgpu_gpu_tests). Writes logs under $OUT/packing.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/ltp; mkdir -p $W
export PYTHONUNBUFFERED=1 HARNESS_NO_NVML=${HARNESS_NO_NVML:-}
C="python3 harness/compare.py --ltshim .dev/ltshim"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $W/gpu.txt
if [ "${STEP:-1}" = 1 ]; then
  # a smoke run of the engine itself: torch under a limit, outputs compared inside
  cat > $W/smoke.py <<'PY'
import torch, sys
torch.manual_seed(0)
xs = [torch.relu(torch.randn(128 << 20, device="cuda", dtype=torch.bfloat16)) for _ in range(8)]   # 8 x 256 MiB, half zeros
ref = [x.sum().item() for x in xs]
ys = [torch.randn(16 << 20, device="cuda") for _ in range(4)]
for _ in range(3):
    got = [x.sum().item() for x in xs]
assert got == ref, (got, ref)
print("smoke ok", torch.cuda.mem_get_info())
PY
  LTSHIM_LOG=info LTSHIM_STATS=$W/smoke.json LTSHIM_DEVICE_LIMIT=2000MiB timeout 120 .dev/ltshim run -- python3 $W/smoke.py > $W/smoke.txt 2>&1; echo "smoke exit $?"
  tail -5 $W/smoke.txt
  python3 -c "import json;p=json.load(open('$W/smoke.json'))['packing'];print({k:p[k] for k in ('packs','restores','held_peak_bytes','limit_bytes','bytes_in_by_codec','bytes_out_by_codec','packs_refused','restores_over_limit')})"
  for pct in ${LIMITS:-80 50}; do
    $C --workload sparse_mlp --mode lossless --device-limit $pct% --repeat ${REPEAT:-1} --warmup 1 --out $W/acc1_$pct > $W/acc1_$pct.txt 2>&1; echo "acc1 sparse_mlp $pct% exit $?"
    grep -E "held peak|packs / restores|by codec|peak GPU|wall|Verdict|bit-exact|failed|over the limit" $W/acc1_$pct/report.md | head -14
    grep "ltshim\[" $W/acc1_$pct/log_ltshim_1.txt | head -5
  done
fi
if [ "${STEP:-1}" = 2 ]; then
  $C --workload infer --workload-args "--params 3b --tokens 32" --mode lossy --device-limit 70% --min-cosine 0.999 --min-top1 0.99 --repeat ${REPEAT:-2} --warmup 1 --out $W/acc2 > $W/acc2.txt 2>&1; echo "acc2 infer exit $?"
  grep -E "held peak|packs / restores|by codec|peak GPU|wall|decode_tokens|Verdict|cosine|failed|over the limit|restores per step" $W/acc2/report.md | head -20; grep "ltshim\\[" $W/acc2/log_ltshim_1.txt | head -5
fi
if [ "${STEP:-1}" = 3 ]; then
  # no limit: lossless (the default) against native, alternating (nothing needs packing)
  $C --workload infer --workload-args "--params 3b --tokens 32" --mode lossless --repeat 3 --warmup 1 --out $W/nolimit > $W/nolimit.txt 2>&1; echo "nolimit infer exit $?"
  grep -E "peak GPU|wall|decode_tokens|bit-exact|time in library|Verdict|failed" $W/nolimit/report.md | head -12
  python3 -c "
import json,glob
for f in sorted(glob.glob('$W/nolimit/ltshim_stats_ltshim_*.json')):
    s=json.load(open(f)); print(f.split('/')[-1], 'time_in_library_ns', s['time_in_library_ns'], 'packs', s['packing']['packs'], 'vmm', s['packing']['vmm_buffers'], 'alloc_host_ns', s['packing']['alloc_host_ns'])"
  # the lowest lossless limit for sparse_mlp
  $C --workload sparse_mlp --mode lossless --limits 80,70,60 --warmup 1 --out $W/sweep_sparse > $W/sweep_sparse.txt 2>&1; echo "sweep sparse exit $?"
  cat $W/sweep_sparse/sweep.md 2>/dev/null | head -20
  # lossy at 70% with G = 16 (the accurate group size)
  LTSHIM_INT8_GROUP=16 $C --workload infer --workload-args "--params 3b --tokens 32" --mode lossy --device-limit 70% --min-cosine 0.999 --min-top1 0.99 --repeat 1 --warmup 1 --out $W/acc2g16 > $W/acc2g16.txt 2>&1; echo "acc2 G=16 exit $?"
  grep -E "held peak|packs / restores|by codec|peak GPU|wall|decode_tokens|cosine|restores per step|over the limit" $W/acc2g16/report.md | head -14
fi
if [ "${STEP:-1}" = 4 ]; then
  # the kernels' tests, then the cubin into the cache (so no run below pays the compile)
  [ "${GPU_TESTS:-1}" = 1 ] && LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} LTGPU_REQUIRE_GPU=1 timeout 200 .dev/ltgpu_gpu_tests --test-threads 1 2>&1 | grep -E "^test |test result" | tee $W/gpu_tests.txt
  .dev/ltshim run -- true > /dev/null 2>&1
  # where the time goes under a limit: the engine's host-time split from the stats
  LTSHIM_LOG=info $C --workload sparse_mlp --mode lossless --device-limit 50% --repeat 1 --warmup 1 --out $W/p_sparse > $W/p_sparse.txt 2>&1; echo "sparse 50% exit $?"
  grep -E "held peak|peak GPU|wall|bit-exact|Verdict" $W/p_sparse/report.md | head -8
  grep -E "parameter layout|ltshim\[" $W/p_sparse/log_ltshim_1.txt | sort | uniq -c | head -12
  for m in lossy lossless; do
    $C --workload infer --workload-args "--params 3b --tokens 32" --mode $m --device-limit 70% --repeat 1 --warmup 1 --out $W/p_infer_$m > $W/p_infer_$m.txt 2>&1; echo "infer $m 70% exit $?"
    grep -E "held peak|peak GPU|wall|decode_tokens|cosine|top1|bit-exact|restores per step" $W/p_infer_$m/report.md | head -10
  done
  # the same lossless run without packing ahead (A/B of LTSHIM_PACK_AHEAD)
  LTSHIM_PACK_AHEAD=off $C --workload infer --workload-args "--params 3b --tokens 32" --mode lossless --device-limit 70% --repeat 1 --warmup 0 --out $W/p_infer_noahead > $W/p_infer_noahead.txt 2>&1; echo "infer lossless 70% without packing ahead exit $?"
  grep -E "decode_tokens|bit-exact" $W/p_infer_noahead/report.md | head -3
  python3 - "$W" <<'PY'
import json, glob, sys
for f in sorted(glob.glob(sys.argv[1] + '/p_*/ltshim_stats_ltshim_*.json')):
    s = json.load(open(f)); p = s['packing']
    ms = lambda k: round(p.get(k, 0) / 1e6, 1)
    print(f.split('/')[-2], 'lib ms', round(s['time_in_library_ns'] / 1e6, 1), 'packs', p['packs'], 'reused', p['packs_reused_copy'], 'restores', p['restores'],
          'pack ms', ms('pack_host_ns'), 'restore ms', ms('restore_host_ns'), 'wait ms', ms('wait_host_ns'), 'vmm ms', ms('vmm_host_ns'), 'codec ms', ms('codec_host_ns'),
          'ctx syncs', p.get('context_syncs'), 'alloc ms', ms('alloc_host_ns'), 'over', p['restores_over_limit'], 'ahead', p.get('packs_ahead'))
PY
fi
if [ "${STEP:-1}" = 5 ]; then
  # restores ahead: the kernels' tests (the encoder's room check), then under a limit the
  # 3B model with restores ahead (the default) against LTSHIM_RESTORE_AHEAD=off, lossy too
  [ "${GPU_TESTS:-1}" = 1 ] && LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} LTGPU_REQUIRE_GPU=1 timeout 200 .dev/ltgpu_gpu_tests --test-threads 1 2>&1 | grep -E "^test |test result" | tee $W/gpu_tests.txt
  .dev/ltshim run -- true > /dev/null 2>&1
  $C --workload sparse_mlp --mode lossless --device-limit 50% --repeat 1 --warmup 1 --out $W/p_sparse > $W/p_sparse.txt 2>&1; echo "sparse 50% exit $?"
  grep -E "held peak|peak GPU|wall|bit-exact|Verdict|over the limit" $W/p_sparse/report.md | head -8
  A="--params 3b --tokens 32"
  $C --workload infer --workload-args "$A" --mode lossless --device-limit 70% --repeat ${REPEAT:-2} --warmup 1 --out $W/p_infer_lossless > $W/p_infer_lossless.txt 2>&1; echo "infer lossless 70% exit $?"
  grep -E "held peak|wall|decode_tokens|bit-exact|restores per step|over the limit" $W/p_infer_lossless/report.md | head -8
  LTSHIM_RESTORE_AHEAD=off $C --workload infer --workload-args "$A" --mode lossless --device-limit 70% --repeat 1 --warmup 0 --out $W/p_infer_noahead > $W/p_infer_noahead.txt 2>&1; echo "infer lossless 70% LTSHIM_RESTORE_AHEAD=off exit $?"
  grep -E "decode_tokens|bit-exact" $W/p_infer_noahead/report.md | head -3
  $C --workload infer --workload-args "$A" --mode lossy --device-limit 70% --min-cosine 0.999 --min-top1 0.99 --repeat ${REPEAT:-2} --warmup 0 --out $W/p_infer_lossy > $W/p_infer_lossy.txt 2>&1; echo "infer lossy 70% exit $?"
  grep -E "held peak|wall|decode_tokens|cosine|top-1|restores per step|over the limit" $W/p_infer_lossy/report.md | head -8
  python3 - "$W" <<'PY'
import json, glob, sys
for f in sorted(glob.glob(sys.argv[1] + '/p_*/ltshim_stats_ltshim_*.json')):
    s = json.load(open(f)); p = s['packing']
    ms = lambda k: round(p.get(k, 0) / 1e6, 1)
    print(f.split('/')[-2], f.split('_')[-1], 'lib ms', round(s['time_in_library_ns'] / 1e6, 1), 'packs', p['packs'], 'reused', p['packs_reused_copy'], 'ahead', p.get('packs_ahead'),
          'restores', p['restores'], 'ahead', p.get('restores_ahead'), 'restore ms', ms('restore_host_ns'), 'vmm ms', ms('vmm_host_ns'), 'codec ms', ms('codec_host_ns'),
          'thread ms', ms('ahead_host_ns'), 'held peak', p['held_peak_bytes'], 'limit', p['limit_bytes'], 'over', p['restores_over_limit'], 'no room', p.get('packs_no_room'))
    print('  encodes by cause', p.get('encoded_bytes_by_cause'), 'copies discarded', p.get('copies_discarded_bytes'))
PY
fi
tar czf $OUT/packing${STEP:-1}.tar.gz --exclude="*.pt" -C /tmp ltp 2>/dev/null
