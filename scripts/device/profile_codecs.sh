#!/usr/bin/env bash
# Nsight Compute on the codec kernels of `ltshim bench`'s first case (bf16 weights, int8g):
# time, DRAM and SM throughput, occupancy, instructions and the main stall reasons.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for k in ${KERNELS:-analyze encode decode}; do
  ncu -k regex:ltb_$k -c 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
      --metrics smsp__inst_executed.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      .dev/ltshim bench --size ${SIZE:-256} > $OUT/ncu_$k.txt 2>&1
  echo "== ltb_$k"
  grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Theoretical Occupancy|inst_executed|dram__bytes|Registers Per|Stall|Warp Cycles Per Issued|Block Limit" $OUT/ncu_$k.txt | head -24
done
