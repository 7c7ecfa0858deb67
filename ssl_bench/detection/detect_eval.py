"""``ssl-bench detect-eval``: score a detections file against a ground truth with a named protocol."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ssl_bench import storage
from ssl_bench.detection.coco import coco_eval, coco_eval_files
from ssl_bench.detection.config import require_coco_backend
from ssl_bench.detection.records import (
    Detections,
    GroundTruth,
    check_detections,
    is_coco_file,
    load_detections,
    load_gt,
)
from ssl_bench.detection.voc07 import voc07_eval

PROTOCOLS: dict[str, Callable[[GroundTruth, Detections], dict]] = {"voc07": voc07_eval, "coco": coco_eval}


def score(protocol: str, gt: GroundTruth, dets: Detections, coco_backend: str = "pycocotools") -> dict:
    """``PROTOCOLS[protocol]`` on records; the coco protocol computed by ``coco_backend`` (same numbers)."""
    if protocol == "coco":
        return coco_eval(gt, dets, coco_backend)
    return PROTOCOLS[protocol](gt, dets)


def detect_eval(
    gt_path: str | Path,
    dets_path: str | Path,
    protocol: str,
    split: str | None = None,
    clip_boxes: bool = False,
    coco_backend: str = "pycocotools",
) -> dict[str, float]:
    """Load the ground truth (COCO .json or VOC directory, ``split`` for a VOC-layout root) and a COCO results
    json, check them, and evaluate (the coco protocol with ``coco_backend``: pycocotools or faster-coco-eval).
    Nested results are flattened: per_class_AP50 {"dog": x} becomes "per_class_AP50/dog".

    The coco protocol on a COCO json scores the two files' own contents, so it equals COCOeval run on them
    directly; records converted back to COCO would not (see ``ssl_bench.detection.coco``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown detection protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    require_coco_backend(coco_backend)  # before reading the files
    gt = load_gt(gt_path, split, clip_boxes)
    dets = load_detections(dets_path, gt)  # every detection checked against the ground truth
    if protocol == "coco" and is_coco_file(gt_path):
        scores = coco_eval_files(gt_path, dets_path, gt, coco_backend)
    else:
        scores = score(protocol, gt, dets, coco_backend)
    flat = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{name}": float(v) for name, v in value.items()})
        else:
            flat[key] = float(value)
    return flat


def write_coco_results(path: str | Path, gt: GroundTruth, dets: Detections) -> None:
    """Write ``dets`` as a COCO results json that ``load_detections(path, gt)`` reads back: the ground truth's
    own image ids and category ids, bbox [x, y, width, height] in 0-based pixels, full-precision floats."""
    check_detections(gt, dets)
    results = [
        {
            "image_id": gt.images[i].id,
            "category_id": gt.category_ids[label - 1],
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "score": score,
        }
        for i, label, b, score in zip(
            dets.image_index.tolist(), dets.labels.tolist(), dets.boxes.tolist(), dets.scores.tolist()
        )
    ]
    storage.write_text(path, json.dumps(results))
