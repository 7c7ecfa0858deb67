"""The ``coco`` protocol: AP at IoU 0.50:0.05:0.95, AP50 and AP75 from pycocotools' reference ``COCOeval``.

COCOeval's own rules apply: 101-point interpolated precision, at most 100 detections per image (the highest
scored), a match needs IoU >= the threshold, and categories without a non-crowd box are left out of the mean.
Difficult objects are passed as crowd regions (see ``to_coco``).
"""

from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssl_bench.detection.records import Detections, GroundTruth, to_coco


def coco_eval(gt: GroundTruth, dets: Detections) -> dict[str, float]:
    """{"AP", "AP50", "AP75"} ×100 (COCOeval's stats[0:3], area "all", maxDets 100); zeros without detections."""
    gt_dict, results = to_coco(gt, dets)
    if not any((~image.difficult).any() for image in gt.images):
        raise ValueError("the ground truth has no non-difficult object, so AP is undefined")
    if not results:  # loadRes cannot take an empty list; every AP is 0 then
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = (float(v) * 100 for v in evaluator.stats[:3])
    return {"AP": ap, "AP50": ap50, "AP75": ap75}
