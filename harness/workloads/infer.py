#!/usr/bin/env python3
"""Causal-LM inference through Hugging Face transformers: greedy generation of N tokens and
the logits of a fixed prompt.

Default model: a Llama-architecture model built from a config with seeded random weights (no
download), sized by --params (3b = hidden 3072, 28 layers, 24 heads / 8 KV heads, vocabulary
128256: about 3.2B parameters), created directly in bf16 on the GPU (no fp32 copy ever exists,
so the peak is the model's, not a loading artifact). --model PATH loads a local checkpoint
instead. Under libltshim each decoded token is marked as one step (ltshim.step()).
--offload accelerate --max-gpu-memory SIZE runs the same model under accelerate's CPU offload
(the baseline users compare ltshim with). --devices N splits the random model's layers over N
GPUs of this process (a pipeline through accelerate's device map, built on the CPU first, so its
weights differ from the one-GPU model's; compare runs with the same N).

Writes --out FILE (torch.save: generated ids, the prompt's logits after generation and from
the first forward) and --metrics FILE (JSON:
prefill and decode tokens/s, peak memory). Runs alone: `python3 infer.py --params tiny`.
"""
import argparse
import json
import sys
import time

import torch

SIZES = {
    # name: hidden, layers, heads, kv_heads, intermediate, vocab
    "tiny": (256, 2, 4, 2, 688, 32000),
    "1b": (2048, 16, 32, 8, 8192, 128256),
    "3b": (3072, 28, 24, 8, 8192, 128256),
    # Llama 3 70B's shape with 88 layers: 77.4B parameters, 155 GB in bf16, more than an
    # H200 holds (150 GB): natively it runs out of memory while it is built
    "77b": (8192, 88, 64, 8, 28672, 128256),
}
PROMPT = ("The quick brown fox jumps over the lazy dog. Compression of GPU memory lets a model "
          "that almost fits run on the card it has, ")


from common import apply_device_limit, fake_int8, ltshim_loaded, parse_size, step  # noqa: E402


class default_dtype:
    """Parameters created inside are created in `dtype` (torch's default floating dtype), so a
    model built from a config never exists in fp32 first: no fp32 copy of the weights, no
    conversion, and the peak is the model's own. The initialisation draws from the same seeded
    generator in the same order, so the same seed gives the same weights in every run."""
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.saved = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.saved)


