"""The published numbers shipped with the package (ssl_bench/references/published.csv), from PIRL (arXiv:1912.01991)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ssl_bench.report.published import COLUMNS, default_path, is_imagenet, linear_points, load_published, show_published
from ssl_bench.report.tables import PAPER_LAYERS

R50 = 25_600_000
LINEAR_BEST = {  # method -> (top-1, params)
    "supervised": (75.9, R50),
    "jigsaw": (45.7, R50),
    "rotnet": (48.9, R50),
    "npidpp": (59.0, R50),
    "pirl": (63.6, R50),
    "MoCo": (60.6, R50),
    "NPID": (54.0, R50),
    "CMC": (64.1, 51e6),
    "CPC": (48.7, 44.5e6),
    "CPC-Huge": (61.0, 305e6),
    "BigBiGAN-Big": (61.3, 86e6),
    "AMDIM": (68.1, 670e6),
    "AET": (40.6, 61e6),
    "DeepCluster": (39.8, 61e6),
    "PIRL-c2x": (67.4, 98e6),
    "Colorization": (39.6, R50),
    "BigBiGAN": (56.6, R50),
    "LA": (60.2, R50),  # 10-crop
    "PIRL-ens": (65.7, 51e6),  # Sec. 3.2's text; two ResNet-50s, counted as CMC's
}
VOC07_SVM = {  # Table 2, VOC07 column: mAP of linear SVMs at the best layer
    "supervised": 87.5,
    "Colorization": 55.6,
    "rotnet": 63.9,
    "npidpp": 76.6,
    "jigsaw": 64.5,
    "pirl": 81.1,
}
LAYERWISE = {  # conv1, res2, res3, res4, res5
    "random": (9.6, 13.7, 12.0, 8.0, 5.6),
    "supervised": (11.6, 33.3, 48.7, 67.9, 75.5),
    "jigsaw": (12.4, 28.0, 39.9, 45.7, 34.2),
    "npidpp": (6.6, 27.4, 38.5, 53.1, 59.0),
    "pirl": (6.2, 30.0, 40.1, 56.6, 63.6),
}
DETECTION = {  # (table, method) -> AP, AP50, AP75
    ("Table 1", "supervised"): (52.6, 81.1, 57.4),
    ("Table 1", "jigsaw"): (48.9, 75.1, 52.9),
    ("Table 1", "rotnet"): (46.3, 72.5, 49.3),
    ("Table 1", "npidpp"): (52.3, 79.1, 56.9),
    ("Table 1", "pirl"): (54.0, 80.7, 59.7),
    ("Table 1", "MoCo"): (55.2, 81.4, 61.2),
    ("VOC07 train only", "supervised"): (43.8, 74.5, 45.9),
    ("VOC07 train only", "jigsaw"): (37.7, 64.9, 38.0),
    ("VOC07 train only", "pirl"): (44.7, 73.4, 47.0),
}
SEMISUP = {
    "random": (22.0, 59.0),
    "NPID": (39.2, 77.4),
    "jigsaw": (45.3, 79.3),
    "npidpp": (52.6, 81.5),
    "pirl": (57.2, 83.8),
}


@pytest.fixture(scope="module")
def refs() -> pd.DataFrame:
    return load_published()


def value(refs: pd.DataFrame, **where: str) -> float:
    rows = refs
    for key, v in where.items():
        rows = rows[rows[key] == v]
    assert len(rows) == 1, where
    return float(rows["value"].iloc[0])


def test_file_loads_with_every_column(refs: pd.DataFrame) -> None:
    assert default_path().name == "published.csv" and default_path().is_file()
    assert list(refs.columns) == list(COLUMNS)
    assert len(refs) == 19 + 25 + 27 + 10 + 6
    assert not refs.duplicated(["source", "table", "eval", "eval_protocol", "method", "layer", "metric"]).any()


def test_every_row_has_source_protocol_and_a_value_in_range(refs: pd.DataFrame) -> None:
    assert (refs["source"].str.contains("arXiv:1912.01991")).all()
    assert (refs["protocol"].str.len() > 20).all() and (refs["table"] != "").all()
    assert refs["value"].between(0, 100).all() and refs["params"].gt(1e6).all()
    assert set(refs["eval"]) == {"linear", "detection", "semisup", "svm"}
    assert set(refs["metric"]) == {"top1", "top5", "AP", "AP50", "AP75", "mAP"}
    assert (refs["dataset"] == "imagenet").all()


def test_linear_best_layer_numbers(refs: pd.DataFrame) -> None:
    for method, (top1, params) in LINEAR_BEST.items():
        rows = refs[(refs["eval"] == "linear") & (refs["layer"] == "best") & (refs["method"] == method)]
        assert len(rows) == 1, method
        assert rows["value"].iloc[0] == pytest.approx(top1) and rows["params"].iloc[0] == pytest.approx(params), method
    jigsaw = refs[(refs["method"] == "jigsaw") & (refs["layer"] == "best") & (refs["eval"] == "linear")]
    assert "res4" in jigsaw["note"].iloc[0]
    assert "10-crop" in refs[refs["method"] == "LA"]["note"].iloc[0]
    points = linear_points(refs)
    assert len(points) == len(LINEAR_BEST) and points["x"].min() == pytest.approx(25.6)


def test_layerwise_numbers_use_our_stage_names(refs: pd.DataFrame) -> None:
    for method, values in LAYERWISE.items():
        for (ours, paper), v in zip(PAPER_LAYERS.items(), values):
            row = refs[(refs["table"] == "Fig. 5") & (refs["method"] == method) & (refs["layer"] == ours)]
            assert len(row) == 1 and row["value"].iloc[0] == pytest.approx(v), (method, ours)
            assert row["note"].iloc[0] == f"paper layer {paper}"


def test_detection_numbers(refs: pd.DataFrame) -> None:
    for (table, method), numbers in DETECTION.items():
        for metric, v in zip(("AP", "AP50", "AP75"), numbers):
            found = value(refs, eval="detection", table=table, method=method, metric=metric)
            assert found == pytest.approx(v), (table, method, metric)
    det = refs[refs["eval"] == "detection"]
    assert (det["layer"] == "c4").all()
    # eval_protocol: the label our detection rows write for the same scoring, data and splits (ssl_bench.protocol);
    # Table 1's schedule is the paper's 25k iterations, the VOC07-only table's is not recorded
    table1 = det["table"] == "Table 1"
    assert (det.loc[table1, "eval_protocol"] == "voc07 on voc07+12 trainval->test 25000 it").all()
    assert det.loc[table1, "protocol"].str.startswith("VOC07+12 trainval -> VOC07 test").all()
    assert (det.loc[~table1, "eval_protocol"] == "voc07 on voc07 trainval->test").all()
    assert det.loc[~table1, "protocol"].str.startswith("VOC07 trainval -> VOC07 test").all()
    assert det["protocol"].str.contains("R50-C4").all() and det["protocol"].str.contains("frozen BN").all()
    assert "BN fine-tuned" in det[det["method"] == "MoCo"]["note"].iloc[0]


def test_voc07_svm_numbers(refs: pd.DataFrame) -> None:
    svm = refs[refs["eval"] == "svm"]
    assert len(svm) == len(VOC07_SVM)
    assert {m: v for m, v in zip(svm["method"], svm["value"])} == pytest.approx(VOC07_SVM)
    assert (svm["eval_protocol"] == "voc07-svm on voc07 trainval->test").all() and (svm["layer"] == "best").all()
    assert (svm["metric"] == "mAP").all() and (svm["table"] == "Table 2").all()
    assert svm["protocol"].str.contains("VOC07 trainval -> VOC07 test").all()


def test_semisup_numbers(refs: pd.DataFrame) -> None:
    for method, (one, ten) in SEMISUP.items():
        assert value(refs, eval="semisup", eval_protocol="finetune-1%", method=method) == pytest.approx(one)
        assert value(refs, eval="semisup", eval_protocol="finetune-10%", method=method) == pytest.approx(ten)
    assert (refs[refs["eval"] == "semisup"]["metric"] == "top5").all()


def test_user_rows_and_bad_files(tmp_path: Path, refs: pd.DataFrame) -> None:
    extra = refs.iloc[:1].assign(source="my lab notebook", method="mine", value=70.0)
    path = tmp_path / "published.csv"
    pd.concat([refs, extra]).to_csv(path, index=False)
    assert "mine" in set(load_published(path)["method"])
    pd.concat([refs, extra.assign(protocol="")]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lack a value, source or protocol"):
        load_published(path)
    refs.drop(columns=["note"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lacks column"):
        load_published(path)


def test_published_default_is_imagenet_only() -> None:
    assert is_imagenet("imagenet") and is_imagenet("folder:ImageNet-1k") and is_imagenet("folder:ILSVRC2012")
    assert not is_imagenet("folder:cifar10")
    assert show_published(["folder:cifar10", "imagenet"], None) and not show_published(["cifar10"], None)
    assert show_published(["cifar10"], True) and not show_published(["imagenet"], False)
