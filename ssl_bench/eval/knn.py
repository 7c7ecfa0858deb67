"""Weighted k-nearest-neighbour classifier of NPID (Wu et al., CVPR 2018, arXiv:1805.01978, Sec. 3.4).

Cosine similarity between L2-normalised features; each of the k nearest training samples votes for its class
with weight exp(s / T) (k = 200, T = 0.07 in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_bench.config import positive
from ssl_bench.eval.linear_probe import topk_accuracy


@dataclass
class KNNConfig:
    """Weighted kNN of NPID (Wu et al. 2018): cosine similarity, k neighbours weighted by exp(s / T)."""

    k: int = 200
    temperature: float = 0.07

    def check(self) -> None:
        positive("knn", self, "k")


@torch.no_grad()
def knn_scores(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> Tensor:
    """-> (N_test, num_classes) summed vote weights."""
    train = F.normalize(train_x.float(), dim=1)  # (N, D)
    k = min(k, len(train))
    out = []
    for i in range(0, len(test_x), chunk):
        q = F.normalize(test_x[i : i + chunk].float(), dim=1)  # (b, D)
        sim, idx = (q @ train.T).topk(k, dim=1)  # (b, k)
        votes = torch.zeros(len(q), num_classes)
        votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
        out.append(votes)
    return torch.cat(out)


def knn(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
) -> dict[str, float]:
    return topk_accuracy(knn_scores(train_x, train_y, test_x, num_classes, k, temperature), test_y)
