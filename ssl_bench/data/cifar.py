"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) through torchvision.datasets.CIFAR10 / CIFAR100.

Two layouts of the root, detected in this order:

- the python version as distributed, ``<root>/cifar-10-batches-py/`` (``<root>/cifar-100-python/``): the pickled
  batches torchvision reads, normalised with the dataset's published mean and std;
- an ImageFolder tree of images, ``<root>/train/<class>/<image>`` and ``<root>/test/<class>/<image>``, as many keep
  CIFAR (PNG or JPEG): read with folder.py's helpers, mean and std measured on up to 500 training images.

With ``data.download`` and neither layout present, torchvision downloads and extracts the python version into the
root. ``num_train`` / ``num_test`` keep class-balanced subsets drawn with the data seed; native size 32 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder

from ssl_bench.config import DataConfig
from ssl_bench.data.folder import balanced_subset, channel_stats_of, image_folder
from ssl_bench.data.types import DataInfo, Splits, data_root

NATIVE_SIZE = 32
TREE = "{root}/train/<class>/<image> and {root}/test/<class>/<image>"  # .format(root=...)


@dataclass(frozen=True)
class Cifar:
    title: str
    loader: type[CIFAR10]  # torchvision's class: its base_folder, file lists, url and md5 sums
    num_classes: int
    size: str  # what the user gets, for the missing-data message
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def files(self) -> list[str]:
        return [name for name, _ in self.loader.train_list + self.loader.test_list] + [self.loader.meta["filename"]]


# Mean and std: per channel over every pixel of the 50,000 training images, scaled to [0, 1]: the published values in
# common use (CIFAR-10's std is sometimes quoted as (0.2023, 0.1994, 0.2010), which is not the pixel std).
CIFARS = {
    "cifar10": Cifar(
        "CIFAR-10",
        CIFAR10,
        10,
        "60,000 32x32 images (50,000 train, 10,000 test) in 10 classes, 163 MB as cifar-10-python.tar.gz",
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": Cifar(
        "CIFAR-100",
        CIFAR100,
        100,
        "60,000 32x32 images (50,000 train, 10,000 test) in 100 classes, 161 MB as cifar-100-python.tar.gz",
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
}


def load_cifar(cfg: DataConfig, out_dir: Path) -> Splits:
    spec = CIFARS[cfg.name]
    root = data_root(cfg, out_dir, spec.loader.base_folder)
    size = cfg.image_size or NATIVE_SIZE
    if (root / spec.loader.base_folder).is_dir() or (cfg.download and not (root / "train").is_dir()):
        train_all, test_all = python_version(spec, root, cfg)
        mean, std = spec.mean, spec.std
        train = balanced_subset(train_all, cfg.num_train, cfg.seed)
    elif (root / "train").is_dir():
        train_all, test_all = image_tree(spec, root)
        train = balanced_subset(train_all, cfg.num_train, cfg.seed)
        mean, std = channel_stats_of(train, size)  # type: ignore[assignment]
    else:
        raise FileNotFoundError(missing(spec, root, bool(cfg.root), []))
    test = balanced_subset(test_all, cfg.num_test, cfg.seed + 1)
    info = DataInfo(cfg.name, spec.num_classes, len(train), size, mean, std, tuple(train_all.classes))  # type: ignore[arg-type]
    return Splits(train, test, info)


def python_version(spec: Cifar, root: Path, cfg: DataConfig) -> tuple[CIFAR10, CIFAR10]:
    """torchvision's train and test sets from the pickled batches (downloaded first with ``data.download``)."""
    absent = [f for f in spec.files() if not (root / spec.loader.base_folder / f).is_file()]
    if absent and not cfg.download:
        raise FileNotFoundError(missing(spec, root, bool(cfg.root), absent))
    folder = root / spec.loader.base_folder
    try:
        return spec.loader(str(root), train=True, download=cfg.download), spec.loader(str(root), train=False)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted" (its md5 check of every file)
        raise RuntimeError(
            f"{spec.title}: the files in {folder} do not match torchvision's md5 checksums (an interrupted "
            f"download or extraction?); delete {folder} and run again with --download, or extract "
            f"{spec.loader.filename} there again"
        ) from None
    except OSError as e:
        if not cfg.download:
            raise
        raise OSError(
            f"{spec.title}: downloading {spec.loader.url} failed ({e}); check the network, or download it by hand "
            f"and extract it into {root}"
        ) from None


def image_tree(spec: Cifar, root: Path) -> tuple[ImageFolder, ImageFolder]:
    """CIFAR saved as images: ``<root>/train/<class>/`` and ``<root>/test/<class>/`` (or val/)."""
    how = f"Or use the python version: {root / spec.loader.base_folder} (--download fetches it)."
    tree = TREE.format(root=root)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        raise FileNotFoundError(
            f"{root} holds {spec.title} as images without a test split (no test/ or val/); expected {tree}. {how}"
        )
    train_all, test_all = (
        image_folder(root / "train", layout=tree, how=how),
        image_folder(test_dir, layout=tree, how=how),
    )
    if len(train_all.classes) != spec.num_classes or train_all.classes != test_all.classes:
        raise ValueError(
            f"{root}: train/ has {len(train_all.classes)} class folders and {test_dir.name}/ "
            f"{len(test_all.classes)}; {spec.title} has the same {spec.num_classes} in both. For other "
            f"image trees use dataset 'folder'"
        )
    return train_all, test_all


def missing(spec: Cifar, root: Path, root_given: bool, absent: list[str]) -> str:
    """What was expected where, how big the dataset is and how to get it."""
    where = f"{root}" if root_given else f"{root} (no --data-root given)"
    folder = root / spec.loader.base_folder
    found = f"{folder} lacks {', '.join(absent)}" if absent else "neither layout is there"
    return (
        f"{spec.title} not found in {where}: {found}. Expected the python version, {folder}/ with "
        f"{', '.join(spec.files())}, or the images as an ImageFolder tree, {TREE.format(root=root)}. {spec.title}: {spec.size}. "
        f"Get it with --download (into {root}), or download {spec.loader.url} and extract it into {root}."
    )
