"""ImageNet (ILSVRC-2012) and ImageNet-100 as the usual ImageFolder tree: ``<root>/train/<wnid>/``, ``<root>/val/<wnid>/``.

Read with torchvision.datasets.ImageFolder (folder.py's ``image_folder``), not torchvision.datasets.ImageNet, which
wants the devkit tarballs. ImageNet-100 is the same tree restricted to a class list, ``data.classes`` (a file with
one wnid per line, or a comma-separated list); by default the 100 classes of CMC (Tian, Krishnan & Isola 2019,
arXiv:1906.05849), shipped as ``imagenet100.txt`` exactly as in github.com/HobbitLong/CMC. Labels 0..n-1 follow the
sorted wnids. Normalised with ImageNet's mean and std; native size 224 px.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from torchvision.datasets import ImageFolder

from ssl_bench.config import ConfigError, DataConfig
from ssl_bench.data.folder import balanced_subset, image_files, image_folder
from ssl_bench.data.types import DataInfo, Splits

NATIVE_SIZE = 224
NUM_CLASSES = 1000
MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation (the statistics its pretrained models expect)
STD = (0.229, 0.224, 0.225)
LAYOUT = "<root>/train/<wnid>/<image> and <root>/val/<wnid>/<image>"
VALPREP = "https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh"
SIZE = {
    "imagenet": "ImageNet: 1,281,167 train and 50,000 val images in 1,000 classes, 138 GB as ILSVRC2012_img_train.tar "
    "and 6.3 GB as ILSVRC2012_img_val.tar",
    "imagenet100": "ImageNet-100: the listed classes of the ImageNet tree, up to 1,300 train and 50 val images each",
}
HOW = (
    "ImageNet cannot be downloaded automatically (its licence asks for an account): sign in at "
    "https://image-net.org/download-images.php, download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, "
    f"extract train/ into one folder per class, sort val/ into class folders with {VALPREP}, and pass --data-root"
)


def load_imagenet(cfg: DataConfig, out_dir: Path) -> Splits:
    classes, name = class_list(cfg.classes) if cfg.name == "imagenet100" else (None, "imagenet")
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is None or not root.is_dir():
        got = (
            "nothing"
            if root is None
            else f"{root}, which is a file"
            if root.exists()
            else f"{root}, which does not exist"
        )
        raise FileNotFoundError(
            f"dataset {cfg.name!r} needs --data-root pointing at the ImageNet tree {LAYOUT}; got {got}. "
            f"{SIZE[cfg.name]}. {HOW}."
        )
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f"{root} is not an ImageNet tree (no {split}/); expected {LAYOUT}. {SIZE[cfg.name]}. {HOW}."
            )
    val_dir = root / "val"
    if image_files(val_dir) and not any(d.is_dir() for d in val_dir.iterdir()):
        raise FileNotFoundError(
            f"{val_dir} holds the validation images without class folders (as ILSVRC2012_img_val.tar "
            f"extracts); sort them into val/<wnid>/ with {VALPREP} (run it inside val/)"
        )
    how = f"{SIZE[cfg.name]}. {HOW}."
    train_all = image_folder(root / "train", classes, layout=LAYOUT, how=how)
    val_all = image_folder(val_dir, classes, layout=LAYOUT, how=how)
    check_classes(cfg.name, root, train_all, val_all)
    train = balanced_subset(train_all, cfg.num_train, cfg.seed)
    test = balanced_subset(val_all, cfg.num_test, cfg.seed + 1)
    size = cfg.image_size or NATIVE_SIZE
    info = DataInfo(name, len(train_all.classes), len(train), size, MEAN, STD, tuple(train_all.classes))
    return Splits(train, test, info)


def check_classes(dataset: str, root: Path, train: ImageFolder, val: ImageFolder) -> None:
    if train.classes != val.classes:
        only = sorted(set(train.classes) ^ set(val.classes))
        raise ValueError(
            f"{root}: train/ and val/ hold different class folders ({', '.join(only[:5])}"
            f"{', ...' if len(only) > 5 else ''} in only one); they must name the same classes"
        )
    if dataset == "imagenet" and len(train.classes) != NUM_CLASSES:
        raise ValueError(
            f"{root}/train has {len(train.classes)} class folders, ImageNet has {NUM_CLASSES:,}; for a subset "
            f"use dataset imagenet100 with data.classes=<file of wnids>, or dataset folder"
        )


def class_list(spec: str) -> tuple[list[str], str]:
    """The wnids of ``data.classes`` (a file, one per line, first word; or a comma-separated list; "" = CMC's list)
    and the dataset's name: ``imagenet100`` for CMC's classes, else ``imagenet<n>:<file stem or "list">``."""
    cmc = words(resources.files("ssl_bench.data").joinpath("imagenet100.txt").read_text())
    if not spec:
        return cmc, "imagenet100"
    path = Path(spec).expanduser()
    if path.is_file():
        wnids, label = words(path.read_text()), path.stem
    elif "," in spec:
        wnids, label = [w.strip() for w in spec.split(",") if w.strip()], "list"
    else:
        raise FileNotFoundError(
            f"data.classes={spec!r}: no such file; give a file with one wnid per line, or the wnids "
            f"themselves, comma-separated (e.g. n01440764,n01443537)"
        )
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if len(wnids) < 2 or repeated:
        why = f"repeats {', '.join(repeated)}" if repeated else f"names {len(wnids)} class"
        raise ConfigError(f"data.classes={spec!r} {why}; list at least two distinct class folders (wnids)")
    return wnids, ("imagenet100" if sorted(wnids) == sorted(cmc) else f"imagenet{len(wnids)}:{label}")


def words(text: str) -> list[str]:
    """The first word of every line that is not blank or a ``#`` comment."""
    return [line.split()[0] for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
