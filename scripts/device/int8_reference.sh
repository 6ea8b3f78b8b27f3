#!/usr/bin/env bash
# Lossy's fidelity against what int8g itself does to the model, in one call: the reference's
# byte-for-byte check against the codec (harness/tests/test_int8_reference.py), then the 3B
# decode natively, natively with every Linear weight int8g-decoded (`infer.py --fake-int8 G`,
# G = 128 and 16, and G = 128 with the LM head left exact), and under the library in lossy mode
# at LIMIT (70%) of the native peak (compare.py). Fidelity as the harness judges it (the
# prompt's logits after generation against the native run's). Expects .dev/ltshim and
# .dev/libltshim.so. Everything goes into ONE file, $OUT/int8_reference.tar.gz; a table last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/int8_reference; rm -rf $W; mkdir -p $W
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 INT8_REFERENCE_CLI=$PWD/.dev/ltshim
TOKENS=${TOKENS:-32}
python3 harness/tests/test_int8_reference.py > $W/reference_check.txt 2>&1; echo "reference_check $?" > $W/exit_codes.txt
run() {  # name, extra infer.py arguments
  timeout ${RUN_TIMEOUT:-150} python3 harness/workloads/infer.py --params 3b --tokens $TOKENS --out $W/$1.pt --metrics $W/$1.json "${@:2}" > $W/$1.txt 2>&1
  echo "$1 $?" >> $W/exit_codes.txt
}
run native
run fake128 --fake-int8 128
run fake16 --fake-int8 16
run fake128_head_exact --fake-int8 128 --fake-int8-skip lm_head
[ "${LIBRARY:-1}" = 1 ] && { timeout ${RUN_TIMEOUT:-240} python3 harness/compare.py --ltshim .dev/ltshim --workload infer --workload-args "--params 3b --tokens $TOKENS" \
    --mode lossy --device-limit ${LIMIT:-70%} --min-cosine 0.999 --min-top1 0.99 --repeat 1 --warmup 0 --out $W/lossy > $W/lossy.txt 2>&1; echo "lossy $?" >> $W/exit_codes.txt; }
python3 - $W > $W/table.txt <<'PY'
import glob, json, os, sys
import torch
sys.path.insert(0, "harness")
from ltharness import fidelity
w = sys.argv[1]
print("exit codes:", dict(l.split() for l in open(f"{w}/exit_codes.txt")))
print(open(f"{w}/reference_check.txt").read().strip().splitlines()[-1])
native = torch.load(f"{w}/native.pt")
tok = lambda n: json.load(open(f"{w}/{n}.json")).get("decode_tokens_per_s", float("nan")) if os.path.exists(f"{w}/{n}.json") else float("nan")
print(f"{'run':<22}{'cos min':>10}{'cos mean':>10}{'top1':>8}{'tok/s':>8}  same tokens")
for n in ["fake128", "fake16", "fake128_head_exact"]:
    if not os.path.exists(f"{w}/{n}.pt"): print(n, "no output"); continue
    o = torch.load(f"{w}/{n}.pt")
    lm = fidelity.language_model(native, o)
    same = (o["generated"] == native["generated"]).float().mean().item()
    print(f"{n:<22}{lm['logits_cosine_min']:>10.6f}{lm['logits_cosine_mean']:>10.6f}{lm['top1_agreement']:>8.4f}{tok(n):>8.2f}  {same:.3f}")
print(f"{'native':<22}{'':>28}{tok('native'):>8.2f}")
for f in glob.glob(f"{w}/lossy/report.json"):
    r = json.load(open(f)); lm = (r.get("fidelity") or {}).get("language_model") or {}
    runs = {x["kind"]: x for x in r["runs"]}
    m = lambda k: (runs.get(k, {}).get("metrics") or {}).get("decode_tokens_per_s") or float("nan")
    lc = (r.get("limit_checks") or [{}])[0]
    print(f"ltshim lossy {r['meta'].get('device_limit', {}).get('spec')}: cos min {lm.get('logits_cosine_min', float('nan')):.6f} top1 {lm.get('top1_agreement', float('nan')):.4f}; "
          f"{m('ltshim'):.2f} against {m('native'):.2f} tok/s; held {(lc.get('held_peak_bytes') or 0) / 2**30:.2f} GiB; problems {r.get('problems')}")
PY
rm -f $W/*.pt $W/lossy/outputs_*.pt
tar -C /tmp -czf $OUT/int8_reference.tar.gz int8_reference
cat $W/table.txt
