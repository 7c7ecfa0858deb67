from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssl_bench.data.voc import VOC_CLASSES, VOCDetection, write_annotation
from ssl_bench.detection.coco import coco_eval
from ssl_bench.detection.detect_eval import detect_eval, write_coco_results
from ssl_bench.detection.records import (
    Detections,
    GroundTruth,
    ImageRecord,
    load_coco_gt,
    load_detections,
    load_gt,
    load_voc_gt,
    to_coco,
)
from ssl_bench.detection.voc07 import voc07_eval, voc_iou


def image(id: str | int, boxes: list, labels: list, difficult: list | None = None, size: int = 100) -> ImageRecord:
    return ImageRecord(id, size, size, boxes, labels, difficult if difficult is not None else [False] * len(labels))


def detections(rows: list[tuple[int, int, list[float], float]]) -> Detections:
    """rows of (image_index, label, xyxy box, score)."""
    if not rows:
        return Detections([], [], [], [])
    i, label, box, score = zip(*rows)
    return Detections(i, label, box, score)


# --- a slow, obviously-correct voc07 reference: the rules of the devkit's voc_eval, one detection at a time


def reference_overlap(a: list[float], b: list[float]) -> float:
    """IoU of two 0-based xyxy boxes after moving them to VOC 1-based pixels, widths xmax - xmin + 1."""
    ax0, ay0, ax1, ay1 = a[0] + 1, a[1] + 1, a[2], a[3]
    bx0, by0, bx1, by1 = b[0] + 1, b[1] + 1, b[2], b[3]
    iw = max(min(ax1, bx1) - max(ax0, bx0) + 1.0, 0.0)
    ih = max(min(ay1, by1) - max(ay0, by0) + 1.0, 0.0)
    union = (ax1 - ax0 + 1.0) * (ay1 - ay0 + 1.0) + (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def reference_voc07(gt: GroundTruth, dets: Detections) -> dict:
    thresholds = [t / 100 for t in range(50, 100, 5)]
    aps: dict[float, list[float]] = {t: [] for t in thresholds}
    per_class = {}
    for c, name in enumerate(gt.categories, start=1):
        objects = [
            [(box, bool(d)) for box, label, d in zip(im.boxes.tolist(), im.labels.tolist(), im.difficult) if label == c]
            for im in gt.images
        ]
        npos = sum(1 for objs in objects for _, d in objs if not d)
        if npos == 0:  # our choice: classes without a non-difficult box are not averaged
            continue
        mine = [
            (s, i, b)
            for i, label, b, s in zip(
                dets.image_index.tolist(), dets.labels.tolist(), dets.boxes.tolist(), dets.scores.tolist()
            )
            if label == c
        ]
        mine = sorted(mine, key=lambda d: -d[0])  # Python's sort is stable
        for t in thresholds:
            matched = [[False] * len(objs) for objs in objects]
            tp, fp = [], []
            for _, i, box in mine:
                best, best_j = -math.inf, -1
                for j, (g, _) in enumerate(objects[i]):
                    o = reference_overlap(box, g)
                    if o > best:
                        best, best_j = o, j
                if best > t and objects[i][best_j][1]:  # difficult: ignored
                    tp.append(0), fp.append(0)
                elif best > t and not matched[i][best_j]:
                    matched[i][best_j] = True
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            ap = 0.0
            for r in np.arange(0.0, 1.1, 0.1):  # the devkit's 11 points, its own floats
                precisions = [
                    sum(tp[: k + 1]) / max(sum(tp[: k + 1]) + sum(fp[: k + 1]), np.finfo(float).eps)
                    for k in range(len(tp))
                    if sum(tp[: k + 1]) / npos >= r
                ]
                ap += (max(precisions) if precisions else 0.0) / 11
            aps[t].append(ap * 100)
        per_class[name] = aps[0.5][-1]
    means = [sum(v) / len(v) for v in aps.values()]
    return {"AP": sum(means) / len(means), "AP50": means[0], "AP75": means[5], "per_class_AP50": per_class}


def random_fixture(seed: int) -> tuple[GroundTruth, Detections]:
    """4 classes: "a", "b" with boxes and detections, "c" with boxes but no detection, "d" with detections but no
    box; 6 images, the last without any box; integer and fractional boxes, near duplicates, tied scores."""
    rng = np.random.default_rng(seed)
    images, rows = [], []
    for i in range(6):
        n = 0 if i == 5 else int(rng.integers(1, 6))
        x0, y0 = rng.integers(0, 60, (2, n))
        w, h = rng.integers(4, 40, (2, n))
        boxes = np.stack([x0, y0, x0 + w, y0 + h], 1).astype(float)
        if seed % 2:
            boxes += rng.uniform(-0.5, 0.5, boxes.shape)
        labels = rng.choice([1, 2, 3], n, p=[0.45, 0.4, 0.15])
        images.append(image(f"img{i}", boxes, labels, rng.random(n) < 0.2))
        for box, label in zip(boxes, labels):
            if label == 3:
                continue
            for _ in range(int(rng.integers(0, 4))):  # near duplicates of the box, some exact, some on integers
                shift = rng.integers(-3, 4, 4) if rng.random() < 0.5 else rng.normal(0, 2, 4)
                if rng.random() < 0.2:
                    shift = np.zeros(4)
                b = box + shift
                b[2:] = np.maximum(b[2:], b[:2])
                rows.append((i, label, b.tolist(), float(rng.integers(0, 8)) / 8))  # tied scores
    for _ in range(12):  # detections anywhere, including class "d" and the empty image
        x0, y0, w, h = rng.uniform(0, 60), rng.uniform(0, 60), rng.uniform(2, 40), rng.uniform(2, 40)
        rows.append(
            (
                int(rng.integers(0, 6)),
                int(rng.choice([1, 2, 4])),
                [x0, y0, x0 + w, y0 + h],
                float(rng.integers(0, 8)) / 8,
            )
        )
    order = rng.permutation(len(rows))
    return GroundTruth(["a", "b", "c", "d"], images), detections([rows[k] for k in order])


@pytest.mark.parametrize("seed", range(40))
def test_voc07_matches_the_slow_reference(seed: int) -> None:
    gt, dets = random_fixture(seed)
    ours, ref = voc07_eval(gt, dets), reference_voc07(gt, dets)
    assert set(ours) == {"AP", "AP50", "AP75", "per_class_AP50"}
    for key in ("AP", "AP50", "AP75"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9)
    assert ours["per_class_AP50"].keys() == ref["per_class_AP50"].keys()
    assert "d" not in ours["per_class_AP50"] and ours["per_class_AP50"].get("c", 0.0) == 0.0
    for name, value in ref["per_class_AP50"].items():
        assert ours["per_class_AP50"][name] == pytest.approx(value, abs=1e-9)


def test_voc07_fixtures_are_not_trivial() -> None:
    """The random fixtures reach APs strictly between 0 and 100 and exercise difficult boxes."""
    values = [voc07_eval(*random_fixture(seed))["per_class_AP50"].get("a", 0.0) for seed in range(40)]
    assert sum(0 < v < 100 for v in values) > 20
    assert sum(random_fixture(seed)[0].images[0].difficult.any() for seed in range(40)) > 5


def hand_fixture() -> tuple[GroundTruth, Detections]:
    """Two cats; a perfect hit, a miss, then a hit of IoU exactly 0.6 (240 / 400 pixels)."""
    gt = GroundTruth(["cat"], [image("A", [[0, 0, 10, 10]], [1]), image("B", [[20, 20, 40, 40]], [1])])
    dets = detections([(0, 1, [0, 0, 10, 10], 0.9), (0, 1, [50, 50, 60, 60], 0.8), (1, 1, [20, 20, 40, 32], 0.7)])
    return gt, dets


def test_voc07_hand_checked_ap() -> None:
    # IoU 0.5 and 0.55: TP, FP, TP -> (recall, precision) = (.5, 1), (.5, .5), (1, 2/3):
    #   recall points 0..0.5 see precision 1, points 0.6..1 see 2/3 -> AP = (6 + 5 * 2/3) / 11 = 28/33.
    # IoU 0.6..0.95: 0.6 is not > 0.6, so TP, FP, FP -> points 0..0.5 see 1, the rest 0 -> AP = 6/11.
    result = voc07_eval(*hand_fixture())
    assert result["AP50"] == pytest.approx(2800 / 33, abs=1e-9)
    assert result["AP75"] == pytest.approx(600 / 11, abs=1e-9)
    assert result["AP"] == pytest.approx((2 * 2800 / 33 + 8 * 600 / 11) / 10, abs=1e-9)
    assert result["per_class_AP50"] == {"cat": pytest.approx(2800 / 33, abs=1e-9)}


def test_voc07_difficult_duplicates_and_empty_classes() -> None:
    gt, dets = hand_fixture()
    base = voc07_eval(gt, dets)
    # a difficult cat and a dog with only a difficult box: a detection on the difficult cat is ignored, the dog
    # class has no non-difficult box and is left out, as is the bird class that has no box at all
    gt.images.append(image("C", [[0, 0, 30, 30], [40, 40, 70, 70]], [1, 2], [True, True]))
    gt.categories, gt.category_ids = ["cat", "dog", "bird"], [1, 2, 3]
    extra = [(2, 1, [0, 0, 30, 30], 0.95), (2, 2, [40, 40, 70, 70], 0.9), (1, 3, [20, 20, 40, 40], 0.9)]
    rows = list(zip(dets.image_index.tolist(), dets.labels.tolist(), dets.boxes.tolist(), dets.scores.tolist()))
    assert voc07_eval(gt, detections(rows + extra)) == base  # ignored rows repeat earlier points: same floats
    # a second detection of the matched cat A ranks second: TP, FP (duplicate), FP, TP -> (6 + 5 * 1/2) / 11
    duplicate = (0, 1, [0.5, 0, 10, 10], 0.85)
    assert voc07_eval(gt, detections(rows + extra + [duplicate]))["AP50"] == pytest.approx(8.5 / 11 * 100)
    # no detection at all: AP 0
    assert voc07_eval(gt, detections([]))["AP"] == 0.0
    gt.images = [gt.images[2]]
    with pytest.raises(ValueError, match="no non-difficult object"):
        voc07_eval(gt, detections([]))


def test_voc07_keeps_the_devkit_rules_where_a_cleaner_rule_would_differ() -> None:
    # The best-IoU box decides even when it is already matched: the second detection overlaps the free box B
    # by 0.74 but A by 0.90, so it is a duplicate of A (FP) and B stays missed -> 6 points of precision 1.
    gt = GroundTruth(["cat"], [image(0, [[0, 0, 10, 10], [2, 0, 12, 10]], [1, 1])])
    dets = detections([(0, 1, [0, 0, 10, 10], 0.9), (0, 1, [0.5, 0, 10.5, 10], 0.8)])
    assert voc07_eval(gt, dets)["AP50"] == pytest.approx(600 / 11, abs=1e-9)
    # The 11 recall points are np.arange(0, 1.1, 0.1): 3 of 10 boxes found is recall 0.3 < 0.30000000000000004,
    # so only the points 0, 0.1, 0.2 count (3/11, where exact points would give 4/11).
    gt = GroundTruth(["cat"], [image(k, [[0, 0, 10, 10]], [1]) for k in range(10)])
    dets = detections([(k, 1, [0, 0, 10, 10], 1 - k / 10) for k in range(3)])
    assert voc07_eval(gt, dets)["AP50"] == pytest.approx(300 / 11, abs=1e-9)


def test_voc_iou_uses_the_pixel_convention() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [2.5, 2.5, 7.5, 7.5]])
    # 1-based (1..10) vs (6..15): 5 shared columns of 10 -> 50 / 150; touching boxes share no pixel
    assert voc_iou(a, b) == pytest.approx(np.array([[1 / 3, 1.0, 0.0, 0.25]]))
    assert voc_iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_detections_must_name_images_and_labels_of_the_ground_truth() -> None:
    gt, _ = hand_fixture()
    for rows, problem in [
        ([(2, 1, [0, 0, 1, 1], 0.5)], "image_index outside 0..1"),
        ([(0, 0, [0, 0, 1, 1], 0.5)], "label outside 1..1"),
        ([(0, 1, [5, 0, 1, 1], 0.5)], "xmax < xmin"),
        ([(0, 1, [0, 0, 1, 1], math.nan)], "non-finite"),
    ]:
        for evaluate in (voc07_eval, coco_eval):
            with pytest.raises(ValueError, match=problem):
                evaluate(gt, detections(rows))


