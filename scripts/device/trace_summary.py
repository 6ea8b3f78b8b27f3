#!/usr/bin/env python3
"""Summarises a packing run's debug log (LTSHIM_LOG=debug): restores and packs by who made them
(the program's threads or the packing-ahead thread), their host time, restores in pieces,
memory handed over, and the buffers restored most often. A restore's time includes the packs
it made for room (listed as packs too): the rows overlap and do not add up. Usage:
trace_summary.py LOG"""
import collections
import re
import statistics
import sys

RESTORE = re.compile(r"restore (0x[0-9a-f]+) \((\d+) B\) at use (\d+), (\d+) us(.*)")
PACK = re.compile(r"pack (0x[0-9a-f]+) \((\d+) B, hint \d+\) at use (\d+), (\d+) us( on the ahead thread)?: ([^,\[]+)")
SPLIT = re.compile(r"\(vmm (\d+) us, codec (\d+) us \((\d+) (\d+) (\d+) (\d+)\), wait (\d+) us")
GPU = re.compile(r"gpu sync (\d+) us in (\d+), transfers (\d+) us, decode kernels (\d+) us, pool (\d+) us")
DROP = re.compile(r"drop (0x[0-9a-f]+) \((\d+) B\) ahead at use (\d+), (\d+) us(.*)")


def main(path):
    ops = collections.defaultdict(list)  # kind -> [us]
    split = collections.defaultdict(list)  # kind -> [(vmm, codec, wait) us]
    gpu = collections.defaultdict(list)  # kind -> [(sync us, syncs, transfer us, decode kernel us, pool us)]
    per_buffer = collections.Counter()
    sizes = {}
    for line in open(path, errors="replace"):
        kind = None
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
            kind = who + ("encode" if how.startswith("encoded") else how)
            ops[kind].append(int(us))
        elif m := DROP.search(line):
            _, _, _, us, rest = m.groups()
            ops["drop ahead" + (" (memory handed over)" if "handed" in rest else "")].append(int(us))
        if kind and (sm := SPLIT.search(line)):
            v = [int(x) for x in sm.groups()]
            split[kind].append((v[0], v[1], v[6], v[2], v[3], v[4], v[5]))
        if kind and (gm := GPU.search(line)):
            gpu[kind].append(tuple(int(x) for x in gm.groups()))
    print(f"{'operation':48} {'count':>7} {'median us':>10} {'total ms':>10}   total ms in vmm / codec / wait; codec: encode / check / decode / discard")
    for kind in sorted(ops):
        v = ops[kind]
        t = lambda i: f"{sum(x[i] for x in split[kind]) / 1000:.1f}"
        parts = " / ".join(t(i) for i in range(3)) + "; " + " / ".join(t(i) for i in range(3, 7)) if split[kind] else ""
        print(f"{kind:48} {len(v):7d} {statistics.median(v):10.0f} {sum(v) / 1000:10.1f}   {parts}")
    print(f"{'operation':48} {'gpu sync ms':>12} {'syncs':>7} {'transfers ms':>13} {'decode kernels ms':>18} {'pool ms':>8}")
    for kind in sorted(gpu):
        g = gpu[kind]
        print(f"{kind:48} {sum(x[0] for x in g) / 1000:12.1f} {sum(x[1] for x in g):7d} {sum(x[2] for x in g) / 1000:13.1f} {sum(x[3] for x in g) / 1000:18.1f} {sum(x[4] for x in g) / 1000:8.1f}")
    print("restored most often (address, bytes, restores):")
    for addr, n in per_buffer.most_common(8):
        print(f"  {addr} {sizes[addr]:>12d} {n:6d}")
    return 0 if ops else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
