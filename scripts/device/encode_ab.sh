#!/usr/bin/env bash
# Codec A/B: `ltshim bench` of several binaries (BINS: "name=path ...", default the new
# .dev/ltshim against .dev/old/ltshim), in turn, RUNS rounds; every run's JSON kept under $OUT;
# then each row's encode and decode fraction of copy, per run. Every binary checks its output
# against the CPU reference as usual.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
BINS=${BINS:-new=.dev/ltshim old=.dev/old/ltshim}
for i in $(seq ${RUNS:-2}); do
  for nb in $BINS; do
    n=${nb%%=*}; bin=${nb#*=}
    $bin bench --size ${SIZE:-1024} --json $OUT/ab_${n}_$i.json > $OUT/ab_${n}_$i.txt 2>&1; echo "$n run $i: exit $?"
  done
done
python3 - "$OUT" "${RUNS:-2}" $BINS <<'PY'
import json, sys
out, runs, names = sys.argv[1], int(sys.argv[2]), [a.split("=")[0] for a in sys.argv[3:]]
docs = {(b, i): json.load(open(f"{out}/ab_{b}_{i}.json")) for b in names for i in range(1, runs + 1)}
rows = [r["input"] for r in docs[(names[0], 1)]["rows"]]
print(f"{'input (encode/decode % of copy)':<32}" + "".join(f"{b}{i}".rjust(13) for b in names for i in range(1, runs + 1)))
for n in rows:
    cells = []
    for b in names:
        for i in range(1, runs + 1):
            r = next((r for r in docs[(b, i)]["rows"] if r["input"] == n), None)
            cells.append(f"{r['encode_fraction_of_copy']*100:.1f}/{r['decode_fraction_of_copy']*100:.1f}" if r else "-")
    print(f"{n:<32}" + "".join(c.rjust(13) for c in cells))
print("copy GB/s:", {f"{b}{i}": round(d["copy_gbps_read_plus_write"]) for (b, i), d in docs.items()})
print("all rows bit-exact:", {f"{b}{i}": all(r["blocks_mismatched"] == 0 and r["decode_exact"] for r in d["rows"]) for (b, i), d in docs.items()})
PY
