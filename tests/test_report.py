"""The report is a pure function of results.csv: numbers, best layers, files, plot points and bad input."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.axes._secondary_axes import SecondaryAxis
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from rich.console import Console

from ssl_bench.report import ReportFiles, figures, make_report, results, tables

COLUMNS = list(results.REQUIRED_COLUMNS)
PARAMS = {"resnet18-w0.5": 2_800_000, "resnet18": 11_200_000}
# (method, backbone, layer) -> top1 for seeds (0, 1). Linear probe on three layers.
LINEAR = {
    ("random", "resnet18-w0.5", "layer2"): (10.0, 12.0),  # best: mean 11.0, std sqrt(2)
    ("random", "resnet18-w0.5", "layer3"): (8.0, 9.0),
    ("random", "resnet18-w0.5", "layer4"): (5.0, 6.0),
    ("random", "resnet18", "layer2"): (14.0, 15.0),  # best: 14.5, std sqrt(0.5)
    ("random", "resnet18", "layer3"): (11.0, 12.0),
    ("random", "resnet18", "layer4"): (7.0, 9.0),
    ("rotnet", "resnet18-w0.5", "layer2"): (30.0, 31.0),
    ("rotnet", "resnet18-w0.5", "layer3"): (40.0, 44.0),  # best: 42.0, std sqrt(8)
    ("rotnet", "resnet18-w0.5", "layer4"): (35.0, 36.0),
    ("rotnet", "resnet18", "layer2"): (33.0, 34.0),
    ("rotnet", "resnet18", "layer3"): (45.0, 46.0),  # best by mean (45.5) although layer4 has the top single value
    ("rotnet", "resnet18", "layer4"): (50.0, 30.0),
    ("pirl", "resnet18-w0.5", "layer2"): (40.0, 41.0),
    ("pirl", "resnet18-w0.5", "layer3"): (50.0, 51.0),
    ("pirl", "resnet18-w0.5", "layer4"): (55.0, 56.0),  # best: 55.5
    ("pirl", "resnet18", "layer2"): (44.0, 45.0),
    ("pirl", "resnet18", "layer3"): (56.0, 57.0),
    ("pirl", "resnet18", "layer4"): (60.0, 62.0),  # best: 61.0 ± 1.4
}
KNN = {  # (method, backbone) -> top1 for seeds (0, 1)
    ("random", "resnet18-w0.5"): (9.0, 10.0),
    ("random", "resnet18"): (12.0, 12.0),
    ("rotnet", "resnet18-w0.5"): (30.0, 32.0),
    ("rotnet", "resnet18"): (35.0, 38.0),
    ("pirl", "resnet18-w0.5"): (48.0, 50.0),
    ("pirl", "resnet18"): (53.0, 55.0),  # 54.0 ± 1.4
}


def row(method: str, backbone: str, eval_name: str, layer: str, value: float | str, seed: int, **extra: str) -> dict:
    base = {
        "method": method,
        "backbone": backbone,
        "params": str(PARAMS.get(backbone, "")),
        "dataset": "cifar10",
        "preset": "cifar10",
        "eval": eval_name,
        "protocol": "",
        "layer": layer,
        "metric": "top1",
        "value": str(value),
        "seed": str(seed),
        "config_hash": f"h-{eval_name}-{layer}",
        "run_id": f"{method}-{backbone}-s{seed}",
        "created": f"2025-11-2{seed}T10:00:00+00:00",
        "note": "extra column, ignored",
    }
    return base | extra


def fixture_rows(seeds: tuple[int, ...] = (0, 1), backbones: tuple[str, ...] = tuple(PARAMS)) -> list[dict]:
    rows = []
    for (method, backbone, layer), values in LINEAR.items():
        if backbone in backbones:
            rows += [row(method, backbone, "linear", layer, values[s], s) for s in seeds]
    for (method, backbone), values in KNN.items():
        if backbone in backbones:
            rows += [row(method, backbone, "knn", "pooled", values[s], s) for s in seeds]
    return rows


def write_csv(out: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    columns = columns or [*COLUMNS, "note"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return out


def std2(a: float, b: float) -> float:
    """Sample std (ddof=1) of two values: |a - b| / sqrt(2)."""
    return abs(a - b) / math.sqrt(2)


T_975_1 = 12.706204736  # t quantile 0.975 with 1 degree of freedom (two seeds), from a t table


def cell2(a: float, b: float, layer: str = "") -> str:
    """The report's cell of two seeds: mean ± std [95% t-interval] (layer)."""
    mean, half = (a + b) / 2, T_975_1 * std2(a, b) / math.sqrt(2)
    text = f"{mean:.1f} ± {std2(a, b):.1f} [{mean - half:.1f}, {mean + half:.1f}]"
    return f"{text} ({layer})" if layer else text


