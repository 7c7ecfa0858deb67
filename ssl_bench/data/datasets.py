"""Datasets by name: one dict of loaders, each turning the data config into train/test splits plus their DataInfo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ssl_bench.config import DataConfig, unknown
from ssl_bench.data.dataset import Splits
from ssl_bench.data.folder import load_folder
from ssl_bench.data.synthetic_splits import load_synthetic

DATASETS: dict[str, Callable[[DataConfig, Path], Splits]] = {
    "synthetic": load_synthetic,
    "folder": load_folder,
}
DATASET_HELP = {
    "synthetic": "built-in, offline: ten classes of upright objects in little outdoor scenes, generated from a seed",
    "folder": "any ImageFolder tree: <root>/train/<class>/*.jpg and <root>/test (or val)/<class>/*.jpg",
}


def load_dataset(cfg: DataConfig, out_dir: Path) -> Splits:
    if cfg.name not in DATASETS:
        raise unknown("dataset", cfg.name, list(DATASETS))
    return DATASETS[cfg.name](cfg, out_dir)
