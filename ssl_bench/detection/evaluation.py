"""The ``detection`` evaluation (PIRL Table 1): fine-tune a Faster R-CNN from the pretrained backbone on a
VOC-layout ``trainval`` split, detect on ``test`` and score with the ``voc07`` and ``coco`` protocols.

The data (``detection.dataset``) is the built-in synthetic scenes (written once under ``<out>/data/``), one
VOC-layout root (``voc``, ``detection.root=...``: a Pascal VOC year, or e.g. BCCD), or a VOCdevkit directory
(``detection.root``) for the paper's sets: ``voc07+12`` trains on VOC2007 + VOC2012 trainval and tests on VOC2007
test (PIRL Table 1), ``voc07`` trains on VOC2007 trainval alone. The detections are kept in the run directory as a
COCO results json (re-score them with ``ssl-bench detect-eval``), with the training losses as
``detection-<hash>.jsonl``. Each row's protocol names the scoring, the data, its splits and the schedule
(``ssl_bench.protocol``: "voc07 on voc07+12 trainval->test 25000 it"), so runs on two datasets never share a row key.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_bench import storage
from ssl_bench.config import ConfigError, config_hash
from ssl_bench.data.synthetic_voc import write_voc
from ssl_bench.data.voc import DEVKIT_SETS, GET_VOC, LAYOUT, VOC_CLASSES, ConcatVOC, VOCDetection, devkit_root
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.detection.detect_eval import score, write_coco_results
from ssl_bench.detection.model import build_detector
from ssl_bench.detection.records import Detections, GroundTruth, ImageRecord
from ssl_bench.detection.train import predict, train_detector
from ssl_bench.protocol import VOCProtocol, synthetic_voc_dir

METRICS = ("AP", "AP50", "AP75")  # the rows (PIRL Table 1); coco's APs/APm/APl and per-class AP: detect-eval


def detection_root(cfg: DetectionConfig, shared_dir: Path) -> Path:
    """The VOC-layout directory to use: the synthetic scenes (generated on first use) or ``cfg.root``."""
    if cfg.dataset == "synthetic":
        name = synthetic_voc_dir(cfg.synthetic_trainval, cfg.synthetic_test, cfg.synthetic_size)
        return write_voc(shared_dir / "data" / name, cfg.synthetic_trainval, cfg.synthetic_test, cfg.synthetic_size)
    if not cfg.root:
        raise ConfigError(f"detection.dataset=voc needs detection.root=<dir> with {LAYOUT}. {GET_VOC}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"detection.root {root} does not exist; it should hold {LAYOUT}. {GET_VOC}")
    return root


DETECTION_DATASET_HELP = {
    "synthetic": "built-in VOC-layout scenes of the synthetic objects, generated under <out>/data (the default)",
    "voc": "any VOC-layout root (detection.root=<dir> with Annotations/, ImageSets/Main/, JPEGImages/), e.g. BCCD; "
    "trains on detection.train_split, tests on detection.test_split",
    "voc07": "Pascal VOC2007 trainval -> VOC2007 test (detection.root=<VOCdevkit>)",
    "voc07+12": "PIRL Table 1: VOC2007 + VOC2012 trainval -> VOC2007 test (detection.root=<VOCdevkit>)",
}


def detection_sets(cfg: DetectionConfig, shared_dir: Path) -> tuple[VOCDetection | ConcatVOC, VOCDetection]:
    """(train, test) of ``cfg.dataset``. voc07 / voc07+12 use the 20 Pascal VOC classes, in their standard order, for
    every year; the other datasets take the class list found in the root's annotations."""
    if cfg.dataset in DEVKIT_SETS:
        train_years, test_year = DEVKIT_SETS[cfg.dataset]
        root = devkit_root(cfg.dataset, cfg.root, cfg.train_split, cfg.test_split)

        def read(year: str, split: str) -> VOCDetection:
            return VOCDetection(root / f"VOC{year}", split, classes=VOC_CLASSES, clip_boxes=cfg.clip_boxes)

        parts = [read(year, cfg.train_split) for year in train_years]
        return (parts[0] if len(parts) == 1 else ConcatVOC(parts)), read(test_year, cfg.test_split)
    root = detection_root(cfg, shared_dir)
    train = VOCDetection(root, cfg.train_split, clip_boxes=cfg.clip_boxes)
    return train, VOCDetection(root, cfg.test_split, classes=train.classes, clip_boxes=cfg.clip_boxes)