@pytest.fixture
def report(tmp_path: Path) -> ReportFiles:
    return make_report(write_csv(tmp_path, fixture_rows()))


def headline_row(files: ReportFiles, method: str, backbone: str) -> dict:
    match = files.summary[(files.summary["method"] == method) & (files.summary["backbone"] == backbone)]
    assert len(match) == 1
    return match.iloc[0].to_dict()


@pytest.mark.parametrize(
    ("method", "backbone", "layer"),
    [
        ("random", "resnet18-w0.5", "layer2"),
        ("random", "resnet18", "layer2"),
        ("rotnet", "resnet18-w0.5", "layer3"),
        ("rotnet", "resnet18", "layer3"),
        ("pirl", "resnet18-w0.5", "layer4"),
        ("pirl", "resnet18", "layer4"),
    ],
)
def test_headline_mean_std_and_best_layer(report: ReportFiles, method: str, backbone: str, layer: str) -> None:
    r = headline_row(report, method, backbone)
    a, b = LINEAR[(method, backbone, layer)]
    assert r["linear_layer"] == layer
    assert r["linear_top1"] == pytest.approx((a + b) / 2)
    assert r["linear_top1_std"] == pytest.approx(std2(a, b))
    assert r["linear_seeds"] == 2
    ka, kb = KNN[(method, backbone)]
    assert r["knn_top1"] == pytest.approx((ka + kb) / 2)
    assert r["knn_top1_std"] == pytest.approx(std2(ka, kb))
    assert r["params"] == PARAMS[backbone]


def test_summary_frame_order(report: ReportFiles) -> None:
    assert list(report.summary["backbone"]) == ["resnet18-w0.5"] * 3 + ["resnet18"] * 3  # by parameter count
    assert list(report.summary["method"]) == ["random", "rotnet", "pirl"] * 2  # the paper's order


def test_summary_md_cells(report: ReportFiles) -> None:
    text = report.summary_md.read_text()
    assert "| PIRL | 61.0 ± 1.4 [48.3, 73.7] (layer4) | 54.0 ± 1.4 [41.3, 66.7] |" in text  # 61 ± 12.706
    assert f"| RotNet | {cell2(45, 46, 'layer3')} | {cell2(35, 38)} |" in text
    assert f"| Random | {cell2(10, 12, 'layer2')} | {cell2(9, 10)} |" in text
    # per-layer table of resnet18, best layer in bold; layer4 mean 40.0, std sqrt(200), interval ± 127.1
    assert "| RotNet | 33.5 ± 0.7 [27.1, 39.9] | **45.5 ± 0.7 [39.1, 51.9]** | 40.0 ± 14.1 [-87.1, 167.1] |" in text
    assert "| method | layer2 | layer3 | layer4 |" in text
    assert "Mean ± sample std (ddof=1) [95% t-interval] over 2 seeds." in text
    assert "one seed" not in text.lower()
    assert (
        "## cifar10" in text
        and "### resnet18-w0.5 (2.8 M parameters)" in text
        and "### resnet18 (11.2 M parameters)" in text
    )
    assert "- methods: Random (`random`), RotNet (`rotnet`), PIRL (`pirl`)" in text
    assert "- seeds: 0, 1; mean ± sample std (ddof=1) [95% t-interval] over 2 seeds" in text
    assert f"- rows: {len(fixture_rows())} used of {len(fixture_rows())} in results.csv, from 12 run(s)" in text
    assert "- run dates: 2025-11-20 10:00 to 2025-11-21 10:00 UTC" in text
    assert "![Linear probe top-1 vs. number of parameters (paper Fig. 2)](accuracy_vs_params.png)" in text


