"""Frozen features of every named stage, extracted once per checkpoint and cached on disk.

Pooling rule (Goyal et al., ICCV 2019, as used in PIRL Table 7): each stage map (C, h, w) is average-pooled to
the largest square grid k x k with C * k^2 <= ``max_dims`` (9,216 at paper scale: conv1 64x12x12, res2 256x6x6,
res3 512x4x4, res4 1024x3x3, res5 2048x2x2), and never above its own size ("adaptive", any input size). "fixed"
pools with the AvgPool windows Goyal et al.'s benchmark code uses instead (FSSB, facebookresearch/
fair_self_supervision_benchmark, ``modeling/jigsaw/resnet_jigsaw_finetune_linear.py``): the same grids for a ResNet at
224 px, from overlapping windows, and defined at those map sizes only. "pooled" is the global average of the last
stage, the representation kNN and the methods' heads see.
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
from ssl_bench.config import ConfigError
from ssl_bench.data.transforms import eval_view

POOLED = "pooled"
HEAD = "head"  # a method's own embedding (NPID++'s and PIRL's f), where it has one


# FSSB's windows by stage: (the map size they are defined for, kernel, stride, padding) -> grid
FIXED_WINDOWS: dict[str, tuple[int, int, int, int]] = {
    "stem": (112, 10, 10, 4),  # conv1 after bn + relu, before the max-pool -> 12x12
    "layer1": (56, 16, 8, 0),  # res2 -> 6x6
    "layer2": (28, 13, 5, 0),  # res3 -> 4x4
    "layer3": (14, 8, 3, 0),  # res4 -> 3x3
    "layer4": (7, 6, 1, 0),  # res5 -> 2x2
}


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``'s type, or off when ``dtype`` is None (fp32): how every evaluation runs the
    network at the run's precision."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grid_size(channels: int, size: int, max_dims: int) -> int:
    return max(1, min(size, math.isqrt(max_dims // channels)))


def pool_stage(name: str, fmap: Tensor, max_dims: int, pool: str) -> Tensor:
    """(B, C, h, w) stage map -> (B, C*k*k): "adaptive" to the k x k grid of ``max_dims``; "fixed" through FSSB's
    window for stage ``name`` (``max_dims`` unused), which is defined for one map size only."""
    if pool == "adaptive":
        return F.adaptive_avg_pool2d(fmap, grid_size(fmap.shape[1], fmap.shape[-1], max_dims)).flatten(1)
    if pool != "fixed":
        raise ValueError(f"unknown pooling {pool!r}; expected 'adaptive' or 'fixed'")
    if name not in FIXED_WINDOWS:
        raise ConfigError(
            f"linear.pool=fixed: stage {name!r} has no FSSB window (defined for ResNet stages {list(FIXED_WINDOWS)}); "
            "use linear.pool=adaptive"
        )
    size, kernel, stride, pad = FIXED_WINDOWS[name]
    if tuple(fmap.shape[-2:]) != (size, size):
        h, w = fmap.shape[-2:]
        raise ConfigError(
            f"linear.pool=fixed: stage {name!r} is {h}x{w}, but FSSB's window is defined for {size}x{size} (a ResNet "
            "at 224 px); use linear.pool=adaptive, or 224 px inputs"
        )
    # Caffe2's AveragePool divides by the window's part inside the map (CPU: (hend - hstart) * (wend - wstart) after
    # clipping; cuDNN: CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING), so conv1's padded border windows exclude padding.
    return F.avg_pool2d(fmap, kernel, stride, pad, count_include_pad=False).flatten(1)


def pool_maps(maps: dict[str, Tensor], layers: list[str], last: str, max_dims: int, pool: str) -> dict[str, Tensor]:
    """{layer: (B, D) float32} from the stage maps: each stage by ``pool_stage``, "pooled" the global average of the
    ``last`` stage's map."""
    out = {name: pool_stage(name, maps[name].float(), max_dims, pool) for name in layers if name != POOLED}
    if POOLED in layers:
        out[POOLED] = maps[last].float().mean((2, 3))  # (B, C)
    return out


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
    device: torch.device | None = None,
) -> DataLoader:
    """(test view, label) batches of ``dataset``, in order: what every frozen-feature pass reads. For a CUDA
    ``device`` the batches come in pinned memory, so that ``.to(device, non_blocking=True)`` overlaps the copy."""
    return DataLoader(
        _Viewed(dataset, view(image_size, mean, std)),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device is not None and device.type == "cuda",
    )


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
    pool: str = "adaptive",
    channels_last: bool = False,
) -> tuple[dict[str, Tensor], Tensor]:
    """-> ({layer: (N, D) float32}, labels (N,)). The backbone is put in eval mode; its weights are not touched.
    ``view``: how an image becomes the network's input (default: resize and centre-crop); ``pool``: see
    ``pool_stage``; ``channels_last``: the batches in that memory format (the convolutions follow; on the CPU about
    twice as fast as NCHW in bf16, the same numbers to float rounding), as the run trains (``train.channels_last``)."""
    backbone.eval().to(device)
    loader = eval_loader(dataset, image_size, mean, std, batch_size, workers, view, device)
    chunks: dict[str, list[Tensor]] = {l: [] for l in layers}
    labels = []
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    for images, target in loader:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        with autocast(device, dtype):
            maps = backbone.stages(images, backbone.stage_names)
        for name, feats in pool_maps(maps, layers, backbone.stage_names[-1], max_dims, pool).items():
            chunks[name].append(feats.cpu())
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
    loader = eval_loader(dataset, image_size, mean, std, batch_size, workers, device=device)
    chunks, labels = [], []
    for images, target in loader:
        with autocast(device, dtype):
            chunks.append(fn(images.to(device, non_blocking=True)).float().cpu())
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