# --- coco: our loaders + wrapper against pycocotools' COCOeval run directly on the same COCO files
# The files are written here in COCO's own xywh format, never through to_coco, so a conversion bug in our code
# cannot cancel out: COCO(gt) / loadRes(results) read the files themselves.


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


SUMMARY = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


def cocoeval_stats(gt_file: Path, results_file: Path, cat_ids: list[int] | None = None) -> dict[str, float]:
    """stats[0:6] x 100 of pycocotools' COCOeval on the two files (only the categories ``cat_ids``, if given)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        e = COCOeval(coco, coco.loadRes(str(results_file)), "bbox")
        if cat_ids is not None:
            e.params.catIds = cat_ids
        e.evaluate(), e.accumulate(), e.summarize()
    return dict(zip(SUMMARY, (float(v) * 100 for v in e.stats[:6])))


def cocoeval_files(gt_file: Path, results_file: Path) -> list[float]:
    """stats[0:3] x 100 (AP, AP50, AP75) of pycocotools' COCOeval on the two files."""
    return list(cocoeval_stats(gt_file, results_file).values())[:3]


def ours_on_files(gt_file: Path, results_file: Path) -> list[float]:
    """AP, AP50, AP75 of coco_eval on the records our loaders make of the files (the in-memory path, to_coco)."""
    gt = load_coco_gt(gt_file)
    scores = coco_eval(gt, load_detections(results_file, gt))
    return [scores[key] for key in ("AP", "AP50", "AP75")]


