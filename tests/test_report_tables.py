"""The paper-format tables (detection Table 1: md, csv, tex; semi-supervised Table 3), the HTML page and the labels."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from ssl_bench.report import results, tables
from ssl_bench.report.page import column_title, headline_keys, markdown_to_html
from ssl_bench.report.published import load_published
from ssl_bench.report.tables import DISPLAY_NAMES, display_name

T1 = 12.7062047  # t quantile 0.975, 1 degree of freedom
TABLE1 = "voc07 on voc07+12 trainval->test 25000 it"  # PIRL Table 1's protocol, as a detection row writes it
# (method, head) -> metric -> values of seeds 0 and 1
DETECTION = {
    ("supervised", "c4"): {"AP": (50, 52), "AP50": (80, 82), "AP75": (55, 57)},
    ("pirl", "c4"): {"AP": (53, 55), "AP50": (79, 81), "AP75": (58, 60)},  # ΔAP75 = 59 - 56 = +3.0
    ("jigsaw", "c4"): {"AP": (45, 49), "AP50": (70, 72), "AP75": (48, 52)},  # ΔAP75 = 50 - 56 = -6.0
    ("pirl", "fpn"): {"AP": (40, 40), "AP50": (60, 60), "AP75": (42, 42)},  # no supervised row with this head
}


def detection_agg(protocol: str = TABLE1) -> pd.DataFrame:
    rows = [
        {
            "dataset": "imagenet",
            "preset": "p",
            "backbone": "r18",
            "method": m,
            "eval": "detection",
            "protocol": protocol,
            "layer": head,
            "metric": metric,
            "value": float(v),
            "seed": seed,
        }
        for (m, head), metrics in DETECTION.items()
        for metric, values in metrics.items()
        for seed, v in enumerate(values)
    ]
    return results.aggregate(pd.DataFrame(rows))


def test_detection_markdown_with_delta_ap75() -> None:
    md = tables.detection_markdown(tables.detection_tables(detection_agg()))
    title = "### Detection voc07 · voc07+12 trainval->test, 25000 iterations ·"
    assert f"{title} c4 head" in md and f"{title} fpn head" in md
    assert md.index("c4 head") < md.index("fpn head")
    assert "| Method | Network | AP^all | AP50 | AP75 | ΔAP75 |" in md
    assert (
        "| Supervised | r18 | 51.0 ± 1.4 [38.3, 63.7] | 81.0 ± 1.4 [68.3, 93.7] | 56.0 ± 1.4 [43.3, 68.7] | – |" in md
    )
    assert "| Jigsaw | r18 | 47.0 ± 2.8 [21.6, 72.4] | 71.0 ± 1.4 [58.3, 83.7] | 50.0 ± 2.8 [24.6, 75.4] | -6.0 |" in md
    assert "| PIRL | r18 | 54.0 ± 1.4 [41.3, 66.7] | 80.0 ± 1.4 [67.3, 92.7] | 59.0 ± 1.4 [46.3, 71.7] | +3.0 |" in md
    body = md.split("fpn head")[1]
    assert "| PIRL | r18 | 40.0 ± 0.0 [40.0, 40.0] | 60.0 ± 0.0 [60.0, 60.0] | 42.0 ± 0.0 [42.0, 42.0] | – |" in body
    assert "No supervised row: ΔAP75 not computed" in body
    rows = [line for line in md.split("fpn head")[0].splitlines() if line.startswith("| ") and "Method" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| Supervised", "| Jigsaw", "| PIRL"]  # the paper's order
    assert "Mean ± sample std (ddof=1) [95% t-interval] over 2 seeds." in md


def test_detection_csv_numbers() -> None:
    frame = pd.read_csv(io.StringIO(tables.detection_csv(tables.detection_tables(detection_agg()))))
    assert list(frame.columns[:14]) == [
        "protocol",
        "scoring",
        "detection_data",
        "train_split",
        "test_split",
        "iterations",
        "head",
        "source",
        "dataset",
        "preset",
        "method",
        "method_name",
        "network",
        "seeds",
    ]
    pirl = frame[(frame["method"] == "pirl") & (frame["head"] == "c4")].iloc[0]
    assert pirl["AP"] == pytest.approx(54.0) and pirl["AP_std"] == pytest.approx(math.sqrt(2), rel=1e-3)
    assert pirl["AP_ci95_low"] == pytest.approx(54.0 - T1, abs=1e-2) and pirl["AP_ci95_high"] == pytest.approx(
        54.0 + T1, abs=1e-2
    )
    assert pirl["dAP75"] == pytest.approx(3.0) and pirl["seeds"] == 2 and pirl["source"] == "ours"
    assert pirl["method_name"] == "PIRL"
    assert math.isnan(frame[frame["method"] == "supervised"].iloc[0]["dAP75"])
    assert frame[frame["method"] == "jigsaw"].iloc[0]["dAP75"] == pytest.approx(-6.0)
    assert len(frame) == 4 and set(frame["protocol"]) == {TABLE1}
    assert set(frame["scoring"]) == {"voc07"} and set(frame["detection_data"]) == {"voc07+12"}
    assert set(frame["train_split"]) == {"trainval"} and set(frame["iterations"]) == {25000}


def test_detection_latex() -> None:
    tex = tables.detection_latex(tables.detection_tables(detection_agg()))
    assert tex.count("\\begin{table}") == 2 and tex.count("\\end{tabular}") == 2
    assert "Method & Network & AP$^{\\mathrm{all}}$ & AP$_{50}$ & AP$_{75}$ & $\\Delta$AP$_{75}$ \\\\" in tex
    assert "Supervised & r18 & 51.0 $\\pm$ 1.4 & 81.0 $\\pm$ 1.4 & 56.0 $\\pm$ 1.4 &  \\\\" in tex
    assert "PIRL & r18 & 54.0 $\\pm$ 1.4 & 80.0 $\\pm$ 1.4 & 59.0 $\\pm$ 1.4 & +3.0 \\\\" in tex
    assert "Jigsaw & r18 & 47.0 $\\pm$ 2.8 & 71.0 $\\pm$ 1.4 & 50.0 $\\pm$ 2.8 & $-$6.0 \\\\" in tex
    caption = "\\caption{Detection, voc07 scoring, voc07+12 trainval$\\rightarrow$test, 25000 iterations, c4 head. "
    assert caption + "Mean $\\pm$ sample std (ddof=1) over 2 seeds." in tex
    assert "\\toprule" in tex and "\\bottomrule" in tex and "[95\\% t-interval]" not in tex


def test_detection_published_block_has_its_own_reference() -> None:
    det = tables.detection_tables(detection_agg(), load_published())
    c4, fpn = det
    assert [block.source.split(", ")[-1] for block in c4.published] == ["Table 1"]  # not the VOC07-only table
    assert c4.published[0].caveat == ""  # the paper's data, splits, head and 25k iterations
    assert fpn.published == []  # the paper's detector is C4 only
    md = tables.detection_markdown(det)
    assert "| PIRL (published) | ResNet-50 | 54.0 | 80.7 | 59.7 | +2.3 |" in md
    assert "| MoCo (published; BN fine-tuned, not frozen) | ResNet-50 | 55.2 | 81.4 | 61.2 | +3.8 |" in md
    assert "44.7" not in md  # PIRL's VOC07-only row belongs to another protocol
    assert [line for line in md.splitlines() if line.startswith("#")] == [
        "### Detection voc07 · voc07+12 trainval->test, 25000 iterations · c4 head",
        "### Detection voc07 · voc07+12 trainval->test, 25000 iterations · fpn head",
    ]
    assert "Protocol: VOC07+12 trainval -> VOC07 test, Faster R-CNN R50-C4, frozen BN, ImageNet pretraining.\n" in md
    tex = tables.detection_latex(det)
    assert (
        "\\emph{Published:" in tex and "MoCo (BN fine-tuned, not frozen) & ResNet-50 & 55.2 & 81.4 & 61.2 & +3.8" in tex
    )
    frame = pd.read_csv(io.StringIO(tables.detection_csv(det)))
    published = frame[frame["source"] != "ours"]
    assert len(published) == 6 and published["seeds"].isna().all()


@pytest.mark.parametrize(
    ("protocol", "tables_shown", "caveat"),
    [
        (TABLE1, ["Table 1"], ""),
        (
            "voc07 on voc07+12 trainval->test 5000 it",
            ["Table 1"],
            "Not the paper's schedule: ours 5000 iterations, the paper's 25000.",
        ),
        (
            "voc07 on voc07 trainval->test 25000 it",
            ["VOC07 train only"],
            "The paper's schedule for this table is not recorded here; ours: 25000 iterations.",
        ),
        ("coco on voc07+12 trainval->test 25000 it", [], None),  # Table 1 is scored the voc07 way
        ("voc07 on voc07+12 trainval->val 25000 it", [], None),
        ("voc07 on synthetic-voc-32-16-64px trainval->test 20 it", [], None),
        ("voc07 on voc:BCCD trainval->test 300 it", [], None),
        ("voc07", [], None),  # written before the data was recorded: unknown, so nothing matches
    ],
)
def test_published_detection_block_only_for_its_protocol(protocol: str, tables_shown: list, caveat: str | None) -> None:
    c4 = tables.detection_tables(detection_agg(protocol), load_published())[0]
    assert [block.source.split(", ")[-1] for block in c4.published] == tables_shown
    md = tables.detection_markdown([c4])
    assert ("Published:" in md) == bool(tables_shown)
    if caveat is not None:
        assert c4.published[0].caveat == caveat
        assert not caveat or f"ImageNet pretraining. {caveat}\n" in md  # on the block's Published line
    assert (tables.UNRECORDED_TEXT in md) == (protocol == "voc07")


def test_two_detection_datasets_give_two_tables_each() -> None:
    synthetic, bccd = "synthetic-voc-32-16-64px trainval->test 20 it", "voc:BCCD trainval->test 300 it"
    agg = pd.concat(
        [detection_agg(f"{scoring} on {data}") for data in (synthetic, bccd) for scoring in ("coco", "voc07")]
        + [detection_agg("voc07")],  # and rows of an older results.csv
        ignore_index=True,
    )
    det = tables.detection_tables(agg, load_published())
    assert [(t.title, len(t.ours)) for t in det] == [
        ("voc07 · synthetic-voc-32-16-64px trainval->test, 20 iterations · c4 head", 3),
        ("voc07 · synthetic-voc-32-16-64px trainval->test, 20 iterations · fpn head", 1),
        ("coco · synthetic-voc-32-16-64px trainval->test, 20 iterations · c4 head", 3),
        ("coco · synthetic-voc-32-16-64px trainval->test, 20 iterations · fpn head", 1),
        ("voc07 · voc:BCCD trainval->test, 300 iterations · c4 head", 3),
        ("voc07 · voc:BCCD trainval->test, 300 iterations · fpn head", 1),
        ("coco · voc:BCCD trainval->test, 300 iterations · c4 head", 3),
        ("coco · voc:BCCD trainval->test, 300 iterations · fpn head", 1),
        ("voc07 · dataset not recorded · c4 head", 3),
        ("voc07 · dataset not recorded · fpn head", 1),
    ]
    assert all(t.published == [] for t in det)
    frame = pd.read_csv(io.StringIO(tables.detection_csv(det)))
    assert len(frame) == 20 and frame["source"].eq("ours").all()


def test_coco_comes_after_voc07() -> None:
    agg = pd.concat([detection_agg("coco"), detection_agg("voc07")], ignore_index=True)
    assert [(t.protocol, t.head) for t in tables.detection_tables(agg)] == [
        ("voc07", "c4"),
        ("voc07", "fpn"),
        ("coco", "c4"),
        ("coco", "fpn"),
    ]


def test_semisup_fractions_and_no_rows() -> None:
    protocols = ["finetune-10%", "linear-2.5%", "finetune-1%:1percent", "finetune-1%", "other"]
    agg = pd.DataFrame({"eval": "semisup", "protocol": protocols})
    assert tables.semisup_fractions(agg) == ["1%", "1%:1percent", "2.5%", "10%"]
    assert tables.semisup_markdown(results.aggregate(pd.DataFrame(columns=[*results.UNIT, "value", "seed"]))) == ""


def semisup_agg(numbers: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """One seed of PIRL on resnet50: (protocol, layer, top1, top5) per number."""
    model = {"dataset": "imagenet", "preset": "p", "backbone": "resnet50", "method": "pirl", "eval": "semisup"}
    rows = [
        {**model, "protocol": protocol, "layer": layer, "metric": metric, "value": value, "seed": 0}
        for protocol, layer, top1, top5 in numbers
        for metric, value in (("top1", top1), ("top5", top5))
    ]
    return results.aggregate(pd.DataFrame(rows))


def test_semisup_headline_is_top5_as_table3() -> None:
    assert results.headline_metric("semisup") == "top5" == tables.SEMISUP_METRICS[0]
    agg = semisup_agg(
        [
            ("finetune-1%", "all", 40.0, 65.0),
            ("finetune-1%:1percent", "all", 41.0, 66.0),  # SimCLR's 1% list (semisup.subset_files)
            ("linear-1%", "layer3", 30.0, 60.0),  # the best stage by top-5
            ("linear-1%", "layer4", 35.0, 55.0),  # the best stage by top-1
        ]
    )
    md = tables.semisup_markdown(agg, load_published())
    assert "| Method | Network | Top-5 1% | Top-5 1% (1percent) | Top-1 1% | Top-1 1% (1percent) |" in md
    assert "| PIRL | resnet50 | 65.0 | 66.0 | 40.0 | 41.0 |" in md
    assert "| PIRL | resnet50 | 60.0 (layer3) | – | 30.0 | – |" in md  # top-1 at the stage best by top-5
    assert "best stage by top-5 in parentheses, top-1 at that stage" in md
    assert "| PIRL (published) | ResNet-50 | 57.2 | 57.2 | – | – |" in md  # Table 3's 1%, under both 1% columns
    summary = results.headline(agg, pd.Series({"resnet50": 25.6e6}))
    assert summary["semisup_finetune-1%_top5"].tolist() == [65.0] and "semisup_finetune-1%_top1" not in summary
    assert summary["semisup_linear-1%_layer"].tolist() == ["layer3"]
    keys = headline_keys(agg)
    assert ("semisup", "finetune-1%") in keys and ("semisup", "finetune-1%:1percent") in keys
    assert column_title("semisup", "finetune-1%") == "semisup finetune-1% top5"


def test_html_converter() -> None:
    md = "\n".join(
        [
            "# Title <x>",
            "",
            "- a `code` item",
            "- **bold** & more",
            "",
            "| h1 | h2 |",
            "|---|---|",
            "| 1 | 2 |",
            "",
            "![Fig](fig.png)",
            "",
            "The caption.",
            "",
            "A paragraph",
            "on two lines.",
        ]
    )
    page = markdown_to_html(md)
    assert "<h1>Title &lt;x&gt;</h1>" in page
    assert "<ul><li>a <code>code</code> item</li><li><strong>bold</strong> &amp; more</li></ul>" in page
    assert "<table><thead><tr><th>h1</th><th>h2</th></tr></thead><tbody>\n<tr><td>1</td><td>2</td></tr>" in page
    assert '<figure><img src="fig.png" alt="Fig">\n<figcaption>The caption.</figcaption>\n</figure>' in page
    assert "<p>A paragraph on two lines.</p>" in page
    assert page.startswith("<!DOCTYPE html>") and "http" not in page


def test_display_names_agree_with_the_methods() -> None:
    from ssl_bench.methods import available_methods

    for name, cls in available_methods().items():
        if getattr(cls, "display_name", ""):
            assert display_name(name) == cls.display_name, name
    assert set(DISPLAY_NAMES) <= set(available_methods())
    assert display_name("MoCo") == "MoCo"


def test_delta_that_rounds_to_zero_prints_without_a_minus_sign():
    from ssl_bench.report.tables import _delta, _tex_delta

    assert _delta(-0.04) == "+0.0" and _delta(-0.06) == "-0.1" and _delta(2.0) == "+2.0"
    assert _tex_delta(-0.04) == "+0.0" and _tex_delta(-1.25) == "$-$1.2"