def test_files_written(report: ReportFiles, tmp_path: Path) -> None:
    directory = tmp_path / "report"
    assert report.directory == directory
    assert report.summary_md == directory / "summary.md"
    assert report.plot_png == directory / "accuracy_vs_params.png"
    assert report.plot_svg == directory / "accuracy_vs_params.svg"
    assert report.plot_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in report.plot_svg.read_text()
    assert report.index_html == directory / "index.html"
    assert report.layerwise_png == directory / "layerwise.png"
    assert report.written == [
        report.summary_md,
        report.index_html,
        report.plot_png,
        report.plot_svg,
        report.layerwise_png,
        directory / "results_wide.csv",
    ]
    assert all(p.is_file() for p in report.written)
    assert report.notes == (  # linear and knn only: the other evaluations are missing
        "no semisup rows: run with --evals semisup (paper Table 3: 1% and 10% labels)",
        "no detection rows: run with --evals detection (paper Table 1: VOC07 AP, AP50, AP75)",
        "no invariance rows: run with --evals invariance (paper Fig. 4: distance histograms)",
    )


def plotted(fig: Figure) -> list[tuple[str, float, float]]:
    """(method, x, y) of every marker drawn on the data lines of all panels."""
    points = []
    for ax in fig.axes:
        for line in ax.get_lines():
            gid = line.get_gid() or ""
            if gid.startswith(figures.POINTS_GID + ":"):
                method = gid.split(":", 1)[1]
                points += [(method, float(x), float(y)) for x, y in zip(line.get_xdata(), line.get_ydata())]
    return points


def test_plot_one_point_per_method_and_backbone(report: ReportFiles) -> None:
    fig = figures.accuracy_vs_params(report.summary)
    points = plotted(fig)
    expected = {
        (m, round(PARAMS[b] / 1e6, 6), round((LINEAR[(m, b, layer)][0] + LINEAR[(m, b, layer)][1]) / 2, 6))
        for m, b, layer in [
            ("random", "resnet18-w0.5", "layer2"),
            ("random", "resnet18", "layer2"),
            ("rotnet", "resnet18-w0.5", "layer3"),
            ("rotnet", "resnet18", "layer3"),
            ("pirl", "resnet18-w0.5", "layer4"),
            ("pirl", "resnet18", "layer4"),
        ]
    }
    assert len(points) == 6
    assert {(m, round(x, 6), round(y, 6)) for m, x, y in points} == expected
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Number of parameters (millions, with a 1000-way linear classifier)"
    assert ax.get_ylabel() == "Linear probe top-1 (%)"
    assert ax.get_title() == "cifar10"
    # one label per curve, at its largest size; the top axis names the sizes, the bottom one their parameters
    assert sorted(t.get_text() for t in ax.texts) == ["PIRL", "Random", "RotNet"]
    assert {round(t.xy[0], 6) for t in ax.texts} == {11.2}
    top = next(child for child in ax.get_children() if isinstance(child, SecondaryAxis))
    assert [t.get_text() for t in top.get_xticklabels()] == ["resnet18-w0.5", "resnet18"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2.8", "11.2"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Random", "RotNet", "PIRL"]


def test_plot_error_bars_are_std_over_seeds(report: ReportFiles) -> None:
    fig = figures.accuracy_vs_params(report.summary)
    segments = [
        seg for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()
    ]
    assert len(segments) == 6
    spans = {
        (round(seg[0][0], 3), round(min(seg[0][1], seg[1][1]), 3), round(max(seg[0][1], seg[1][1]), 3))
        for seg in segments
    }
    s = std2(60.0, 62.0)
    assert (11.2, round(61.0 - s, 3), round(61.0 + s, 3)) in spans  # pirl, resnet18