def coco_instances(images: list[tuple[int, list[tuple[int, list[float], int]]]], categories: dict[int, str]) -> dict:
    """A COCO instances dict from [(image_id, [(category_id, xywh, iscrowd), ...]), ...], every image 100 x 100."""
    annotations = []
    for image_id, objects in images:
        for cat, box, crowd in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": crowd,
                }
            )
    return {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i, _ in images],
        "annotations": annotations,
        "categories": [{"id": k, "name": v} for k, v in categories.items()],
    }


def test_coco_eval_matches_cocoeval_on_a_hand_checked_fixture(tmp_path: Path) -> None:
    """cat: one box seen with IoU 0.72 (matched at IoU thresholds .5 .. .7 only); dog: perfect. Image and category
    ids are neither 1-based nor contiguous, so our renumbering is exercised."""
    gt_file = write_json(
        tmp_path / "gt.json",
        coco_instances([(7, [(4, [0, 0, 10, 10], 0)]), (12, [(9, [20, 30, 30, 10], 0)])], {4: "cat", 9: "dog"}),
    )
    dog = {"image_id": 12, "category_id": 9, "bbox": [20, 30, 30, 10], "score": 0.8}
    cat = {"image_id": 7, "category_id": 4, "bbox": [0, 0, 10, 10], "score": 0.9}
    perfect = write_json(tmp_path / "perfect.json", [cat, dog])
    shifted = write_json(tmp_path / "shifted.json", [dict(cat, bbox=[0, 0, 10, 7.2]), dog])
    direct = cocoeval_files(gt_file, perfect)
    assert direct == pytest.approx([100, 100, 100], abs=1e-9)
    assert ours_on_files(gt_file, perfect) == pytest.approx(direct, abs=1e-9)
    direct = cocoeval_files(gt_file, shifted)
    assert direct == pytest.approx([75, 100, 50], abs=1e-9)  # cat: AP 50 (5 of 10 thresholds), AP50 100, AP75 0
    assert ours_on_files(gt_file, shifted) == pytest.approx(direct, abs=1e-9)


