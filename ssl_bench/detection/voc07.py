"""The ``voc07`` protocol: Pascal VOC 2007 11-point AP, following Detectron2's ``PascalVOCDetectionEvaluator``
(use_07_metric=True), itself a port of the VOC devkit's ``voc_eval`` by Bharath Hariharan.

Per class and IoU threshold t, detections are taken by descending score and each is compared with its best-IoU
ground-truth box of the same class and image (first in annotation order on ties), whether or not that box is
already matched:

- IoU > t (strictly, as in the devkit) with a difficult box: ignored, neither true nor false positive;
- IoU > t with an unmatched box: true positive, the box becomes matched;
- IoU > t with an already matched box, or IoU <= t, or no box of the class in the image: false positive.

Recall divides by the number of non-difficult boxes of the class; AP is the mean over the 11 recall points
0, 0.1, ..., 1 of the highest precision at recall >= that point (0 when the recall is never reached).

Deliberate differences from Detectron2: scores are sorted stably (ties keep the input order; Detectron2's
quicksort does not define it), and scores and boxes are not rounded to 3 and 1 decimals on the way through a
text file. Classes without a non-difficult ground-truth box are left out of the means and of ``per_class_AP50``:
their recall is undefined and Detectron2 would average in an AP of 0 for them.
"""

from __future__ import annotations

import numpy as np

from ssl_bench.detection.records import Detections, GroundTruth, check_detections

IOU_THRESHOLDS = tuple(t / 100 for t in range(50, 100, 5))  # 0.5, 0.55, ..., 0.95 (Detectron2's thresh / 100.0)
RECALL_POINTS = np.arange(0.0, 1.1, 0.1)  # the devkit's own floats: 0.30000000000000004 etc. are kept on purpose


def voc_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (A, B) of 0-based xyxy boxes a (A, 4) and b (B, 4) in the VOC pixel convention.

    Boxes are moved to VOC's 1-based inclusive coordinates (xmin + 1, ymin + 1) and measured as
    xmax - xmin + 1 pixels wide. For 0-based boxes this equals the continuous-coordinate IoU up to rounding.
    Two empty boxes have IoU 0.
    """
    a, b = a.astype(np.float64, copy=True), b.astype(np.float64, copy=True)
    a[:, :2] += 1
    b[:, :2] += 1
    iw = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1.0, 0.0)
    inter = iw * ih  # (A, B)
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_overlaps(gt: GroundTruth, dets: Detections) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the highest IoU with a same-class box of its image and that box's index in the
    concatenation of all images' boxes: (D,) float with -inf when there is none, (D,) int with -1 then."""
    offsets = np.cumsum([0] + [len(image.labels) for image in gt.images])  # (N + 1,)
    ovmax, jmax = np.full(len(dets), -np.inf), np.full(len(dets), -1)
    order = np.argsort(dets.image_index, kind="stable")
    starts = np.searchsorted(dets.image_index[order], np.arange(len(gt.images) + 1))
    for i, image in enumerate(gt.images):
        rows = order[starts[i] : starts[i + 1]]
        if len(rows) == 0 or len(image.labels) == 0:
            continue
        iou = voc_iou(dets.boxes[rows], image.boxes)  # (d, g)
        iou[dets.labels[rows, None] != image.labels[None, :]] = -np.inf
        best = iou.argmax(1)  # first maximum, as np.argmax in the devkit
        ovmax[rows] = iou[np.arange(len(rows)), best]
        jmax[rows] = np.where(np.isfinite(ovmax[rows]), offsets[i] + best, -1)
    return ovmax, jmax


def ap_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """Mean over RECALL_POINTS of the highest precision at recall >= the point; recall (D,) is non-decreasing."""
    if len(recall) == 0:
        return 0.0
    best_after = np.maximum.accumulate(precision[::-1])[::-1]  # (D,) max precision from each rank on
    first = np.searchsorted(recall, RECALL_POINTS, side="left")  # (11,) first rank reaching each point
    reached = first < len(recall)
    return float(np.sum(np.where(reached, best_after[np.minimum(first, len(recall) - 1)], 0.0)) / 11.0)


def class_ap(ovmax: np.ndarray, jmax: np.ndarray, gt_difficult: np.ndarray, npos: int, threshold: float) -> float:
    """AP of one class: ovmax, jmax (D,) of its detections sorted by descending score; gt_difficult (G,) over
    all boxes; npos its number of non-difficult boxes (> 0)."""
    hit = ovmax > threshold
    ignored = hit & gt_difficult[np.where(hit, jmax, 0)]
    candidates = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(jmax[candidates], return_index=True)  # the first detection to reach each box wins it
    tp = np.zeros(len(ovmax))
    tp[candidates[first]] = 1.0
    fp = (~ignored).astype(np.float64) - tp  # misses, duplicates and detections of nothing
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / float(npos)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return ap_11_point(recall, precision)


def voc07_eval(gt: GroundTruth, dets: Detections) -> dict:
    """{"AP": mean over IoU 0.50:0.05:0.95 of the mean AP over classes, "AP50", "AP75", "per_class_AP50":
    {name: AP at IoU 0.5}}, all ×100. Classes without a non-difficult box are not averaged (module docstring)."""
    check_detections(gt, dets)
    labels = np.concatenate([image.labels for image in gt.images] + [np.zeros(0, np.int64)])  # (G,)
    difficult = np.concatenate([image.difficult for image in gt.images] + [np.zeros(0, bool)])  # (G,)
    ovmax, jmax = best_overlaps(gt, dets)
    aps: dict[float, list[float]] = {t: [] for t in IOU_THRESHOLDS}
    per_class = {}
    for c, name in enumerate(gt.categories, start=1):
        npos = int(np.sum((labels == c) & ~difficult))
        if npos == 0:
            continue
        rows = np.flatnonzero(dets.labels == c)
        rows = rows[np.argsort(-dets.scores[rows], kind="stable")]
        for t in IOU_THRESHOLDS:
            aps[t].append(class_ap(ovmax[rows], jmax[rows], difficult, npos, t) * 100)
        per_class[name] = aps[0.5][-1]
    if not per_class:
        raise ValueError("the ground truth has no non-difficult object, so AP is undefined")
    mean_ap = {t: float(np.mean(values)) for t, values in aps.items()}
    return {
        "AP": float(np.mean(list(mean_ap.values()))),
        "AP50": mean_ap[0.5],
        "AP75": mean_ap[0.75],
        "per_class_AP50": per_class,
    }