def test_single_backbone_single_seed(tmp_path: Path) -> None:
    files = make_report(write_csv(tmp_path, fixture_rows(seeds=(1,), backbones=("resnet18",))))
    points = plotted(figures.accuracy_vs_params(files.summary))
    assert sorted(m for m, _, _ in points) == ["pirl", "random", "rotnet"]
    assert {round(x, 6) for _, x, _ in points} == {11.2}
    text = files.summary_md.read_text()
    assert "| PIRL | 62.0 (layer4) | 55.0 |" in text  # one seed: the bare value
    assert "| RotNet | 34.0 | 46.0 | **30.0** |" not in text
    assert "| RotNet | 34.0 | **46.0** | 30.0 |" in text
    assert "- seeds: 1; one seed: no error bars / intervals." in text
    assert "One seed: no error bars / intervals." in text
    assert "One seed: ranked by value; without intervals only equal values tie." in text
    assert files.summary["linear_top1_std"].isna().all()
    fig = figures.accuracy_vs_params(files.summary)
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection)]  # no error bars
    assert sorted(t.get_text() for ax in fig.axes for t in ax.texts) == ["PIRL", "Random", "RotNet"]


def test_one_panel_per_dataset(tmp_path: Path) -> None:
    rows = fixture_rows() + [r | {"dataset": "stl10"} for r in fixture_rows(backbones=("resnet18",))]
    files = make_report(write_csv(tmp_path, rows))
    fig = figures.accuracy_vs_params(files.summary)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert sorted(ax.get_title() for ax in panels) == ["cifar10", "stl10"]
    assert len(plotted(fig)) == 6 + 3
    text = files.summary_md.read_text()
    assert "## cifar10" in text and "## stl10" in text


def test_rerun_replaces_older_row_of_same_seed(tmp_path: Path) -> None:
    rerun = row("pirl", "resnet18", "linear", "layer4", 64.0, 1, created="2025-11-25T10:00:00+00:00")
    files = make_report(write_csv(tmp_path, fixture_rows() + [rerun]))
    r = headline_row(files, "pirl", "resnet18")
    assert r["linear_top1"] == pytest.approx(62.0) and r["linear_seeds"] == 2  # (60 + 64) / 2, still 2 seeds
    assert any("1 older row(s) superseded" in n for n in files.notes)


def test_results_of_other_settings_under_one_key_are_named_not_silently_replaced(tmp_path: Path) -> None:
    """Same model, seed, eval, protocol, layer and metric but another config_hash (say linear.epochs changed): the
    latest is shown and a note names both hashes; a re-run of the same hash is only counted."""
    other = {"config_hash": "0123456789abcdef", "created": "2025-11-26T09:30:00+00:00"}
    changed = [row("pirl", "resnet18", "linear", layer, 70.0, 1, **other) for layer in ("layer2", "layer3", "layer4")]
    rerun = row("rotnet", "resnet18", "knn", "pooled", 36.0, 0, created="2025-11-25T10:00:00+00:00")
    files = make_report(write_csv(tmp_path, fixture_rows() + changed + [rerun]))
    r = headline_row(files, "pirl", "resnet18")
    assert r["linear_top1"] == pytest.approx(65.0) and r["linear_seeds"] == 2  # (60 + 70) / 2: seed 1's newest
    assert "1 older row(s) superseded by a re-run of the same unit and seed (kept the newest)" in files.notes
    (note,) = [n for n in files.notes if "different linear settings" in n]
    assert note == (
        "linear on cifar10, preset cifar10 has results of different linear settings under one key (the rows differ "
        "only in their config hash, not in protocol, layer or metric): pirl / resnet18 / seed 1: shown config "
        "01234567 (2025-11-26 09:30 UTC), left out config h-linear (2025-11-21 10:00 UTC). They are different "
        "measurements, not re-runs: the tables show the latest only. To report both, run them into separate --out "
        "directories."
    )
    assert note in files.summary_md.read_text()


