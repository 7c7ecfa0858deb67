"""Published numbers (``ssl_bench/references/published.csv``) and when to show them beside ours.

Published points are drawn and tabled next to ours, always marked as published and with their protocol
in words; they never enter a ranking or a fit of ours. By default they are shown only when our runs
pretrain on ImageNet, the only dataset on which the protocols can match.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd

COLUMNS: tuple[str, ...] = (
    "source",
    "table",
    "protocol",
    "dataset",
    "backbone",
    "params",
    "method",
    "layer",
    "metric",
    "value",
    "eval",
    "eval_protocol",
    "note",
)
IMAGENET_NAMES: tuple[str, ...] = ("imagenet", "ilsvrc")


def default_path() -> Path:
    return Path(str(resources.files("ssl_bench.references").joinpath("published.csv")))


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The references table: strings, with numeric ``params`` and ``value``; raises ValueError on a bad file."""
    path = Path(path) if path is not None else default_path()
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s): {', '.join(missing)}")
    df = df[list(COLUMNS)].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["params"] = pd.to_numeric(df["params"], errors="coerce")
    bad = df["value"].isna() | (df["source"].str.strip() == "") | (df["protocol"].str.strip() == "")
    if bad.any():
        raise ValueError(
            f"{path}: row(s) {', '.join(str(i + 2) for i in df.index[bad])} lack a value, source or protocol"
        )
    return df


def is_imagenet(dataset: str) -> bool:
    name = dataset.lower()
    if re.search(r"imagenet\d", name):  # imagenet100 or another class subset: the published numbers are ImageNet-1k
        return False
    return any(key in name for key in IMAGENET_NAMES)


def show_published(datasets: list[str], requested: bool | None) -> bool:
    """The ``--published`` flag: as given, else on exactly when some pretraining dataset is ImageNet."""
    return requested if requested is not None else any(is_imagenet(d) for d in datasets)


def select(published: pd.DataFrame, eval_name: str, eval_protocol: str = "", layer: str | None = None) -> pd.DataFrame:
    """The published rows comparable with one of our (eval, protocol), optionally one layer."""
    rows = published[(published["eval"] == eval_name) & (published["eval_protocol"] == eval_protocol)]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    return rows.reset_index(drop=True)


def linear_points(published: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2's points: best-layer linear top-1 against parameters (method, backbone, x in millions, y, protocol)."""
    rows = select(published, "linear", "", "best")
    rows = rows[(rows["metric"] == "top1") & rows["params"].notna()]
    return pd.DataFrame(
        {
            "method": rows["method"],
            "backbone": rows["backbone"],
            "x": rows["params"] / 1e6,
            "y": rows["value"],
            "protocol": rows["protocol"],
            "source": rows["source"],
            "note": rows["note"],
        }
    ).reset_index(drop=True)
