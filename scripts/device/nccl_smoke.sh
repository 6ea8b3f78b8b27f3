#!/usr/bin/env bash
# One GPU, real NCCL through torch.distributed (one rank), under ltshim with a limit that
# forces packing (1 GiB for 16 x 64 MiB of tensors, the temporary of each one's making, the
# library's ~70 MiB of scratch and its 64 MiB reserve for packed copies; smaller limits, with
# fewer tensors, ran out of memory in the making: P26-P28): all-reduces of buffers that may be packed must
# find them restored and leave every tensor exact. Expects .dev/ltshim and .dev/libltshim.so. Prints one line.
set -uo pipefail
cd "$(dirname "$0")/../.."
cat > /tmp/nccl_smoke.py <<'PY'
import torch, torch.distributed as dist
torch.manual_seed(0)
xs = [torch.relu(torch.randn(32 << 20, device="cuda", dtype=torch.bfloat16)) for _ in range(16)]  # 16 x 64 MiB, half zeros
ref = [x.sum(dtype=torch.float32).item() for x in xs]
dist.init_process_group("nccl", init_method="tcp://127.0.0.1:29555", rank=0, world_size=1)
for k in range(16):
    dist.all_reduce(xs[k])  # one rank: the sum is the tensor itself
torch.cuda.synchronize()
got = [x.sum(dtype=torch.float32).item() for x in xs]
dist.destroy_process_group()
print("nccl smoke", "exact" if got == ref else f"DIFFERS {got} {ref}")
PY
# natively first (the same script must pass without us), then under the limit; NCCL_DEBUG=WARN
# names the CUDA call that fails if NCCL reports an "unhandled cuda error"
timeout ${SMOKE_TIMEOUT:-90} python3 /tmp/nccl_smoke.py 2>&1 | grep -E "nccl smoke|Error" | head -3 | sed "s/^/native: /"
NCCL_DEBUG=WARN LTSHIM_STATS=/tmp/nccl_smoke.json timeout ${SMOKE_TIMEOUT:-90} .dev/ltshim run --device-limit 1GiB -- python3 /tmp/nccl_smoke.py > /tmp/nccl_smoke.log 2>&1
grep -E "NCCL WARN|Error" /tmp/nccl_smoke.log | head -6
mkdir -p "${OUT:-/tmp/out}"; cp /tmp/nccl_smoke.log "${OUT:-/tmp/out}/" 2>/dev/null
grep -E "nccl smoke|ltshim" /tmp/nccl_smoke.log | head -6; grep -q "nccl smoke" /tmp/nccl_smoke.log || tail -12 /tmp/nccl_smoke.log
python3 -c "import json; s=json.load(open('/tmp/nccl_smoke.json')); p=s['packing']; print('packs', p['packs'], 'restores', p['restores'], 'nccl pointers', s['pointers']['found'].get('nccl'), 'held peak', p['held_peak_bytes'], 'limit', p['limit_bytes'])" 2>&1 | tail -1
