#!/usr/bin/env bash
# Issue 4 on the GPU machine: `ltshim bench` on 1 GiB inputs (checked against the CPU
# reference block by block), then compute-sanitizer memcheck, racecheck and synccheck on small
# inputs.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
.dev/ltshim bench --size ${SIZE:-1024} --json $OUT/bench.json 2>&1 | tee $OUT/bench.txt
for tool in memcheck racecheck synccheck; do
  echo "== compute-sanitizer --tool $tool (bench --size ${SAN_SIZE:-4})"
  compute-sanitizer --tool $tool --error-exitcode 9 .dev/ltshim bench --size ${SAN_SIZE:-4} > $OUT/sanitizer_$tool.txt 2>&1
  echo "exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|bit-exact|MISMATCH|Error" $OUT/sanitizer_$tool.txt | sort | uniq -c | head -8
done
