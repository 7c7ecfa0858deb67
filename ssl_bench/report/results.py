"""The results table as the report reads it: ``<out>/results.csv`` read, cleaned and aggregated over seeds.

Every number shown is a mean, a sample standard deviation (ddof=1) and a 95% t-interval over seeds of
one evaluation unit (dataset, preset, backbone, method, eval, protocol, layer, metric). The headline of
an evaluation is its top-1 (AP for detection, top-5 for semisup as PIRL Table 3) at the best layer, the layer with
the highest mean over seeds (for the linear probe this is the layer-wise protocol of Goyal et al. 2019, the mean
``val_top1`` on held-out training images choosing the layer where the run recorded it; kNN's headline
is its "pooled" layer, a method's own embedding, "head", is among the other numbers; for detection the "layer" is the
detector head). Nothing here retrains or knows about methods beyond their names.

One number per unit and seed: a re-run (same ``config_hash``) replaces the older row. Two rows of one unit and seed
with different config hashes are two different settings that the rows' key does not tell apart (a changed
``linear.epochs`` or ``knn.k``, say: only the hash holds them; the data of detection and svm is in their protocol,
``ssl_bench.protocol``). Averaging them would mix settings and keeping both would count them as seeds, so the latest
is shown and a note names every other one (short hash and date): never silently.

Invariance distances (PIRL Fig. 4): the raw samples when the run kept them, else their quantiles. Each run
writes ``<out>/runs/<run_id>/invariance.pt`` (a dict ``"<protocol>/<layer>" -> 1-D tensor`` of L2 distances
between unit-normalised features of an image and of its transformed version, in [0, 2]) and results rows
with the mean, std and quantiles q05..q95. Seeds are pooled: the raw samples are concatenated, the quantiles
averaged. torch is imported only to read a raw file that exists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_bench.protocol import SELECTION_METRIC, VOC_EVALS, VOCProtocol
from ssl_bench.report.stats import with_intervals

REQUIRED_COLUMNS: tuple[str, ...] = (
    "method",
    "backbone",
    "params",
    "dataset",
    "preset",
    "eval",
    "protocol",
    "layer",
    "metric",
    "value",
    "seed",
    "config_hash",
    "run_id",
    "created",
)
# How results.csv counts ``params`` (ssl_bench.backbone, ``num_params_with_classifier``), and the published rows too:
# the network with a 1000-way linear classifier, as torchvision and PIRL Fig. 2 count ResNet-50 (25.6 M).
PARAMS_CONVENTION = "with a 1000-way linear classifier"
MODEL: list[str] = ["dataset", "preset", "backbone", "method"]  # one trained model (over seeds)
UNIT: list[str] = [*MODEL, "eval", "protocol", "layer", "metric"]  # one reported number (over seeds)
METHOD_ORDER: tuple[str, ...] = ("random", "supervised", "autoencoder", "rotnet", "jigsaw", "npidpp", "pirl")
LAYER_ORDER: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4", "pooled")
EVAL_ORDER: tuple[str, ...] = ("linear", "knn", "semisup", "detection", "invariance")
HEADLINE_METRIC = "top1"
# eval -> its headline metric when not top1: detection's AP (PIRL Table 1); semisup's top-5, the only metric of PIRL
# Table 3 (and of the semi-supervised tables it compares with).
HEADLINE_METRICS: dict[str, str] = {"detection": "AP", "semisup": "top5"}
OWN_SECTION_EVALS: frozenset[str] = frozenset({"semisup", "detection", "invariance"})  # tables of their own
RUN_KEY: list[str] = [*MODEL, "seed", "eval"]  # one evaluation of one trained model


def read_results(path: Path) -> pd.DataFrame:
    """The results CSV as strings with exactly REQUIRED_COLUMNS; extra columns are dropped."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no results table at {path}: run `ssl-bench run --out {path.parent}` first, "
            "then `ssl-bench report` reads the results.csv it writes"
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:  # zero-byte file, e.g. a run killed before its first row
        return pd.DataFrame({c: pd.Series(dtype=str) for c in REQUIRED_COLUMNS})
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV table: {err}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(
            f"{path} lacks required column(s): {', '.join(missing)}. Expected columns: {', '.join(REQUIRED_COLUMNS)}"
        )
    return raw[list(REQUIRED_COLUMNS)]


