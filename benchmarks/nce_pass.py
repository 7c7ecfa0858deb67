"""Issue 19 (c): the NCE loss's element-wise work over the (B, K) scores, forward + backward, against one matmul.

Three ways on the same scores, interleaved, median of each:

* ``FusedNCE`` (the loss in use): per row chunk the logit, sigmoid (weight and gradient), log(1 - h) in float64;
* the autograd graph it replaced (log-sigmoid both ways, autograd's backward): ``tests/test_nce_fused.py``'s reference;
* one (B x 128) @ (128 x K) float32 matmul into a preallocated output, the unit of table (c).

Then ATen's CPU kernels that could compute log(1 - h), in ns an element on one chunk of the fused pass: which are
vectorised here (sigmoid, exp, log) and which are not (log-sigmoid, log1p, softplus), the reason for the pass's
design. And the loss of both against float64.

    python benchmarks/nce_pass.py [--batch 256] [--negatives 32000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_bench.modules.nce import CHUNK_BYTES, nce_logits, nce_loss

N, DIM, TAU = 1_281_167, 128, 0.07


def graph_loss(pos: Tensor, neg: Tensor, z: Tensor) -> Tensor:
    """The unfused autograd graph: -mean(logsigmoid(x_pos) + Σ_k logsigmoid(-x_neg))."""
    k = neg.shape[1]
    return -(F.logsigmoid(nce_logits(pos, TAU, z, k, N)) + F.logsigmoid(-nce_logits(neg, TAU, z, k, N)).sum(1)).mean()


def float64_loss(pos: Tensor, neg: Tensor, z: Tensor) -> float:
    noise = neg.shape[1] / N
    p_pos, p_neg = torch.exp(pos.double() / TAU) / float(z), torch.exp(neg.double() / TAU) / float(z)
    return float(-(torch.log(p_pos / (p_pos + noise)) + torch.log(noise / (p_neg + noise)).sum(1)).mean())


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--negatives", type=int, default=32_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    f = F.normalize(torch.randn(args.batch, DIM), dim=1)
    bank = F.normalize(torch.randn(args.negatives, DIM), dim=1)
    neg, pos = (f @ bank.T).contiguous(), torch.rand(args.batch)
    z = torch.tensor(N * 1.1)
    out = torch.empty(args.batch, args.negatives)

    def backward_of(loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            p, n = pos.clone().requires_grad_(), neg.clone().requires_grad_()
            loss = loss_fn(p, n, z)
            loss.backward()
            return loss.detach()

        return run

    fused = backward_of(lambda p, n, z: nce_loss(p, n, TAU, z, N))
    graph = backward_of(graph_loss)
    ms = interleaved_ms({"matmul": lambda: torch.mm(f, bank.T, out=out), "fused": fused, "graph": graph}, args.repeats)
    print(f"B = {args.batch}, K = {args.negatives:,}, float32, {torch.get_num_threads()} threads")
    print("| NCE loss, forward + backward | ms | / matmul |\n|---|--:|--:|")
    print(f"| one ({args.batch} x {DIM}) @ ({DIM} x {args.negatives:,}) matmul | {ms['matmul']:.2f} | 1.00 |")
    for name, label in (("fused", "`FusedNCE` (in use)"), ("graph", "autograd graph of log-sigmoid (replaced)")):
        print(f"| {label} | {ms[name]:.2f} | {ms[name] / ms['matmul']:.2f} |")
    want = float64_loss(pos, neg, z)
    for name, run in (("fused", fused), ("graph", graph)):
        got = float(run())
        print(f"loss {name}: {got:.8f}, float64 {want:.8f}, relative error {abs(got - want) / abs(want):.1e}")

    chunk = nce_logits(neg.flatten()[: CHUNK_BYTES // 4], TAU, z, args.negatives, N)  # one chunk of logits
    h, dst = torch.sigmoid(chunk), torch.empty_like(chunk)
    kernels: dict[str, Callable[[], object]] = {
        "sigmoid(x)": lambda: torch.sigmoid(chunk, out=dst),
        "exp(x)": lambda: torch.exp(chunk, out=dst),
        "log(1 - h)": lambda: torch.log(1 - h, out=dst),
        "log-sigmoid(-x)": lambda: F.logsigmoid(-chunk),
        "log1p(-h)": lambda: torch.log1p(-h, out=dst),
        "softplus(x)": lambda: F.softplus(chunk),
    }
    per = interleaved_ms(kernels, args.repeats)
    print(
        f"\nATen CPU kernels on one chunk ({chunk.numel():,} float32 logits; log(1 - h), log-sigmoid(-x) and "
        "log1p(-h) include making 1 - h, -x, -h)"
    )
    print("| kernel | ns / element |\n|---|--:|")
    for name, t in per.items():
        print(f"| {name} | {t * 1e6 / chunk.numel():.2f} |")


if __name__ == "__main__":
    main()
