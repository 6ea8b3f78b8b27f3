#!/usr/bin/env python3
"""A ReLU MLP whose post-ReLU activations are kept for a backward pass (the case of saved
activations in training). The bias sets the sparsity: --sparsity 0.9 makes about 90% of the
saved activations zero. Outputs: loss, the input gradient and the weight gradients."""
import torch

import common


def main():
    ap = common.parser(__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    dev = common.setup(args)
    g = torch.Generator(device=dev).manual_seed(args.seed)
    # For x·w ~ N(0, 1) per unit, a bias of -z(sparsity) leaves (1 - sparsity) positive.
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(args.sparsity)).item()
    ws = [torch.randn(args.width, args.width, device=dev, dtype=torch.bfloat16, generator=g).div_(args.width ** 0.5).requires_grad_()
          for _ in range(args.layers)]
    bias = torch.full((args.width,), -z, device=dev, dtype=torch.bfloat16)
    x = torch.randn(args.batch, args.width, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
    zeros = []
    with common.Timer() as t:
        for _ in range(args.steps):
            h = x
            for w in ws:
                h = torch.relu(h @ w + bias)
                zeros.append((h == 0).float().mean().item())
                h = h * (1.0 / max(1e-3, 1 - args.sparsity)) ** 0.5
            loss = h.float().pow(2).mean()
            for w in ws:
                w.grad = None
            x.grad = None
            loss.backward()
            common.step()
    outputs = {"loss": loss.detach(), "x_grad": x.grad}
    outputs.update({f"w{i}_grad": w.grad for i, w in enumerate(ws)})
    common.finish(args, outputs, {"steps_per_s": args.steps / t.s, "measured_sparsity": sum(zeros) / len(zeros),
                                  "saved_activation_bytes": args.layers * args.batch * args.width * 2})


if __name__ == "__main__":
    main()