def clean(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Typed rows: numeric value/params/seed, parsed time, the latest run per model, seed and evaluation, one row
    per unit and seed (the newest: ``superseded``). Returns notes on what was dropped or is not known."""
    df = raw.copy()
    for col in (
        "method",
        "backbone",
        "dataset",
        "preset",
        "eval",
        "protocol",
        "layer",
        "metric",
        "config_hash",
        "run_id",
    ):
        df[col] = df[col].astype(str).str.strip()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["params"] = pd.to_numeric(df["params"], errors="coerce")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df["created"] = pd.to_datetime(df["created"], errors="coerce", utc=True, format="ISO8601")
    notes: list[str] = []
    bad = int(df["value"].isna().sum())
    if bad:
        notes.append(f"{bad} row(s) without a numeric value were ignored")
        df = df[df["value"].notna()]
    df, run_notes = latest_runs(df)
    notes += run_notes
    df, superseded_notes = superseded(df)
    notes += superseded_notes + unrecorded_data(df)
    return df.reset_index(drop=True), notes


def superseded(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per unit and seed, the newest. A row replaced by one of the same config_hash was re-run (one note
    counts them); one replaced by a row of another config_hash holds other settings: one note per pretraining
    dataset, preset and eval names each model, seed and hash shown and left out."""
    df = df.sort_values("created", kind="stable", na_position="first")
    older = df.duplicated(subset=[*UNIT, "seed"], keep="last")
    kept = df[~older]
    if not older.any():
        return kept, []
    shown = kept[[*UNIT, "seed", "config_hash", "created"]]
    dropped = df[older].merge(shown, on=[*UNIT, "seed"], how="left", suffixes=("", "_shown"))
    rerun = dropped["config_hash"] == dropped["config_hash_shown"]
    notes = []
    if rerun.any():
        notes.append(
            f"{int(rerun.sum())} older row(s) superseded by a re-run of the same unit and seed (kept the newest)"
        )
    for (dataset, preset, eval_name), part in dropped[~rerun].groupby(["dataset", "preset", "eval"], sort=False):
        models = []
        for (backbone, method, seed), mine in part.groupby(["backbone", "method", "seed"], sort=False):
            shown_as, left_out = _stamps(mine, "_shown"), _stamps(mine)
            models.append(f"{method} / {backbone} / seed {seed}: shown {shown_as}, left out {left_out}")
        where = f"{dataset}, preset {preset}" if preset else dataset
        protocols = sorted(p for p in part["protocol"].unique() if p)
        about = f" ({'; '.join(protocols)})" if protocols else ""
        notes.append(
            f"{eval_name}{about} on {where} has results of different {eval_name} settings under one key (the rows "
            f"differ only in their config hash, not in protocol, layer or metric): {'; '.join(models)}. They are "
            "different measurements, not re-runs: the tables show the latest only. To report both, run them into "
            "separate --out directories."
        )
    return kept, notes


def _stamps(rows: pd.DataFrame, suffix: str = "") -> str:
    """The distinct (config hash, time) of ``rows`` as "config 1a2b3c4d (2026-01-02 10:00 UTC), ..."."""
    pairs = zip(rows[f"config_hash{suffix}"], rows[f"created{suffix}"])
    stamps = (f"config {str(h)[:8]}" + (f" ({t:%Y-%m-%d %H:%M} UTC)" if not pd.isna(t) else "") for h, t in pairs)
    return ", ".join(dict.fromkeys(stamps))


def unrecorded_data(df: pd.DataFrame) -> list[str]:
    """A note on detection / svm rows written before their protocol recorded the data (e.g. "voc07" alone)."""
    rows = df[df["eval"].isin(VOC_EVALS)]
    old = rows[[not VOCProtocol.parse(p).recorded for p in rows["protocol"]]]
    if old.empty:
        return []
    evals, protocols = (", ".join(sorted(old[c].unique())) for c in ("eval", "protocol"))
    note = (
        f"{len(old)} {evals} row(s) were written before ssl-bench recorded the evaluation's data in the protocol "
        f"(protocol {protocols} alone): their dataset, splits and schedule are unknown; they are shown as 'dataset "
        "not recorded' and never matched with published rows"
    )
    return [note]


def latest_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per model, seed and evaluation keep only the rows of the run (``run_id``) written last.

    Two run_ids for one method, backbone and seed are two pretrainings (e.g. NCE vs. InfoNCE): averaging
    them would mix configurations and counting them as seeds would fake a spread. Returns one note per
    model and seed that had several runs.
    """
    if df.empty:
        return df, []
    run_time = df.groupby([*RUN_KEY, "run_id"], sort=False, dropna=False)["created"].transform("max")
    order = df.assign(_t=run_time).sort_values("_t", kind="stable", na_position="first")
    kept = order.drop_duplicates(RUN_KEY, keep="last")[[*RUN_KEY, "run_id", "_t"]]
    runs = df.groupby(RUN_KEY, sort=False, dropna=False)["run_id"].nunique()
    if (runs <= 1).all():
        return df, []
    marked = df.reset_index().merge(kept.rename(columns={"run_id": "_kept"}), on=RUN_KEY, how="left")
    keep = (marked["run_id"] == marked["_kept"]).to_numpy()
    notes = []
    several = marked[marked.groupby(RUN_KEY, dropna=False)["run_id"].transform("nunique") > 1]
    groups = several.groupby([*MODEL, "seed", "_kept"], sort=False, dropna=False)
    for (dataset, preset, backbone, method, seed, run), part in groups:
        others = sorted(set(part["run_id"]) - {run})
        evals = ", ".join(sorted(part["eval"].unique(), key=eval_rank))
        when = part["_t"].max()
        stamp = f" of {when:%Y-%m-%d %H:%M} UTC" if not pd.isna(when) else ""
        notes.append(
            f"{method} / {backbone} / seed {seed} ({dataset}) has {len(others) + 1} runs: {evals} from the latest, "
            f"{run}{stamp}; ignored {', '.join(others)}"
        )
    return df[keep].reset_index(drop=True), notes


def method_rank(method: str) -> tuple[int, str]:
    """The paper's order (PIRL, 2020, arXiv:1912.01991 Table 1), then other methods alphabetically."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def layer_rank(layer: str) -> tuple[int, str]:
    return (LAYER_ORDER.index(layer), "") if layer in LAYER_ORDER else (len(LAYER_ORDER), layer)


def eval_rank(name: str) -> tuple[int, str]:
    return (EVAL_ORDER.index(name), "") if name in EVAL_ORDER else (len(EVAL_ORDER), name)


def ordered_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=method_rank)