def build_model(args, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM, AutoModelForCausalLM
    if args.model:
        kw = {"dtype": dtype}
        if args.offload == "accelerate":
            kw.update(device_map="auto", max_memory={0: args.max_gpu_memory, "cpu": "200GiB"})
        m = AutoModelForCausalLM.from_pretrained(args.model, **kw)
        return m if args.offload else m.cuda()
    hidden, layers, heads, kv, inter, vocab = SIZES[args.params]
    cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                      max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(args.seed)
    if args.devices > 1:
        from accelerate import dispatch_model, infer_auto_device_map
        from accelerate.utils import get_balanced_memory
        with torch.device("cpu"), default_dtype(dtype):
            m = LlamaForCausalLM(cfg)
        keep = ["LlamaDecoderLayer"]
        mm = get_balanced_memory(m, max_memory={i: torch.cuda.get_device_properties(i).total_memory for i in range(args.devices)},
                                 no_split_module_classes=keep, dtype=dtype)
        return dispatch_model(m, device_map=infer_auto_device_map(m, max_memory=mm, no_split_module_classes=keep))
    if args.offload == "accelerate":
        from accelerate import dispatch_model, infer_auto_device_map
        with torch.device("cpu"), default_dtype(dtype):
            m = LlamaForCausalLM(cfg)
        dm = infer_auto_device_map(m, max_memory={0: args.max_gpu_memory, "cpu": "200GiB"},
                                   no_split_module_classes=["LlamaDecoderLayer"])
        return dispatch_model(m, device_map=dm)
    with torch.device("cuda"), default_dtype(dtype):
        m = LlamaForCausalLM(cfg)
    return m


class MarkSteps:
    """A stopping criterion that never stops generation: it marks each decoded token as one
    ltshim step (only added when the library is loaded)."""
    def __init__(self):
        self.never = None

    def __call__(self, input_ids, scores, **kw):
        step()
        if self.never is None or self.never.shape[0] != input_ids.shape[0]:
            self.never = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self.never


def prompt_ids(vocab, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=g)


def main():
    ap = argparse.ArgumentParser(description="causal-LM greedy generation and prompt logits")
    ap.add_argument("--params", default="3b", choices=sorted(SIZES))
    ap.add_argument("--model", help="a local checkpoint directory instead of a random model")
    ap.add_argument("--tokens", type=int, default=32, help="tokens to generate")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--offload", choices=["accelerate"], help="CPU offload baseline")
    ap.add_argument("--max-gpu-memory", default="8GiB", help="GPU share for --offload")
    ap.add_argument("--devices", type=int, default=1, help="split the random model over this many GPUs")
    ap.add_argument("--out", help="save generated ids and prompt logits here")
    ap.add_argument("--metrics", help="write metrics JSON here")
    ap.add_argument("--device-limit", help="cap this process's GPU memory (torch's per-process fraction)")
    ap.add_argument("--fake-int8", type=int, metavar="G", help="lossy's fidelity reference, natively: every Linear weight "
                    "replaced by what int8g with group G decodes it to (common.int8g_decoded) before anything runs")
    ap.add_argument("--fake-int8-skip", default="", help="with --fake-int8: comma-separated module names left as they are (e.g. lm_head)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("infer: no GPU here", file=sys.stderr)
        return 2
    if args.offload:
        args.max_gpu_memory = parse_size(args.max_gpu_memory)
    torch.backends.cuda.matmul.allow_tf32 = False
    apply_device_limit(args.device_limit)
    t0 = time.perf_counter()
    model = build_model(args, torch.bfloat16)
    model.eval()
    if args.fake_int8:
        n, el = fake_int8(model, args.fake_int8, skip=set(filter(None, args.fake_int8_skip.split(","))))
        print(f"infer: {n} Linear weights ({el / 1e9:.2f}B elements) replaced by their int8g (G={args.fake_int8}) decoding", file=sys.stderr)
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    ids = prompt_ids(vocab, args.prompt_len, args.seed).cuda()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        logits = model(ids).logits[0].float()  # warm-up and the fixed prompt's logits
        torch.cuda.synchronize()
        step()
        t0 = time.perf_counter()
        model(ids)
        torch.cuda.synchronize()
        step()
        prefill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        extra = {}
        if ltshim_loaded():
            from transformers import StoppingCriteriaList
            extra["stopping_criteria"] = StoppingCriteriaList([MarkSteps()])
        gen = model.generate(ids, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                             pad_token_id=0, eos_token_id=None, **extra)
        torch.cuda.synchronize()
        gen_s = time.perf_counter() - t0
        # the prompt's logits again, after generation: under a limit the weights have been
        # through their packed copies by now (a lossy copy is made only once a weight was
        # restored and then only read, so the first forward is exact by construction), and
        # these are the logits the fidelity bounds judge
        after = model(ids).logits[0].float()
    new = gen[0, ids.shape[1]:].cpu()
    metrics = {
        "params": params, "load_s": load_s,
        "prefill_tokens_per_s": args.prompt_len / prefill_s,
        "decode_tokens_per_s": len(new) / gen_s,
        "generated_tokens": len(new),
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(),
        "peak_reserved_bytes_by_device": [torch.cuda.max_memory_reserved(i) for i in range(args.devices)],
        "offload": args.offload or "none",
    }
    if args.out:
        torch.save({"generated": new, "logits": after.cpu(), "logits_first": logits.cpu(), "prompt_ids": ids[0].cpu()}, args.out)
    if args.metrics:
        with open(args.metrics, "w") as fh:
            json.dump(metrics, fh, indent=1)
    print(f"infer: {params / 1e9:.2f}B params, prefill {metrics['prefill_tokens_per_s']:.1f} tok/s, "
          f"decode {metrics['decode_tokens_per_s']:.2f} tok/s, peak {metrics['peak_allocated_bytes'] / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
