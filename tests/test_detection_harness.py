from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.data.voc import VOC_CLASSES, ConcatVOC, VOCDetection, write_annotation
from ssl_bench.detection import evaluation
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.detection.detect_eval import detect_eval
from ssl_bench.detection.evaluation import detection_sets, ground_truth
from ssl_bench.detection.model import L1RPN, L1RoIHeads, build_detector
from ssl_bench.eval.harness import EvalContext, evaluate
from ssl_bench.methods import available_methods
from ssl_bench.run_config import RunConfig, load, resolve

METHODS = list(available_methods())
INFO = DataInfo("synthetic", 10, 16, 32, (0.5,) * 3, (0.25,) * 3)


def context(tmp_path, cfg: DetectionConfig, method: str = "pirl") -> tuple[EvalContext, RunConfig]:
    """The context and the run config resolved for ``method`` (its detection schedule), as the runner hands them."""
    run = RunConfig()
    run.detection = cfg
    run_dir = tmp_path / "runs" / method
    run_dir.mkdir(parents=True)
    ctx = EvalContext(
        Backbone("resnet18-smallstem-w0.25"), Splits([], [], INFO), run_dir, torch.device("cpu"), 0, shared=tmp_path
    )
    return ctx, resolve(run, method).run


@pytest.mark.slow
def test_detection_rows_files_and_backbone_unchanged(tmp_path) -> None:
    cfg = DetectionConfig(
        synthetic_trainval=6, synthetic_test=3, synthetic_size=64, min_size=64, max_size=64, iterations=2, batch_size=2
    )
    ctx, run = context(tmp_path, cfg)
    rows = evaluate("detection", ctx, run)  # evaluate() also checks the pretrained backbone came out unchanged
    assert {(r.layer, r.protocol, r.metric) for r in rows} == {
        ("c4", f"{p} on synthetic-voc-6-3-64px trainval->test 2 it", m)
        for p in ("voc07", "coco")
        for m in ("AP", "AP50", "AP75")
    }
    assert all(0 <= r.value <= 100 for r in rows)
    root = tmp_path / "data" / "synthetic-voc-6-3-64px"
    assert len((root / "ImageSets/Main/test.txt").read_text().split()) == 3
    (dets,) = ctx.run_dir.glob("detections-*.json")
    (log,) = ctx.run_dir.glob("detection-*.jsonl")
    assert len(log.read_text().splitlines()) == 2 and "loss_rpn_box_reg" in json.loads(log.read_text().splitlines()[0])
    # the saved detections re-score to the same numbers through detect-eval (the path a user takes)
    rescored = detect_eval(root, dets, "coco", split="test")
    for r in rows:
        if r.protocol.startswith("coco "):
            assert rescored[r.metric] == pytest.approx(r.value, abs=1e-9)


class Built(Exception):
    """Stops run_detection once its detector is built."""


@pytest.mark.parametrize(
    "keys",
    [
        {},  # the paper's (Detectron2's) defaults
        {"freeze_at": 3, "freeze_bn": False, "multiscale": False, "roi_aligned": False, "box_loss": "smooth_l1"},
    ],
)
def test_the_detection_config_reaches_the_detector(tmp_path, monkeypatch: pytest.MonkeyPatch, keys: dict) -> None:
    built = []

    def build(*args, **kwargs):
        built.append(build_detector(*args, **kwargs))
        raise Built

    monkeypatch.setattr(evaluation, "build_detector", build)
    cfg = DetectionConfig(synthetic_trainval=2, synthetic_test=1, synthetic_size=64, min_size=160, max_size=200, **keys)
    ctx, run = context(tmp_path, cfg)
    with pytest.raises(Built):
        evaluate("detection", ctx, run)
    (det,) = built
    paper = not keys
    assert det.transform.min_size == ((96, 102, 109, 115, 122, 128, 134, 141, 147, 154, 160) if paper else (160,))
    assert det.roi_heads.box_roi_pool.aligned is paper
    assert (type(det.rpn) is L1RPN, type(det.roi_heads) is L1RoIHeads) == (paper, paper)
    frozen = {n.split(".")[0] for n, p in det.backbone.named_parameters() if not p.requires_grad}
    assert frozen == ({"conv1", "layer1"} if paper else {"conv1", "layer1", "layer2"})  # FREEZE_AT 2 / 3
    assert isinstance(det.backbone.layer3[0].bn1, FrozenBatchNorm2d if paper else nn.BatchNorm2d)


def test_detection_on_a_missing_root_says_what_to_do(tmp_path) -> None:
    ctx, run = context(tmp_path, DetectionConfig(dataset="voc", root=str(tmp_path / "VOC2007")))
    with pytest.raises(ConfigError, match="VOC2007 does not exist.*Annotations"):
        evaluate("detection", ctx, run)
    run.detection = resolve(RunConfig(detection=DetectionConfig(dataset="voc")), "pirl").run.detection
    with pytest.raises(ConfigError, match="needs detection.root"):
        evaluate("detection", ctx, run)


