"""Any ImageFolder tree (torchvision.datasets.ImageFolder): ``<root>/train/<class>/...`` and ``<root>/test`` or ``val``.

``num_train`` / ``num_test`` > 0 keep a class-balanced subset drawn with the data seed (the same images for every
method and run seed). Mean and std are measured on up to 500 training images.

An unlabelled folder, ``<root>/train/<image>`` with no class folders and no test/ or val/ split, is pretraining data
without labels: its images are labelled -1 and ``DataInfo.num_classes`` is 0 (no labelled evaluation can use it).

The helpers here (``image_folder``, ``balanced_subset``, ``channel_stats_of``, ``image_paths``) also serve the named
datasets that come as ImageFolder trees (CIFAR saved as images, ImageNet).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from ssl_bench.config import ConfigError, DataConfig
from ssl_bench.data.types import DataInfo, Splits, labels_of

LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (or val/ instead of test/)"
HOW = (
    "Make one by saving a labelled dataset's images one folder per class (e.g. CIFAR-10 as PNGs), "
    "or leave out --dataset to use the built-in synthetic dataset."
)


def load_image(path: str) -> Image.Image:
    """The image at ``path`` as RGB, fully decoded; an unreadable or truncated file is an OSError naming it."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")  # convert decodes every pixel: a truncated JPEG fails here, not later
    except (OSError, SyntaxError, ValueError) as e:  # PIL: UnidentifiedImageError, "image file is truncated", ...
        reason = "not an image format PIL knows" if isinstance(e, UnidentifiedImageError) else str(e)
        raise OSError(f"{path}: unreadable or truncated image ({reason}); remove or replace the file") from None


class _ListedClasses(ImageFolder):
    """ImageFolder over the listed class folders only; labels 0..n-1 follow the sorted names, as ImageFolder's do."""

    def __init__(self, root: str, keep: list[str], **kwargs) -> None:
        self.keep = sorted(keep)
        super().__init__(root, **kwargs)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self.keep, {name: i for i, name in enumerate(self.keep)}


def image_folder(split: Path, classes: list[str] | None = None, layout: str = LAYOUT, how: str = HOW) -> ImageFolder:
    """torchvision's ImageFolder on one split (only the ``classes`` folders if given), with layout errors that say
    what is expected."""
    if not any(d.is_dir() for d in split.iterdir()):
        raise FileNotFoundError(f"{split} has no class folders; expected {layout}. {how}")
    if classes is not None:
        missing = [c for c in classes if not (split / c).is_dir()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"{split}: {len(missing)} of the {len(classes)} listed classes have no folder ({shown}); "
                f"expected {layout}"
            )
    try:
        if classes is not None:
            return _ListedClasses(str(split), classes, loader=load_image)
        return ImageFolder(str(split), loader=load_image)
    except FileNotFoundError as e:  # a class folder without image files
        raise FileNotFoundError(
            f"{split}: {e}; put images in every class folder (or remove the empty ones): {layout}"
        ) from None


class UnlabelledImages(Dataset):
    """The image files directly inside one folder, sorted by name, each labelled -1 (pretraining data, no classes)."""

    def __init__(self, folder: Path) -> None:
        self.paths = image_files(folder)
        self.targets = [-1] * len(self.paths)
        self.classes: list[str] = []

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return load_image(self.paths[i]), -1


def image_paths(dataset: Dataset) -> list[str] | None:
    """The file of every sample, in dataset order; None for data that is not read from image files (arrays)."""
    if isinstance(dataset, Subset):
        base = image_paths(dataset.dataset)
        return None if base is None else [base[i] for i in dataset.indices]
    if isinstance(dataset, ImageFolder):
        return [path for path, _ in dataset.samples]
    if isinstance(dataset, UnlabelledImages):
        return list(dataset.paths)
    return None


def image_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


