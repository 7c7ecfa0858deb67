"""Linear probe on frozen features (Goyal et al., ICCV 2019 protocol, as in PIRL Table 7).

Features are standardised with the training set's statistics (a BatchNorm without affine parameters, frozen
after the statistics are known), then one linear layer is trained with SGD, Nesterov momentum 0.9, weight decay
5e-4 and a stepped schedule (x0.1 at 8/28, 16/28 and 24/28 of the epochs: Goyal's 28-epoch ImageNet schedule,
stretched or shrunk to the configured number of epochs). Reports top-1 and top-5 on the test features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_bench import faults
from ssl_bench.config import ConfigError, non_negative, one_of, positive

MILESTONES = (8 / 28, 16 / 28, 24 / 28)
PROTOCOLS = ("cached", "augmented")
POOLS = ("adaptive", "fixed")


@dataclass
class LinearConfig:
    """Linear probe on frozen, cached features (Goyal et al. 2019 protocol, shrunk: see `epochs`)."""

    layers: list[str] = field(default_factory=lambda: ["all"])  # stage names, or "all"
    max_dims: int = 9216  # each stage average-pooled to at most this many dims (Goyal et al.: ~9k)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    # cached: one pass of the test view through the trunk, features kept, heads trained on them (fast; small presets);
    # augmented: Goyal et al.'s, every step a random-resized crop + flip through the frozen trunk, all stages' heads
    # trained in the same pass (VISSL's eval_mlp), nothing cached (imagenet-paper). Rows: protocol "" / "augmented".
    protocol: str = "cached"
    # adaptive: each stage to the k x k grid of max_dims (any size); fixed: FSSB's AvgPool windows for a ResNet at 224 px
    # (conv1 k10 s10 p4 ... res5 k6 s1), the same grids, defined only at those map sizes
    pool: str = "adaptive"
    # share of the training images held out (class-balanced, data.seed) to choose the best layer; 0 = choose on the test
    # split, as Goyal et al. (whose "val" is ImageNet's, the test split here)
    val_fraction: float = 0.1

    def check(self) -> None:
        positive("linear", self, "epochs", "batch_size", "max_dims")
        non_negative("linear", self, "lr", "weight_decay", "val_fraction")
        one_of("linear", self, "protocol", PROTOCOLS)
        one_of("linear", self, "pool", POOLS)
        if self.val_fraction >= 0.5:
            raise ConfigError(
                f"linear.val_fraction={self.val_fraction}: the held-out share of the training images must be below "
                "0.5 (0.1 holds out 10% to choose the best layer; 0 chooses it on the test split)"
            )


def topk_accuracy(logits: Tensor, target: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Percent of samples whose label is among the k highest scores."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (N, kmax)
    hit = top == target[:, None]
    return {f"top{k}": 100.0 * int(hit[:, :k].any(1).sum()) / len(target) for k in ks}


def train_linear(x: Tensor, y: Tensor, num_classes: int, cfg: LinearConfig, seed: int = 0) -> torch.nn.Module:
    """(N, D) features, (N,) labels -> a standardise + linear classifier."""
    g = torch.Generator().manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    opt = torch.optim.SGD(
        head.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )
    steps_per_epoch = max(1, -(-len(x) // cfg.batch_size))
    milestones = [round(m * cfg.epochs * steps_per_epoch) for m in MILESTONES]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    xs = (x - mean) / std
    for _ in range(cfg.epochs):
        faults.point("probe")
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.cross_entropy(head(xs[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return torch.nn.Sequential(Standardise(mean, std), head).eval()


class Standardise(torch.nn.Module):
    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def probe(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int, cfg: LinearConfig, seed: int = 0
) -> dict[str, float]:
    head = train_linear(train_x, train_y, num_classes, cfg, seed)
    with torch.no_grad():
        return topk_accuracy(head(test_x), test_y)
