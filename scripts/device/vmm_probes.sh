#!/usr/bin/env bash
# Two CUDA C probes of the driver costs the packing engine lives with (docs/PERF.md P47, P50):
# pool_alloc.cu times a memory pool's allocations and frees of 43 MB copy chunks (release
# threshold 0, as ltgpu's pool, and a large one) and the VMM calls for 64 MiB;
# vmm_beside_launches.cu times 20000 empty launches alone and while another thread cycles VMM
# mappings. Needs nvcc; prints its results.
set -euo pipefail
cd "$(dirname "$0")/probes"
D=${TMPDIR:-/tmp}/ltshim_probes; mkdir -p "$D"
for p in pool_alloc vmm_beside_launches; do
  nvcc -O2 -o "$D/$p" "$p.cu" -lcuda
  echo "== $p"; "$D/$p"
done
