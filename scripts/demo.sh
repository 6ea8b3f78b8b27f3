#!/usr/bin/env bash
# The main job: build, then run a PyTorch training workload whose native peak is ~4.1 GiB (on
# an H200) under a 3 GiB device limit, packing its cold buffers, and print what the stats say
# was saved. Without a GPU driver it says so in one line.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1' && [ ! -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ] && [ ! -e /usr/local/nvidia/lib64/libcuda.so.1 ]; then
    echo "ltshim demo: no GPU driver on this machine (libcuda.so.1 not found); built target/release/libltshim.so and target/release/ltshim, nothing to run"
    exit 0
fi
stats=$(mktemp --suffix=.json)
target/release/ltshim run --mode lossless --device-limit "${DEMO_LIMIT:-3GiB}" --stats "$stats" -- python3 harness/workloads/sparse_mlp.py
target/release/ltshim stats "$stats"
