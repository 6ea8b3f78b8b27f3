#!/usr/bin/env bash
# The library's CPU cost a launch (bench/launch_scan.c) against the CUDA double: natively, then
# under libltshim in observe and in lossless, ROUNDS (3) times in turn. Needs `cargo build
# --workspace` (the double) and a libltshim.so (LIB, default target/release/libltshim.so).
# N launches a loop (200000). Pin it for steadier figures: taskset -c 2 bash scripts/bench_launch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=target/debug/ctests; mkdir -p $D
ln -sf ../libcudadouble.so $D/libcuda.so.1; ln -sf ../libcudadouble.so $D/libcuda.so
cc -O2 -Wall -o $D/launch_scan bench/launch_scan.c -I tests/c -L$D -lcuda -Wl,-rpath,$PWD/$D
LIB=${LIB:-target/release/libltshim.so}
for r in $(seq 1 ${ROUNDS:-3}); do
  echo "native:   $($D/launch_scan ${N:-200000})"
  for m in observe lossless; do
    echo "$m: $(LD_PRELOAD=$PWD/$LIB LTSHIM_MODE=$m $D/launch_scan ${N:-200000})"
  done
done
