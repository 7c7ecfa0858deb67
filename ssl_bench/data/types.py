"""What a dataset hands the rest of the suite: its splits, the class names and the normalisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ssl_bench.config import DataConfig


@dataclass(frozen=True)
class DataInfo:
    """``num_classes`` 0: the data has no labels (an unlabeled folder), fit for pretraining only. ``num_train``: the
    images the methods pretrain on (``len(splits.pretraining())``, one memory-bank slot each). ``image_size``: the
    px the methods see (the dataset's native size unless ``data.image_size`` is set)."""

    name: str
    num_classes: int
    num_train: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = ()


@dataclass
class Splits:
    """``train`` and ``test`` yield (image, label); the image is a PIL image or a (3, H, W) uint8 tensor.

    ``pretrain``: a separate pretraining set where the dataset has one (STL-10's 100k ``unlabeled`` images, label
    -1); None = pretrain on ``train``. Self-supervised methods pretrain on ``pretraining()``; methods that need
    labels (supervised) and every evaluation use ``train`` and ``test``.
    """

    train: Dataset
    test: Dataset
    info: DataInfo
    pretrain: Dataset | None = None

    def pretraining(self) -> Dataset:
        """The images to pretrain on: ``pretrain`` if set, else ``train`` (not ``pretrain or train``: an empty
        dataset is falsy)."""
        return self.train if self.pretrain is None else self.pretrain


class Indexed(Dataset):
    """Applies a view-making transform and adds each sample's index: (views dict, label, index).

    A key (seed, i) (the engine's sampler gives these), or an index i with ``epoch_seed`` set, makes sample i's
    augmentation draw from the global torch generator seeded by (seed, i) inside a fork of the generator state: the
    views do not depend on the worker that makes them, on the order of the batches or on where an interrupted run
    resumed. A plain index without ``epoch_seed`` draws from the generator as it is.
    """

    def __init__(self, base: Dataset, transform: Callable[[Any], dict]) -> None:
        self.base = base
        self.transform = transform
        self.epoch_seed: int | None = None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict, int, int]:
        seed, i = key if isinstance(key, tuple) else (self.epoch_seed, key)
        image, label = self.base[i]
        if seed is None:
            return self.transform(image), int(label), i
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed((seed * 2_654_435_761 + i) % 2**62)  # CPU only: 14x cheaper
            return self.transform(image), int(label), i


def data_root(cfg: DataConfig, out_dir: Path, folder: str) -> Path:
    """Where a downloadable dataset lives: ``data.root`` (or ``<out>/data``); a root naming the dataset's own folder
    (e.g. ``.../cifar-10-batches-py``) means its parent, where torchvision looks for that folder."""
    root = Path(cfg.root).expanduser() if cfg.root else out_dir / "data"
    return root.parent if root.name == folder else root


def labels_of(ds: Dataset) -> Sequence[int]:
    """Class labels of a dataset without decoding images, where the dataset exposes them."""
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return list(getattr(ds, attr))
    return [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]
