"""The whole report on a rich fixture: five methods, seeds 0 and 1, all five evaluations, raw invariance files.

Checks that every file is written, that index.html is self-contained (only existing local files, no http),
that the published numbers appear only when asked for, and that empty and partial tables explain what is missing.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from ssl_bench.report import ReportFiles, figures, make_report, results
from ssl_bench.report.figures import layerwise

COLUMNS = list(results.REQUIRED_COLUMNS)
BACKBONE, PARAMS, DATASET = "resnet18-smallstem", 11_173_962, "synthetic"
METHODS = ("random", "supervised", "jigsaw", "npidpp", "pirl")
LEVEL = {"random": 20.0, "supervised": 70.0, "jigsaw": 40.0, "npidpp": 50.0, "pirl": 55.0}  # best-layer linear top-1
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
SHAPE = {"stem": -20.0, "layer1": -12.0, "layer2": -6.0, "layer3": -2.0, "layer4": 0.0}
NOISE = {0: -1.0, 1: 1.0}  # seed -> offset: every two-seed number has std sqrt(2)
RAW_FOR = ("random", "supervised", "npidpp", "pirl")  # jigsaw has no invariance.pt: drawn from quantiles
TABLE1_DATA = "voc07+12 trainval->test 25000 it"  # detection rows: "<scoring> on <data> <splits> <iterations> it"


def run_id(method: str, seed: int) -> str:
    return f"{method}_{BACKBONE}_s{seed}_abcd1234"


def rows_for(method: str, seed: int, detection_data: str = TABLE1_DATA) -> list[dict]:
    """``detection_data`` "": detection rows as written before the data was recorded (protocol "voc07" alone)."""
    out = []

    def add(eval_name: str, protocol: str, layer: str, metric: str, value: float) -> None:
        out.append(
            {
                "method": method,
                "backbone": BACKBONE,
                "params": PARAMS,
                "dataset": DATASET,
                "preset": "ci",
                "eval": eval_name,
                "protocol": protocol,
                "layer": layer,
                "metric": metric,
                "value": round(value, 4),
                "seed": seed,
                "config_hash": f"{method}-{eval_name}",
                "run_id": run_id(method, seed),
                "created": f"2026-01-0{seed + 1}T10:00:00+00:00",
            }
        )

    level, noise = LEVEL[method], NOISE[seed]
    for stage in STAGES:
        add("linear", "", stage, "top1", level + SHAPE[stage] + noise)
        add("linear", "", stage, "top5", min(99.0, level + SHAPE[stage] + 25 + noise))
    add("knn", "", "pooled", "top1", level - 5 + noise)
    add("knn", "", "pooled", "top5", level + 20 + noise)
    for pct, drop in (("1%", 15.0), ("10%", 5.0)):
        add("semisup", f"finetune-{pct}", "all", "top1", level - drop + noise)
        add("semisup", f"finetune-{pct}", "all", "top5", level - drop + 20 + noise)
        for stage in STAGES:
            add("semisup", f"linear-{pct}", stage, "top1", level - drop - 3 + SHAPE[stage] + noise)
            add("semisup", f"linear-{pct}", stage, "top5", level - drop + 15 + SHAPE[stage] + noise)
    for scoring, scale in (("voc07", 1.0), ("coco", 0.6)):
        protocol = f"{scoring} on {detection_data}" if detection_data else scoring
        ap = (level * 0.6 + noise) * scale
        add("detection", protocol, "c4", "AP", ap)
        add("detection", protocol, "c4", "AP50", ap + 25 * scale)
        add("detection", protocol, "c4", "AP75", ap + 4 * scale)
    for protocol, layer, centre in invariance_keys(method):
        q = quantiles(centre, seed)
        add("invariance", protocol, layer, "mean", float(np.mean(q)))
        add("invariance", protocol, layer, "std", 0.15)
        for name, value in zip(("q05", "q25", "q50", "q75", "q95"), q):
            add("invariance", protocol, layer, name, value)
    return out


def invariance_keys(method: str) -> list[tuple[str, str, float]]:
    """(protocol, layer, centre of the distances): PIRL is the most invariant to jigsaw, and has heads."""
    centre = {"random": 0.9, "supervised": 0.6, "jigsaw": 1.1, "npidpp": 0.5, "pirl": 0.3}[method]
    keys = [("jigsaw", "pooled", centre), ("rotation", "pooled", min(1.5, centre + 0.3))]
    return keys + ([("jigsaw", "head", 0.15)] if method == "pirl" else [])


def samples(centre: float, seed: int, n: int = 400) -> np.ndarray:
    g = np.random.default_rng(seed + int(centre * 100))
    return np.clip(g.normal(centre, 0.15, n), 0.0, 2.0)


def quantiles(centre: float, seed: int) -> list[float]:
    return [float(v) for v in np.quantile(samples(centre, seed), [0.05, 0.25, 0.5, 0.75, 0.95])]


def write_results(out: Path, rows: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def full_fixture(
    out: Path, methods: tuple[str, ...] = METHODS, seeds: tuple[int, ...] = (0, 1), detection_data: str = TABLE1_DATA
) -> Path:
    """results.csv for every method and seed, plus runs/<run_id>/invariance.pt for the methods in RAW_FOR."""
    write_results(out, [r for m in methods for s in seeds for r in rows_for(m, s, detection_data)])
    for method in methods:
        for seed in seeds:
            if method in RAW_FOR:
                run = out / "runs" / run_id(method, seed)
                run.mkdir(parents=True, exist_ok=True)
                raw = {
                    f"{p}/{layer}": torch.tensor(samples(c, seed), dtype=torch.float32)
                    for p, layer, c in invariance_keys(method)
                }
                torch.save(raw, run / "invariance.pt")
    return out


@pytest.fixture
def full(tmp_path: Path) -> ReportFiles:
    return make_report(full_fixture(tmp_path), published=False)


EXPECTED_FILES = (
    "summary.md",
    "index.html",
    "accuracy_vs_params.png",
    "accuracy_vs_params.svg",
    "layerwise.png",
    "invariance.png",
    "detection_ap.md",
    "detection_ap.csv",
    "detection_ap.tex",
    "semisup.md",
    "results_wide.csv",
)


def test_every_file_is_written(full: ReportFiles, tmp_path: Path) -> None:
    report = tmp_path / "report"
    assert sorted(p.name for p in report.iterdir()) == sorted(EXPECTED_FILES)
    assert sorted(p.name for p in full.written) == sorted(EXPECTED_FILES)
    for name in EXPECTED_FILES:
        assert (report / name).stat().st_size > 200, name
    for name in ("accuracy_vs_params.png", "layerwise.png", "invariance.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert full.published is False


def test_index_html_is_self_contained(full: ReportFiles, tmp_path: Path) -> None:
    page = full.index_html.read_text()  # type: ignore[union-attr]
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(sources) == ["accuracy_vs_params.png", "invariance.png", "layerwise.png"]
    for src in sources:
        assert (tmp_path / "report" / src).is_file()
    # every table of summary.md is an HTML table, and the numbers came along
    assert page.count("<table>") == len(re.findall(r"^\|---", full.summary_md.read_text(), flags=re.M)) > 10
    assert "<h2>Object detection (paper Table 1)</h2>" in page
    assert "<td>PIRL</td><td>55.0 ± 1.4 [42.3, 67.7] (layer4)</td>" in page


def test_summary_has_every_section(full: ReportFiles) -> None:
    text = full.summary_md.read_text()
    for part in (
        "## What was run",
        "- seeds: 0, 1",
        "software (installed when this report was written",
        "torch ",
        "timm ",
        "torchvision ",
        "ssl_bench 0.1.0",
        "python 3.",
        "## synthetic",
        "Ranking by linear top1 (best layer)",
        "![Linear probe top-1 vs. number of parameters (paper Fig. 2)](accuracy_vs_params.png)",
        "![Linear probe top-1 per stage (paper Fig. 5)](layerwise.png)",
        "![Invariance to the pretext transforms (paper Fig. 4)](invariance.png)",
        "## Semi-supervised learning (paper Table 3)",
        "## Object detection (paper Table 1)",
        "## Invariance (paper Fig. 4)",
        "Not shown: these runs pretrain on synthetic",
    ):
        assert part in text, part
    assert "one seed" not in text.lower()
    assert "published)" not in text


def test_headline_cells_have_mean_std_and_interval(full: ReportFiles) -> None:
    text = full.summary_md.read_text()
    # PIRL: linear 54/56 at layer4, knn 49/51, finetune-1% top5 59/61, voc07 AP 32/34: std sqrt(2), t(0.975, 1) = 12.706
    half = 12.7062047 * 2**0.5 / 2**0.5  # t * std / sqrt(n) = 12.706 exactly
    assert (
        f"| PIRL | 55.0 ± 1.4 [{55 - half:.1f}, {55 + half:.1f}] (layer4) | 50.0 ± 1.4 [{50 - half:.1f}, {50 + half:.1f}] |"
        in text
    )
    detection = "detection voc07 AP (voc07+12 trainval->test, 25000 iterations)"
    assert f"| method | linear top1 (best layer on test) | knn top1 | semisup finetune-1% top5 | {detection} |" in text
    knn, semisup = (f"{v:.1f} ± 1.4 [{v - half:.1f}, {v + half:.1f}]" for v in (50, 60))
    assert f"| {knn} | {semisup} |" in text  # PIRL's kNN, then its semisup headline: top-5 (59/61), as Table 3
    assert "Ranking by semisup finetune-1% top5." in text


def ranking_rows(text: str, title: str) -> list[str]:
    """The body lines of the ranking table that follows `title`."""
    after = text.split(f"Ranking by {title}.")[1]
    table = after[after.index("| rank |") :].split("\n\n")[0]
    return table.splitlines()[2:]


def test_ranking_marks_overlapping_intervals_as_ties(full: ReportFiles) -> None:
    lines = ranking_rows(full.summary_md.read_text(), "linear top1 (best layer)")
    # means 70 / 55 / 50 / 40 / 20, each interval ± 12.7 (t = 12.706, std sqrt(2), n = 2):
    # Supervised [57.3, 82.7], PIRL [42.3, 67.7], NPID++ [37.3, 62.7], Jigsaw [27.3, 52.7], Random [7.3, 32.7]
    assert lines == [
        "| 1= | Supervised | 70.0 ± 1.4 [57.3, 82.7] | PIRL, NPID++ |",
        "| 1= | PIRL | 55.0 ± 1.4 [42.3, 67.7] | Supervised, NPID++, Jigsaw |",
        "| 1= | NPID++ | 50.0 ± 1.4 [37.3, 62.7] | Supervised, PIRL, Jigsaw |",
        "| 2= | Jigsaw | 40.0 ± 1.4 [27.3, 52.7] | PIRL, NPID++, Random |",  # only Supervised is clearly above
        "| 4= | Random | 20.0 ± 1.4 [7.3, 32.7] | Jigsaw |",  # Supervised, PIRL and NPID++ are clearly above
    ]


def test_semisup_table(full: ReportFiles, tmp_path: Path) -> None:
    text = (tmp_path / "report" / "semisup.md").read_text()
    assert "| Method | Network | Top-5 1% | Top-5 10% | Top-1 1% | Top-1 10% |" in text  # top-5 first: Table 3's
    # fine-tuned: top-5 70 - 15 + 20 = 75 (1%), 70 - 5 + 20 = 85 (10%); top-1 55, 65
    assert (
        "| Supervised | resnet18-smallstem | 75.0 ± 1.4 [62.3, 87.7] | 85.0 ± 1.4 [72.3, 97.7] | "
        "55.0 ± 1.4 [42.3, 67.7] | 65.0 ± 1.4 [52.3, 77.7] |"
    ) in text
    # low-shot linear: best stage by top-5 layer4 (SHAPE 0): 70 - 15 + 15 = 70, top-1 at that stage 70 - 15 - 3 = 52
    assert (
        "| Supervised | resnet18-smallstem | 70.0 ± 1.4 [57.3, 82.7] (layer4) | 80.0 ± 1.4 [67.3, 92.7] (layer4) | "
        "52.0 ± 1.4 [39.3, 64.7] | 62.0 ± 1.4 [49.3, 74.7] |"
    ) in text
    assert text.index("Fine-tuned") < text.index("Low-shot linear probe (not in the paper)")
    assert "Mean ± sample std (ddof=1) [95% t-interval] over 2 seeds." in text


def test_invariance_uses_raw_files_and_falls_back_to_quantiles(full: ReportFiles) -> None:
    text = full.summary_md.read_text()
    assert (
        "no raw invariance distances (invariance.pt in the run directory) for jigsaw jigsaw/pooled, jigsaw rotation/pooled"
        in text
    )
    assert "| PIRL | heads f(v_I) vs. g(v_I^t) |" in text
    pooled = np.concatenate([samples(0.3, 0), samples(0.3, 1)])
    q25, q50, q75 = np.quantile(pooled, [0.25, 0.5, 0.75])
    assert f"{q50:.3f} [{q25:.3f}, {q75:.3f}]" in text  # PIRL jigsaw/pooled from the raw samples of both seeds


def test_console_headline_table(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    make_report(full_fixture(tmp_path), console=console)
    out = console.export_text()
    for column in ("linear top1 (best layer)", "knn top1", "semisup 1% top5 (finetune)", "detection voc07 AP"):
        assert column in out
    assert "voc07+12" in out  # the detection column names its data
    assert "55.0 ± 1.4 (layer4)" in out and "PIRL" in out and "NPID++" in out
    assert "33.0 ± 1.4" in out  # PIRL voc07 AP: 55 * 0.6 ± 1


def test_published_only_when_asked(tmp_path: Path) -> None:
    off = make_report(full_fixture(tmp_path / "off"))  # synthetic pretraining: off by default
    on = make_report(full_fixture(tmp_path / "on"), published=True)
    assert not off.published and on.published
    text = on.summary_md.read_text()
    assert "PIRL (published) | ResNet-50 | 25.6 | 63.6 |" in text
    assert "Jigsaw (published; best layer res4) | ResNet-50 | 25.6 | 45.7 |" in text
    assert "| PIRL (published) | ResNet-50 | 54.0 | 80.7 | 59.7 | +2.3 |" in text  # Table 1, Δ vs. published supervised
    assert "| PIRL (published) | ResNet-50 | 57.2 | 83.8 | – | – |" in text  # Table 3: top-5, the headline
    assert "the protocols do not match" in text
    off_text = off.summary_md.read_text()
    assert "(published" not in off_text and "Published:" not in off_text and "Hollow markers" not in off_text
    assert "Not shown: these runs pretrain on synthetic" in off_text
    assert not any(
        "published" in line for line in ranking_rows(text, "linear top1 (best layer)")
    )  # never ranked with ours
    csv_text = (tmp_path / "on" / "report" / "detection_ap.csv").read_text()
    assert "PIRL (Misra & van der Maaten, CVPR 2020, arXiv:1912.01991), Table 1" in csv_text
    assert "arXiv" not in (tmp_path / "off" / "report" / "detection_ap.csv").read_text()


def test_published_points_in_figures_only_when_asked(tmp_path: Path) -> None:
    from ssl_bench.report import published as refs
    from ssl_bench.report.results import aggregate, backbone_params, clean, headline, read_results

    out = full_fixture(tmp_path)
    df, _ = clean(read_results(out / "results.csv"))
    agg = aggregate(df)
    summary = headline(agg, backbone_params(df))
    points = refs.linear_points(refs.load_published())

    def gids(fig) -> set[str]:  # noqa: ANN001
        return {line.get_gid() or "" for ax in fig.axes for line in ax.get_lines()}

    plain, marked = figures.accuracy_vs_params(summary), figures.accuracy_vs_params(summary, points)
    assert not any(g.startswith(figures.PUBLISHED_GID) for g in gids(plain))
    published = {g.split(":", 1)[1] for g in gids(marked) if g.startswith(figures.PUBLISHED_GID)}
    assert {"pirl", "CMC", "AMDIM", "PIRL-c2x"} <= published
    for ax in marked.axes:
        for line in ax.get_lines():
            if (line.get_gid() or "").startswith(figures.PUBLISHED_GID):
                assert line.get_markerfacecolor() == "none" and line.get_linestyle() == "None"  # hollow, not joined
    legend = [t.get_text() for t in marked.legends[0].get_texts()]
    assert legend[-1] == figures.PUBLISHED_LABEL
    assert figures.PUBLISHED_LABEL not in [t.get_text() for t in plain.legends[0].get_texts()]
    paper = refs.select(refs.load_published(), "linear", "")
    fig = layerwise(agg, paper[paper["layer"] != "best"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["synthetic · resnet18-smallstem", "published: PIRL paper, ImageNet, ResNet-50"]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["conv1", "res2", "res3", "res4", "res5"]


def test_imagenet_turns_published_on_by_default(tmp_path: Path) -> None:
    out = full_fixture(tmp_path)
    text = (out / "results.csv").read_text().replace(f",{DATASET},", ",folder:imagenet,")
    (out / "results.csv").write_text(text)
    files = make_report(out)
    assert files.published
    assert "PIRL (published)" in files.summary_md.read_text()
    assert "the protocols do not match" not in files.summary_md.read_text()
    assert not make_report(out, published=False).published


def test_partial_table_explains_what_is_missing(tmp_path: Path) -> None:
    rows = [r for m in METHODS for r in rows_for(m, 0) if r["eval"] == "linear"]
    files = make_report(write_results(tmp_path, rows))
    text = files.summary_md.read_text()
    for hint in (
        "no kNN rows: run with --evals knn",
        "no semisup rows: run with --evals semisup",
        "no detection rows: run with --evals detection",
        "no invariance rows: run with --evals invariance",
        "one seed: no error bars / intervals",
    ):
        assert hint in text, hint
    assert sorted(p.name for p in files.written) == sorted(
        [
            "summary.md",
            "index.html",
            "accuracy_vs_params.png",
            "accuracy_vs_params.svg",
            "layerwise.png",
            "results_wide.csv",
        ]
    )
    assert "Ranking by linear top1 (best layer). One seed: ranked by value" in text
    page = files.index_html.read_text()  # type: ignore[union-attr]
    assert "no detection rows" in page and "invariance.png" not in page


def test_empty_table_explains_and_writes_html(tmp_path: Path) -> None:
    write_results(tmp_path, [])
    files = make_report(tmp_path)
    text = files.summary_md.read_text()
    assert "results.csv has no rows yet" in text and "accuracy_vs_params plot skipped: no linear-probe rows" in text
    assert files.index_html is not None and "results.csv has no rows yet" in files.index_html.read_text()
    assert sorted(p.name for p in files.written) == ["index.html", "results_wide.csv", "summary.md"]


def test_stale_files_of_an_earlier_report_are_removed(tmp_path: Path) -> None:
    full_fixture(tmp_path)
    make_report(tmp_path)
    assert (tmp_path / "report" / "detection_ap.tex").exists()
    rows = [r for m in METHODS for r in rows_for(m, 0) if r["eval"] in ("linear", "knn")]
    write_results(tmp_path, rows)
    make_report(tmp_path)
    assert (
        not (tmp_path / "report" / "detection_ap.tex").exists()
        and not (tmp_path / "report" / "invariance.png").exists()
    )
    assert "detection_ap" not in (tmp_path / "report" / "index.html").read_text()


def test_several_runs_of_one_seed_use_the_latest(tmp_path: Path) -> None:
    old = [
        r | {"run_id": "pirl_old", "created": "2025-12-01T10:00:00+00:00", "value": 1.0}
        for r in rows_for("pirl", 0)
        if r["eval"] in ("linear", "knn")
    ]
    rows = [r for m in ("random", "pirl") for r in rows_for(m, 0) if r["eval"] in ("linear", "knn")] + old
    files = make_report(write_results(tmp_path, rows))
    pirl = files.summary[files.summary["method"] == "pirl"].iloc[0]
    assert pirl["linear_top1"] == pytest.approx(54.0) and pirl["linear_seeds"] == 1
    note = [n for n in files.notes if n.startswith("pirl /")]
    assert note == [
        f"pirl / {BACKBONE} / seed 0 ({DATASET}) has 2 runs: linear, knn from the latest, "
        f"{run_id('pirl', 0)} of 2026-01-01 10:00 UTC; ignored pirl_old"
    ]


def test_rows_written_before_the_detection_data_was_recorded_still_load(tmp_path: Path) -> None:
    """An older results.csv (detection protocol "voc07" / "coco" alone): every number is shown, in tables that say the
    data is unknown, with a note, and never beside the paper's rows, whose protocol cannot be told to match."""
    files = make_report(full_fixture(tmp_path, detection_data=""), published=True)
    text = (tmp_path / "report" / "detection_ap.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("## Detection")] == [
        "## Detection voc07 · dataset not recorded · c4 head",
        "## Detection coco · dataset not recorded · c4 head",
    ]
    assert text.count("| PIRL | resnet18-smallstem |") == 2 and "Published:" not in text
    assert "their dataset, splits and schedule are unknown" in text
    (note,) = [n for n in files.notes if "recorded the evaluation's data" in n]
    assert note.startswith(
        "60 detection row(s) were written before"
    )  # 5 methods x 2 seeds x 2 x 3 and "(protocol coco, voc07 alone)" in note
    summary = files.summary_md.read_text()
    assert "| semisup finetune-1% top5 | detection voc07 AP |" in summary  # the headline column as before
    assert "| PIRL (published) | ResNet-50 | 54.0 | 80.7 | 59.7 | +2.3 |" not in summary
