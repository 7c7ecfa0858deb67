"""The ``coco`` protocol: pycocotools' reference ``COCOeval`` (bbox): AP at IoU 0.50:0.05:0.95, AP50, AP75, AP of
small / medium / large objects (APs, APm, APl) and per-class AP.

COCOeval's own rules apply: 101-point interpolated precision, at most 100 detections per image (the highest
scored), a match needs IoU >= the threshold, and categories without a non-crowd box are left out of the mean.
Difficult objects are passed as crowd regions (see ``to_coco``).

Two ways in. ``coco_eval`` scores records in memory (VOC ground truths and the in-run evaluation) through
``to_coco``. ``coco_eval_files`` scores a COCO instances json on the two files' own contents, so the numbers are
those of COCOeval run directly on them: our records' xywh -> xyxy -> xywh round trip moves a box by an ulp, enough
to carry an IoU across a threshold, and renumbered images rank tied scores in file order instead of id order.

Two backends compute COCOeval (``detection.coco_backend``, ``detect-eval --coco-backend``): pycocotools, the
reference, and faster-coco-eval (an optional extra), whose C++ evaluate and accumulate give the same numbers
(tests/test_coco_backends.py: equal to 1e-9 on every summary and per-class number) several times faster
(benchmarks/coco_backends.py).
"""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssl_bench.detection.config import require_coco_backend
from ssl_bench.detection.records import Detections, GroundTruth, read_json, to_coco

SUMMARY = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5}  # indices in COCOeval.stats (maxDets 100)


def coco_eval(gt: GroundTruth, dets: Detections, backend: str = "pycocotools") -> dict[str, Any]:
    """COCOeval on records: {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class_AP": {name: AP}}, ×100."""
    gt_dict, results = to_coco(gt, dets)
    require_objects(gt)
    return cocoeval_scores(gt_dict, results, backend)


def coco_eval_files(
    gt_path: str | Path, dets_path: str | Path, gt: GroundTruth, backend: str = "pycocotools"
) -> dict[str, Any]:
    """COCOeval on the contents of a COCO instances json and a results json, as ``COCO(gt_path)`` and
    ``loadRes(dets_path)`` read them: original ids, bbox floats, areas and crowd flags. ``gt`` is what
    ``load_coco_gt`` made of ``gt_path`` (its checks, and ``load_detections``'s on ``dets_path``, have passed).

    Only what COCOeval cannot read is filled in (``cocoeval_ground_truth``, ``cocoeval_results``)."""
    require_objects(gt)
    gt_path, dets_path = Path(gt_path), Path(dets_path)
    gt_dict = cocoeval_ground_truth(read_json(gt_path), gt_path)
    return cocoeval_scores(gt_dict, cocoeval_results(read_json(dets_path), gt), backend)


def require_objects(gt: GroundTruth) -> None:
    if not any((~image.difficult).any() for image in gt.images):
        raise ValueError("the ground truth has no non-difficult object, so AP is undefined")


def cocoeval_ground_truth(data: dict, path: Path) -> dict:
    """The file's dict, with what a loose file may leave out and COCOeval needs filled in as ``to_coco`` does (a
    missing annotation id gets a new one, a missing area is w * h, a missing iscrowd is 0), and ``difficult`` or
    ``ignore`` annotations made crowd regions, as ``load_coco_gt`` reads them. A COCO file passes unchanged."""
    kinds = {type(image["id"]).__name__ for image in data["images"]}
    if len(kinds) > 1:
        raise ValueError(
            f"{path}: image ids mix {' and '.join(sorted(kinds))}; COCOeval sorts them, so make them all "
            "integers (as COCO does) or all strings"
        )
    ids = [ann.get("id") for ann in data["annotations"]]
    for k, ann_id in enumerate(ids):
        if ann_id is not None and (not isinstance(ann_id, int) or isinstance(ann_id, bool)):
            raise ValueError(f"{path}: annotations[{k}]: id is {ann_id!r}, expected an integer (COCOeval's matching)")
    fresh = itertools.count(max((i for i in ids if i is not None), default=0) + 1)
    annotations = []
    for ann in data["annotations"]:
        crowd = any(bool(ann.get(key, False)) for key in ("iscrowd", "difficult", "ignore"))
        if {"id", "area", "iscrowd"} - set(ann) or bool(ann["iscrowd"]) != crowd:
            _, _, w, h = ann["bbox"]
            ann = {"id": next(fresh), "area": w * h, **ann, "iscrowd": int(crowd)}
        annotations.append(ann)
    return {**data, "annotations": annotations}


