#!/usr/bin/env python3
"""torchvision ResNet-50 with random weights: AMP inference on a batch, then one AMP training
step (the cuDNN convolution path). Outputs: the inference logits, the loss, the first conv's
gradient."""
import torch
import torchvision

import common


def main():
    ap = common.parser(__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    dev = common.setup(args)
    model = torchvision.models.resnet50(weights=None).to(dev).to(memory_format=torch.channels_last)
    g = torch.Generator(device=dev).manual_seed(args.seed)
    x = torch.randn(args.batch, 3, 224, 224, device=dev, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=dev, generator=g)
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(x).float()
        with common.Timer() as ti:
            for _ in range(args.iters):
                model(x)
                common.step()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with common.Timer() as tt:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        grad = model.conv1.weight.grad.detach().clone()
        opt.step()
        common.step()
    common.finish(args, {"logits": logits, "loss": loss.detach(), "conv1_grad": grad},
                  {"inference_images_per_s": args.batch * args.iters / ti.s, "train_step_s": tt.s})


if __name__ == "__main__":
    main()