def test_non_numeric_values_are_ignored_with_a_note(tmp_path: Path) -> None:
    bad = row("pirl", "resnet18", "linear", "layer4", "nan?", 2)
    files = make_report(write_csv(tmp_path, fixture_rows() + [bad]))
    assert headline_row(files, "pirl", "resnet18")["linear_seeds"] == 2
    assert "1 row(s) without a numeric value were ignored" in files.summary_md.read_text()


def test_console_table(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    make_report(write_csv(tmp_path, fixture_rows()), console=console)
    out = console.export_text()
    assert "linear top1 (best layer)" in out and "knn top1" in out
    assert "61.0 ± 1.4 (layer4)" in out and "54.0 ± 1.4" in out and "PIRL" in out
    assert (
        "semisup" not in out.split("note:")[0] and "detection" not in out.split("note:")[0]
    )  # columns only when present
    assert "note: no detection rows: run with --evals detection" in out


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"results\.csv.*run `ssl-bench run"):
        make_report(tmp_path)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("content", ["", ",".join(COLUMNS) + "\n"], ids=["zero-bytes", "header-only"])
def test_empty_table(tmp_path: Path, content: str) -> None:
    (tmp_path / "results.csv").write_text(content)
    console = Console(record=True, width=200)
    files = make_report(tmp_path, console=console)
    assert files.plot_png is None and files.plot_svg is None
    assert files.summary.empty
    text = files.summary_md.read_text()
    assert "results.csv has no rows yet" in text and "ssl-bench run" in text
    assert "accuracy_vs_params plot skipped" in text
    assert "plot skipped" in console.export_text()
    assert not (tmp_path / "report" / "accuracy_vs_params.png").exists()


def test_no_linear_rows(tmp_path: Path) -> None:
    rows = [r for r in fixture_rows() if r["eval"] == "knn"]
    files = make_report(write_csv(tmp_path, rows))
    text = files.summary_md.read_text()
    assert "no linear-probe rows: run with --evals linear" in text
    assert "accuracy_vs_params plot skipped" in text
    assert files.plot_png is None and not (tmp_path / "report" / "accuracy_vs_params.png").exists()
    assert "| PIRL | – | 54.0 ± 1.4 [41.3, 66.7] |" in text  # knn numbers still reported
    assert "per layer" not in text
    assert any("no linear-probe rows" in n for n in files.notes)


def test_no_knn_rows(tmp_path: Path) -> None:
    files = make_report(write_csv(tmp_path, [r for r in fixture_rows() if r["eval"] == "linear"]))
    assert "no kNN rows: run with --evals knn" in files.summary_md.read_text()
    assert files.plot_png is not None and files.plot_png.exists()


def test_backbone_without_params_is_left_out_of_the_plot(tmp_path: Path) -> None:
    rows = [r | {"params": ""} if r["backbone"] == "resnet18" else r for r in fixture_rows()]
    files = make_report(write_csv(tmp_path, rows))
    assert len(plotted(figures.accuracy_vs_params(files.summary))) == 3
    assert "no parameter count for backbone(s) resnet18: left out of the plot" in files.summary_md.read_text()


def test_missing_columns_are_named(tmp_path: Path) -> None:
    columns = [c for c in COLUMNS if c not in ("seed", "layer")]
    write_csv(tmp_path, fixture_rows(), columns)
    with pytest.raises(ValueError, match=r"lacks required column\(s\): layer, seed"):
        make_report(tmp_path)


def test_method_and_layer_order() -> None:
    assert results.ordered_methods(["zeta", "pirl", "alpha", "random", "supervised", "npidpp"]) == [
        "random",
        "supervised",
        "npidpp",
        "pirl",
        "alpha",
        "zeta",
    ]
    assert results.ordered_layers(["layer4", "pooled", "stem", "layer1", "blocks.3"]) == [
        "stem",
        "layer1",
        "layer4",
        "pooled",
        "blocks.3",
    ]


