"""The report: a pure function of ``<out>/results.csv`` that writes ``<out>/report/``.

It reads only the results table (and, for the invariance histograms, the raw distances a run saved next to
it); it never retrains. Files, all optional but summary.md and index.html, each skipped with a note saying
what is missing:

* ``summary.md`` / ``index.html``: the page to read (what was run, every table and figure, published numbers);
* ``accuracy_vs_params.png/.svg`` (PIRL Fig. 2), ``layerwise.png`` (Fig. 5), ``invariance.png`` (Fig. 4);
* ``detection_ap.md/.csv/.tex`` (Table 1 format) and ``semisup.md`` (Table 3 format);
* ``results_wide.csv``: the headline numbers, one row per model (``results.headline``'s summary frame), always;

and, when a console is given, a rich table of the headline numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from rich.console import Console

from ssl_bench.report import published as refs
from ssl_bench.report import results, tables
from ssl_bench.report.figures import accuracy_vs_params, invariance_histograms, layer_points, layerwise, plot_points
from ssl_bench.report.page import Sections, markdown_to_html, missing_messages, print_headline, render_summary

__all__ = ["ReportFiles", "make_report"]

SUMMARY_NAME = "summary.md"
INDEX_NAME = "index.html"
PLOT_NAME = "accuracy_vs_params"
LAYERWISE_NAME = "layerwise"
INVARIANCE_NAME = "invariance"
DETECTION_NAME = "detection_ap"
SEMISUP_NAME = "semisup.md"
WIDE_NAME = "results_wide.csv"
OUTPUT_NAMES: tuple[str, ...] = (  # every file make_report may write; stale ones from an earlier report are removed
    SUMMARY_NAME,
    INDEX_NAME,
    f"{PLOT_NAME}.png",
    f"{PLOT_NAME}.svg",
    f"{LAYERWISE_NAME}.png",
    f"{INVARIANCE_NAME}.png",
    f"{DETECTION_NAME}.md",
    f"{DETECTION_NAME}.csv",
    f"{DETECTION_NAME}.tex",
    SEMISUP_NAME,
    WIDE_NAME,
)
DPI = 150


@dataclass(frozen=True)
class ReportFiles:
    """What `make_report` wrote; a path is None (or absent from ``tables``) when its input was missing (see
    ``notes``)."""

    directory: Path
    summary_md: Path
    plot_png: Path | None
    plot_svg: Path | None
    summary: pd.DataFrame = field(repr=False)  # one row per model: see `results.headline`
    notes: tuple[str, ...] = ()  # what is missing or was skipped, in the words of summary.md
    index_html: Path | None = None
    layerwise_png: Path | None = None
    invariance_png: Path | None = None
    tables: tuple[Path, ...] = ()  # detection_ap.md/.csv/.tex, semisup.md
    published: bool = False  # whether published numbers are shown
    results_wide_csv: Path | None = None  # the summary frame as a table for scripts (see `wide_table`)

    @property
    def written(self) -> list[Path]:
        paths = (
            self.summary_md,
            self.index_html,
            self.plot_png,
            self.plot_svg,
            self.layerwise_png,
            self.invariance_png,
        )
        return [p for p in (*paths, *self.tables, self.results_wide_csv) if p is not None]


def make_report(out_dir: str | Path, console: Console | None = None, published: bool | None = None) -> ReportFiles:
    """Aggregate ``out_dir/results.csv`` over seeds and write the report under ``out_dir/report``.

    ``published``: show the PIRL paper's numbers beside ours (None: only when a pretraining dataset is ImageNet).
    Raises FileNotFoundError when results.csv is absent and ValueError when it lacks required columns; an
    empty or partial table still gives a summary.md and index.html that say what is missing.
    """
    out = Path(out_dir)
    raw = results.read_results(out / "results.csv")
    df, notes = results.clean(raw)
    notes = [*missing_messages(df), *notes]
    agg = results.aggregate(df)
    params = results.backbone_params(df)
    summary = results.headline(agg, params)
    datasets = sorted(df["dataset"].unique())
    show = refs.show_published(datasets, published)
    references = refs.load_published() if show else None
    directory = out / "report"
    directory.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}

    png = svg = None
    if plot_points(summary).empty:
        reason = (
            "no linear-probe rows"
            if not (df["eval"] == "linear").any()
            else "no linear-probe top1 row with a parameter count"
        )
        notes.append(f"{PLOT_NAME} plot skipped: {reason}")
    else:
        points = refs.linear_points(references) if references is not None else None
        png, svg = _save(accuracy_vs_params(summary, points), directory, PLOT_NAME, svg=True)
        figures[PLOT_NAME] = png.name

    layer_png = None
    if layer_points(agg).empty:
        if (df["eval"] == "linear").any():
            notes.append(f"{LAYERWISE_NAME} plot skipped: no linear-probe top1 rows per stage")
    else:
        paper = refs.select(references, "linear", "") if references is not None else None
        paper = paper[paper["layer"] != "best"] if paper is not None else None
        layer_png, _ = _save(layerwise(agg, paper), directory, LAYERWISE_NAME)
        figures[LAYERWISE_NAME] = layer_png.name

    distances, invariance_notes = results.invariance_distances(df, out / "runs")
    notes += invariance_notes
    invariance_png = None
    if distances:
        invariance_png, _ = _save(invariance_histograms(distances), directory, INVARIANCE_NAME)
        figures[INVARIANCE_NAME] = invariance_png.name

    written_tables: list[Path] = []
    detection = tables.detection_tables(agg, references, params)
    detection_md = tables.detection_markdown(detection)
    if detection:
        title = "# Object detection (paper Table 1 format)\n\n"
        written_tables += [
            _write(directory / f"{DETECTION_NAME}.md", title + detection_md.replace("### ", "## ")),
            _write(directory / f"{DETECTION_NAME}.csv", tables.detection_csv(detection)),
            _write(directory / f"{DETECTION_NAME}.tex", tables.detection_latex(detection)),
        ]
    semisup_md = tables.semisup_markdown(agg, references, params)
    if semisup_md:
        title = "# Semi-supervised learning (paper Table 3 format)\n\n"
        written_tables.append(_write(directory / SEMISUP_NAME, title + semisup_md.replace("### ", "## ")))

    sections = Sections(
        figures, semisup_md, detection_md, tables.invariance_markdown(agg, distances), references, tuple(datasets)
    )
    text = render_summary(df, agg, summary, len(raw), notes, sections)
    summary_md = _write(directory / SUMMARY_NAME, text)
    index_html = _write(directory / INDEX_NAME, markdown_to_html(text))
    results_wide_csv = _write(directory / WIDE_NAME, wide_table(summary).to_csv(index=False))

    files = ReportFiles(
        directory,
        summary_md,
        png,
        svg,
        summary,
        tuple(notes),
        index_html,
        layer_png,
        invariance_png,
        tuple(written_tables),
        show,
        results_wide_csv,
    )
    _remove_stale(directory, files.written)
    if console is not None:
        print_headline(console, summary, files.notes)
    return files


def wide_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary frame (``results.headline``) as ``results_wide.csv`` writes it: one row per model (dataset, preset,
    backbone, method, in the page's order), then params, then per headline evaluation (linear, knn, then the others in
    the page's order) ``<eval>_<metric>`` (mean over seeds), ``_std``, ``_low`` / ``_high`` (95% t-interval),
    ``<eval>_seeds``, ``<eval>_layer`` (the best layer) and ``<eval>_chosen_on`` (val or test). Numbers unrounded."""
    first = [*results.MODEL, "params"]
    return summary[[*first, *(c for c in summary.columns if c not in first)]]


def _save(fig: Figure, directory: Path, stem: str, svg: bool = False) -> tuple[Path, Path | None]:
    png = directory / f"{stem}.png"
    fig.savefig(png, dpi=DPI)
    if not svg:
        return png, None
    fig.savefig(directory / f"{stem}.svg")
    return png, directory / f"{stem}.svg"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _remove_stale(directory: Path, written: list[Path]) -> None:
    """Delete report files of an earlier run that this report did not write (e.g. a table whose rows are gone)."""
    for name in OUTPUT_NAMES:
        path = directory / name
        if path not in written and path.is_file():
            path.unlink()
