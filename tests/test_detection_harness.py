from __future__ import annotations

import json

import pytest
import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError, DetectionConfig, RunConfig
from ssl_bench.data.dataset import DataInfo, Splits
from ssl_bench.detection.detect_eval import detect_eval
from ssl_bench.eval.harness import EvalContext, evaluate

INFO = DataInfo("synthetic", 10, 16, 32, (0.5,) * 3, (0.25,) * 3)


def context(tmp_path, cfg: DetectionConfig, method: str = "pirl") -> EvalContext:
    run = RunConfig()
    run.detection = cfg
    run_dir = tmp_path / "runs" / method
    run_dir.mkdir(parents=True)
    return EvalContext(Backbone("resnet18-smallstem-w0.25"), Splits([], [], INFO), run, run_dir, torch.device("cpu"), 0,
                       method=method, out_dir=tmp_path)  # fmt: skip


@pytest.mark.slow
def test_detection_rows_files_and_backbone_unchanged(tmp_path) -> None:
    cfg = DetectionConfig(synthetic_trainval=6, synthetic_test=3, synthetic_size=64, min_size=64, max_size=64,
                          iterations=2, batch_size=2)  # fmt: skip
    ctx = context(tmp_path, cfg)
    rows = evaluate("detection", ctx)  # evaluate() also checks the pretrained backbone came out unchanged
    assert {(r.layer, r.protocol, r.metric) for r in rows} == {("c4", p, m) for p in ("voc07", "coco") for m in ("AP", "AP50", "AP75")}
    assert all(0 <= r.value <= 100 for r in rows)
    root = tmp_path / "data" / "synthetic-voc-6-3-64px"
    assert len((root / "ImageSets/Main/test.txt").read_text().split()) == 3
    (dets,) = ctx.run_dir.glob("detections-*.json")
    (log,) = ctx.run_dir.glob("detection-*.jsonl")
    assert len(log.read_text().splitlines()) == 2 and "loss_rpn_box_reg" in json.loads(log.read_text().splitlines()[0])
    # the saved detections re-score to the same numbers through detect-eval (the path a user takes)
    rescored = detect_eval(root, dets, "coco", split="test")
    for r in rows:
        if r.protocol == "coco":
            assert rescored[r.metric] == pytest.approx(r.value, abs=1e-9)


def test_detection_on_a_missing_root_says_what_to_do(tmp_path) -> None:
    ctx = context(tmp_path, DetectionConfig(dataset="voc", root=str(tmp_path / "VOC2007")))
    with pytest.raises(ConfigError, match="VOC2007 does not exist.*Annotations"):
        evaluate("detection", ctx)
    ctx.cfg.detection = DetectionConfig(dataset="voc")
    with pytest.raises(ConfigError, match="needs detection.root"):
        evaluate("detection", ctx)