def ordered_layers(layers: Iterable[str]) -> list[str]:
    return sorted(set(layers), key=layer_rank)


def backbone_params(df: pd.DataFrame) -> pd.Series:
    """Parameter count per backbone (NaN when no row gives one)."""
    return df.groupby("backbone", sort=False)["params"].max()


def ordered_backbones(df: pd.DataFrame) -> list[str]:
    params = backbone_params(df)
    return sorted(params.index, key=lambda b: (math.isnan(params[b]), params[b] if not math.isnan(params[b]) else 0, b))


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per UNIT: mean, std (ddof=1), n (number of seeds), ci_low, ci_high (95% t; NaN for one seed)."""
    grouped = df.groupby(UNIT, sort=False, dropna=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["n"] = out["n"].astype(int)
    return with_intervals(out)


def headline_metric(eval_name: str) -> str:
    return HEADLINE_METRICS.get(eval_name, HEADLINE_METRIC)


def layer_table(
    agg: pd.DataFrame, eval_name: str = "linear", protocol: str = "", metric: str | None = None
) -> pd.DataFrame:
    """One metric (default: the eval's headline metric) per layer for one evaluation, ordered by method and layer."""
    metric = metric or headline_metric(eval_name)
    rows = agg[(agg["eval"] == eval_name) & (agg["protocol"] == protocol) & (agg["metric"] == metric)]
    keys = rows.assign(_m=rows["method"].map(method_rank), _l=rows["layer"].map(layer_rank))
    return keys.sort_values(["_m", "_l"], kind="stable").drop(columns=["_m", "_l"]).reset_index(drop=True)


def best_layers(per_layer: pd.DataFrame, selector: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model, the layer row with the highest mean (ties: the earlier layer), with ``chosen_on`` "test". With a
    ``selector`` (the same models' per-layer ``SELECTION_METRIC``: the probe's top-1 on training images held out,
    ``linear.val_fraction``), a model it covers takes the layer best there instead, ``chosen_on`` "val"."""
    if per_layer.empty:
        return per_layer.assign(chosen_on=pd.Series(dtype=str))
    ranked = per_layer.assign(_l=per_layer["layer"].map(layer_rank)).sort_values("_l", kind="stable")
    best = per_layer.loc[ranked.groupby(MODEL, sort=False, dropna=False)["mean"].idxmax().to_numpy()]
    best = best.assign(chosen_on="test").reset_index(drop=True)
    if selector is None or selector.empty:
        return best
    on_val = best_layers(selector)[[*MODEL, "layer"]].merge(per_layer, on=[*MODEL, "layer"]).assign(chosen_on="val")
    keep = best.merge(on_val[MODEL], on=MODEL, how="left", indicator=True)["_merge"] == "left_only"
    return pd.concat([on_val, best[keep.to_numpy()]], ignore_index=True)


# kNN's headline is on the pooled backbone features, which every method has; NPID++'s and PIRL's own 128-d embedding
# (layer "head", what NPID's kNN classifies) is listed with the other numbers.
HEADLINE_LAYERS: dict[str, str] = {"knn": "pooled"}


def headline_evals(agg: pd.DataFrame) -> list[tuple[str, str]]:
    """The (eval, protocol) pairs with their headline metric: linear and knn always, then any other present."""
    present = {(e, p) for e, p, m in zip(agg["eval"], agg["protocol"], agg["metric"]) if m == headline_metric(e)}
    pairs = present | {("linear", ""), ("knn", "")}
    return sorted(pairs, key=lambda ep: (eval_rank(ep[0]), ep[1]))


def column_prefix(eval_name: str, protocol: str) -> str:
    return eval_name if not protocol else f"{eval_name}_{protocol}"


def headline(agg: pd.DataFrame, params: pd.Series) -> pd.DataFrame:
    """The summary frame: one row per model, for each headline eval its best-layer headline metric.

    Columns: dataset, preset, backbone, params, method, then per headline eval ``<eval>_<metric>`` (mean),
    ``<eval>_<metric>_std``, ``<eval>_<metric>_low``/``_high`` (95% t-interval), ``<eval>_seeds`` and
    ``<eval>_layer``, with ``<eval>_<protocol>`` when a protocol is set and metric top1 (AP for detection).
    """
    models = agg[MODEL].drop_duplicates()
    out = models.copy()
    for eval_name, protocol in headline_evals(agg):
        prefix = column_prefix(eval_name, protocol)
        value = f"{prefix}_{headline_metric(eval_name)}"
        table = layer_table(agg, eval_name, protocol)
        if eval_name in HEADLINE_LAYERS:
            table = table[table["layer"] == HEADLINE_LAYERS[eval_name]]
        selector = layer_table(agg, eval_name, protocol, SELECTION_METRIC) if eval_name == "linear" else None
        best = best_layers(table, selector)[[*MODEL, "mean", "std", "ci_low", "ci_high", "n", "layer", "chosen_on"]]
        best = best.rename(
            columns={
                "chosen_on": f"{prefix}_chosen_on",
                "mean": value,
                "std": f"{value}_std",
                "ci_low": f"{value}_low",
                "ci_high": f"{value}_high",
                "n": f"{prefix}_seeds",
                "layer": f"{prefix}_layer",
            }
        )
        out = out.merge(best, on=MODEL, how="left")
        out[f"{prefix}_seeds"] = out[f"{prefix}_seeds"].astype("Int64")
    out.insert(3, "params", out["backbone"].map(params).astype(float))
    keys = out.assign(
        _d=out["dataset"],
        _p=out["preset"],
        _n=out["params"].fillna(math.inf),
        _b=out["backbone"],
        _m=out["method"].map(method_rank),
    )
    keys = keys.sort_values(["_d", "_p", "_n", "_b", "_m"], kind="stable")
    return keys.drop(columns=["_d", "_p", "_n", "_b", "_m"]).reset_index(drop=True)


def other_numbers(agg: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Every aggregate not in the headline or per-layer tables (top-5, losses, AP, ...).

    For a headline eval the other metrics are kept at each model's best top-1 layer only, flagged
    by ``at_best`` (True) so that methods with different best layers share one table row; a layer the headline
    leaves out (``HEADLINE_LAYERS``: kNN's "head") keeps all its metrics, at_best False.
    """
    headline_layer = agg["eval"].map(HEADLINE_LAYERS)
    off_headline = headline_layer.notna() & (agg["layer"] != headline_layer)  # kNN's "head": every metric, own rows
    other_metric = agg["metric"] != agg["eval"].map(headline_metric)
    rest = agg[~agg["eval"].isin(OWN_SECTION_EVALS) & (other_metric | off_headline)].assign(off_headline=off_headline)
    best = [
        summary[MODEL].assign(eval=e, protocol=p, best_layer=summary[f"{column_prefix(e, p)}_layer"])
        for e, p in headline_evals(agg)
        if f"{column_prefix(e, p)}_layer" in summary.columns and e not in OWN_SECTION_EVALS
    ]
    if rest.empty or not best:
        return rest.drop(columns=["off_headline"]).assign(at_best=pd.Series(dtype=bool))
    merged = rest.merge(pd.concat(best, ignore_index=True), on=[*MODEL, "eval", "protocol"], how="left")
    at_best = merged["best_layer"].notna() & ~merged["off_headline"]
    keep = ~at_best | (merged["best_layer"] == merged["layer"])
    dropped = ["best_layer", "off_headline"]
    return merged[keep].assign(at_best=at_best[keep]).drop(columns=dropped).reset_index(drop=True)


# Invariance distances, pooled over seeds.
RAW_NAME = "invariance.pt"
QUANTILES: dict[str, float] = {"q05": 0.05, "q25": 0.25, "q50": 0.50, "q75": 0.75, "q95": 0.95}


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


def invariance_distances(df: pd.DataFrame, runs_dir: Path) -> tuple[list[Distances], list[str]]:
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
        out.append(
            Distances(
                dataset, preset, backbone, method, protocol, layer, int(part["seed"].nunique()), pooled, quantiles
            )
        )
    notes = []
    if missing:
        notes.append(
            f"no raw invariance distances ({RAW_NAME} in the run directory) for {', '.join(missing)}: "
            "their histograms are drawn from the quantiles q05..q95 (the central 90% only)"
        )
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