def random_coco_files(seed: int, directory: Path) -> tuple[Path, Path]:
    """A COCO instances file and a results file, written directly in xywh. Categories 3, 7 with boxes and
    detections, 11 with boxes but no detection, 20 with detections but no box; 6 images with ids in ascending
    order (see test_coco_eval_breaks_score_ties_in_image_id_order), the last without any box; crowd boxes, near
    duplicates, tied scores. Coordinates are integers (seed % 3 == 0), uniform fractions (1) or on a 0.1 grid (2),
    where x + w - x often differs from w in the last bit."""
    rng = np.random.default_rng(seed)

    def coordinate(value: float) -> float:
        if seed % 3 == 1:
            return value + float(rng.uniform(-0.5, 0.5))
        return round(value + int(rng.integers(0, 10)) / 10, 1) if seed % 3 == 2 else value

    def moved(value: float, shift: float) -> float:
        return value + shift if seed % 3 == 1 else round(value + shift, 1)

    image_ids = sorted(int(i) for i in rng.choice(np.arange(1, 1000), 6, replace=False))
    images, results = [], []
    for k, image_id in enumerate(image_ids):
        objects = []
        for _ in range(0 if k == 5 else int(rng.integers(1, 6))):
            box = [coordinate(float(v)) for v in (*rng.integers(0, 60, 2), *rng.integers(4, 40, 2))]
            cat = int(rng.choice([3, 7, 11], p=[0.45, 0.4, 0.15]))
            objects.append((cat, box, int(rng.random() < 0.2)))
            if cat == 11:
                continue
            for _ in range(int(rng.integers(0, 4))):  # near duplicates, some exact
                shift = [0.0] * 4 if rng.random() < 0.2 else [int(rng.integers(-30, 31)) / 10 for _ in range(4)]
                near = [
                    moved(box[0], shift[0]),
                    moved(box[1], shift[1]),
                    max(moved(box[2], shift[2]), 0.0),
                    max(moved(box[3], shift[3]), 0.0),
                ]
                score = int(rng.integers(0, 8)) / 8  # tied scores
                results.append({"image_id": image_id, "category_id": cat, "bbox": near, "score": score})
        images.append((image_id, objects))
    for _ in range(12):  # detections anywhere, including category 20 and the empty image
        box = [float(v) for v in (*rng.uniform(0, 60, 2), *rng.uniform(2, 40, 2))]
        results.append(
            {
                "image_id": int(rng.choice(image_ids)),
                "category_id": int(rng.choice([3, 7, 20])),
                "bbox": box,
                "score": int(rng.integers(0, 8)) / 8,
            }
        )
    results = [results[k] for k in rng.permutation(len(results))]
    gt = coco_instances(images, {3: "a", 7: "b", 11: "c", 20: "d"})
    return write_json(directory / "gt.json", gt), write_json(directory / "results.json", results)


