"""What was run and what is missing: the first lines of the report.

Software versions are those installed when the report is written (runs do not record them), read from
package metadata so that the report never imports torch.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

import ssl_bench
from ssl_bench.report.labels import display_name
from ssl_bench.report.tables import (
    DASH, HEADLINE_METRIC, ONE_SEED, SPREAD, backbone_params, eval_rank, ordered_backbones, ordered_methods,
)  # fmt: skip

SOFTWARE: tuple[str, ...] = ("torch", "torchvision", "timm")
# eval -> (what is missing, how to get it); linear and knn first, as in the headline table.
EVAL_HINTS: dict[str, str] = {
    "linear": "no linear-probe rows: run with --evals linear",
    "knn": "no kNN rows: run with --evals knn",
    "semisup": "no semisup rows: run with --evals semisup (paper Table 3: 1% and 10% labels)",
    "detection": "no detection rows: run with --evals detection (paper Table 1: VOC07 AP, AP50, AP75)",
    "invariance": "no invariance rows: run with --evals invariance (paper Fig. 4: distance histograms)",
}


def software_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["ssl_bench"] = ssl_bench.__version__
    return found


def seed_statement(df: pd.DataFrame) -> str:
    """How many seeds each number has, and so whether there are error bars and intervals."""
    per_unit = df.groupby(["dataset", "preset", "backbone", "method", "eval", "protocol", "layer", "metric"])["seed"].nunique()
    ns = sorted(set(int(n) for n in per_unit))
    if not ns:
        return DASH
    if ns == [1]:
        return ONE_SEED
    counts = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return (f"{SPREAD} over {counts} seeds (t = t_0.975,n−1; interval = mean ± t·std/√n); "
            "rankings treat overlapping intervals as ties" + (f"; numbers with 1 seed: {ONE_SEED}" if 1 in ns else ""))  # fmt: skip


def run_overview(df: pd.DataFrame, raw_rows: int) -> list[str]:
    """Bullet lines saying what was run: methods, backbones, datasets, presets, evals, seeds, rows, dates, software."""

    def listing(values: Iterable[object]) -> str:
        items = [str(v) for v in values if str(v) != ""]
        return ", ".join(items) if items else DASH

    software = ", ".join(f"{k} {v}" for k, v in software_versions().items())
    if df.empty:
        return [f"- rows: 0 used of {raw_rows} in results.csv", f"- software (installed now): {software}"]
    params = backbone_params(df)
    backbones = [f"{b} ({params[b] / 1e6:.2f} M params)" if not pd.isna(params[b]) else b for b in ordered_backbones(df)]
    created = df["created"].dropna()
    dates = f"{created.min():%Y-%m-%d %H:%M} to {created.max():%Y-%m-%d %H:%M} UTC" if len(created) else DASH
    seeds = sorted(int(s) for s in df["seed"].dropna().unique())
    methods = [f"{display_name(m)} (`{m}`)" if display_name(m) != m else m for m in ordered_methods(df["method"])]
    return [
        f"- methods: {listing(methods)}",
        f"- backbones: {listing(backbones)}",
        f"- datasets: {listing(sorted(df['dataset'].unique()))}",
        f"- presets: {listing(sorted(df['preset'].unique()))}",
        f"- evaluations: {listing(sorted(df['eval'].unique(), key=eval_rank))}",
        f"- seeds: {listing(seeds)}; {seed_statement(df)}",
        f"- rows: {len(df)} used of {raw_rows} in results.csv, from {df['run_id'].nunique()} run(s); when one method, "
        "backbone and seed has several runs, each evaluation uses the latest run",
        f"- run dates: {dates}",
        f"- software (installed when this report was written; runs do not record versions): {software}",
    ]


def missing_messages(df: pd.DataFrame) -> list[str]:
    """What the table lacks for a full report, each with the command that fills it in."""
    if df.empty:
        return ["results.csv has no rows yet: no evaluation has finished. Run `ssl-bench run`, which appends one row per number."]
    messages = []
    for eval_name, hint in EVAL_HINTS.items():
        rows = df[df["eval"] == eval_name]
        if rows.empty:
            messages.append(hint)
        elif eval_name in ("linear", "knn") and not (rows["metric"] == HEADLINE_METRIC).any():
            messages.append(f"no {eval_name} top1 rows (metrics present: {', '.join(sorted(rows['metric'].unique()))})")
    no_params = [b for b, p in backbone_params(df).items() if pd.isna(p)]
    if no_params:
        messages.append(f"no parameter count for backbone(s) {', '.join(no_params)}: left out of the plot")
    return messages
