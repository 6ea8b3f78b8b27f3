#!/usr/bin/env bash
# Every test: the Rust workspace (unit tests, the integration tests that run C programs under
# LD_PRELOAD against the CUDA double) and the Python harness's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --quiet
cargo test --workspace --quiet 2>&1 | tee /tmp/ltshim-cargo-test.log
if [ -d harness/tests ]; then
    python3 -m pytest -q harness/tests
fi
