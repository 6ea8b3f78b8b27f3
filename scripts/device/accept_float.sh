#!/usr/bin/env bash
# Issue 12 (expf, the lossless float codec) on the GPU machine, in one call of at most ~6
# minutes. Expects, built on the dev machine and carried:
#   .dev/ltshim            cargo build --release -p ltshim-cli; cp target/release/ltshim .dev/
#   .dev/ltgpu_gpu_tests   cargo test -p ltgpu --release --no-run
#                          cp "$(ls target/release/deps/gpu-* | grep -v '\.d$')" .dev/ltgpu_gpu_tests
# Runs: `ltshim bench` on 1 GiB inputs for the weights rows (expf: bf16, f16, f32 lossless,
# with the blocks' exponent-entropy bound; int8g beside them) and the many-buffer decode
# (2 MiB and 20 MiB buffers, expf), the copy bandwidth measured in the same run, every block
# checked byte for byte against the CPU reference (exit 1 on a difference), then the
# exactness sweep and malformed blocks (inside bench); the ltgpu GPU tests; compute-sanitizer
# memcheck, racecheck and synccheck on a 2 MiB bench of the lossless rows (the sweep and the
# malformed blocks run inside it). Each step has a timeout (150 + 60 + 3 x 50 s: at most 6
# minutes; exit 124 in the table means a step ran out). Everything goes into ONE file,
# $OUT/accept_float.tar; a short table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=$(mktemp -d /tmp/accept_float.XXXXXX)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
cd "$(dirname "$0")/../.."
for b in .dev/ltshim .dev/ltgpu_gpu_tests; do [ -x $b ] || { echo "accept_float.sh: $b is missing (see the top of this script)"; exit 2; }; done
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; git rev-parse HEAD 2>/dev/null; } > $W/machine.txt 2>&1

echo "== ltshim bench --size ${SIZE:-1024} --rows weights"
timeout ${BENCH_TIMEOUT:-150} .dev/ltshim bench --size ${SIZE:-1024} --rows weights --json $W/bench.json > $W/bench.txt 2>&1
echo "bench $?" > $W/exit_codes.txt

echo "== ltgpu GPU tests"
LTGPU_REQUIRE_GPU=1 timeout ${TESTS_TIMEOUT:-60} .dev/ltgpu_gpu_tests --test-threads 1 > $W/gpu_tests.txt 2>&1
echo "gpu_tests $?" >> $W/exit_codes.txt

for tool in memcheck racecheck synccheck; do
  echo "== compute-sanitizer --tool $tool (bench --size ${SAN_SIZE:-2} --rows lossless)"
  timeout ${SAN_TIMEOUT:-50} compute-sanitizer --tool $tool --error-exitcode 9 .dev/ltshim bench --size ${SAN_SIZE:-2} --rows lossless > $W/sanitizer_$tool.txt 2>&1
  echo "sanitizer_$tool $?" >> $W/exit_codes.txt
done

tar -C $W -cf $OUT/accept_float.tar .
python3 - "$W" <<'PY'
import json, os, re, sys
w = sys.argv[1]
codes = dict(l.split() for l in open(f"{w}/exit_codes.txt"))
print("\nexit codes:", codes, "(bench/tests 0 = every block bit-exact and every test passed; sanitizers 0 = clean, 9 = errors)")
try:
    d = json.load(open(f"{w}/bench.json"))
except Exception as e:
    print("no bench.json:", e); d = None
if d:
    print(f"{d['arch']} {d['device']}: copy {d['copy_gbps_read_plus_write']:.0f} GB/s read+write")
    print(f"{'row':<28}{'codec':>7}{'size %':>8}{'bound %':>9}{'enc %cp':>9}{'dec %cp':>9}  exact")
    for r in d["rows"]:
        b = r.get("entropy_bound_fraction")
        print(f"{r['input']:<28}{'+'.join(r['codecs']):>7}{r['size_fraction']*100:>8.2f}{(b*100 if b else float('nan')):>9.2f}"
              f"{r['encode_fraction_of_copy']*100:>9.1f}{r['decode_fraction_of_copy']*100:>9.1f}  {r['blocks_mismatched'] == 0 and r['decode_exact']}")
    for s in d["small_buffers"]:
        print(f"decode {s['buffers']} x {s['buffer_mib']} MiB {s['input']}: {s['fraction_of_copy']*100:.1f}% of copy, exact {s['exact']}")
    sc = d["selfcheck"]
    print("sweep identical:", all(c["packed_identical"] and c["decode_identical"] for c in sc["sweep"]), f"({len(sc['sweep'])} cases);",
          "malformed reported:", sc["malformed_reported"], "healthy after:", sc["healthy_after"])
t = open(f"{w}/gpu_tests.txt", errors="replace").read()
print("gpu tests:", (re.findall(r"test result: .*", t) or ["no result line"])[-1])
for tool in ["memcheck", "racecheck", "synccheck"]:
    s = open(f"{w}/sanitizer_{tool}.txt", errors="replace").read()
    print(f"{tool}:", "; ".join(sorted(set(re.findall(r"(?:ERROR|RACECHECK) SUMMARY: [^\n]*", s)))) or "no summary line", "| MISMATCH" if "MISMATCH" in s else "")
print(f"everything: {os.environ.get('OUT', '/tmp/out')}/accept_float.tar")
PY
