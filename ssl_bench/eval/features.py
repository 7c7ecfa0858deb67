"""Frozen features of every named stage, extracted once per checkpoint and cached on disk.

Pooling rule (Goyal et al., ICCV 2019, as used in PIRL Table 7): each stage map (C, h, w) is average-pooled to
the largest square grid k x k with C * k^2 <= ``max_dims`` (9,216 at paper scale: conv1 64x12x12, res2 256x6x6,
res3 512x4x4, res4 1024x3x3, res5 2048x2x2), and never above its own size. "pooled" is the global average of the
last stage, the representation kNN and the methods' heads see.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_bench import faults, storage
from ssl_bench.backbone import Backbone
from ssl_bench.data.transforms import eval_view

POOLED = "pooled"
HEAD = "head"  # a method's own embedding (NPID++'s and PIRL's f), where it has one


def grid_size(channels: int, size: int, max_dims: int) -> int:
    return max(1, min(size, math.isqrt(max_dims // channels)))


class _Viewed(Dataset):
    def __init__(self, base: Dataset, transform: Callable[[Any], Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image, label = self.base[i]
        return self.transform(image), int(label)


View = Callable[[int, tuple[float, ...], tuple[float, ...]], Callable[[Any], Tensor]]  # (size, mean, std) -> transform


def eval_loader(
    dataset: Dataset,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    workers: int,
    view: View = eval_view,
) -> DataLoader:
    """(test view, label) batches of ``dataset``, in order: what every frozen-feature pass reads."""
    return DataLoader(_Viewed(dataset, view(image_size, mean, std)), batch_size=batch_size, num_workers=workers)


@torch.no_grad()
def extract(
    backbone: Backbone,
    dataset: Dataset,
    layers: list[str],
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    max_dims: int = 9216,
    batch_size: int = 256,
    workers: int = 0,
    dtype: torch.dtype | None = None,
    view: View = eval_view,
) -> tuple[dict[str, Tensor], Tensor]:
    """-> ({layer: (N, D) float32}, labels (N,)). The backbone is put in eval mode; its weights are not touched.
    ``view``: how an image becomes the network's input (default: resize and centre-crop)."""
    backbone.eval().to(device)
    stage_layers = [l for l in layers if l != POOLED]
    loader = eval_loader(dataset, image_size, mean, std, batch_size, workers, view)
    chunks: dict[str, list[Tensor]] = {l: [] for l in layers}
    labels = []
    for images, target in loader:
        images = images.to(device)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            maps = backbone.stages(images, backbone.stage_names)
        for name in stage_layers:
            fmap = maps[name].float()
            k = grid_size(fmap.shape[1], fmap.shape[-1], max_dims)
            chunks[name].append(F.adaptive_avg_pool2d(fmap, k).flatten(1).cpu())  # (B, C*k*k)
        if POOLED in layers:
            chunks[POOLED].append(maps[backbone.stage_names[-1]].float().mean((2, 3)).cpu())  # (B, C)
        labels.append(target)
    return {l: torch.cat(c) for l, c in chunks.items()}, torch.cat(labels)


@torch.no_grad()
def embed(
    fn: Callable[[Tensor], Tensor],
    dataset: Dataset,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 256,
    workers: int = 0,
    dtype: torch.dtype | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """-> ({"head": (N, D) float32}, labels (N,)): a trained method's own embedding (``Method.embeddings()["image"]``,
    e.g. NPID's 128-d f) of the test view of every image, in the same form as ``extract`` gives."""
    loader = eval_loader(dataset, image_size, mean, std, batch_size, workers)
    chunks, labels = [], []
    for images, target in loader:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            chunks.append(fn(images.to(device)).float().cpu())
        labels.append(target)
    return {HEAD: torch.cat(chunks)}, torch.cat(labels)


def cached(path: Path, compute: Callable[[], tuple[dict[str, Tensor], Tensor]]) -> tuple[dict[str, Tensor], Tensor]:
    """Load features from ``path`` if it holds them (checksum verified), else compute and write them atomically.

    A truncated or corrupt cache is moved aside with a warning and extracted again, never used.
    """
    state = storage.load_or_discard(path, "feature extraction")
    if state is not None:
        return state["features"], state["labels"]
    feats, labels = compute()
    faults.point("features")
    storage.save({"features": feats, "labels": labels}, path)
    return feats, labels