def test_best_layer_tie_takes_the_earlier_layer() -> None:
    agg = pd.DataFrame(
        {
            "dataset": ["d"] * 2,
            "preset": [""] * 2,
            "backbone": ["b"] * 2,
            "method": ["m"] * 2,
            "eval": ["linear"] * 2,
            "protocol": [""] * 2,
            "layer": ["layer4", "layer3"],
            "metric": ["top1"] * 2,
            "mean": [50.0, 50.0],
            "std": [1.0, 2.0],
            "n": [2, 2],
        }
    )
    assert results.best_layers(results.layer_table(agg))["layer"].tolist() == ["layer3"]


def test_cell_and_seed_note_formats() -> None:
    assert tables.cell(72.345, 0.42, 3, layer="layer3") == "72.3 ± 0.4 (layer3)"
    assert tables.cell(72.345, float("nan"), 1) == "72.3"
    assert tables.cell(float("nan"), float("nan"), 0) == "–"
    assert tables.cell(0.0123456, 0.001, 2, metric="loss") == "0.0123 ± 0.0010"
    assert tables.cell(3.21, 0.0, 3, metric="loss") == "3.21 ± 0"
    assert tables.cell(3.214, 0.0, 1, metric="loss") == "3.214"
    assert tables.cell(52.049, 0.6854, 3, metric="AP50") == "52.0 ± 0.7"
    assert tables.cell(72.345, 0.42, 3, layer="layer3", ci=(71.3, 73.4)) == "72.3 ± 0.4 [71.3, 73.4] (layer3)"
    assert tables.cell(72.345, float("nan"), 1, ci=(float("nan"), float("nan"))) == "72.3"  # one seed: no interval
    assert tables.cell(0.61234, 0.0123, 2, metric="distance", ci=(0.5, 0.72)) == "0.612 ± 0.012 [0.500, 0.720]"
    assert tables.seeds_note([1, 1]) == "One seed: no error bars / intervals."
    assert tables.seeds_note([3, 3]) == "Mean ± sample std (ddof=1) [95% t-interval] over 3 seeds."
    assert "Cells without ± have one seed: no error bars / intervals." in tables.seeds_note([1, 3])


def test_report_imports_neither_torch_nor_methods() -> None:
    code = "import sys, ssl_bench.report; print(sorted(m for m in ('torch', 'ssl_bench.methods') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_knn_headline_is_pooled_and_the_head_row_is_listed_apart(tmp_path: Path) -> None:
    """NPID's kNN on a method's own embedding (layer "head") is better than its pooled kNN here, yet the summary's kNN
    column stays on the pooled features every method has; the head number appears among the other numbers."""
    rows = fixture_rows() + [row("pirl", b, "knn", "head", 70.0 + s, s) for b in PARAMS for s in (0, 1)]
    files = make_report(write_csv(tmp_path, rows))
    pirl = headline_row(files, "pirl", "resnet18")
    assert pirl["knn_top1"] == pytest.approx(54.0) and pirl["knn_layer"] == "pooled"
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "knn top1 (head)" in summary and "70.5" in summary


def test_the_best_layer_is_chosen_on_held_out_images_where_recorded(tmp_path: Path) -> None:
    """val_top1 rows (linear.val_fraction) choose the layer, the test top-1 is reported there; the column says so."""
    rows = fixture_rows(seeds=(0,), backbones=("resnet18",))
    # PIRL's test top-1 is best at layer4 (60.0), but its held-out images prefer layer3: the headline is layer3's 56.0
    for layer, value in (("layer2", 40.0), ("layer3", 70.0), ("layer4", 65.0)):
        rows.append(row("pirl", "resnet18", "linear", layer, value, 0, metric="val_top1"))
    files = make_report(write_csv(tmp_path, rows))
    pirl = files.summary[files.summary["method"] == "pirl"].iloc[0]
    assert (pirl["linear_top1"], pirl["linear_layer"], pirl["linear_chosen_on"]) == (56.0, "layer3", "val")
    rotnet = files.summary[files.summary["method"] == "rotnet"].iloc[0]
    assert (rotnet["linear_layer"], rotnet["linear_chosen_on"]) == ("layer4", "test")  # no val rows: on test
    text = files.summary_md.read_text()
    assert "linear top1 (layer chosen on held-out training images; best layer on test)" in text
    assert "| PIRL | 56.0 (layer3) |" in text
