#!/usr/bin/env bash
# One device call on speed: (1) acceptance 5's loop of 20000 small launches with no limit,
# ROUNDS (5) rounds of native, lossless and lossy (the order rotating each round), every
# process pinned to the same cores (taskset CORES) so that process-to-process noise shrinks;
# outputs compared, the library's own time against each process's wall time; (2) the 3B decode
# in lossless at LIMIT of its native peak, REPEAT alternating runs (compare.py); (3) one more
# lossless run of it with LTSHIM_LOG=debug, summarised by trace_summary.py (who restores, at
# what host cost); (4) if time is left (LOSSY=1), the same decode in lossy. ONE file comes
# back, $OUT/speed_round.tar.gz; a short table is printed last.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/speed_round; rm -rf $W; mkdir -p $W
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
T0=$(date +%s)
CORES=${CORES:-2-3}
timeout 120 .dev/ltshim run -- true > /dev/null 2>&1  # the kernels into the cache
kinds=(native lossless lossy)
for r in $(seq 1 ${ROUNDS:-5}); do
  for j in 0 1 2; do
    k=${kinds[$(( (r + j) % 3 ))]}
    a=$(date +%s.%N)
    if [ $k = native ]; then
      taskset -c $CORES python3 harness/workloads/observe_mix.py --only-small-launches --out $W/out_${k}_$r.pt > $W/small_${k}_$r.txt 2>&1
    else
      LTSHIM_STATS=$W/stats_${k}_$r.json taskset -c $CORES .dev/ltshim run --mode $k -- python3 harness/workloads/observe_mix.py --only-small-launches --out $W/out_${k}_$r.pt > $W/small_${k}_$r.txt 2>&1
    fi
    b=$(date +%s.%N)
    echo "$k $r $a $b" >> $W/small_walls.txt
  done
done
python3 - $W > $W/small_summary.txt 2>&1 <<'PY'
import glob, re, statistics, sys, json, torch
w = sys.argv[1]
walls = {}
for line in open(f"{w}/small_walls.txt"):
    k, r, a, b = line.split(); walls[(k, r)] = float(b) - float(a)
ref = None
for f in sorted(glob.glob(f"{w}/out_native_*.pt")):
    ref = torch.load(f)["small_launches"]; break
for k in ("native", "lossless", "lossy"):
    us, lib, same = [], [], []
    for f in sorted(glob.glob(f"{w}/small_{k}_*.txt")):
        r = f.rsplit("_", 1)[1].split(".")[0]
        m = re.search(r"median ([0-9.]+) us/launch", open(f).read())
        if not m: print(k, r, "no result:", open(f).read()[-300:]); continue
        us.append(float(m.group(1)))
        try: same.append(bool(torch.equal(torch.load(f"{w}/out_{k}_{r}.pt")["small_launches"], ref)))
        except Exception as e: same.append(f"unreadable {e}")
        if k != "native":
            s = json.load(open(f"{w}/stats_{k}_{r}.json"))
            lib.append(round(100 * s["time_in_library_ns"] / 1e9 / walls[(k, r)], 3))
    if us:
        print(f"{k}: us/launch {us} median {statistics.median(us):.2f} (range {min(us):.2f}-{max(us):.2f}); outputs equal to native's: {same}; library time % of wall: {lib}")
PY
C="python3 harness/compare.py --ltshim .dev/ltshim --workload infer --workload-args"
timeout ${RUN_TIMEOUT:-240} $C "--params 3b --tokens 32" --mode lossless --device-limit ${LIMIT:-70%} --min-cosine 0.999 --min-top1 0.99 \
  --repeat ${REPEAT:-2} --warmup 0 --out $W/infer_lossless > $W/infer_lossless.txt 2>&1; echo "infer lossless exit $?" >> $W/summary.txt
LIM=$(python3 -c "import json; print(json.load(open('$W/infer_lossless/report.json'))['meta']['device_limit']['bytes'])" 2>/dev/null || echo 70%)
LTSHIM_LOG=debug LTSHIM_STATS=$W/trace_stats.json timeout 150 .dev/ltshim run --mode lossless --device-limit $LIM -- \
  python3 harness/workloads/infer.py --params 3b --tokens 32 --metrics $W/trace_metrics.json > $W/trace_stdout.txt 2> $W/trace.log
echo "trace exit $? (limit $LIM)" >> $W/summary.txt
python3 scripts/device/trace_summary.py $W/trace.log > $W/trace_summary.txt 2>&1
if [ "${LOSSY:-1}" = 1 ] && [ $(( $(date +%s) - T0 )) -lt ${LOSSY_BEFORE_S:-380} ]; then
  timeout ${RUN_TIMEOUT:-240} $C "--params 3b --tokens 32" --mode lossy --device-limit ${LIMIT:-70%} --min-cosine 0.999 --min-top1 0.99 \
    --repeat ${REPEAT:-2} --warmup 0 --out $W/infer_lossy > $W/infer_lossy.txt 2>&1; echo "infer lossy exit $?" >> $W/summary.txt
fi
find $W -name "*.pt" -delete; find $W -name "*.png" -delete; gzip -f $W/trace.log
tar -C /tmp -czf $OUT/speed_round.tar.gz speed_round
cat $W/summary.txt; cat $W/small_summary.txt; cat $W/trace_summary.txt
python3 - $W <<'PY'
import json, sys, glob, os
w = sys.argv[1]
for d in sorted(glob.glob(f"{w}/infer_*/")):
    try: r = json.load(open(f"{d}/report.json"))
    except Exception as e: print(d, "no report:", e); continue
    ms = lambda k: [round((x.get("metrics") or {}).get("decode_tokens_per_s") or 0, 2) for x in r["runs"] if x["kind"] == k]
    lm = (r.get("fidelity") or {}).get("language_model") or {}
    lc = (r.get("limit_checks") or [{}])[0]
    for f in sorted(glob.glob(f"{d}/ltshim_stats_ltshim_*.json")):
        st = json.load(open(f)).get("packing", {})
        print(os.path.basename(f), {k: st.get(k) for k in ("restores", "restores_ahead", "restores_in_pieces", "restores_handed_memory", "packs", "packs_ahead")},
              {k: round((st.get(k) or 0) / 1e9, 2) for k in ("pack_host_ns", "restore_host_ns", "ahead_host_ns", "vmm_host_ns", "program_lock_wait_host_ns")})
    print(os.path.basename(d.rstrip("/")), "native", ms("native"), "ltshim", ms("ltshim"), "bit_exact", (r.get("fidelity") or {}).get("bit_exact"), "cos", lm.get("logits_cosine_min"), "top1", lm.get("top1_agreement"),
          "held GiB", round((lc.get("held_peak_bytes") or 0) / 2**30, 2), "limit GiB", round(((r["meta"].get("device_limit") or {}).get("bytes") or 0) / 2**30, 2))
PY
