#!/usr/bin/env bash
# Issue 12's kernel speed on the GPU machine, in one call of at most ~8 minutes: an A/B of two
# `ltshim` builds on the lossless rows (1 GiB inputs, copy bandwidth measured in the same run,
# every block checked against the CPU reference inside bench), alternating A B A B; Nsight
# Compute on B's expf encode and decode of NCU_ROWS (default "bf16 weights, lossless"); A and B on the trained weights (`--input`,
# repeated to 1 GiB) in the same rounds; B's GPU tests; compute-sanitizer memcheck, racecheck and synccheck on B.
# Expects, built on the dev machine and carried:
#   .dev/base/ltshim       the build to compare against (A; BASE=0 leaves the A/B out)
#   .dev/ltshim            the build under test (B)
#   .dev/ltgpu_gpu_tests   B's ltgpu GPU tests (cargo test -p ltgpu --release --no-run)
#   .dev/tw/               python3 scripts/trained_weights.py --out .dev/tw (needs the network)
# Everything goes into ONE file, $OUT/expf_speed.tar; a short table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=$(mktemp -d /tmp/expf_speed.XXXXXX)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
cd "$(dirname "$0")/../.."
BUILDS="base/ltshim ltshim"; [ "${BASE:-1}" = 0 ] && BUILDS=ltshim
for b in .dev/ltshim .dev/ltgpu_gpu_tests; do [ -x $b ] || { echo "expf_speed.sh: $b is missing (see the top of this script)"; exit 2; }; done
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $W/machine.txt 2>&1
: > $W/exit_codes.txt
# the kernels into each build's cache first, so no timed run pays NVRTC
for b in $BUILDS; do t=${b//\//_}; timeout 120 .dev/$b bench --size 2 --rows "bf16 weights, lossless" > $W/warm_$t.txt 2>&1; echo "warm_$t $?" >> $W/exit_codes.txt; done
TW=""
[ -d .dev/tw ] && TW="--input .dev/tw/silero_vad_bf16.safetensors --input .dev/tw/silero_vad_f16.safetensors --input .dev/tw/silero_vad_f32.npy"
for r in $(seq 1 ${ROUNDS:-2}); do
  for b in $BUILDS; do
    t=${b//\//_}
    echo "== $b round $r"
    timeout 120 .dev/$b bench --size ${SIZE:-1024} --rows lossless --json $W/${t}_$r.json > $W/${t}_$r.txt 2>&1
    echo "${t}_$r $?" >> $W/exit_codes.txt
    if [ -n "$TW" ]; then  # the trained weights (repeated to the input size), each build each round
      timeout 120 .dev/$b bench --size ${SIZE:-1024} --rows silero $TW --json $W/trained_${t}_$r.json > $W/trained_${t}_$r.txt 2>&1
      echo "trained_${t}_$r $?" >> $W/exit_codes.txt
    fi
  done
done
for k in $([ "${NCU:-1}" = 1 ] && echo pack decode); do
  echo "== ncu ltb_${k}_blocks (${NCU_ROWS:-bf16 weights, lossless})"
  timeout 120 ncu -k ltb_${k}_blocks --launch-skip 1 -c 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --section SchedulerStats --section SourceCounters \
      --metrics smsp__inst_executed.sum,dram__bytes_read.sum,dram__bytes_write.sum,"regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      .dev/ltshim bench --size 256 --rows "${NCU_ROWS:-bf16 weights, lossless}" > $W/ncu_$k.txt 2>&1
  echo "ncu_$k $?" >> $W/exit_codes.txt
done
echo "== ltgpu GPU tests"
LTGPU_REQUIRE_GPU=1 timeout 90 .dev/ltgpu_gpu_tests --test-threads 1 > $W/gpu_tests.txt 2>&1
echo "gpu_tests $?" >> $W/exit_codes.txt
for tool in memcheck racecheck synccheck; do
  echo "== compute-sanitizer --tool $tool"
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 .dev/ltshim bench --size 2 --rows lossless > $W/sanitizer_$tool.txt 2>&1
  echo "sanitizer_$tool $?" >> $W/exit_codes.txt
done
tar -C $W -cf $OUT/expf_speed.tar .
python3 - "$W" <<'PY'
import json, re, sys, glob
w = sys.argv[1]
print("exit codes:", dict(l.split() for l in open(f"{w}/exit_codes.txt")))
for f in sorted(glob.glob(f"{w}/*_[0-9].json")):
    try: d = json.load(open(f))
    except Exception as e: print(f, "unreadable:", e); continue
    print(f"{f.split('/')[-1]}: copy {d['copy_gbps_read_plus_write']:.0f} GB/s")
    for r in d["rows"]:
        b = r.get("entropy_bound_fraction")
        print(f"  {r['input']:<40}{'+'.join(r['codecs']):>10}{r['size_fraction']*100:>7.2f}%{(b*100 if b else float('nan')):>7.2f}%"
              f"  enc {r['encode_fraction_of_copy']*100:5.1f}%  dec {r['decode_fraction_of_copy']*100:5.1f}%  exact {r['blocks_mismatched'] == 0 and r['decode_exact']}")
    for s in d.get("small_buffers", []):
        print(f"  decode {s['buffers']} x {s['buffer_mib']} MiB {s['input']}: {s['fraction_of_copy']*100:.1f}% of copy, exact {s['exact']}")
for k in [k for k in ["pack", "decode"] if glob.glob(f"{w}/ncu_{k}.txt")]:
    t = open(f"{w}/ncu_{k}.txt", errors="replace").read()
    keep = [l.strip() for l in t.splitlines() if re.search(r"Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|No Eligible|stalled_(long_scoreboard|short_scoreboard|barrier|mio_throttle|lg_throttle|wait|math|membar|branch|no_instruction|dispatch|drain|sleeping|tex|selected|not_selected|misc)", l) and not re.search(r"ratio\s+0(\.0+)?$", l)]
    print(f"ncu {k}:"); [print("  ", l) for l in keep[:30]]
print("gpu tests:", (re.findall(r"test result: .*", open(f"{w}/gpu_tests.txt", errors="replace").read()) or ["no result line"])[-1])
for tool in ["memcheck", "racecheck", "synccheck"]:
    s = open(f"{w}/sanitizer_{tool}.txt", errors="replace").read()
    print(f"{tool}:", "; ".join(sorted(set(re.findall(r"(?:ERROR|RACECHECK) SUMMARY: [^\n]*", s)))) or "no summary line")
PY
