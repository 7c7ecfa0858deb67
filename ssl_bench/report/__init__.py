"""The report: a pure function of ``<out>/results.csv`` that writes ``<out>/report/``.

It reads only the results table (never a checkpoint, never torch), so it can be rerun at will:
``summary.md`` (headline and per-layer tables), ``accuracy_vs_params.png/.svg`` (PIRL Fig. 2 style)
and, when a console is given, a rich table of the headline numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ssl_bench.report import plots, tables

__all__ = ["ReportFiles", "make_report"]

SUMMARY_NAME = "summary.md"
PLOT_NAME = "accuracy_vs_params"


@dataclass(frozen=True)
class ReportFiles:
    """What `make_report` wrote; ``plot_png``/``plot_svg`` are None when the plot was skipped (see ``notes``)."""

    directory: Path
    summary_md: Path
    plot_png: Path | None
    plot_svg: Path | None
    summary: pd.DataFrame = field(repr=False)  # one row per model: see `tables.headline`
    notes: tuple[str, ...] = ()  # what is missing or was skipped, in the words of summary.md

    @property
    def written(self) -> list[Path]:
        return [p for p in (self.summary_md, self.plot_png, self.plot_svg) if p is not None]


def make_report(out_dir: str | Path, console: Console | None = None) -> ReportFiles:
    """Aggregate ``out_dir/results.csv`` over seeds and write the report under ``out_dir/report``.

    Raises FileNotFoundError when results.csv is absent and ValueError when it lacks required columns;
    an empty table or one without linear-probe rows still gives a summary.md that says what is missing.
    """
    out = Path(out_dir)
    raw = tables.read_results(out / "results.csv")
    df, notes = tables.clean(raw)
    notes = [*tables.missing_messages(df), *notes]
    agg = tables.aggregate(df)
    summary = tables.headline(agg, tables.backbone_params(df))
    directory = out / "report"
    directory.mkdir(parents=True, exist_ok=True)

    png = svg = None
    if plots.plot_points(summary).empty:
        reason = "no linear-probe rows" if not (df["eval"] == "linear").any() else "no linear-probe top1 row with a parameter count"
        notes.append(f"{PLOT_NAME} plot skipped: {reason}")
    else:
        fig = plots.accuracy_vs_params(summary)
        png, svg = directory / f"{PLOT_NAME}.png", directory / f"{PLOT_NAME}.svg"
        fig.savefig(png, dpi=150)
        fig.savefig(svg)
    text = tables.render_summary(df, agg, summary, len(raw), notes, png.name if png else None)
    summary_md = directory / SUMMARY_NAME
    summary_md.write_text(text, encoding="utf-8")

    files = ReportFiles(directory, summary_md, png, svg, summary, tuple(notes))
    if console is not None:
        _print(console, files)
    return files


def _print(console: Console, files: ReportFiles) -> None:
    summary = files.summary
    if not summary.empty:
        seeds = [*summary["linear_seeds"], *summary["knn_seeds"]]
        table = Table(title="ssl-bench headline numbers", caption=tables.seeds_note(seeds))
        for name in ("dataset", "backbone", "method"):
            table.add_column(name)
        table.add_column("linear top1 (best layer)", justify="right")
        table.add_column("knn top1", justify="right")
        presets = summary.groupby("dataset")["preset"].nunique()
        for r in summary.to_dict("records"):
            dataset = f"{r['dataset']} ({r['preset']})" if presets[r["dataset"]] > 1 else r["dataset"]
            linear = tables.cell(r["linear_top1"], r["linear_top1_std"], _n(r["linear_seeds"]), layer=_str(r["linear_layer"]))
            knn = tables.cell(r["knn_top1"], r["knn_top1_std"], _n(r["knn_seeds"]))
            table.add_row(*(escape(str(v)) for v in (dataset, r["backbone"], r["method"], linear, knn)))
        console.print(table)
    for note in files.notes:  # the caller prints the paths written (ReportFiles.written)
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


def _n(value: object) -> int:
    return 0 if pd.isna(value) else int(value)  # type: ignore[arg-type]


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
