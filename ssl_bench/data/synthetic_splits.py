"""The built-in ``synthetic`` dataset as train/test splits (generated once, cached under the data root)."""

from __future__ import annotations

from pathlib import Path

from ssl_bench.config import ConfigError, DataConfig
from ssl_bench.data.dataset import DataInfo, Splits

NATIVE_SIZE = 32  # data.image_size=0: the size every preset uses


def synthetic_root(cfg: DataConfig, out_dir: Path) -> Path:
    return Path(cfg.root) if cfg.root else out_dir / "data"


def load_synthetic(cfg: DataConfig, out_dir: Path) -> Splits:
    from ssl_bench.data.synthetic import CLASSES, SyntheticImages, channel_stats, save_grid

    if cfg.num_train <= 0 or cfg.num_test <= 0:
        raise ConfigError("the synthetic dataset needs data.num_train and data.num_test above 0 (they are how many images to generate)")
    root = synthetic_root(cfg, out_dir)
    size = cfg.image_size or NATIVE_SIZE
    train = SyntheticImages(root, "train", cfg.num_train, size, cfg.seed)
    test = SyntheticImages(root, "test", cfg.num_test, size, cfg.seed)
    grid = root / "synthetic" / f"grid-s{size}.png"
    if not grid.exists():  # a picture of what the methods learn from, written once beside the cached arrays
        save_grid(grid, train.images, train.targets, CLASSES)
    mean, std = channel_stats(train.images)
    info = DataInfo("synthetic", len(CLASSES), len(train), size, mean, std, tuple(CLASSES))
    return Splits(train, test, info)
