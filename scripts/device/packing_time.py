# Prints where a compare.py run's ltshim runs spent their packing time (the stats report's split), the
# counts behind it, and the report's speed and fidelity lines. Usage: packing_time.py REPORT_DIR
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/ltshim_stats_*.json"):
    p = json.load(open(f))["packing"]
    print({k: p.get(k) for k in ("packs", "packs_reused_copy", "packs_clean_copy", "packs_ahead", "restores", "restores_ahead", "checks", "checks_found_changed", "encodes_by_cause", "encoded_bytes_by_cause")})
    print({k: round(p.get(k, 0) / 1e6, 1) for k in ("pack_host_ns", "restore_host_ns", "alloc_host_ns", "wait_host_ns", "vmm_host_ns", "codec_host_ns", "ahead_host_ns")}, "ms; codec by work (ms):", {k: round(v / 1e6, 1) for k, v in (p.get("codec_host_ns_by_work") or {}).items()})
    print("restores per step", p.get("restores_per_step"))
for f in glob.glob(sys.argv[1] + "/report.md"):
    print("".join(l for l in open(f) if any(w in l for w in ("decode_tokens_per_s", "bit", "held peak", "time_in_library"))))
