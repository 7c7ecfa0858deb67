"""STL-10 (Coates, Lee & Ng 2011) through torchvision.datasets.STL10: the binary files in ``<root>/stl10_binary/``.

Pretraining uses the 100,000 ``unlabeled`` images (``Splits.pretrain``; torchvision labels them -1); the evaluations
use the 5,000 labelled ``train`` images and the 8,000 ``test`` images. ``num_train`` caps the pretraining set (a
random subset) and the labelled train split (class-balanced) alike; ``num_test`` the test split. Native size 96 px.
Mean and std are measured on up to 500 pretraining images.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import STL10

from ssl_bench.config import DataConfig
from ssl_bench.data.folder import balanced_subset, channel_stats_of
from ssl_bench.data.types import DataInfo, Splits, data_root

NATIVE_SIZE = 96
CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)  # if class_names.txt is absent
SIZE = (
    "113,000 96x96 images (100,000 unlabeled, 5,000 labelled train, 8,000 test) in 10 classes, 2.5 GB as "
    "stl10_binary.tar.gz"
)


def load_stl10(cfg: DataConfig, out_dir: Path) -> Splits:
    root = data_root(cfg, out_dir, STL10.base_folder)
    folder = root / STL10.base_folder
    files = [name for name, _ in STL10.train_list + STL10.test_list]
    absent = [f for f in files if not (folder / f).is_file()]
    if absent and not cfg.download:
        where = f"{root}" if cfg.root else f"{root} (no --data-root given)"
        found = f"{folder} lacks {', '.join(absent)}" if folder.is_dir() else f"there is no {folder}"
        raise FileNotFoundError(
            f"STL-10 not found in {where}: {found}. Expected the binary version, {folder}/ with "
            f"{', '.join(files)} (and class_names.txt). STL-10: {SIZE}. Get it with --download (into "
            f"{root}), or download {STL10.url} and extract it into {root}."
        )
    unlabeled, train_all, test_all = (split(root, name, cfg.download) for name in ("unlabeled", "train", "test"))
    pretrain = balanced_subset(unlabeled, cfg.num_train, cfg.seed)
    train = balanced_subset(train_all, cfg.num_train, cfg.seed)
    test = balanced_subset(test_all, cfg.num_test, cfg.seed + 1)
    size = cfg.image_size or NATIVE_SIZE
    mean, std = channel_stats_of(pretrain, size)
    classes = tuple(getattr(train_all, "classes", CLASSES))
    info = DataInfo("stl10", len(CLASSES), len(pretrain), size, mean, std, classes)  # type: ignore[arg-type]
    return Splits(train, test, info, pretrain=pretrain)


def split(root: Path, name: str, download: bool) -> STL10:
    """One torchvision split (each checks the md5 sums of all five files: a few seconds for the 2.6 GB)."""
    folder = root / STL10.base_folder
    try:
        return STL10(str(root), split=name, download=download)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        raise RuntimeError(
            f"STL-10: the files in {folder} do not match torchvision's md5 checksums (an interrupted download "
            f"or extraction?); delete {folder} and run again with --download, or extract "
            f"{STL10.filename} there again"
        ) from None
    except OSError as e:
        if not download:
            raise
        raise OSError(
            f"STL-10: downloading {STL10.url} failed ({e}); check the network, or download it by hand and "
            f"extract it into {root}"
        ) from None