@pytest.mark.parametrize("seed", range(12))
def test_coco_eval_matches_cocoeval_on_random_fixtures(seed: int, tmp_path: Path) -> None:
    gt_file, results_file = random_coco_files(seed, tmp_path)
    direct = cocoeval_files(gt_file, results_file)
    assert all(0 < v < 100 for v in direct), direct  # a comparison of 0s or 100s would prove little
    assert ours_on_files(gt_file, results_file) == pytest.approx(direct, abs=1e-9)
    scores = detect_eval(gt_file, results_file, "coco")  # the files' own contents: equal, not close
    defined = {key: v for key, v in cocoeval_stats(gt_file, results_file).items() if v != -100}  # -1: no such box
    assert {key: scores[key] for key in SUMMARY if key in scores} == defined


# Boxes on a 0.1 grid whose IoU with their detection sits on a COCOeval threshold: after the xywh -> xyxy -> xywh
# round trip of our records (0.1 + 0.7 - 0.1 != 0.7) it falls on the other side of it (comments: IoU as read, and
# after the trip). Images listed out of id order; category ids 8, 3; areas that are not w * h (annotation 103 is
# large by w * h, medium by its area); a crowd region; an empty image with a false positive tied with a hit.
ROUND_TRIP_GT = {
    "images": [{"id": i, "width": 200, "height": 200} for i in (42, 7, 1003, 19)],
    "categories": [{"id": 8, "name": "dog"}, {"id": 3, "name": "cat"}],
    "annotations": [
        {"id": 101, "image_id": 42, "category_id": 3, "bbox": [6.1, 24.5, 34.8, 7.3], "area": 230.5, "iscrowd": 0},
        {"id": 102, "image_id": 42, "category_id": 8, "bbox": [91.4, 96.5, 45.0, 37.8], "area": 1500.2, "iscrowd": 0},
        {"id": 103, "image_id": 42, "category_id": 3, "bbox": [10.3, 110.7, 120.4, 80.9], "area": 8000.0, "iscrowd": 0},
        {"id": 205, "image_id": 7, "category_id": 3, "bbox": [21.3, 78.8, 3.0, 40.0], "area": 100.7, "iscrowd": 0},
        {"id": 206, "image_id": 7, "category_id": 8, "bbox": [62.2, 78.8, 15.9, 11.0], "area": 150.1, "iscrowd": 0},
        {"id": 207, "image_id": 7, "category_id": 8, "bbox": [120.0, 120.0, 60.5, 50.5], "area": 2000.0, "iscrowd": 1},
        {"id": 309, "image_id": 1003, "category_id": 3, "bbox": [14.5, 15.8, 59.3, 3.9], "area": 200.3, "iscrowd": 0},
        {"id": 310, "image_id": 1003, "category_id": 8, "bbox": [0.1, 150.1, 90.7, 40.3], "area": 3600.9, "iscrowd": 0},
        {"id": 311, "image_id": 1003, "category_id": 8, "bbox": [100.2, 0.3, 99.7, 99.1], "area": 9800.6, "iscrowd": 0},
    ],
}
ROUND_TRIP_DETECTIONS = [
    {"image_id": 42, "category_id": 3, "bbox": [5.9, 26.1, 36.0, 5.8], "score": 0.9},  # 101: IoU 0.75 -> below
    {"image_id": 42, "category_id": 8, "bbox": [93.9, 93.9, 43.2, 35.0], "score": 0.8},  # 102: 0.75 -> below
    {"image_id": 42, "category_id": 3, "bbox": [12.1, 108.2, 118.3, 83.4], "score": 0.7},  # 103
    {"image_id": 19, "category_id": 3, "bbox": [50.5, 50.5, 30.3, 30.3], "score": 0.7},  # tied false positive
    {"image_id": 7, "category_id": 3, "bbox": [19.7, 78.7, 5.9, 39.0], "score": 0.6},  # 205: 0.5 -> below
    {"image_id": 7, "category_id": 8, "bbox": [59.7, 76.7, 13.0, 13.2], "score": 0.55},  # 206: 0.5 -> below
    {"image_id": 7, "category_id": 8, "bbox": [125.1, 125.3, 20.2, 20.9], "score": 0.95},  # in the crowd region
    {"image_id": 1003, "category_id": 3, "bbox": [14.2, 17.0, 57.0, 4.0], "score": 0.65},  # 309: below 0.5 -> above
    {"image_id": 1003, "category_id": 8, "bbox": [0.3, 149.8, 90.1, 41.2], "score": 0.85},  # 310
    {"image_id": 1003, "category_id": 8, "bbox": [100.0, 0.1, 98.3, 100.2], "score": 0.5},  # 311
]


