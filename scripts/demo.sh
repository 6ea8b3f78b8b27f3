#!/usr/bin/env bash
# The main job: build, then run a PyTorch workload under the library and print its stats.
# Without a GPU driver it says so in one line.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1' && [ ! -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ] && [ ! -e /usr/local/nvidia/lib64/libcuda.so.1 ]; then
    echo "ltshim demo: no GPU driver on this machine (libcuda.so.1 not found); built target/release/libltshim.so and target/release/ltshim, nothing to run"
    exit 0
fi
stats=$(mktemp --suffix=.json)
target/release/ltshim run --mode observe --stats "$stats" -- python3 harness/workloads/observe_mix.py --small-launches 2000
target/release/ltshim stats "$stats"