def ground_truth(dataset: VOCDetection) -> GroundTruth:
    images = []
    for i, image_id in enumerate(dataset.ids):
        target, record = dataset.target(i), dataset.annotation(i)
        images.append(
            ImageRecord(
                image_id,
                record["width"],
                record["height"],
                target["boxes"].numpy(),
                target["labels"].numpy(),
                target["difficult"].numpy(),
            )
        )
    return GroundTruth(list(dataset.classes), images)


def as_detections(predictions: list[dict[str, np.ndarray]]) -> Detections:
    """predict()'s per-image dicts -> one Detections table (image_index = position in the test split)."""
    index = [np.full(len(p["scores"]), i) for i, p in enumerate(predictions)]
    cat = lambda key, empty: np.concatenate([p[key] for p in predictions] + [empty])  # noqa: E731
    return Detections(
        np.concatenate(index + [np.zeros(0, np.int64)]),
        cat("labels", np.zeros(0, np.int64)),
        cat("boxes", np.zeros((0, 4))),
        cat("scores", np.zeros(0)),
    )


def run_detection(ctx: Any, cfg: DetectionConfig) -> list[tuple[str, str, float, str]]:
    """Train, detect and score on ``ctx`` (an EvalContext: backbone, data, run directory) with ``cfg`` resolved (its
    lr and warm-up set): (layer = the head, metric, value, protocol) for AP, AP50, AP75 under each scoring protocol,
    the protocol labelled with the data, splits and iterations (``VOCProtocol``). The files written to the run
    directory are named by the hash of ``cfg``."""
    if cfg.lr is None or cfg.warmup_iters is None:
        raise ValueError("detection: lr and warmup_iters are unset; resolve the config first (run_config.resolve)")
    info = ctx.splits.info
    # the files are named by the config without its scoring backend, which changes neither training nor detections
    tag = config_hash({k: v for k, v in asdict(cfg).items() if k != "coco_backend"})[:8]
    train, test = detection_sets(cfg, ctx.shared_dir)
    # the new heads' initial weights come from the run's seed, whatever ran in this process before (other evaluations)
    torch.manual_seed(ctx.seed)
    model = build_detector(
        ctx.backbone,
        len(train.classes),
        cfg.head,
        freeze_bn=cfg.freeze_bn,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        freeze_at=cfg.freeze_at,
        image_mean=info.mean,
        image_std=info.std,
        multiscale=cfg.multiscale,
        roi_batch_size=cfg.roi_batch_size,
        roi_aligned=cfg.roi_aligned,
        box_loss=cfg.box_loss,
    )
    lr, warmup = cfg.lr, cfg.warmup_iters
    logs = train_detector(
        model,
        train,
        cfg,
        lr,
        warmup,
        ctx.device,
        ctx.seed,
        task_name=f"detection {cfg.head}",
        checkpoint=ctx.run_dir / f"detection-{tag}.ckpt.pt",
        every=ctx.checkpoint,
    )
    storage.write_text(ctx.run_dir / f"detection-{tag}.jsonl", "".join(json.dumps(row) + "\n" for row in logs))
    (ctx.run_dir / f"detection-{tag}.ckpt.pt").unlink(
        missing_ok=True
    )  # the finished model is not kept (see the detections json)
    storage.sidecar(ctx.run_dir / f"detection-{tag}.ckpt.pt").unlink(missing_ok=True)
    gt, dets = ground_truth(test), as_detections(predict(model, test, ctx.device))
    write_coco_results(ctx.run_dir / f"detections-{tag}.json", gt, dets)
    rows = []
    for protocol in cfg.protocols:
        scores = score(protocol, gt, dets, cfg.coco_backend)
        label = VOCProtocol.of(protocol, cfg, cfg.iterations).label
        rows += [(cfg.head, metric, float(scores[metric]), label) for metric in METRICS]
    return rows
