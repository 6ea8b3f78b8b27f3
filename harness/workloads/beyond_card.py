#!/usr/bin/env python3
"""More weights than the card holds: bf16 tensors drawn from normal(0, 0.02) until they add up
to --factor times the card's memory, each used by a GEMV right after it is made (while it is
certainly resident), then --passes passes that use every tensor again in the same order.
Natively this runs out of memory while building (exit 3, with how far it got); under libltshim
in lossless mode the cold tensors are packed when the card is full and restored when named, and
every pass's products must equal the first ones bit for bit (`exact` in the metrics). Outputs:
the first products and those of the last pass."""
import sys

import torch

import common


def main():
    ap = common.parser(__doc__.split("\n")[0])
    ap.add_argument("--factor", type=float, default=1.15, help="total size, as a multiple of the card's memory")
    ap.add_argument("--tensor-mib", type=int, default=1024)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--card-bytes", type=int, default=0, help="take this as the card's memory (0: ask the device)")
    args = ap.parse_args()
    dev = common.setup(args)
    card = args.card_bytes or torch.cuda.get_device_properties(dev).total_memory
    cols = 4096
    rows = args.tensor_mib * (1 << 20) // 2 // cols
    count = max(1, int(args.factor * card) // (rows * cols * 2))
    g = torch.Generator(device=dev).manual_seed(args.seed)
    x = torch.randn(cols, 1, device=dev, dtype=torch.bfloat16, generator=g)
    weights, first = [], []
    with common.Timer() as build:
        try:
            for _ in range(count):
                w = torch.empty(rows, cols, device=dev, dtype=torch.bfloat16)
                w.normal_(0.0, 0.02, generator=g)
                weights.append(w)
                first.append(w @ x)
        except torch.OutOfMemoryError:
            made = len(weights) * rows * cols * 2
            print(f"beyond_card: out of memory after {len(weights)} of {count} tensors "
                  f"({made / 2**30:.1f} of {count * rows * cols * 2 / 2**30:.1f} GiB; the card has {card / 2**30:.1f} GiB)",
                  file=sys.stderr)
            sys.exit(3)
    pass_s, last = [], []
    for _ in range(args.passes):
        with common.Timer() as t:
            last = [w @ x for w in weights]
        pass_s.append(t.s)
        common.step()
    exact = all(torch.equal(a, b) for a, b in zip(first, last))
    total = count * rows * cols * 2
    outputs = {"first": torch.cat(first).flatten(), "last": torch.cat(last).flatten()}
    common.finish(args, outputs, {"tensors": count, "total_bytes": total, "card_bytes": card,
                                  "build_s": build.s, "pass_s": pass_s,
                                  "pass_gb_per_s": [total / s / 1e9 for s in pass_s], "exact": exact})
    if not exact:
        print("beyond_card: a pass's products differ from the first ones", file=sys.stderr)
        sys.exit(4)


if __name__ == "__main__":
    main()
