from __future__ import annotations

import math

import torch

from ssl_bench.eval.features import grid_size
from ssl_bench.eval.knn import knn_scores
from ssl_bench.eval.linear_probe import LinearConfig, probe, topk_accuracy


def knn_reference(train_x, train_y, test_x, num_classes, k, t):
    """Slow, obviously-correct weighted kNN: loop over test samples."""
    out = torch.zeros(len(test_x), num_classes, dtype=torch.float64)
    for i, q in enumerate(test_x.double()):
        sims = [(float(q @ x / (q.norm() * x.norm())), int(y)) for x, y in zip(train_x.double(), train_y)]
        sims.sort(key=lambda s: -s[0])
        for s, y in sims[:k]:
            out[i, y] += math.exp(s / t)
    return out


def test_knn_matches_slow_reference() -> None:
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(60, 8, generator=g), torch.randn(7, 8, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g)
    fast = knn_scores(train_x, train_y, test_x, 4, k=10, temperature=0.07, chunk=3)
    ref = knn_reference(train_x, train_y, test_x, 4, 10, 0.07)
    torch.testing.assert_close(fast.double(), ref, rtol=1e-4, atol=1e-3)


def test_topk_accuracy_counts_hits() -> None:
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    target = torch.tensor([0, 1, 2])
    assert topk_accuracy(logits, target, (1, 2)) == {"top1": 100 / 3, "top2": 200 / 3}


def test_linear_probe_learns_separable_data() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 20, generator=g) * 3
    y = torch.randint(0, 5, (500,), generator=g)
    x = centers[y] + torch.randn(500, 20, generator=g)
    scores = probe(x[:400], y[:400], x[400:], y[400:], 5, LinearConfig(epochs=10))
    assert scores["top1"] > 95 and scores["top5"] == 100


def test_pooling_rule_matches_the_paper_dimensions() -> None:
    # Goyal et al. / PIRL Table 7 at 224 px: conv1 64x12x12, res2 256x6x6, res3 512x4x4, res4 1024x3x3, res5 2048x2x2
    assert [grid_size(c, s, 9216) for c, s in [(64, 112), (256, 56), (512, 28), (1024, 14), (2048, 7)]] == [
        12,
        6,
        4,
        3,
        2,
    ]
    assert grid_size(512, 1, 9216) == 1  # never above the map's own size
