#!/usr/bin/env python3
"""Two models loaded in one process and used alternately (model switching): two Llama-style
decoders built from configs with random weights, each asked in turn for the logits of a batch.
Outputs: each model's logits in each round. With --idle-s, the process then sleeps (no CUDA
call) and times the first forward of model 1 after it (`wake_s`, which under ltshim idle
packing restores the model) against a second one (`warm_s`)."""
import time

import torch

import common


def build(dev, hidden, layers, seed):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 128,
                      num_key_value_heads=max(1, hidden // 512), intermediate_size=hidden * 8 // 3 // 256 * 256,
                      vocab_size=32000, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(dev):
        return LlamaForCausalLM(cfg).to(torch.bfloat16).eval()


def main():
    ap = common.parser(__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--idle-s", type=float, default=0, help="sleep this long at the end, then time waking model 1")
    args = ap.parse_args()
    dev = common.setup(args)
    models = [build(dev, args.hidden, args.layers, args.seed + i) for i in range(2)]
    g = torch.Generator(device=dev).manual_seed(args.seed)
    ids = torch.randint(0, 32000, (4, 256), device=dev, generator=g)
    outputs = {}
    with torch.no_grad(), common.Timer() as t:
        for r in range(args.rounds):
            for i, m in enumerate(models):
                outputs[f"round{r}_model{i}"] = m(ids).logits[:, -1].float()
            common.step()
    metrics = {"switches_per_s": args.rounds * 2 / t.s}
    if args.idle_s > 0:
        torch.cuda.synchronize()
        time.sleep(args.idle_s)
        with torch.no_grad():
            for name in ("wake_s", "warm_s"):
                t0 = time.perf_counter()
                outputs[f"after_idle_{name}"] = models[1](ids).logits[:, -1].float()
                torch.cuda.synchronize()
                metrics[name] = time.perf_counter() - t0
        metrics["model_bytes"] = sum(p.numel() * p.element_size() for p in models[1].parameters())
    common.finish(args, outputs, metrics)


if __name__ == "__main__":
    main()
