#!/usr/bin/env python3
"""A few AMP training steps of a small transformer with gradient accumulation and a fused
AdamW optimizer; the loss is recorded per step. Outputs: the losses and the final parameters.
Under torchrun (`torchrun --nproc-per-node 2 train.py ...`) it is DDP over NCCL: each rank
draws its own batches (seed + rank), gradients are averaged, rank 0 writes the outputs (its
losses, and the parameters, the same on every rank)."""
import torch
import torch.nn as nn

import common


def main():
    ap = common.parser(__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--accumulate", type=int, default=2)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    dev = common.setup(args)
    vocab = 32000
    layer = nn.TransformerEncoderLayer(args.dim, nhead=16, dim_feedforward=4 * args.dim, batch_first=True, dropout=0.0)
    model = nn.Sequential(nn.Embedding(vocab, args.dim), nn.TransformerEncoder(layer, args.layers), nn.Linear(args.dim, vocab)).to(dev)
    rank, world, _ = common.distributed()
    trained = model
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    g = torch.Generator(device=dev).manual_seed(args.seed + rank)
    losses = []
    # SDPA's flash / memory-efficient backward accumulate with atomics (not deterministic);
    # the math backend is, so that a difference between two runs is not the workload's own.
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH), common.Timer() as t:
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(args.accumulate):
                ids = torch.randint(0, vocab, (args.batch, args.seq + 1), device=dev, generator=g)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = trained(ids[:, :-1])
                    loss = nn.functional.cross_entropy(logits.float().reshape(-1, vocab), ids[:, 1:].reshape(-1)) / args.accumulate
                loss.backward()
                total += loss.item()
            opt.step()
            losses.append(total)
            common.step()
    outputs = {"losses": torch.tensor(losses)}
    outputs.update({f"p{i}": p.detach() for i, p in enumerate(model.parameters())})
    common.finish(args, outputs, {"steps_per_s": args.steps / t.s, "final_loss": losses[-1],
                                  "tokens_per_s": args.steps * args.accumulate * args.batch * args.seq / t.s})


if __name__ == "__main__":
    main()
