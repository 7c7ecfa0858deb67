"""What a dataset hands the rest of the suite: two splits, the class names and the normalisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataInfo:
    name: str
    num_classes: int
    num_train: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = ()


@dataclass
class Splits:
    """``train`` and ``test`` yield (image, label); the image is a PIL image or a (3, H, W) uint8 tensor."""

    train: Dataset
    test: Dataset
    info: DataInfo


class Indexed(Dataset):
    """Applies a view-making transform and adds each sample's index: (views dict, label, index).

    With ``epoch_seed`` set (the engine sets it per epoch), sample i's augmentation draws from the global torch
    generator seeded by (epoch_seed, i) inside a fork of the generator state: the views do not depend on the
    worker that makes them, on the order of the batches or on where an interrupted run resumed.
    """

    def __init__(self, base: Dataset, transform: Callable[[Any], dict]) -> None:
        self.base = base
        self.transform = transform
        self.epoch_seed: int | None = None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[dict, int, int]:
        image, label = self.base[i]
        if self.epoch_seed is None:
            return self.transform(image), int(label), i
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.epoch_seed * 2_654_435_761 + i) % 2**62)
            return self.transform(image), int(label), i


def labels_of(ds: Dataset) -> Sequence[int]:
    """Class labels of a dataset without decoding images, where the dataset exposes them."""
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return list(getattr(ds, attr))
    return [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]