def cocoeval_results(results: list[dict], gt: GroundTruth) -> list[dict]:
    """The results file's entries; one that names its category (``"category": name``) gets its ``category_id``."""
    by_name = dict(zip(gt.categories, gt.category_ids))
    return [det if "category_id" in det else {**det, "category_id": by_name[det["category"]]} for det in results]


def cocoeval_scores(gt_dict: dict, results: list[dict], backend: str = "pycocotools") -> dict[str, Any]:
    """COCOeval's summary ×100 (area "all" unless named, maxDets 100) and per-class AP, computed by ``backend``
    (pycocotools or faster-coco-eval). An area range or a class without a non-crowd box has no AP (COCOeval's -1)
    and is left out, as voc07 leaves out such classes."""
    evaluator = run_cocoeval(gt_dict, results, backend)
    scores: dict[str, Any] = {}
    for name, index in SUMMARY.items():
        if evaluator.stats[index] > -1:
            scores[name] = float(evaluator.stats[index]) * 100
    scores["per_class_AP"] = per_class_ap(evaluator)
    return scores


def run_cocoeval(gt_dict: dict, results: list[dict], backend: str = "pycocotools") -> Any:
    """A bbox COCOeval of ``backend`` on the two, evaluated, accumulated and summarized (its ``stats`` and
    ``eval["precision"]`` are read). faster-coco-eval's COCO reads image ids as integers, so string ids are
    renumbered by their sorted rank first: COCOeval's image order, and with it its order of tied scores, stays."""
    coco_class, eval_class = COCO, COCOeval
    if backend != "pycocotools":
        require_coco_backend(backend)
        from faster_coco_eval import COCO as FasterCOCO  # the optional backend: pycocotools' API
        from faster_coco_eval import COCOeval_faster

        coco_class, eval_class = FasterCOCO, COCOeval_faster
        gt_dict, results = integer_image_ids(gt_dict, results)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        coco_gt = coco_class()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        evaluator = eval_class(coco_gt, load_results(coco_gt, results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def integer_image_ids(gt_dict: dict, results: list[dict]) -> tuple[dict, list[dict]]:
    """The two with every image id an integer: unchanged when they are, else each id replaced by its rank (1..N) in
    sorted order, which keeps the order COCOeval sorts them in."""
    ids = [image["id"] for image in gt_dict["images"]]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return gt_dict, results
    rank = {image_id: k + 1 for k, image_id in enumerate(sorted(ids))}
    images = [{**image, "id": rank[image["id"]]} for image in gt_dict["images"]]
    annotations = [{**ann, "image_id": rank[ann["image_id"]]} for ann in gt_dict["annotations"]]
    return {**gt_dict, "images": images, "annotations": annotations}, [
        {**det, "image_id": rank[det["image_id"]]} for det in results
    ]


def load_results(coco_gt: Any, results: list[dict]) -> Any:
    """``coco_gt.loadRes(results)``; loadRes reads ``results[0]``, so no detections get an empty results set."""
    if results:
        return coco_gt.loadRes(results)
    empty = type(coco_gt)()
    empty.dataset = {**coco_gt.dataset, "annotations": []}
    empty.createIndex()
    return empty


def per_class_ap(evaluator: Any) -> dict[str, float]:
    """{name: AP} ×100 of every category with a non-crowd box: summarize()'s mean of the precision table
    (IoU x recall, area "all", maxDets 100) restricted to the category, in COCOeval's order (by id)."""
    precision = evaluator.eval["precision"]  # (T IoU thresholds, R recall points, K categories, A areas, M maxDets)
    area, max_dets = evaluator.params.areaRngLbl.index("all"), evaluator.params.maxDets.index(100)
    names = {cat["id"]: cat["name"] for cat in evaluator.cocoGt.dataset["categories"]}
    scores = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, area, max_dets]
        if (values > -1).any():
            scores[names[cat_id]] = float(np.mean(values[values > -1])) * 100
    return scores
