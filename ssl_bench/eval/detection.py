"""The ``detection`` evaluation (PIRL Table 1): fine-tune a Faster R-CNN from the pretrained backbone on a
VOC-layout ``trainval`` split, detect on ``test`` and score with the ``voc07`` and ``coco`` protocols.

The data is either the built-in synthetic scenes (written once under ``<out>/data/``) or any VOC-layout root
(``detection.dataset=voc``, ``detection.root=...``: Pascal VOC 2007/2012, or e.g. BCCD). The detections are kept
in the run directory as a COCO results json (re-score them with ``ssl-bench detect-eval``), with the training
losses as ``detection-<hash>.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ssl_bench import storage
from ssl_bench.config import ConfigError, DetectionConfig
from ssl_bench.data.synthetic import write_voc
from ssl_bench.data.voc import GET_VOC, LAYOUT, VOCDetection
from ssl_bench.detection.detect_eval import PROTOCOLS, write_coco_results
from ssl_bench.detection.model import build_detector
from ssl_bench.detection.records import Detections, GroundTruth, ImageRecord
from ssl_bench.detection.train import paper_schedule, predict, train_detector

METRICS = ("AP", "AP50", "AP75")


def detection_root(cfg: DetectionConfig, shared_dir: Path) -> Path:
    """The VOC-layout directory to use: the synthetic scenes (generated on first use) or ``cfg.root``."""
    if cfg.dataset == "synthetic":
        name = f"synthetic-voc-{cfg.synthetic_trainval}-{cfg.synthetic_test}-{cfg.synthetic_size}px"
        return write_voc(shared_dir / "data" / name, cfg.synthetic_trainval, cfg.synthetic_test, cfg.synthetic_size)
    if not cfg.root:
        raise ConfigError(f"detection.dataset=voc needs detection.root=<dir> with {LAYOUT}. {GET_VOC}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"detection.root {root} does not exist; it should hold {LAYOUT}. {GET_VOC}")
    return root


def ground_truth(dataset: VOCDetection) -> GroundTruth:
    images = []
    for i, image_id in enumerate(dataset.ids):
        target, record = dataset.target(i), dataset.annotation(i)
        images.append(ImageRecord(image_id, record["width"], record["height"], target["boxes"].numpy(),
                                  target["labels"].numpy(), target["difficult"].numpy()))  # fmt: skip
    return GroundTruth(list(dataset.classes), images)


def as_detections(predictions: list[dict[str, np.ndarray]]) -> Detections:
    """predict()'s per-image dicts -> one Detections table (image_index = position in the test split)."""
    index = [np.full(len(p["scores"]), i) for i, p in enumerate(predictions)]
    cat = lambda key, empty: np.concatenate([p[key] for p in predictions] + [empty])  # noqa: E731
    return Detections(np.concatenate(index + [np.zeros(0, np.int64)]), cat("labels", np.zeros(0, np.int64)),
                      cat("boxes", np.zeros((0, 4))), cat("scores", np.zeros(0)))  # fmt: skip


def run_detection(ctx, tag: str) -> list[tuple[str, str, float, str]]:
    """Train, detect and score ``ctx`` (an EvalContext): (layer = the head, metric, value, protocol) for AP, AP50,
    AP75 under each protocol. ``tag`` names the files written to the run directory."""
    cfg, info = ctx.cfg.detection, ctx.splits.info
    root = detection_root(cfg, ctx.shared_dir)
    train = VOCDetection(root, cfg.train_split, clip_boxes=cfg.clip_boxes)
    test = VOCDetection(root, cfg.test_split, classes=train.classes, clip_boxes=cfg.clip_boxes)
    model = build_detector(ctx.backbone, len(train.classes), cfg.head, cfg.freeze_bn, cfg.min_size, cfg.max_size,
                           image_mean=info.mean, image_std=info.std, roi_batch_size=cfg.roi_batch_size)  # fmt: skip
    lr, warmup = paper_schedule(ctx.method, cfg)
    logs = train_detector(model, train, cfg, lr, warmup, ctx.device, ctx.seed, task_name=f"detection {cfg.head}",
                          checkpoint=ctx.run_dir / f"detection-{tag}.ckpt.pt", every=ctx.checkpoint)  # fmt: skip
    (ctx.run_dir / f"detection-{tag}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in logs))
    (ctx.run_dir / f"detection-{tag}.ckpt.pt").unlink(missing_ok=True)  # the finished model is not kept (see the detections json)
    storage.sidecar(ctx.run_dir / f"detection-{tag}.ckpt.pt").unlink(missing_ok=True)
    gt, dets = ground_truth(test), as_detections(predict(model, test, ctx.device))
    write_coco_results(ctx.run_dir / f"detections-{tag}.json", gt, dets)
    rows = []
    for protocol in cfg.protocols:
        scores = PROTOCOLS[protocol](gt, dets)
        rows += [(cfg.head, metric, float(scores[metric]), protocol) for metric in METRICS]
    return rows
