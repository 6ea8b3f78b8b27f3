#!/usr/bin/env bash
# ltgpu's GPU tests on the device machine, from a test binary built on the dev machine
# (`cargo test -p ltgpu --release --no-run`, the binary target/release/deps/gpu-* copied to
# .dev/ltgpu_gpu_tests).
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
LTGPU_REQUIRE_GPU=1 .dev/ltgpu_gpu_tests --test-threads 1
