#!/usr/bin/env bash
# Nsight Compute on the codec kernels of `ltshim bench`: time, DRAM and SM throughput,
# occupancy, instructions and the main stall reasons (BIN: the ltshim binary, TAG: a prefix for
# the output files). CASES: "kernel:launches-to-skip" pairs, kernel pack or decode (ltb_pack_blocks,
# ltb_decode_blocks by their exact names: a regex would count ltb_pack_head's launches too);
# bench launches each 6 times a case, in CASES order (cli/src/bench.rs): bf16 int8g at 0,
# G=16 at 6, f16 at 12, f32 at 18, zvc bf16 50% at 24, 90% at 30.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for c in ${CASES:-pack:0 pack:30 decode:0}; do
  k=${c%%:*}; skip=${c##*:}
  ncu -k ltb_${k}_blocks --launch-skip $skip -c 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --section SchedulerStats \
      --metrics smsp__inst_executed.sum,dram__bytes_read.sum,dram__bytes_write.sum,"regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      ${BIN:-.dev/ltshim} bench --size ${SIZE:-256} > $OUT/ncu_${TAG:-}${k}_$skip.txt 2>&1
  echo "== ltb_$k, launch $skip"
  grep -E "Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Theoretical Occupancy|inst_executed|dram__bytes|Registers Per|Stall|Warp Cycles Per Issued|Block Limit|Issued Warp|No Eligible|issue_stalled" $OUT/ncu_${TAG:-}${k}_$skip.txt | grep -v "ratio  *0$" | head -40
done
