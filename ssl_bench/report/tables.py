"""The report's tables: pure pandas functions from the long results table to aggregates and Markdown.

Every number shown is a mean and a sample standard deviation (ddof=1) over seeds of one evaluation
unit (dataset, preset, backbone, method, eval, protocol, layer, metric). The headline of an
evaluation is its top-1 at the best layer, the layer with the highest mean over seeds (for the
linear probe this is the layer-wise protocol of Goyal et al. 2019; kNN has the single "pooled" layer).
Nothing here retrains, imports torch or knows about methods beyond their names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

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
PERCENT_METRICS: frozenset[str] = frozenset({"top1", "top5"})
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
    """Typed rows: numeric value/params/seed, parsed time, re-runs deduplicated. Returns notes on what was dropped."""
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
    # A re-run of the same unit and seed replaces the older number: it is not another seed.
    before = len(df)
    df = df.sort_values("created", kind="stable", na_position="first")
    df = df.drop_duplicates(subset=[*UNIT, "seed"], keep="last")
    if len(df) < before:
        notes.append(f"{before - len(df)} older row(s) superseded by a re-run of the same unit and seed (kept the newest)")
    return df.reset_index(drop=True), notes


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
    """One row per UNIT: mean, std (ddof=1, NaN for one seed) and n (number of seeds)."""
    grouped = df.groupby(UNIT, sort=False, dropna=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["n"] = out["n"].astype(int)
    return out


def layer_table(agg: pd.DataFrame, eval_name: str = "linear", protocol: str = "") -> pd.DataFrame:
    """Top-1 per layer for one evaluation: the aggregate rows, ordered by method and layer."""
    rows = agg[(agg["eval"] == eval_name) & (agg["protocol"] == protocol) & (agg["metric"] == HEADLINE_METRIC)]
    keys = rows.assign(_m=rows["method"].map(method_rank), _l=rows["layer"].map(layer_rank))
    return keys.sort_values(["_m", "_l"], kind="stable").drop(columns=["_m", "_l"]).reset_index(drop=True)


def best_layers(per_layer: pd.DataFrame) -> pd.DataFrame:
    """Per model, the layer row with the highest mean top-1 (ties: the earlier layer)."""
    if per_layer.empty:
        return per_layer.copy()
    ranked = per_layer.assign(_l=per_layer["layer"].map(layer_rank)).sort_values("_l", kind="stable")
    best = ranked.groupby(MODEL, sort=False, dropna=False)["mean"].idxmax()
    return per_layer.loc[best.to_numpy()].reset_index(drop=True)


def headline_evals(agg: pd.DataFrame) -> list[tuple[str, str]]:
    """The (eval, protocol) pairs that report top-1: linear and knn always, then any other present."""
    top1 = agg[agg["metric"] == HEADLINE_METRIC]
    present = {(e, p) for e, p in zip(top1["eval"], top1["protocol"])}
    pairs = present | {("linear", ""), ("knn", "")}
    return sorted(pairs, key=lambda ep: (eval_rank(ep[0]), ep[1]))


def column_prefix(eval_name: str, protocol: str) -> str:
    return eval_name if not protocol else f"{eval_name}_{protocol}"


def headline(agg: pd.DataFrame, params: pd.Series) -> pd.DataFrame:
    """The summary frame: one row per model, for each headline eval its best-layer top-1 mean, std, seeds, layer.

    Columns: dataset, preset, backbone, params, method, then ``<eval>_top1``, ``<eval>_top1_std``,
    ``<eval>_seeds``, ``<eval>_layer`` per headline eval (``<eval>_<protocol>`` when a protocol is set).
    """
    models = agg[MODEL].drop_duplicates()
    out = models.copy()
    for eval_name, protocol in headline_evals(agg):
        prefix = column_prefix(eval_name, protocol)
        best = best_layers(layer_table(agg, eval_name, protocol))[[*MODEL, "mean", "std", "n", "layer"]]
        best = best.rename(columns={
            "mean": f"{prefix}_top1", "std": f"{prefix}_top1_std", "n": f"{prefix}_seeds", "layer": f"{prefix}_layer",
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
    rest = agg[agg["metric"] != HEADLINE_METRIC]
    best = [
        summary[MODEL].assign(eval=e, protocol=p, best_layer=summary[f"{column_prefix(e, p)}_layer"])
        for e, p in headline_evals(agg)
        if f"{column_prefix(e, p)}_layer" in summary.columns
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


def cell(mean: float, std: float, n: int, metric: str = HEADLINE_METRIC, layer: str | None = None) -> str:
    """'72.3 ± 0.4 (layer3)'; one seed gives the bare value; no number gives a dash.

    Percentages get one decimal; other metrics give the std two significant digits and the mean as many decimals.
    """
    if mean is None or pd.isna(mean):
        return DASH
    spread = n > 1 and not pd.isna(std)
    if is_percent(metric):
        text = f"{mean:.1f}" + (f" ± {std:.1f}" if spread else "")
    elif spread and std > 0:
        decimals = max(0, 1 - math.floor(math.log10(std)))
        text = f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    else:
        text = f"{mean:.4g}" + (" ± 0" if spread else "")
    return f"{text} ({layer})" if layer else text


def seeds_note(counts: Iterable[int]) -> str:
    """The line under a table saying over how many seeds its cells are computed."""
    ns = sorted({int(n) for n in counts if not pd.isna(n)})
    if not ns:
        return ""
    if ns == [1]:
        return "1 seed: no spread."
    spread = "mean ± sample std (ddof=1) over"
    if len(ns) == 1:
        return f"{spread} {ns[0]} seeds."
    extra = " Cells without ± have 1 seed: no spread." if 1 in ns else ""
    return f"{spread} seeds; the number of seeds varies between cells ({ns[0]}–{ns[-1]}).{extra}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def run_overview(df: pd.DataFrame, raw_rows: int) -> list[str]:
    """Bullet lines saying what was run: methods, backbones, datasets, presets, evals, seeds, rows, dates."""
    def listing(values: Iterable[object]) -> str:
        items = [str(v) for v in values if str(v) != ""]
        return ", ".join(items) if items else DASH

    params = backbone_params(df)
    backbones = [f"{b} ({params[b] / 1e6:.2f} M params)" if not pd.isna(params[b]) else b for b in ordered_backbones(df)]
    created = df["created"].dropna()
    dates = f"{created.min():%Y-%m-%d %H:%M} to {created.max():%Y-%m-%d %H:%M} UTC" if len(created) else DASH
    seeds = sorted(int(s) for s in df["seed"].dropna().unique())
    return [
        f"- methods: {listing(ordered_methods(df['method']))}",
        f"- backbones: {listing(backbones)}",
        f"- datasets: {listing(sorted(df['dataset'].unique()))}",
        f"- presets: {listing(sorted(df['preset'].unique()))}",
        f"- evaluations: {listing(sorted(df['eval'].unique(), key=eval_rank))}",
        f"- seeds: {listing(seeds)}",
        f"- rows: {len(df)} used of {raw_rows} in results.csv, from {df['run_id'].nunique()} run(s)",
        f"- run dates: {dates}",
    ]


def missing_messages(df: pd.DataFrame) -> list[str]:
    """What the table lacks for a full report, each with the command that fills it in."""
    if df.empty:
        return ["results.csv has no rows yet: no evaluation has finished. Run `ssl-bench run`, which appends one row per number."]
    messages = []
    for eval_name, flag in (("linear", "no linear-probe rows: run with --evals linear"), ("knn", "no kNN rows: run with --evals knn")):
        rows = df[df["eval"] == eval_name]
        if rows.empty:
            messages.append(flag)
        elif not (rows["metric"] == HEADLINE_METRIC).any():
            messages.append(f"no {eval_name} top1 rows (metrics present: {', '.join(sorted(rows['metric'].unique()))})")
    no_params = [b for b, p in backbone_params(df).items() if pd.isna(p)]
    if no_params:
        messages.append(f"no parameter count for backbone(s) {', '.join(no_params)}: left out of the plot")
    return messages


def render_summary(
    df: pd.DataFrame, agg: pd.DataFrame, summary: pd.DataFrame, raw_rows: int, notes: Sequence[str], plot: str | None
) -> str:
    """The whole summary.md: overview, notes, then one section per dataset (and preset) and backbone."""
    out = ["# ssl-bench report", "", "Generated from `results.csv` only: no model was retrained.", ""]
    out += run_overview(df, raw_rows) if not df.empty else [f"- rows: 0 used of {raw_rows} in results.csv"]
    if notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    if plot:
        out += ["", f"![Linear probe top-1 vs. number of parameters]({plot})"]
    if df.empty:
        return "\n".join(out) + "\n"
    prefixes = [column_prefix(e, p) for e, p in headline_evals(agg)]
    others = other_numbers(agg, summary)
    top1 = agg[agg["metric"] == HEADLINE_METRIC]
    multi_layer = {ep for ep, n in top1.groupby(["eval", "protocol"])["layer"].nunique().items() if n > 1}
    for (dataset, preset), part in summary.groupby(["dataset", "preset"], sort=True):
        several_presets = summary.loc[summary["dataset"] == dataset, "preset"].nunique() > 1
        title = f"{dataset} · preset {preset}" if several_presets else dataset
        out += ["", f"## {title}", ""]
        if preset and not several_presets:
            out += [f"preset: `{preset}`", ""]
        for backbone in ordered_backbones(df[(df["dataset"] == dataset) & (df["preset"] == preset)]):
            rows = part[part["backbone"] == backbone]
            if rows.empty:
                continue
            params = rows["params"].iloc[0]
            out += [f"### {backbone}" + (f" ({params / 1e6:.2f} M parameters)" if not pd.isna(params) else ""), ""]
            out += _headline_section(rows, prefixes)
            out += _layer_section(agg, rows)
            out += _other_section(others, rows, multi_layer)
    return "\n".join(out) + "\n"


def _headline_section(rows: pd.DataFrame, prefixes: list[str]) -> list[str]:
    shown = [p for p in prefixes if p in ("linear", "knn") or rows[f"{p}_top1"].notna().any()]
    header = ["method", *[("linear top1 (best layer)" if p == "linear" else f"{p.replace('_', ' ')} top1") for p in shown]]
    body, counts = [], []
    for r in rows.to_dict("records"):
        cells = [r["method"]]
        for p in shown:
            several_layers = p == "linear" or rows[f"{p}_layer"].nunique() > 1
            layer = r[f"{p}_layer"] if several_layers and isinstance(r[f"{p}_layer"], str) else None
            n = r[f"{p}_seeds"]
            cells.append(cell(r[f"{p}_top1"], r[f"{p}_top1_std"], 0 if pd.isna(n) else int(n), layer=layer))
            counts.append(n)
        body.append(cells)
    return [markdown_table(header, body), "", seeds_note(counts), ""]


def _layer_section(agg: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    per_layer = layer_table(agg).merge(rows[MODEL], on=MODEL)
    if per_layer.empty:
        return []
    layers = ordered_layers(per_layer["layer"])
    best = {m: layer for m, layer in zip(rows["method"], rows["linear_layer"])}
    body = []
    for method in ordered_methods(per_layer["method"]):
        mine = per_layer[per_layer["method"] == method].set_index("layer")
        cells = [method]
        for layer in layers:
            if layer not in mine.index:
                cells.append(DASH)
                continue
            text = cell(mine.at[layer, "mean"], mine.at[layer, "std"], int(mine.at[layer, "n"]))
            cells.append(f"**{text}**" if best.get(method) == layer else text)
        body.append(cells)
    title = "Linear probe top-1 per layer (bold: best layer)"
    return [title, "", markdown_table(["method", *layers], body), "", seeds_note(per_layer["n"]), ""]


def _other_section(others: pd.DataFrame, rows: pd.DataFrame, multi_layer: set[tuple[str, str]]) -> list[str]:
    mine = others.merge(rows[MODEL], on=MODEL)
    if mine.empty:
        return []
    methods = ordered_methods(mine["method"])
    mine = mine.assign(
        _e=mine["eval"].map(eval_rank), _l=mine["layer"].map(layer_rank), _layer=mine["layer"].where(~mine["at_best"], "")
    )
    mine = mine.sort_values(["_e", "protocol", "metric", "_l"], kind="stable")
    body = []
    for (eval_name, protocol, metric, layer), group in mine.groupby(["eval", "protocol", "metric", "_layer"], sort=False):
        label = " ".join(x for x in (eval_name, protocol, metric) if x)
        if group["at_best"].all():
            label += " (at best top1 layer)" if (eval_name, protocol) in multi_layer else ""
        elif layer:
            label += f" ({layer})"
        by_method = group.set_index("method")
        body.append([label] + [
            cell(by_method.at[m, "mean"], by_method.at[m, "std"], int(by_method.at[m, "n"]), metric)
            if m in by_method.index else DASH
            for m in methods
        ])  # fmt: skip
    return ["Other numbers", "", markdown_table(["number", *methods], body), "", seeds_note(mine["n"]), ""]
