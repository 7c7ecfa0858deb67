"""Datasets by name: one dict of loaders, each turning the data config into train/test splits plus their DataInfo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ssl_bench.config import ConfigError, DataConfig, unknown
from ssl_bench.data import cifar, imagenet, stl10, synthetic
from ssl_bench.data.cifar import load_cifar
from ssl_bench.data.folder import load_folder
from ssl_bench.data.imagenet import HOW as IMAGENET_HOW
from ssl_bench.data.imagenet import load_imagenet
from ssl_bench.data.stl10 import load_stl10
from ssl_bench.data.synthetic import load_synthetic
from ssl_bench.data.types import Splits

DATASETS: dict[str, Callable[[DataConfig, Path], Splits]] = {
    "synthetic": load_synthetic,
    "folder": load_folder,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "stl10": load_stl10,
    "imagenet": load_imagenet,
    "imagenet100": load_imagenet,
}
DATASET_HELP = {
    "synthetic": "built-in, offline: ten classes of upright objects in little outdoor scenes, generated from a seed",
    "folder": "any ImageFolder tree: <root>/train/<class>/*.jpg and <root>/test (or val)/<class>/*.jpg; "
    "<root>/train/*.jpg alone (no class folders, no test/) = unlabelled, pretraining only",
    "cifar10": "CIFAR-10, 32 px, 10 classes: <root>/cifar-10-batches-py/ (--download fetches it) or an ImageFolder tree "
    "<root>/train, <root>/test",
    "cifar100": "CIFAR-100, 32 px, 100 classes: <root>/cifar-100-python/ (--download fetches it) or an ImageFolder tree",
    "stl10": "STL-10, 96 px: pretrain on the 100k unlabeled images, evaluate on 5k train / 8k test; <root>/stl10_binary/ "
    "(--download fetches it)",
    "imagenet": "ImageNet (ILSVRC-2012), 224 px: <root>/train/<wnid>/, <root>/val/<wnid>/ (no automatic download)",
    "imagenet100": "the ImageNet tree restricted to data.classes (a file of wnids; default CMC's ImageNet-100 list)",
}
DOWNLOADABLE = ("cifar10", "cifar100", "stl10")
NATIVE_SIZES = {
    "synthetic": synthetic.NATIVE_SIZE,
    "cifar10": cifar.NATIVE_SIZE,
    "cifar100": cifar.NATIVE_SIZE,
    "stl10": stl10.NATIVE_SIZE,
    "imagenet": imagenet.NATIVE_SIZE,
    "imagenet100": imagenet.NATIVE_SIZE,
}


def native_size(name: str) -> int | None:
    """The px a dataset's images have (what an unset data.image_size means); None for a folder of any images."""
    return NATIVE_SIZES.get(name)


def load_dataset(cfg: DataConfig, out_dir: Path) -> Splits:
    if cfg.name not in DATASETS:
        raise unknown("dataset", cfg.name, list(DATASETS))
    if cfg.classes and cfg.name != "imagenet100":
        raise ConfigError(
            f"data.classes is the class list of dataset imagenet100; dataset {cfg.name!r} does not use it"
        )
    if cfg.download and cfg.name not in DOWNLOADABLE:
        if cfg.name.startswith("imagenet"):
            raise ConfigError(f"--download: {IMAGENET_HOW}")
        raise ConfigError(
            f"--download: dataset {cfg.name!r} has nothing to download; the datasets that download are "
            f"{', '.join(DOWNLOADABLE)}"
        )
    return DATASETS[cfg.name](cfg, out_dir)
