#!/usr/bin/env bash
# The training workload under a limit in each packing variant, to tell apart what makes its
# outputs differ (P29 and run 1 of 2026-12-01's second session: lossy at 80% ended with NaN
# losses): lossless; lossy; lossy with int8g refused everywhere (LTSHIM_INT8_MAX_ERR=0, so the
# lossy paths run and no byte is quantized). LIMIT (80), VARIANTS (all three). Each is one
# `compare.py --limits` (a native run, the ltshim run, a closing native run). Everything goes
# into ONE file, $OUT/train_fidelity.tar.gz; one line a variant is printed as it ends.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/train_fidelity; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
for v in ${VARIANTS:-lossless lossy lossy_no_int8}; do
  mode=${v%%_*}; extra=""; [ $v = lossy_no_int8 ] && extra="LTSHIM_INT8_MAX_ERR=0"
  env $extra timeout 300 python3 harness/compare.py --ltshim .dev/ltshim --workload train --mode $mode --limits ${LIMIT:-80} --timeout 90 \
      --out $W/$v > $W/$v.txt 2>&1
  echo "$v exit $?"
  python3 - $W/$v <<'PY'
import json, sys, glob, torch
d = sys.argv[1]
try: r = json.load(open(f"{d}/sweep.json"))
except Exception as e: print("  no sweep.json:", e); sys.exit()
for e in r.get("entries", []):
    f = e.get("fidelity") or {}
    print("  ", {k: e.get(k) for k in ("limit_percent", "completed", "verdict", "speed_vs_native", "held_peak_bytes", "limit_bytes")}, "bit_exact", f.get("bit_exact"), "max_abs_err", f.get("max_abs_err"))
    p = e.get("packing") or {}
    print("  ", {k: p.get(k) for k in ("packs", "restores", "restores_over_limit", "packs_over_limit", "lossy_barred", "bytes_in_by_codec", "encodes_by_cause")})
for f in sorted(glob.glob(f"{d}/outputs_*.pt")):
    try: print("  ", f.split("/")[-1], "losses", [round(x, 5) for x in torch.load(f)["losses"].tolist()])
    except Exception as e: print("  ", f, e)
PY
  find $W -name "outputs_*.pt" -delete
  tar -C /tmp -czf $OUT/train_fidelity.tar.gz train_fidelity
done