class LabelledSubset(Subset):
    """A Subset that still exposes ``targets`` (for class-balanced sampling and kNN without decoding images)."""

    def __init__(self, dataset: Dataset, indices: list[int]) -> None:
        super().__init__(dataset, indices)
        labels = labels_of(dataset)
        self.targets = [int(labels[i]) for i in indices]
        self.classes = list(getattr(dataset, "classes", []))


def balanced_subset(dataset: Dataset, count: int, seed: int) -> Dataset:
    """``count`` images, as equal per class as possible, drawn with ``seed``; the whole set when count is 0 or too big.

    Unlabeled data (every label -1) is one class: a random subset.
    """
    if count <= 0 or count >= len(dataset):  # type: ignore[arg-type]
        return dataset
    g = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor([int(t) for t in labels_of(dataset)])
    classes = targets.unique()
    per_class = [count // len(classes) + (1 if i < count % len(classes) else 0) for i in range(len(classes))]
    keep: list[int] = []
    for c, n in zip(classes.tolist(), per_class):
        idx = (targets == c).nonzero().flatten()
        keep += idx[torch.randperm(len(idx), generator=g)[:n]].tolist()
    return LabelledSubset(dataset, sorted(keep))


def channel_stats_of(
    dataset: Dataset, image_size: int, limit: int = 500
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    to = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    step = max(1, len(dataset) // limit)  # type: ignore[arg-type]
    x = torch.stack([to(dataset[i][0]) for i in range(0, len(dataset), step)[:limit]])  # type: ignore[arg-type]
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).clamp_min(1e-3).tolist())


def load_folder(cfg: DataConfig, out_dir: Path) -> Splits:
    root = Path(cfg.root) if cfg.root else None
    if root is None or not root.is_dir():
        got = (
            "nothing"
            if root is None
            else f"{root}, which is a file"
            if root.exists()
            else f"{root}, which does not exist"
        )
        raise FileNotFoundError(
            f"dataset 'folder' needs --data-root pointing at an ImageFolder tree: {LAYOUT}; got {got}. {HOW}"
        )
    if cfg.image_size is None:
        raise ConfigError(
            "dataset 'folder' has no native image size: set data.image_size, e.g. 32 for CIFAR-sized images, "
            "96 or 224 for photos"
        )
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    train_dir = root / "train"
    if (
        test_dir is None
        and train_dir.is_dir()
        and image_files(train_dir)
        and not any(d.is_dir() for d in train_dir.iterdir())
    ):
        return unlabelled_folder(root, cfg)
    if not train_dir.is_dir() or test_dir is None:
        missing = "train/" if not train_dir.is_dir() else "test/ (or val/)"
        raise FileNotFoundError(
            f"{root} is not an ImageFolder tree with train and test splits (no {missing}); expected {LAYOUT}. {HOW}"
        )
    train_all, test_all = image_folder(train_dir), image_folder(test_dir)
    if train_all.classes != test_all.classes:
        raise ValueError(
            f"{root}: the class folders of train/ and {test_dir.name}/ differ; they must name the same classes"
        )
    train = balanced_subset(train_all, cfg.num_train, cfg.seed)
    test = balanced_subset(test_all, cfg.num_test, cfg.seed + 1)
    mean, std = channel_stats_of(train, cfg.image_size)
    info = DataInfo(
        f"folder:{root.name}", len(train_all.classes), len(train), cfg.image_size, mean, std, tuple(train_all.classes)
    )  # type: ignore[arg-type]
    return Splits(train, test, info)


def unlabelled_folder(root: Path, cfg: DataConfig) -> Splits:
    """``<root>/train/<image>``: pretraining images without labels; the test split is empty and num_classes 0."""
    images = UnlabelledImages(root / "train")
    train = balanced_subset(images, cfg.num_train, cfg.seed)
    mean, std = channel_stats_of(train, cfg.image_size)
    info = DataInfo(f"folder:{root.name}", 0, len(train), cfg.image_size, mean, std)  # type: ignore[arg-type]
    return Splits(train, LabelledSubset(images, []), info)
