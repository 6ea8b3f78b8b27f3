#!/usr/bin/env bash
# Every test: the Rust workspace (unit tests; the integration tests that run C programs under
# LD_PRELOAD against the CUDA double; the kernels' NVRTC compile for sm_80 and sm_90 when NVRTC
# is installed, e.g. `pip install nvidia-cuda-nvrtc`) and the Python harness's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
nvrtc=$(python3 - <<'PY' 2>/dev/null || true
import glob, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
print(next((d for p in dirs for d in glob.glob(p + "/nvidia/cu13/lib") if glob.glob(d + "/libnvrtc.so*")), ""))
PY
)
if [ -n "$nvrtc" ]; then export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
python3 -c "import numpy, matplotlib, pytest" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check -r harness/requirements-ci.txt
cargo build --workspace --quiet
# the kernels emulated on the host (ltgpu/tests/expf_emulated.rs) need g++ with C++20, which
# this machine and CI have: a compile failure there is a failure, not a skip
export LTGPU_REQUIRE_CXX=1
cargo test --workspace --quiet
python3 -m pytest -q harness/tests
# The GPU tests return early without a GPU; say so where it shows (the device runs them:
# scripts/device/gpu_tests.sh).
cargo test -p ltgpu --test gpu --quiet -- --nocapture 2>&1 | grep -m1 SKIPPED || true
