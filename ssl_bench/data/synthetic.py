"""The built-in ``synthetic`` dataset: train/test splits of rendered scenes (``data.render``), generated once and
cached under the data root, with a picture of them (``grid-s<size>.png``)."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from ssl_bench import storage
from ssl_bench.config import ConfigError, DataConfig
from ssl_bench.data.render import CLASSES, FRAMINGS, VERSION, Array, _check_size, generate
from ssl_bench.data.types import DataInfo, Splits

SPLITS: tuple[str, ...] = ("train", "test")
NATIVE_SIZE = 32  # data.image_size unset: the size every preset uses


def dataset_name(framing: str) -> str:
    """The results' dataset name: "synthetic" for the first ("wide") scenes, "synthetic-<framing>" for the others, so
    that numbers on different scenes never share a row of a table or a band of the check."""
    return "synthetic" + suffix(framing)


def suffix(framing: str) -> str:
    """What cache files and names of ``framing`` add: nothing for "wide" (the files written before framings)."""
    if framing not in FRAMINGS:
        raise ConfigError(f"data.framing={framing!r} is not valid; choose one of {', '.join(FRAMINGS)}")
    return "" if framing == "wide" else f"-{framing}"


def split_seed(seed: int, split: str) -> int:
    """The generator seed of one split: train and test draw from independent streams of the same data seed."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def _load_cache(path: Path, num_images: int, image_size: int) -> tuple[Array, Array] | None:
    """The cached arrays, or None (with a warning) when the file is unreadable or does not match."""
    try:
        with np.load(path) as f:
            version, images, labels = int(f["version"]), f["images"], f["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"synthetic cache {path} is unreadable ({type(e).__name__}: {e}); regenerating it", stacklevel=3)
        return None
    expected = (num_images, image_size, image_size, 3)
    if version != VERSION or images.shape != expected or images.dtype != np.uint8 or labels.shape != (num_images,):
        warnings.warn(
            f"synthetic cache {path} holds version {version}, images {images.shape} {images.dtype}, "
            f"expected version {VERSION}, images {expected} uint8; regenerating it",
            stacklevel=3,
        )
        return None
    return images, labels.astype(np.int64)


def _save_cache(path: Path, images: Array, labels: Array) -> None:
    """Write atomically (``storage.atomic``): a reader, or a run killed meanwhile, never sees part of a cache."""
    with storage.atomic(path) as tmp, tmp.open("wb") as f:
        np.savez(f, version=np.int64(VERSION), images=images, labels=labels)


class SyntheticImages(Dataset):
    """One split of the synthetic dataset, generated once and cached under ``root/synthetic``."""

    def __init__(
        self, root: str | Path, split: str, num_images: int, image_size: int = 32, seed: int = 0, framing: str = "wide"
    ) -> None:
        _check_size(image_size)
        s = split_seed(seed, split)
        self.path = Path(root) / "synthetic" / f"{split}-n{num_images}-s{image_size}-seed{seed}{suffix(framing)}.npz"
        cached = _load_cache(self.path, num_images, image_size) if self.path.exists() else None
        if cached is None:
            cached = generate(num_images, image_size, s, framing)
            _save_cache(self.path, *cached)
        images, labels = cached
        self.split = split
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8
        self.targets: list[int] = labels.tolist()
        self.classes = CLASSES

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.targets[i]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of (N, 3, H, W) uint8 images in [0, 1] units (float64 sums, chunked)."""
    n = images.shape[0]
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for s in range(0, n, 1024):
        x = images[s : s + 1024].to(torch.float64) / 255
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())  # type: ignore[return-value]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def save_grid(
    path: str | Path, images: torch.Tensor, labels: Sequence[int], classes: Sequence[str], per_class: int = 8
) -> Path:
    """A PNG with one row per class, labelled with its name; small images are upscaled (nearest) to >= 96 px."""
    images = torch.as_tensor(images)
    lab = np.asarray(labels)
    h, w = images.shape[2:]
    scale = max(1, -(-96 // h))
    th, tw, pad, label_w = h * scale, w * scale, 4, 100
    canvas = Image.new("RGB", (label_w + per_class * (tw + pad) + pad, len(classes) * (th + pad) + pad), "white")
    draw, font = ImageDraw.Draw(canvas), _font(15)
    for row, name in enumerate(classes):
        y = pad + row * (th + pad)
        draw.text((6, y + th // 2), name, fill="black", font=font, anchor="lm")
        for col, i in enumerate(np.flatnonzero(lab == row)[:per_class]):
            tile = Image.fromarray(images[i].permute(1, 2, 0).numpy()).resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + col * (tw + pad), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def synthetic_root(cfg: DataConfig, out_dir: Path) -> Path:
    return Path(cfg.root) if cfg.root else out_dir / "data"


def load_synthetic(cfg: DataConfig, out_dir: Path) -> Splits:
    if cfg.num_train <= 0 or cfg.num_test <= 0:
        raise ConfigError(
            "the synthetic dataset needs data.num_train and data.num_test above 0 (they are how many images to generate)"
        )
    root = synthetic_root(cfg, out_dir)
    size = cfg.image_size or NATIVE_SIZE
    train = SyntheticImages(root, "train", cfg.num_train, size, cfg.seed, cfg.framing)
    test = SyntheticImages(root, "test", cfg.num_test, size, cfg.seed, cfg.framing)
    grid = root / "synthetic" / f"grid-s{size}{suffix(cfg.framing)}.png"
    if not grid.exists():  # a picture of what the methods learn from, written once beside the cached arrays
        save_grid(grid, train.images, train.targets, CLASSES)
    mean, std = channel_stats(train.images)
    info = DataInfo(dataset_name(cfg.framing), len(CLASSES), len(train), size, mean, std, tuple(CLASSES))
    return Splits(train, test, info)
