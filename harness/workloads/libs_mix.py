#!/usr/bin/env python3
"""The CUDA libraries beyond cuBLAS and cuDNN, each phase on tensors of its own: cuFFT
(torch.fft), cuSOLVER (torch.linalg), cuSPARSE (a CSR matrix product), PyTorch's Philox
random kernels (cuRAND's device API), foreach kernels, a side stream, a torch.compile'd
(Triton) function and a captured CUDA graph. The phases run --rounds times in turn, so between
two uses a phase's tensors go cold: under a limit the library packs them and restores them at
the next use, through each library's own calls. Outputs: every phase's result of every round.
Sizes: --mib sets the image, the sparse matrix's dense form, the foreach tensors (16 of
mib/16 each, and their steps), the side stream's input and the compiled function's input
(the linear solve's matrix is fixed at 16 MiB); with the defaults (32 MiB, 3 rounds) the
inputs take ~0.25 GiB and the outputs, kept on the GPU, ~0.13 GiB a round. Every phase runs
once before the timed rounds (compilation, plans and handles), its output discarded."""
import torch
import torch.nn.functional as F

import common


def main():
    ap = common.parser(__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=32, help="the size of each phase's main tensor, MiB")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    dev = common.setup(args)
    g = torch.Generator(device=dev).manual_seed(args.seed)
    floats = (args.mib << 20) // 4

    side = int(floats ** 0.5) // 64 * 64
    image = torch.randn(side, side, device=dev, generator=g)  # cuFFT
    k = 2048
    a = torch.randn(k, k, device=dev, generator=g)
    spd = a @ a.T / k + torch.eye(k, device=dev)  # cuSOLVER: symmetric positive definite
    del a
    rhs = torch.randn(k, 256, device=dev, generator=g)
    rows = 8192
    mask = torch.rand(rows, floats // rows, device=dev, generator=g) < 0.05
    # cuSPARSE's product may sum in a different order from run to run (its docs say so of a
    # transposed operand), so its values are small integers: every order gives the same float
    ints = lambda *shape: torch.randint(-8, 9, shape, device=dev, generator=g).float()  # noqa: E731
    sparse = (ints(rows, floats // rows) * mask).to_sparse_csr()  # cuSPARSE
    del mask
    dense = ints(floats // rows, 64)
    many = [torch.randn(floats // 16, device=dev, generator=g) for _ in range(16)]  # foreach
    steps = [torch.full_like(t, 1e-3) for t in many]
    stream = torch.cuda.Stream()  # a side stream
    w_side = torch.randn(2048, 2048, device=dev, generator=g)
    x_side = torch.randn(floats // 2048, 2048, device=dev, generator=g)
    compiled = torch.compile(lambda t: torch.sin(t) * 1.5 + t.cos())
    v = torch.randn(floats, device=dev, generator=g)
    w_graph = torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16, generator=g) * 0.03
    static_in = torch.randn(floats // 2 // 1024, 1024, device=dev, dtype=torch.bfloat16, generator=g)
    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):
        for _ in range(2):
            F.layer_norm(F.linear(static_in, w_graph).float(), (1024,))
    torch.cuda.current_stream().wait_stream(warm)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = F.layer_norm(F.linear(static_in, w_graph).float(), (1024,))
    graph_inputs = static_in.clone()

    def fft():
        return torch.view_as_real(torch.fft.rfft2(image))

    def linalg():
        chol = torch.linalg.cholesky(spd)
        return torch.cat([torch.linalg.solve(spd, rhs), torch.cholesky_solve(rhs, chol)], 1)

    def sparse_mm():
        return sparse @ dense

    def random(r):
        gr = torch.Generator(device=dev).manual_seed(1000 + r)
        return torch.randn(floats // 4, device=dev, generator=gr) * torch.rand(floats // 4, device=dev, generator=gr)

    def foreach():
        torch._foreach_mul_(many, 0.999)
        torch._foreach_add_(many, steps)
        return torch.stack([t.sum(dtype=torch.float64) for t in many] + [many[0][:4096].double().sum()])

    def side_stream():
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            y = F.relu(x_side @ w_side)
        torch.cuda.current_stream().wait_stream(stream)
        y.record_stream(torch.cuda.current_stream())
        return y

    def triton():
        return compiled(v)

    def cuda_graph(r):
        static_in.copy_(graph_inputs * (r + 1))
        graph.replay()
        return static_out.clone()

    phases = [("fft", lambda r: fft()), ("linalg", lambda r: linalg()), ("sparse", lambda r: sparse_mm()), ("random", random),
              ("foreach", lambda r: foreach()), ("side_stream", lambda r: side_stream()), ("triton_compiled", lambda r: triton()),
              ("cuda_graph", cuda_graph)]
    for _, f in phases:  # compilation, cuFFT's plan, cuSOLVER's and cuSPARSE's handles
        f(0)
    torch.cuda.synchronize()
    outputs = {}
    with common.Timer() as t:
        for r in range(args.rounds):
            for name, f in phases:
                outputs[f"{name}_{r}"] = f(r)
            common.step()
    common.finish(args, outputs, {"rounds_per_s": args.rounds / t.s})


if __name__ == "__main__":
    main()
