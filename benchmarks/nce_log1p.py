"""Issue 19 (c), a candidate not adopted yet: log(1 - h) as log1p(-h) from the sigmoid pass, the gradient as h.

The NCE loss's element-wise work over the (B, K) scores, forward + backward, two ways, on the same scores:

* ``FusedNCE`` (the loss in use): logit, sigmoid (the negatives' weights), ATen's log-sigmoid forward and backward;
* the candidate: logit, sigmoid, gradient h / (B·τ) (d/ds of -log(1 - h) is h/τ), log1p(-h), row sums; the same
  chunks of rows. Not bit-identical (the gradient differs at float32 rounding), and log1p(-h) is -inf where h rounds
  to 1 (logit above ~16.6), which the loss in use never is: adopting it needs a guard and a new ci baseline.

Prints both times, their agreement and one (B x 128) @ (128 x K) matmul as the unit of table (c).

    python benchmarks/nce_log1p.py [--batch 256] [--negatives 32000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_bench.modules.nce import FusedNCE, chunk_rows, nce_shift

N, DIM, TAU = 1_281_167, 128, 0.07


def candidate(pos: Tensor, neg: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """(loss, d loss / d neg) with log(1 - h) = log1p(-h) from the sigmoid pass."""
    b, k = neg.shape
    rows = chunk_rows(b, k, neg.device)
    grad, log_1mh = torch.empty_like(neg), neg.new_empty(b)
    logit, value = neg.new_empty(rows, k), neg.new_empty(rows, k)
    for i in range(0, b, rows):
        n = min(rows, b - i)
        x, h = logit[:n], value[:n]
        torch.div(neg[i : i + n], TAU, out=x).sub_(shift)
        torch.sigmoid(x, out=h)
        torch.mul(h, 1 / (b * TAU), out=grad[i : i + n])
        torch.sum(h.neg_().log1p_(), 1, out=log_1mh[i : i + n])
    loss = -(F.logsigmoid(pos / TAU - shift) + log_1mh).mean()
    return loss, grad


def median_ms(fn: Callable[[], object], repeats: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--negatives", type=int, default=32_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    f = F.normalize(torch.randn(args.batch, DIM), dim=1)
    bank = F.normalize(torch.randn(args.negatives, DIM), dim=1)
    neg = (f @ bank.T).requires_grad_()
    pos = torch.rand(args.batch).requires_grad_()
    shift = nce_shift(torch.tensor(N * 1.1), args.negatives, N, neg.device)

    def fused() -> tuple[Tensor, Tensor]:
        neg.grad = pos.grad = None
        loss, _ = FusedNCE.apply(pos, neg, TAU, shift)
        loss.backward()
        return loss, neg.grad

    loss_a, grad_a = fused()
    loss_b, grad_b = candidate(pos.detach(), neg.detach(), shift)
    out = torch.empty(args.batch, args.negatives)
    matmul = median_ms(lambda: torch.mm(f, bank.T, out=out))
    t_fused, t_candidate = median_ms(fused), median_ms(lambda: candidate(pos.detach(), neg.detach(), shift))
    print(f"B = {args.batch}, K = {args.negatives}, float32, {torch.get_num_threads()} threads")
    print(f"loss: fused {loss_a.item():.7f}, candidate {loss_b.item():.7f}")
    rel = ((grad_a - grad_b).abs().max() / grad_a.abs().max()).item()
    print(f"gradient: largest difference {rel:.1e} of the largest entry")
    print(
        f"one matmul {matmul:.2f} ms; fused forward + backward {t_fused:.2f} ms ({t_fused / matmul:.2f}x); "
        f"candidate {t_candidate:.2f} ms ({t_candidate / matmul:.2f}x)"
    )


if __name__ == "__main__":
    main()
