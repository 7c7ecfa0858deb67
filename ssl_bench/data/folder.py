"""Any ImageFolder tree (torchvision.datasets.ImageFolder): ``<root>/train/<class>/...`` and ``<root>/test`` or ``val``.

``num_train`` / ``num_test`` > 0 keep a class-balanced subset drawn with the data seed (the same images for every
method and run seed). Mean and std are measured on up to 500 training images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from ssl_bench.config import DataConfig
from ssl_bench.data.dataset import DataInfo, Splits

LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (or val/ instead of test/)"
HOW = ("Make one by saving a labelled dataset's images one folder per class (e.g. CIFAR-10 as PNGs), "
       "or leave out --dataset to use the built-in synthetic dataset.")


def load_image(path: str) -> Image.Image:
    """The image at ``path`` as RGB, fully decoded; an unreadable or truncated file is an OSError naming it."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")  # convert decodes every pixel: a truncated JPEG fails here, not later
    except (OSError, SyntaxError, ValueError) as e:  # PIL: UnidentifiedImageError, "image file is truncated", ...
        reason = "not an image format PIL knows" if isinstance(e, UnidentifiedImageError) else str(e)
        raise OSError(f"{path}: unreadable or truncated image ({reason}); remove or replace the file") from None


def image_folder(split: Path) -> ImageFolder:
    """torchvision's ImageFolder on one split, with layout errors that say what is expected."""
    if not any(d.is_dir() for d in split.iterdir()):
        raise FileNotFoundError(f"{split} has no class folders; expected {LAYOUT}. {HOW}")
    try:
        return ImageFolder(str(split), loader=load_image)
    except FileNotFoundError as e:  # a class folder without image files
        raise FileNotFoundError(f"{split}: {e}; put images in every class folder (or remove the empty ones): {LAYOUT}") from None


class LabelledSubset(Subset):
    """A Subset that still exposes ``targets`` (for class-balanced sampling and kNN without decoding images)."""

    def __init__(self, dataset: ImageFolder, indices: list[int]) -> None:
        super().__init__(dataset, indices)
        self.targets = [dataset.targets[i] for i in indices]
        self.classes = dataset.classes


def balanced_subset(dataset: ImageFolder, count: int, seed: int) -> Dataset:
    """``count`` images, as equal per class as possible, drawn with ``seed``; the whole set when count is 0 or too big."""
    if count <= 0 or count >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    targets = torch.tensor(dataset.targets)
    classes = targets.unique()
    per_class = [count // len(classes) + (1 if i < count % len(classes) else 0) for i in range(len(classes))]
    keep: list[int] = []
    for c, n in zip(classes.tolist(), per_class):
        idx = (targets == c).nonzero().flatten()
        keep += idx[torch.randperm(len(idx), generator=g)[:n]].tolist()
    return LabelledSubset(dataset, sorted(keep))


def channel_stats_of(dataset: Dataset, image_size: int, limit: int = 500) -> tuple[tuple[float, ...], tuple[float, ...]]:
    to = v2.Compose([v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.ToDtype(torch.float32, scale=True)])
    step = max(1, len(dataset) // limit)  # type: ignore[arg-type]
    x = torch.stack([to(dataset[i][0]) for i in range(0, len(dataset), step)[:limit]])  # type: ignore[arg-type]
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).clamp_min(1e-3).tolist())


def load_folder(cfg: DataConfig, out_dir: Path) -> Splits:
    root = Path(cfg.root) if cfg.root else None
    if root is None or not root.is_dir():
        got = "nothing" if root is None else f"{root}, which is a file" if root.exists() else f"{root}, which does not exist"
        raise FileNotFoundError(f"dataset 'folder' needs --data-root pointing at an ImageFolder tree: {LAYOUT}; got {got}. {HOW}")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        missing = "train/" if not (root / "train").is_dir() else "test/ (or val/)"
        raise FileNotFoundError(f"{root} is not an ImageFolder tree with train and test splits (no {missing}); expected {LAYOUT}. {HOW}")
    train_all, test_all = image_folder(root / "train"), image_folder(test_dir)
    if train_all.classes != test_all.classes:
        raise ValueError(f"{root}: the class folders of train/ and {test_dir.name}/ differ; they must name the same classes")
    train = balanced_subset(train_all, cfg.num_train, cfg.seed)
    test = balanced_subset(test_all, cfg.num_test, cfg.seed + 1)
    mean, std = channel_stats_of(train, cfg.image_size)
    info = DataInfo(f"folder:{root.name}", len(train_all.classes), len(train), cfg.image_size, mean, std, tuple(train_all.classes))  # type: ignore[arg-type]
    return Splits(train, test, info)
