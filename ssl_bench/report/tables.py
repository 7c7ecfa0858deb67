"""The report's tables: pure pandas functions from the long results table to aggregates and Markdown.

Every number shown is a mean, a sample standard deviation (ddof=1) and a 95% t-interval over seeds of
one evaluation unit (dataset, preset, backbone, method, eval, protocol, layer, metric). The headline of
an evaluation is its top-1 (AP for detection) at the best layer, the layer with the highest mean over
seeds (for the linear probe this is the layer-wise protocol of Goyal et al. 2019; kNN has the single
"pooled" layer; for detection the "layer" is the detector head). Nothing here retrains, imports torch or
knows about methods beyond their names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ssl_bench.report.stats import with_intervals

REQUIRED_COLUMNS: tuple[str, ...] = (
    "method", "backbone", "params", "dataset", "preset", "eval", "protocol", "layer",
    "metric", "value", "seed", "config_hash", "run_id", "created",
)  # fmt: skip
MODEL: list[str] = ["dataset", "preset", "backbone", "method"]  # one trained model (over seeds)
UNIT: list[str] = [*MODEL, "eval", "protocol", "layer", "metric"]  # one reported number (over seeds)
METHOD_ORDER: tuple[str, ...] = ("random", "supervised", "autoencoder", "rotnet", "jigsaw", "npidpp", "pirl")
LAYER_ORDER: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4", "pooled")
EVAL_ORDER: tuple[str, ...] = ("linear", "knn", "semisup", "detection", "invariance")
HEADLINE_METRIC = "top1"
HEADLINE_METRICS: dict[str, str] = {"detection": "AP"}  # eval -> its headline metric when not top1
OWN_SECTION_EVALS: frozenset[str] = frozenset({"semisup", "detection", "invariance"})  # tables of their own
RUN_KEY: list[str] = [*MODEL, "seed", "eval"]  # one evaluation of one trained model
PERCENT_METRICS: frozenset[str] = frozenset({"top1", "top5"})
FIXED_DECIMALS: dict[str, int] = {"distance": 3}  # metrics shown with a fixed number of decimals
DASH = "–"


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
    """Typed rows: numeric value/params/seed, parsed time, the latest run per model, seed and evaluation, re-runs
    of one unit and seed deduplicated (newest kept). Returns notes on what was dropped."""
    df = raw.copy()
    for col in ("method", "backbone", "dataset", "preset", "eval", "protocol", "layer", "metric", "config_hash", "run_id"):
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
    # A re-run of the same unit and seed replaces the older number: it is not another seed.
    before = len(df)
    df = df.sort_values("created", kind="stable", na_position="first")
    df = df.drop_duplicates(subset=[*UNIT, "seed"], keep="last")
    if len(df) < before:
        notes.append(f"{before - len(df)} older row(s) superseded by a re-run of the same unit and seed (kept the newest)")
    return df.reset_index(drop=True), notes


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


def layer_table(agg: pd.DataFrame, eval_name: str = "linear", protocol: str = "", metric: str | None = None) -> pd.DataFrame:
    """One metric (default: the eval's headline metric) per layer for one evaluation, ordered by method and layer."""
    metric = metric or headline_metric(eval_name)
    rows = agg[(agg["eval"] == eval_name) & (agg["protocol"] == protocol) & (agg["metric"] == metric)]
    keys = rows.assign(_m=rows["method"].map(method_rank), _l=rows["layer"].map(layer_rank))
    return keys.sort_values(["_m", "_l"], kind="stable").drop(columns=["_m", "_l"]).reset_index(drop=True)


def best_layers(per_layer: pd.DataFrame) -> pd.DataFrame:
    """Per model, the layer row with the highest mean (ties: the earlier layer)."""
    if per_layer.empty:
        return per_layer.copy()
    ranked = per_layer.assign(_l=per_layer["layer"].map(layer_rank)).sort_values("_l", kind="stable")
    best = ranked.groupby(MODEL, sort=False, dropna=False)["mean"].idxmax()
    return per_layer.loc[best.to_numpy()].reset_index(drop=True)


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
        best = best_layers(layer_table(agg, eval_name, protocol))[[*MODEL, "mean", "std", "ci_low", "ci_high", "n", "layer"]]
        best = best.rename(columns={
            "mean": value, "std": f"{value}_std", "ci_low": f"{value}_low", "ci_high": f"{value}_high",
            "n": f"{prefix}_seeds", "layer": f"{prefix}_layer",
        })  # fmt: skip
        out = out.merge(best, on=MODEL, how="left")
        out[f"{prefix}_seeds"] = out[f"{prefix}_seeds"].astype("Int64")
    out.insert(3, "params", out["backbone"].map(params).astype(float))
    keys = out.assign(
        _d=out["dataset"], _p=out["preset"], _n=out["params"].fillna(math.inf), _b=out["backbone"],
        _m=out["method"].map(method_rank),
    )  # fmt: skip
    keys = keys.sort_values(["_d", "_p", "_n", "_b", "_m"], kind="stable")
    return keys.drop(columns=["_d", "_p", "_n", "_b", "_m"]).reset_index(drop=True)


def other_numbers(agg: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Every aggregate not in the headline or per-layer tables (top-5, losses, AP, ...).

    For a headline eval the other metrics are kept at each model's best top-1 layer only, flagged
    by ``at_best`` (True) so that methods with different best layers share one table row.
    """
    rest = agg[~agg["eval"].isin(OWN_SECTION_EVALS) & (agg["metric"] != agg["eval"].map(headline_metric))]
    best = [
        summary[MODEL].assign(eval=e, protocol=p, best_layer=summary[f"{column_prefix(e, p)}_layer"])
        for e, p in headline_evals(agg)
        if f"{column_prefix(e, p)}_layer" in summary.columns and e not in OWN_SECTION_EVALS
    ]
    if rest.empty or not best:
        return rest.assign(at_best=pd.Series(dtype=bool))
    merged = rest.merge(pd.concat(best, ignore_index=True), on=[*MODEL, "eval", "protocol"], how="left")
    at_best = merged["best_layer"].notna()
    keep = ~at_best | (merged["best_layer"] == merged["layer"])
    return merged[keep].assign(at_best=at_best[keep]).drop(columns=["best_layer"]).reset_index(drop=True)


def is_percent(metric: str) -> bool:
    """Accuracies and average precisions are percentages, shown with one decimal."""
    return metric in PERCENT_METRICS or metric.lower().startswith(("ap", "map"))


def cell(
    mean: float, std: float, n: int, metric: str = HEADLINE_METRIC, layer: str | None = None,
    ci: tuple[float, float] | None = None,
) -> str:
    """'72.3 ± 0.4 [71.3, 73.3] (layer3)': mean ± std [95% interval]; one seed gives the bare value; no number a dash.

    Percentages get one decimal; other metrics give the std two significant digits and the mean as many decimals.
    The interval is shown when given and there are several seeds.
    """  # fmt: skip
    if mean is None or pd.isna(mean):
        return DASH
    spread = n > 1 and not pd.isna(std)
    if is_percent(metric) or metric in FIXED_DECIMALS:
        decimals = FIXED_DECIMALS.get(metric, 1)
        text = f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if spread else "")
    elif spread and std > 0:
        decimals = max(0, 1 - math.floor(math.log10(std)))
        text = f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    else:
        decimals = 3
        text = f"{mean:.4g}" + (" ± 0" if spread else "")
    if spread and ci is not None and not (pd.isna(ci[0]) or pd.isna(ci[1])):
        text += f" [{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]"
    return f"{text} ({layer})" if layer else text


def cell_of(row: Mapping[str, object], metric: str = HEADLINE_METRIC, layer: str | None = None) -> str:
    """`cell` of an aggregate row (mean, std, n, ci_low, ci_high)."""
    n = row["n"]
    return cell(
        row["mean"], row["std"], 0 if pd.isna(n) else int(n), metric, layer,  # type: ignore[arg-type]
        (row.get("ci_low", math.nan), row.get("ci_high", math.nan)),  # type: ignore[arg-type]
    )  # fmt: skip


ONE_SEED = "one seed: no error bars / intervals."  # said on the page whenever a number has a single seed
SPREAD = "mean ± sample std (ddof=1) [95% t-interval]"


def seeds_note(counts: Iterable[int]) -> str:
    """The line under a table saying over how many seeds its cells are computed."""
    ns = sorted({int(n) for n in counts if not pd.isna(n)})
    if not ns:
        return ""
    if ns == [1]:
        return ONE_SEED[0].upper() + ONE_SEED[1:]
    spread = SPREAD[0].upper() + SPREAD[1:]
    if len(ns) == 1:
        return f"{spread} over {ns[0]} seeds."
    extra = f" Cells without ± have {ONE_SEED}" if 1 in ns else ""
    return f"{spread} over seeds; the number of seeds varies between cells ({ns[0]}–{ns[-1]}).{extra}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
