"""The rich table printed after a report: the headline numbers, one row per model.

Columns: best-layer linear top-1 and kNN top-1 always; semi-supervised fine-tuning with 1% of the labels
(top-1) and detection voc07 AP when present. Cells are mean ± sample std over seeds; the intervals and
rankings are in summary.md.
"""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ssl_bench.report.labels import display_name
from ssl_bench.report.tables import cell, column_prefix, headline_metric, seeds_note

COLUMNS: tuple[tuple[str, str, str], ...] = (  # (eval, protocol, column title)
    ("linear", "", "linear top1 (best layer)"),
    ("knn", "", "knn top1"),
    ("semisup", "finetune-1%", "semisup 1% top1 (finetune)"),
    ("detection", "voc07", "detection voc07 AP"),
)


def print_headline(console: Console, summary: pd.DataFrame, notes: tuple[str, ...]) -> None:
    if not summary.empty:
        shown = [(e, p, t) for e, p, t in COLUMNS if e in ("linear", "knn") or _present(summary, e, p)]
        counts = [n for e, p, _ in shown for n in summary[f"{column_prefix(e, p)}_seeds"] if not pd.isna(n)]
        caption = seeds_note(counts).replace(" [95% t-interval]", "") + " Intervals and rankings: summary.md."
        table = Table(title="ssl-bench headline numbers", caption=caption.strip())
        for name in ("dataset", "backbone", "method"):
            table.add_column(name)
        for _, _, title in shown:
            table.add_column(title, justify="right")
        presets = summary.groupby("dataset")["preset"].nunique()
        for r in summary.to_dict("records"):
            dataset = f"{r['dataset']} ({r['preset']})" if presets[r["dataset"]] > 1 else r["dataset"]
            cells = [_cell(r, summary, e, p) for e, p, _ in shown]
            table.add_row(*(escape(str(v)) for v in (dataset, r["backbone"], display_name(r["method"]), *cells)))
        console.print(table)
    for note in notes:  # the caller prints the paths written (ReportFiles.written)
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


def _present(summary: pd.DataFrame, eval_name: str, protocol: str) -> bool:
    column = f"{column_prefix(eval_name, protocol)}_{headline_metric(eval_name)}"
    return column in summary.columns and bool(summary[column].notna().any())


def _cell(r: dict, summary: pd.DataFrame, eval_name: str, protocol: str) -> str:
    prefix = column_prefix(eval_name, protocol)
    metric = headline_metric(eval_name)
    value = f"{prefix}_{metric}"
    if value not in r:
        return cell(float("nan"), float("nan"), 0)
    n = r[f"{prefix}_seeds"]
    several_layers = eval_name == "linear" or summary[f"{prefix}_layer"].dropna().nunique() > 1
    layer = r[f"{prefix}_layer"] if several_layers and isinstance(r[f"{prefix}_layer"], str) else None
    return cell(r[value], r[f"{value}_std"], 0 if pd.isna(n) else int(n), metric, layer)