def test_coco_protocol_on_coco_files_equals_cocoeval_bit_for_bit(tmp_path: Path) -> None:
    gt_file = write_json(tmp_path / "gt.json", ROUND_TRIP_GT)
    results_file = write_json(tmp_path / "results.json", ROUND_TRIP_DETECTIONS)
    direct = cocoeval_stats(gt_file, results_file)
    assert all(0 < v < 100 for v in direct.values()), direct  # every area range holds boxes, none is perfect
    scores = detect_eval(gt_file, results_file, "coco")
    assert {key: scores[key] for key in SUMMARY} == pytest.approx(direct, abs=1e-12, rel=0)
    for cat_id, name in ((3, "cat"), (8, "dog")):  # per class: COCOeval on that category alone
        per_class = cocoeval_stats(gt_file, results_file, [cat_id])["AP"]
        assert scores[f"per_class_AP/{name}"] == pytest.approx(per_class, abs=1e-12, rel=0)
    assert set(scores) == {*SUMMARY, "per_class_AP/cat", "per_class_AP/dog"}
    # the fixture bites: our records' round trip moves AP50 and AP75 (they differed by 9 and 30 points)
    assert abs(ours_on_files(gt_file, results_file)[2] - direct["AP75"]) > 1


def test_coco_protocol_fills_in_what_a_loose_coco_file_leaves_out(tmp_path: Path) -> None:
    """No annotation ids, areas or iscrowd, a "difficult" box and detections naming their category: scored as the
    complete file (ids, area w * h, the difficult box a crowd region, category ids) is by COCOeval."""
    complete = json.loads(json.dumps(ROUND_TRIP_GT))
    for ann in complete["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    loose = json.loads(json.dumps(complete))
    for ann in loose["annotations"]:
        del ann["id"], ann["area"]
        if ann.pop("iscrowd"):
            ann["difficult"] = 1
    names = {3: "cat", 8: "dog"}
    named = [
        {**det, "category": names[det.pop("category_id")]} for det in json.loads(json.dumps(ROUND_TRIP_DETECTIONS))
    ]
    direct = cocoeval_stats(
        write_json(tmp_path / "gt.json", complete), write_json(tmp_path / "r.json", ROUND_TRIP_DETECTIONS)
    )
    scores = detect_eval(write_json(tmp_path / "loose.json", loose), write_json(tmp_path / "named.json", named), "coco")
    assert {key: scores[key] for key in SUMMARY} == pytest.approx(direct, abs=1e-12, rel=0)


def test_coco_protocol_names_what_cocoeval_cannot_read(tmp_path: Path) -> None:
    results_file = write_json(tmp_path / "results.json", ROUND_TRIP_DETECTIONS)
    mixed = dict(ROUND_TRIP_GT, images=[*ROUND_TRIP_GT["images"], {"id": "x", "width": 9, "height": 9}])
    gt_file = write_json(tmp_path / "mixed.json", mixed)
    with pytest.raises(ValueError, match=re.escape(str(gt_file)) + r": image ids mix int and str; COCOeval sorts"):
        detect_eval(gt_file, results_file, "coco")
    assert detect_eval(gt_file, results_file, "voc07")["AP50"] > 0  # voc07 has no such rule
    named_ids = dict(ROUND_TRIP_GT, annotations=[dict(ROUND_TRIP_GT["annotations"][0], id="a")])
    gt_file = write_json(tmp_path / "named_ids.json", named_ids)
    with pytest.raises(ValueError, match=r"annotations\[0\]: id is 'a', expected an integer"):
        detect_eval(gt_file, results_file, "coco")


def test_random_coco_fixtures_exercise_crowds_ties_and_inexact_round_trips(tmp_path: Path) -> None:
    crowds = ties = inexact = 0
    for seed in range(12):
        gt_file, results_file = random_coco_files(seed, tmp_path)
        gt, results = json.loads(gt_file.read_text()), json.loads(results_file.read_text())
        crowds += sum(a["iscrowd"] for a in gt["annotations"])
        scores = [r["score"] for r in results]
        ties += len(scores) - len(set(scores))
        inexact += sum((x + w) - x != w for x, _, w, _ in (e["bbox"] for e in gt["annotations"] + results))
    assert crowds > 10 and ties > 100 and inexact > 100


def test_coco_eval_breaks_score_ties_in_image_id_order(tmp_path: Path) -> None:
    """Images listed as ids 2, 1; one cat on image 2. Two detections tie at 0.5: a hit on image 2 and a false
    positive on image 1. COCOeval takes image 1 first: FP then TP, precision 1/2 at full recall -> AP 50.
    (Records renumber images by position, so coco_eval on them ranks the tie the other way: AP 100.)"""
    gt_file = write_json(tmp_path / "gt.json", coco_instances([(2, [(1, [0, 0, 10, 10], 0)]), (1, [])], {1: "cat"}))
    results_file = write_json(
        tmp_path / "results.json",
        [
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5},
            {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.5},
        ],
    )
    assert cocoeval_files(gt_file, results_file) == pytest.approx([50, 50, 50], abs=1e-9)
    scores = detect_eval(gt_file, results_file, "coco")
    assert [scores["AP"], scores["AP50"], scores["AP75"]] == pytest.approx([50, 50, 50], abs=1e-9)
    assert ours_on_files(gt_file, results_file) == pytest.approx([100, 100, 100], abs=1e-9)