# A tiny VOCdevkit: VOC2007 (trainval + test) and VOC2012 (trainval), 32x24 JPEGs with one or two Pascal objects each.
DEVKIT = {
    "2007": {
        "trainval": {"000005": ["dog"], "000007": ["car", "person"], "000009": ["dog"]},
        "test": {"000001": ["person"], "000004": ["car"]},
    },
    "2012": {"trainval": {"2008_000002": ["person", "dog"], "2008_000003": ["bicycle"]}},
}


def write_devkit(root, years: dict = DEVKIT):
    for year, splits in years.items():
        base = root / f"VOC{year}"
        for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
            (base / d).mkdir(parents=True, exist_ok=True)
        for split, images in splits.items():
            (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
            for image_id, names in images.items():
                Image.new("RGB", (32, 24), (40 * len(names), 90, 160)).save(base / "JPEGImages" / f"{image_id}.jpg")
                objects = [{"name": n, "bbox": (2 + 4 * k, 3, 20 + 4 * k, 22)} for k, n in enumerate(names)]
                write_annotation(base / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", 32, 24, objects)
    return root


def test_voc07_plus_12_trains_on_both_trainvals_and_tests_on_voc2007(tmp_path) -> None:
    devkit = write_devkit(tmp_path / "VOCdevkit")
    train, test = detection_sets(DetectionConfig(dataset="voc07+12", root=str(devkit)), tmp_path)
    assert isinstance(train, ConcatVOC) and len(train) == 3 + 2
    assert [(p.root.name, p.split, p.ids) for p in train.parts] == [
        ("VOC2007", "trainval", ["000005", "000007", "000009"]),
        ("VOC2012", "trainval", ["2008_000002", "2008_000003"]),
    ]
    assert (test.root.name, test.split, test.ids) == ("VOC2007", "test", ["000001", "000004"])
    assert train.classes == test.classes == VOC_CLASSES and all(p.classes == VOC_CLASSES for p in train.parts)
    label = {name: VOC_CLASSES.index(name) + 1 for name in ("dog", "person", "bicycle", "car")}
    image, target = train[3]  # the first VOC2012 image, after VOC2007's three
    assert image.shape == (3, 24, 32) and target["labels"].tolist() == [label["person"], label["dog"]]
    assert int(target["image_id"]) == 3 and train[-1][1]["labels"].tolist() == [label["bicycle"]]
    assert train[0][1]["labels"].tolist() == [label["dog"]]  # dog is the same label in both years
    assert test[1][1]["labels"].tolist() == [label["car"]]
    assert ground_truth(test).categories == list(VOC_CLASSES)


def test_voc07_trains_on_voc2007_alone_and_needs_no_voc2012(tmp_path) -> None:
    devkit = write_devkit(tmp_path / "VOCdevkit", {"2007": DEVKIT["2007"]})
    train, test = detection_sets(DetectionConfig(dataset="voc07", root=str(devkit)), tmp_path)
    assert isinstance(train, VOCDetection) and (train.root.name, train.ids) == (
        "VOC2007",
        ["000005", "000007", "000009"],
    )
    assert test.ids == ["000001", "000004"] and train.classes == test.classes == VOC_CLASSES


def test_a_torchvision_download_dir_is_taken_for_its_vocdevkit(tmp_path) -> None:
    write_devkit(tmp_path / "VOCdevkit")  # torchvision's VOCDetection(tmp_path, download=True) writes here
    train, _ = detection_sets(DetectionConfig(dataset="voc07+12", root=str(tmp_path)), tmp_path)
    assert [p.root for p in train.parts] == [tmp_path / "VOCdevkit" / "VOC2007", tmp_path / "VOCdevkit" / "VOC2012"]


def test_voc07_plus_12_says_what_is_missing_and_how_to_get_it(tmp_path) -> None:
    only07 = write_devkit(tmp_path / "only07", {"2007": DEVKIT["2007"]})
    with pytest.raises(
        ConfigError,
        match=r"detection.dataset=voc07\+12: .*only07 has no VOC2012/; it should be a VOCdevkit "
        r"directory holding VOC2007/ and VOC2012/: .*about 2 GB.*"
        r"torchvision.datasets.VOCDetection\(<dir>, year='2007'",
    ):
        detection_sets(DetectionConfig(dataset="voc07+12", root=str(only07)), tmp_path)
    only12 = write_devkit(tmp_path / "only12", {"2012": DEVKIT["2012"]})
    with pytest.raises(
        ConfigError, match=r"has no VOC2007/; .*VOC2007/: trainval 5,011 \+ test 4,952 images, about 0.9 GB"
    ):
        detection_sets(DetectionConfig(dataset="voc07+12", root=str(only12)), tmp_path)
    no_test = write_devkit(
        tmp_path / "no_test", {"2007": {"trainval": DEVKIT["2007"]["trainval"]}, "2012": DEVKIT["2012"]}
    )
    with pytest.raises(
        ConfigError,
        match=r"reads split 'test' of VOC2007, but .*test.txt is missing \(VOC2007's test set is "
        r"a download of its own: VOCtest_06-Nov-2007.tar",
    ):
        detection_sets(DetectionConfig(dataset="voc07+12", root=str(no_test)), tmp_path)
    with pytest.raises(ConfigError, match=r"VOC2007 is one year's VOC-layout directory; .*needs its parent"):
        detection_sets(DetectionConfig(dataset="voc07+12", root=str(only07 / "VOC2007")), tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"detection.dataset=voc07\+12 needs detection.root=<VOCdevkit dir> holding "
        r"VOC2007/ and VOC2012/",
    ):
        detection_sets(DetectionConfig(dataset="voc07+12"), tmp_path)
    with pytest.raises(
        ConfigError, match=r"detection.root .*nowhere does not exist; for detection.dataset=voc07 it should"
    ):
        detection_sets(DetectionConfig(dataset="voc07", root=str(tmp_path / "nowhere")), tmp_path)


def test_detection_dataset_choices_include_the_paper_sets() -> None:
    assert load("ci", {"detection": {"dataset": "voc07+12"}}).detection.dataset == "voc07+12"
    with pytest.raises(
        ConfigError, match=r"detection.dataset='voc12' is not valid; choose one of synthetic, voc, voc07, voc07\+12"
    ):
        load("ci", {"detection": {"dataset": "voc12"}})


@pytest.mark.slow
def test_detection_runs_on_a_voc07_plus_12_devkit(tmp_path) -> None:
    devkit = write_devkit(tmp_path / "VOCdevkit")
    ctx, run = context(
        tmp_path,
        DetectionConfig(
            dataset="voc07+12",
            root=str(devkit),
            min_size=64,
            max_size=64,
            iterations=2,
            batch_size=2,
            roi_batch_size=16,
        ),
    )
    rows = evaluate("detection", ctx, run)
    protocols = ("voc07 on voc07+12 trainval->test 2 it", "coco on voc07+12 trainval->test 2 it")
    assert {(r.protocol, r.metric) for r in rows} == {(p, m) for p in protocols for m in ("AP", "AP50", "AP75")}
    (dets,) = ctx.run_dir.glob("detections-*.json")
    assert {d["image_id"] for d in json.loads(dets.read_text())} <= {"000001", "000004"}  # the VOC2007 test images


@pytest.mark.slow
def test_two_detection_datasets_on_one_backbone_give_two_tables_nothing_dropped(tmp_path) -> None:
    """The built-in scenes and a VOC-layout root (here scenes written elsewhere, under a BCCD-like name) scored on the
    same backbone: the rows say which data, so the report shows both (one table per scoring each), drops nothing."""
    from rich.console import Console

    from ssl_bench.data.synthetic_voc import write_voc
    from ssl_bench.report import make_report
    from ssl_bench.runner import run

    bccd = write_voc(tmp_path / "BCCD", 6, 3, 64, seed=1)
    tiny = {"synthetic_trainval": 6, "synthetic_test": 3, "synthetic_size": 64, "min_size": 64, "max_size": 64}
    tiny |= {"iterations": 2, "batch_size": 2, "roi_batch_size": 16}
    base = {"methods": ["random"], "evals": ["detection"], "threads": 1, "data": {"num_train": 40, "num_test": 20}}
    out = tmp_path / "out"
    for data in ({}, {"dataset": "voc", "root": str(bccd)}):
        run(load("ci", base | {"detection": tiny | data}), out, Console(quiet=True))
    with (out / "results.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["eval"] == "detection"]
    assert len({r["run_id"] for r in rows}) == 1 and len({r["config_hash"] for r in rows}) == 2  # one backbone
    assert sorted({r["protocol"] for r in rows}) == [
        "coco on synthetic-voc-6-3-64px trainval->test 2 it",
        "coco on voc:BCCD trainval->test 2 it",
        "voc07 on synthetic-voc-6-3-64px trainval->test 2 it",
        "voc07 on voc:BCCD trainval->test 2 it",
    ]
    files = make_report(out, published=True)
    text = (out / "report" / "detection_ap.md").read_text()
    titles = [line for line in text.splitlines() if line.startswith("## Detection")]
    assert titles == [
        "## Detection voc07 · synthetic-voc-6-3-64px trainval->test, 2 iterations · c4 head",
        "## Detection coco · synthetic-voc-6-3-64px trainval->test, 2 iterations · c4 head",
        "## Detection voc07 · voc:BCCD trainval->test, 2 iterations · c4 head",
        "## Detection coco · voc:BCCD trainval->test, 2 iterations · c4 head",
    ]
    assert text.count("| Random | resnet18-smallstem-w0.25 |") == 4
    assert "Published:" not in text  # neither is PIRL's protocol, although published numbers were asked for
    assert not any("superseded" in n or "different detection settings" in n for n in files.notes)
