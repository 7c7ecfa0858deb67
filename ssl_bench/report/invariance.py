"""Invariance distances (PIRL Fig. 4): the raw samples when the run kept them, else their quantiles.

Each run writes ``<out>/runs/<run_id>/invariance.pt`` (a dict ``"<protocol>/<layer>" -> 1-D tensor`` of L2
distances between unit-normalised features of an image and of its transformed version, in [0, 2]) and
results rows with the mean, std and quantiles q05..q95. Seeds are pooled: the raw samples are
concatenated, the quantiles averaged. torch is imported only to read a raw file that exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_bench.report.labels import display_name
from ssl_bench.report.tables import DASH, MODEL, cell_of, markdown_table, method_rank, seeds_note

RAW_NAME = "invariance.pt"
QUANTILES: dict[str, float] = {"q05": 0.05, "q25": 0.25, "q50": 0.50, "q75": 0.75, "q95": 0.95}
LAYER_TEXT: dict[str, str] = {"pooled": "pooled backbone features", "head": "heads f(v_I) vs. g(v_I^t)"}
PROTOCOL_TEXT: dict[str, str] = {"jigsaw": "image vs. its jigsaw-shuffled tiles", "rotation": "image vs. its rotation"}
MAX_DISTANCE = 2.0


@dataclass(frozen=True)
class Distances:
    """One method's invariance distances for one protocol and layer, pooled over seeds."""

    dataset: str
    preset: str
    backbone: str
    method: str
    protocol: str
    layer: str
    seeds: int
    raw: np.ndarray | None  # (N,) all seeds' samples; None when some seed's raw file is missing
    quantiles: dict[float, float]  # probability -> distance, mean over seeds

    @property
    def label(self) -> str:
        return display_name(self.method) + (" (head)" if self.layer == "head" else "")


def collect(df: pd.DataFrame, runs_dir: Path) -> tuple[list[Distances], list[str]]:
    """Distances per (model, protocol, layer) from the cleaned results rows, and notes on missing raw files."""
    rows = df[df["eval"] == "invariance"]
    out: list[Distances] = []
    missing: list[str] = []
    cache: dict[str, dict[str, np.ndarray] | None] = {}
    for key, part in rows.groupby([*MODEL, "protocol", "layer"], sort=False):
        dataset, preset, backbone, method, protocol, layer = key
        quantiles = {p: float(part.loc[part["metric"] == name, "value"].mean()) for name, p in QUANTILES.items()}
        samples = []
        for run_id in part["run_id"].unique():
            if run_id not in cache:
                cache[run_id] = _load(runs_dir / run_id / RAW_NAME)
            raw = cache[run_id]
            samples.append(raw.get(f"{protocol}/{layer}") if raw is not None else None)
        if any(s is None for s in samples):
            missing.append(f"{method} {protocol}/{layer}")
        pooled = np.concatenate(samples) if samples and all(s is not None for s in samples) else None
        out.append(Distances(dataset, preset, backbone, method, protocol, layer, int(part["seed"].nunique()), pooled, quantiles))
    notes = []
    if missing:
        notes.append(f"no raw invariance distances ({RAW_NAME} in the run directory) for {', '.join(missing)}: "
                     "their histograms are drawn from the quantiles q05..q95 (the central 90% only)")  # fmt: skip
    out.sort(key=lambda d: (d.dataset, d.preset, d.backbone, method_rank(d.method), d.layer != "pooled", d.protocol))
    return out, notes


def _load(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    import torch  # only here: a raw file exists, and it was written by torch.save

    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - a truncated or foreign file falls back to the quantiles
        return None
    return {k: v.detach().double().flatten().numpy() for k, v in data.items() if isinstance(v, torch.Tensor)}


def density(d: Distances, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(heights, edges, from_raw): a normalised histogram of the raw samples, else piecewise uniform between quantiles.

    Without raw samples the mass between consecutive quantiles (0.20, 0.25, 0.25, 0.20) is spread evenly over
    their interval; the 5% tails beyond q05 and q95 are not drawn.
    """
    if d.raw is not None and len(d.raw):
        heights, _ = np.histogram(np.clip(d.raw, edges[0], edges[-1]), bins=edges, density=True)
        return heights, edges, True
    ps = sorted(d.quantiles)
    qs = np.array([d.quantiles[p] for p in ps])
    if np.isnan(qs).any():
        return np.array([]), np.array([]), False
    qs = np.maximum.accumulate(qs)
    widths = np.maximum(np.diff(qs), 1e-3)
    return np.diff(ps) / widths, np.concatenate([[qs[0]], qs[0] + np.cumsum(widths)]), False


def median(d: Distances) -> float:
    return float(np.median(d.raw)) if d.raw is not None and len(d.raw) else d.quantiles.get(0.5, math.nan)


def to_markdown(agg: pd.DataFrame, distances: list[Distances]) -> str:
    """Per pretraining and backbone: mean distance (over seeds) and median [q25, q75] per protocol, lower = more invariant."""
    rows = agg[(agg["eval"] == "invariance") & (agg["metric"] == "mean")]
    if rows.empty:
        return ""
    out = []
    protocols = sorted(rows["protocol"].unique())
    for (dataset, preset, backbone), part in rows.groupby(["dataset", "preset", "backbone"], sort=False):
        header = ["Method", "Features", *[f"{p}: mean" for p in protocols], *[f"{p}: median [q25, q75]" for p in protocols]]
        body = []
        keys = part[["method", "layer"]].drop_duplicates()
        keys = keys.assign(_m=keys["method"].map(method_rank), _l=keys["layer"] != "pooled").sort_values(["_m", "_l"])
        for method, layer in zip(keys["method"], keys["layer"]):
            mine = part[(part["method"] == method) & (part["layer"] == layer)].set_index("protocol")
            means = [cell_of(mine.loc[p], "distance") if p in mine.index else DASH for p in protocols]
            spreads = [_quartiles(distances, (dataset, preset, backbone, method, p, layer)) for p in protocols]
            body.append([display_name(method), LAYER_TEXT.get(layer, layer), *means, *spreads])
        out += [f"{backbone} ({dataset}, preset {preset}):" if preset else f"{backbone} ({dataset}):", "",
                markdown_table(header, body), "", seeds_note(part["n"]), ""]  # fmt: skip
    return "\n".join(out)


def _quartiles(distances: list[Distances], key: tuple[str, ...]) -> str:
    for d in distances:
        if (d.dataset, d.preset, d.backbone, d.method, d.protocol, d.layer) == key:
            if d.raw is not None and len(d.raw):
                q25, q50, q75 = np.quantile(d.raw, [0.25, 0.5, 0.75])
            else:
                q25, q50, q75 = (d.quantiles.get(p, math.nan) for p in (0.25, 0.5, 0.75))
            return f"{q50:.3f} [{q25:.3f}, {q75:.3f}]"
    return DASH