def test_to_coco_fields_and_difficult_as_crowd() -> None:
    gt = GroundTruth(
        ["cat", "dog"], [image("a", [[1, 2, 11, 6.5], [0, 0, 50, 50]], [2, 1], [False, True]), image("b", [], [])]
    )
    gt_dict, results = to_coco(gt, detections([(1, 2, [3, 4, 5, 10], 0.25)]))
    assert gt_dict["images"] == [
        {"id": 1, "width": 100, "height": 100, "file_name": "a"},
        {"id": 2, "width": 100, "height": 100, "file_name": "b"},
    ]
    assert gt_dict["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 4.5], "area": 45.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500.0, "iscrowd": 1},
    ]
    assert gt_dict["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert results == [{"image_id": 2, "category_id": 2, "bbox": [3, 4, 2, 6], "score": 0.25}]


def test_detections_of_difficult_objects_are_ignored_by_both_protocols() -> None:
    """A top-scored detection on a difficult box costs nothing; on empty background it is a false positive."""
    for difficult in (True, False):
        gt = GroundTruth(["cat"], [image(1, [[0, 0, 10, 10], [40, 40, 60, 60]], [1, 1], [False, difficult])])
        dets = detections([(0, 1, [40, 40, 60, 60], 0.9), (0, 1, [0, 0, 10, 10], 0.8)])
        if not difficult:  # the second box is now background: move it out of the image's objects
            gt.images[0] = image(1, [[0, 0, 10, 10]], [1])
        expected = 100.0 if difficult else 50.0  # else FP then TP: precision 1/2 at every recall point
        assert voc07_eval(gt, dets)["AP50"] == pytest.approx(expected, abs=1e-9)
        assert coco_eval(gt, dets)["AP50"] == pytest.approx(expected, abs=1e-9)


def test_coco_eval_without_detections_is_zero() -> None:
    gt, _ = hand_fixture()
    # APs and the one class are 0 too; APm and APl are undefined (no box of that size) and left out
    assert coco_eval(gt, detections([])) == {
        "AP": 0.0,
        "AP50": 0.0,
        "AP75": 0.0,
        "APs": 0.0,
        "per_class_AP": {"cat": 0.0},
    }


# --- loaders


def test_voc_xml_directory_round_trip(tmp_path: Path) -> None:
    objects = {
        "000005": [
            {"name": "dog", "bbox": (5, 6, 30, 40), "difficult": False},
            {"name": "person", "bbox": (2, 2, 10, 12), "difficult": True},
        ],
        "000007": [],
    }
    for stem, objs in objects.items():
        write_annotation(tmp_path / f"{stem}.xml", f"{stem}.jpg", 64, 48, objs)
    gt = load_voc_gt(tmp_path)
    assert gt.categories == list(VOC_CLASSES) and gt.category_ids == list(range(1, 21))
    assert [im.id for im in gt.images] == ["000005", "000007"]
    first = gt.images[0]
    assert (first.width, first.height) == (64, 48)
    assert first.boxes.tolist() == [[4, 5, 30, 40], [1, 1, 10, 12]]
    assert first.labels.tolist() == [12, 15] and first.difficult.tolist() == [False, True]
    assert gt.images[1].boxes.shape == (0, 4)
    assert load_gt(tmp_path).images[0].boxes.tolist() == first.boxes.tolist()


def test_voc_root_split_agrees_with_the_training_loader(tmp_path: Path) -> None:
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (tmp_path / d).mkdir(parents=True)
    write_annotation(tmp_path / "Annotations/a.xml", "a.jpg", 64, 48, [{"name": "zebra", "bbox": (1, 1, 5, 5)}])
    write_annotation(
        tmp_path / "Annotations/b.xml",
        "b.jpg",
        64,
        48,
        [{"name": "apple", "bbox": (3, 4, 20, 30)}, {"name": "apple", "bbox": (1, 1, 9, 9)}],
    )
    (tmp_path / "ImageSets/Main/train.txt").write_text("a\n")
    (tmp_path / "ImageSets/Main/test.txt").write_text("b\n")
    gt, ds = load_gt(tmp_path, "test"), VOCDetection(tmp_path, "test")
    assert gt.categories == list(ds.classes) == ["apple", "zebra"]  # names from every split
    assert [im.id for im in gt.images] == ds.ids == ["b"]
    target = ds._targets[0]
    assert gt.images[0].boxes.tolist() == target["boxes"].tolist() == [[2, 3, 20, 30], [0, 0, 9, 9]]
    assert gt.images[0].labels.tolist() == target["labels"].tolist() == [1, 1]


def test_coco_gt_round_trip(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 42, "width": 640, "height": 480}, {"id": 7, "width": 32, "height": 32}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 9, "bbox": [10, 20, 30.5, 40], "iscrowd": 0},
            {"id": 2, "image_id": 42, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 9, "bbox": [1, 1, 2, 2], "ignore": 1},
        ],
        "categories": [{"id": 9, "name": "zebra"}, {"id": 3, "name": "apple"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    gt = load_gt(path)
    assert gt.categories == ["apple", "zebra"] and gt.category_ids == [3, 9]  # sorted by id
    assert [im.id for im in gt.images] == [42, 7] and (gt.images[0].width, gt.images[0].height) == (640, 480)
    assert gt.images[0].boxes.tolist() == [[10, 20, 40.5, 60], [0, 0, 5, 5]]
    assert gt.images[0].labels.tolist() == [2, 1] and gt.images[0].difficult.tolist() == [False, True]
    assert gt.images[1].difficult.tolist() == [True]
    assert load_coco_gt(path).images[1].boxes.tolist() == [[1, 1, 3, 3]]


def test_results_round_trip_and_both_category_spellings(tmp_path: Path) -> None:
    gt, dets = random_fixture(3)
    gt.category_ids = [11, 12, 13, 14]
    path = tmp_path / "dets.json"
    write_coco_results(path, gt, dets)
    entry = json.loads(path.read_text())[0]
    assert entry["image_id"] == gt.images[dets.image_index[0]].id and entry["category_id"] == 10 + dets.labels[0]
    back = load_detections(path, gt)
    assert np.array_equal(back.image_index, dets.image_index) and np.array_equal(back.labels, dets.labels)
    assert np.array_equal(back.scores, dets.scores) and np.allclose(back.boxes, dets.boxes, rtol=0, atol=1e-12)
    named = [
        {"image_id": "img0", "category": "b", "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": "img1", "category_id": 11, "category": "a", "bbox": [0, 0, 0, 0], "score": 1},
    ]
    path.write_text(json.dumps(named))
    back = load_detections(path, gt)
    assert back.image_index.tolist() == [0, 1] and back.labels.tolist() == [2, 1]
    assert back.boxes.tolist() == [[1, 2, 4, 6], [0, 0, 0, 0]] and back.scores.tolist() == [0.5, 1.0]
    path.write_text("[]")
    assert len(load_detections(path, gt)) == 0


def test_detect_eval_scores_a_saved_voc_run(tmp_path: Path) -> None:
    """VOC XMLs + our own detections written with write_coco_results, scored through the file loaders."""
    (tmp_path / "xml").mkdir()
    write_annotation(tmp_path / "xml/A.xml", "A.jpg", 100, 100, [{"name": "cat", "bbox": (1, 1, 10, 10)}])
    write_annotation(tmp_path / "xml/B.xml", "B.jpg", 100, 100, [{"name": "cat", "bbox": (21, 21, 40, 40)}])
    gt = load_gt(tmp_path / "xml")
    cat = gt.categories.index("cat") + 1
    _, dets = hand_fixture()
    dets.labels[:] = cat
    write_coco_results(tmp_path / "dets.json", gt, dets)
    result = detect_eval(tmp_path / "xml", tmp_path / "dets.json", "voc07")
    # only the cat class has boxes, so the means equal the hand-checked values of test_voc07_hand_checked_ap
    assert result == pytest.approx(
        {
            "AP": (2 * 2800 / 33 + 8 * 600 / 11) / 10,
            "AP50": 2800 / 33,
            "AP75": 600 / 11,
            "per_class_AP50/cat": 2800 / 33,
        },
        abs=1e-9,
    )
    coco = detect_eval(tmp_path / "xml", tmp_path / "dets.json", "coco")
    assert set(coco) == {"AP", "AP50", "AP75", "APs", "per_class_AP/cat"} and 0 < coco["AP75"] < coco["AP50"] <= 100
    assert coco["APs"] == coco["AP"] == coco["per_class_AP/cat"]  # one class, every box small
