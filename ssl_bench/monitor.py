"""Watching a method's embedding while it trains, to see a collapse as it happens (issue 18).

After every pretraining epoch the engine asks the ``Monitor`` for a few numbers on fixed images, the same for every
epoch and every method (test views, indices drawn once from a fixed seed):

* ``rankme``: the effective rank of the embeddings of ``images`` pretraining images (RankMe, Garrido et al., ICML
  2023, arXiv:2210.02885): at most min(images, D), about 1 when every image maps to one direction;
* ``mean_cos``: their mean pairwise cosine similarity (1 when every image maps to the same direction);
* ``knn_top1``: where the data has labels, the top-1 of NPID's weighted kNN (``eval.knn``) from ``knn_train`` train
  images to ``knn_test`` test images (the online kNN of solo-learn and stable-pretraining).

The embedding is the method's own (``Method.embeddings()["image"]``: NPID++'s and PIRL's 128-d f, key prefix
``monitor/head/``) where it has one, else the backbone's pooled features (``monitor/pooled/``), as the kNN
evaluation names them. The monitor works in eval mode under no_grad inside a fork of the RNG state, so training
numbers are the same with it on or off; it is in no result's hash. It embeds at most ``max_fraction`` x the
pretraining images each epoch (the RankMe batch first), so it costs a few % of an epoch on a small dataset too
(``benchmarks/monitor_cost.py``). A RankMe below ``rank_warn`` x min(images, D) warns once per run
(``CollapseWarning``), without stopping it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from ssl_bench.config import ConfigError, non_negative, positive
from ssl_bench.data.transforms import TestCrop
from ssl_bench.data.types import Splits
from ssl_bench.eval.features import HEAD, POOLED
from ssl_bench.eval.knn import knn

EPS = 1e-7  # RankMe's epsilon (Garrido et al. 2023, Eq. 1)
SEED = 0  # the fixed images: the same for every method, run seed and epoch


@dataclass
class MonitorConfig:
    """The per-epoch collapse monitor (``ssl_bench.monitor``). Not part of any result's hash."""

    enabled: bool = True
    images: int = 256  # fixed pretraining images for RankMe and the mean cosine
    knn_train: int = 2000  # labelled train images the online kNN votes from (0 = no kNN)
    knn_test: int = 500  # test images it classifies (0 = no kNN)
    knn_k: int = 20  # neighbours (solo-learn's online kNN; the kNN evaluation's paper value is 200)
    max_fraction: float = 0.05  # all of the above at most this x the pretraining images (README: cost)
    rank_warn: float = 0.05  # warn once when RankMe < rank_warn x min(images, embedding dim); 0 = never
    batch_size: int = 256  # images per forward pass

    def check(self) -> None:
        positive("monitor", self, "images", "knn_k", "max_fraction", "batch_size")
        non_negative("monitor", self, "knn_train", "knn_test", "rank_warn")
        if self.images < 2:
            raise ConfigError(f"monitor.images must be at least 2 (a cosine needs a pair), got {self.images}")

    def sizes(self, pretrain: int, train: int, test: int, labelled: bool) -> tuple[int, int, int]:
        """(images, knn_train, knn_test) the monitor embeds each epoch: ``max_fraction`` x ``pretrain`` images in all
        (its cost against an epoch's), the RankMe batch first, the rest to the kNN in the configured proportion; no kNN
        without labels or with fewer than ``knn_k`` train images left."""
        budget = max(2, math.floor(self.max_fraction * pretrain))
        images = min(self.images, budget, pretrain)
        wanted = self.knn_train + self.knn_test
        if not labelled or not self.knn_train or not self.knn_test:
            return images, 0, 0
        left = min(budget - images, wanted)
        knn_train = min(left * self.knn_train // wanted, train)
        knn_test = min(left - left * self.knn_train // wanted, test)
        if knn_train < self.knn_k or knn_test < 1:
            return images, 0, 0
        return images, knn_train, knn_test


class CollapseWarning(UserWarning):
    """The embedding's effective rank fell below ``monitor.rank_warn``: the method may be collapsing."""


def rankme(z: Tensor) -> float:
    """RankMe of (N, D) embeddings: exp of the entropy of the singular values normalised to sum 1 (plus ``EPS``)."""
    z = z.detach().double().cpu()
    if not torch.isfinite(z).all():
        return math.nan  # the loss check stops a diverging run; the monitor only reports it
    s = torch.linalg.svdvals(z)  # (min(N, D),)
    p = s / s.sum() + EPS
    return float(torch.exp(-(p * p.log()).sum()))


def mean_cosine(z: Tensor) -> float:
    """Mean cosine similarity over the N(N - 1) ordered pairs of distinct rows of (N, D) embeddings."""
    n = len(z)
    u = F.normalize(z.detach().double().cpu(), dim=1)
    gram = u @ u.T  # (N, N)
    return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


class _Cropped(Dataset):
    """(the test view's geometry before normalisation, label): uint8 stays uint8, 1 byte a value to hold."""

    def __init__(self, base: Dataset, image_size: int) -> None:
        self.base, self.crop = base, v2.Compose([v2.ToImage(), TestCrop(image_size)])

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image, label = self.base[i]
        return self.crop(image).as_subclass(Tensor), int(label)


def fixed_subset(dataset: Dataset, n: int, image_size: int, workers: int) -> tuple[Tensor, Tensor]:
    """-> ((n, 3, S, S) cropped images, (n,) labels) of n images of ``dataset`` drawn once from ``SEED``."""
    size = len(dataset)  # type: ignore[arg-type]
    index = torch.randperm(size, generator=torch.Generator().manual_seed(SEED))[: min(n, size)].sort().values
    loader = DataLoader(Subset(_Cropped(dataset, image_size), index.tolist()), batch_size=256, num_workers=workers)
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


class Monitor:
    """Built once per pretraining unit; ``monitor(method, epoch)`` -> {"monitor/<layer>/<metric>": value}."""

    def __init__(
        self,
        splits: Splits,
        cfg: MonitorConfig,
        device: torch.device,
        dtype: torch.dtype | None = None,
        workers: int = 0,
        name: str = "",
    ) -> None:
        info = splits.info
        self.cfg, self.device, self.dtype, self.name = cfg, device, dtype, name
        self.mean, self.std, self.num_classes = list(info.mean), list(info.std), info.num_classes
        self.warned = False
        sets = (splits.pretraining(), splits.train, splits.test)
        images, knn_train, knn_test = cfg.sizes(*(len(d) for d in sets), info.num_classes > 0)  # type: ignore[arg-type]
        self.labelled = knn_train > 0
        with torch.random.fork_rng(devices=[]):  # a DataLoader draws its base seed from the global generator
            self.images, _ = fixed_subset(splits.pretraining(), images, info.image_size, workers)
            if self.labelled:
                self.train_x, self.train_y = fixed_subset(splits.train, knn_train, info.image_size, workers)
                self.test_x, self.test_y = fixed_subset(splits.test, knn_test, info.image_size, workers)

    def embed(self, fn: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
        """(N, 3, S, S) cropped images -> (N, D) float32 embeddings, normalised as ``eval_view`` does."""
        out = []
        for i in range(0, len(images), self.cfg.batch_size):
            x = v2.functional.to_dtype(images[i : i + self.cfg.batch_size], torch.float32, scale=True)
            x = v2.functional.normalize(x, self.mean, self.std).to(self.device)
            with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
                out.append(fn(x).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, method: torch.nn.Module, epoch: int = 0) -> dict[str, float]:
        """The numbers of ``method`` as it is now; its train/eval mode and the RNG state are left as they were."""
        t0 = time.perf_counter()
        own = method.embeddings().get("image")
        layer, fn = (HEAD, own) if own is not None else (POOLED, method.backbone)
        was_training = method.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            method.eval()
            try:
                z = self.embed(fn, self.images)  # (N, D)
                out = {f"monitor/{layer}/rankme": rankme(z), f"monitor/{layer}/mean_cos": mean_cosine(z)}
                if self.labelled:
                    train, test = self.embed(fn, self.train_x), self.embed(fn, self.test_x)
                    scores = knn(train, self.train_y, test, self.test_y, self.num_classes, self.cfg.knn_k)
                    out[f"monitor/{layer}/knn_top1"] = scores["top1"]
            finally:
                method.train(was_training)
        self.warn(out[f"monitor/{layer}/rankme"], min(z.shape), layer, epoch)
        out["monitor/seconds"] = time.perf_counter() - t0
        return out

    def warn(self, rank: float, most: int, layer: str, epoch: int) -> None:
        """Once per run: RankMe below ``rank_warn`` x its largest possible value."""
        if self.warned or not rank < self.cfg.rank_warn * most:  # NaN (non-finite embeddings) does not count
            return
        self.warned = True
        who = f"{self.name}: " if self.name else ""
        warnings.warn(
            f"{who}the {layer} embedding may be collapsing: RankMe {rank:.1f} of at most {most} after epoch {epoch} "
            f"(below monitor.rank_warn={self.cfg.rank_warn:g} x {most}); training goes on",
            CollapseWarning,
            stacklevel=2,
        )

    @staticmethod
    def describe(values: dict[str, float]) -> str:
        """The console's short form: "rank 41.2 cos 0.31 knn 45.2"."""
        short = {"rankme": "rank {:.1f}", "mean_cos": "cos {:.2f}", "knn_top1": "knn {:.1f}"}
        parts = []
        for key, value in values.items():
            metric = key.rsplit("/", 1)[-1]
            if metric in short:
                parts.append(short[metric].format(value))
        return " ".join(parts)
