#!/usr/bin/env python3
"""Summarises a packing run's debug log (LTSHIM_LOG=debug): restores and packs by who made them
(the program's threads or the packing-ahead thread), their host time, restores in pieces,
memory handed over, and the buffers restored most often. Usage: trace_summary.py LOG"""
import collections
import re
import statistics
import sys

RESTORE = re.compile(r"restore (0x[0-9a-f]+) \((\d+) B\) at use (\d+), (\d+) us(.*)")
PACK = re.compile(r"pack (0x[0-9a-f]+) \((\d+) B, hint \d+\) at use (\d+), (\d+) us( on the ahead thread)?: ([^,\[]+)")
DROP = re.compile(r"drop (0x[0-9a-f]+) \((\d+) B\) ahead at use (\d+), (\d+) us(.*)")


def main(path):
    ops = collections.defaultdict(list)  # kind -> [us]
    per_buffer = collections.Counter()
    sizes = {}
    for line in open(path, errors="replace"):
        if m := RESTORE.search(line):
            addr, size, _, us, rest = m.groups()
            kind = "restore ahead" if "ahead" in rest else ("restore in pieces" if "pieces" in rest else "restore by the program")
            ops[kind].append(int(us))
            per_buffer[addr] += 1
            sizes[addr] = int(size)
        elif m := PACK.search(line):
            _, _, _, us, ahead, how = m.groups()
            how = how.strip()
            who = "pack ahead: " if ahead else "pack by the program: "
            ops[who + ("encode" if how.startswith("encoded") else how)].append(int(us))
        elif m := DROP.search(line):
            _, _, _, us, rest = m.groups()
            ops["drop ahead" + (" (memory handed over)" if "handed" in rest else "")].append(int(us))
    print(f"{'operation':48} {'count':>7} {'median us':>10} {'total ms':>10}")
    for kind in sorted(ops):
        v = ops[kind]
        print(f"{kind:48} {len(v):7d} {statistics.median(v):10.0f} {sum(v) / 1000:10.1f}")
    print("restored most often (address, bytes, restores):")
    for addr, n in per_buffer.most_common(8):
        print(f"  {addr} {sizes[addr]:>12d} {n:6d}")
    return 0 if ops else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
