"""Ground truth and detections in memory, their loaders, and their conversion to COCO dicts.

Boxes are ``xyxy`` in 0-based continuous pixel coordinates everywhere (torchvision's convention and that of
``ssl_bench.data.voc``, which turns VOC's 1-based inclusive ``xmin, ymin`` into ``xmin - 1, ymin - 1``). Labels are
1..C, indexing ``GroundTruth.categories``; 0 stays the background of torchvision's detectors.

Every malformed input raises ``ValueError`` naming the file, the entry and the field, and saying what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssl_bench.data.voc import LAYOUT, VOC_CLASSES, parse_annotation, read_ids, split_files

RESULTS_FORMAT = (
    'a JSON list of {"image_id", "category_id" (or "category": name), "bbox": [x, y, width, height], '
    '"score"} (the COCO results format)'
)
GT_FORMATS = (
    "a COCO instances file (<name>.json with images, annotations, categories), a directory of VOC XML "
    f"files, or a VOC-layout root ({LAYOUT}) with a split"
)


@dataclass
class ImageRecord:
    """One image's objects: boxes (N, 4) xyxy 0-based float64, labels (N,) int64 in 1..C, difficult (N,) bool."""

    id: str | int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if not len(self.boxes) == len(self.labels) == len(self.difficult):
            raise ValueError(
                f"image {self.id!r}: {len(self.boxes)} boxes, {len(self.labels)} labels and "
                f"{len(self.difficult)} difficult flags, expected one of each per object"
            )


@dataclass
class GroundTruth:
    """The evaluated images. Label k means ``categories[k - 1]``; ``category_ids[k - 1]`` is the id the source file
    used for it (1..C unless a COCO file numbered its categories otherwise), so results files can use either."""

    categories: list[str]
    images: list[ImageRecord]
    category_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.category_ids = self.category_ids or list(range(1, len(self.categories) + 1))
        if len(set(self.categories)) != len(self.categories) or len(self.category_ids) != len(self.categories):
            raise ValueError(
                f"categories must be distinct with one id each, got {self.categories} with ids {self.category_ids}"
            )
        for image in self.images:
            bad = (image.labels < 1) | (image.labels > len(self.categories))
            if bad.any():
                raise ValueError(
                    f"image {image.id!r}: labels {image.labels[bad].tolist()} outside 1..{len(self.categories)}"
                )


@dataclass
class Detections:
    """Detected boxes, one row each: image_index (D,) positions in ``GroundTruth.images``, labels (D,) in 1..C,
    boxes (D, 4) xyxy 0-based, scores (D,)."""

    image_index: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.image_index = np.asarray(self.image_index, dtype=np.int64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        sizes = {len(self.image_index), len(self.labels), len(self.boxes), len(self.scores)}
        if len(sizes) != 1:
            raise ValueError(f"detections: image_index, labels, boxes and scores have different lengths {sizes}")

    def __len__(self) -> int:
        return len(self.scores)


def check_detections(gt: GroundTruth, dets: Detections) -> None:
    """Raise ValueError unless every detection names an image and a category of ``gt``, has xmax >= xmin,
    ymax >= ymin and finite numbers (in-memory detections skip the file loaders' checks)."""
    problems = {
        f"image_index outside 0..{len(gt.images) - 1}": (dets.image_index < 0) | (dets.image_index >= len(gt.images)),
        f"label outside 1..{len(gt.categories)}": (dets.labels < 1) | (dets.labels > len(gt.categories)),
        "non-finite box or score": ~np.isfinite(dets.boxes).all(1) | ~np.isfinite(dets.scores),
        "xmax < xmin or ymax < ymin": (dets.boxes[:, 2] < dets.boxes[:, 0]) | (dets.boxes[:, 3] < dets.boxes[:, 1]),
    }
    for problem, bad in problems.items():
        if bad.any():
            raise ValueError(f"detections {np.flatnonzero(bad)[:5].tolist()}: {problem}")


def read_json(path: Path) -> Any:
    """The parsed file; FileNotFoundError or ValueError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None


def _key(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: is {type(entry).__name__}, expected a JSON object")
    if key not in entry:
        raise ValueError(f"{where}: missing the key {key!r} (has {sorted(entry)})")
    return entry[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _xywh(entry: Any, where: str) -> tuple[float, float, float, float]:
    """The entry's bbox [x, y, width, height] (COCO's continuous 0-based pixels) as 0-based xyxy."""
    box = _key(entry, "bbox", where)
    if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box)) and box[2] >= 0 and box[3] >= 0):
        raise ValueError(
            f"{where}: bbox is {box!r}, expected 4 finite numbers [x, y, width, height] with width >= 0 and height >= 0"
        )
    x, y, w, h = (float(v) for v in box)
    return x, y, x + w, y + h


def _image_id(entry: Any, where: str, key: str = "image_id") -> str | int:
    value = _key(entry, key, where)
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"{where}: {key} is {value!r}, expected an integer or a string")
    return value


def _few(values: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return f"{shown}, ... ({len(values)} in all)" if len(values) > n else shown


def load_coco_gt(path: str | Path) -> GroundTruth:
    """A COCO instances json: images {id, width, height}, annotations {image_id, category_id, bbox [x, y, w, h]}
    and categories {id, name}. Labels follow the categories sorted by id; annotations with a true ``iscrowd``,
    ``difficult`` or ``ignore`` become difficult objects."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: is a JSON {type(data).__name__}, expected an object with images, annotations and "
            "categories (COCO instances format)"
        )
    lists = {}
    for key in ("images", "annotations", "categories"):
        value = _key(data, key, str(path))
        if not isinstance(value, list):
            raise ValueError(f"{path}: {key} is {type(value).__name__}, expected a list")
        lists[key] = value
    categories: dict[int, str] = {}
    for k, cat in enumerate(lists["categories"]):
        where = f"{path}: categories[{k}]"
        cat_id, name = _key(cat, "id", where), _key(cat, "name", where)
        if not isinstance(cat_id, int) or isinstance(cat_id, bool) or not isinstance(name, str):
            raise ValueError(f"{where}: id {cat_id!r} and name {name!r}, expected an integer id and a string name")
        if cat_id in categories or name in categories.values():
            raise ValueError(f"{where}: category id {cat_id} or name {name!r} appears twice")
        categories[cat_id] = name
    label = {cat_id: k + 1 for k, cat_id in enumerate(sorted(categories))}
    images: dict[str | int, dict] = {}
    for k, image in enumerate(lists["images"]):
        where = f"{path}: images[{k}]"
        image_id = _image_id(image, where, "id")
        size = [_key(image, key, where) for key in ("width", "height")]
        if not all(_is_number(v) and v > 0 for v in size):
            raise ValueError(f"{where}: width, height = {size}, expected positive numbers")
        if image_id in images:
            raise ValueError(f"{where}: image id {image_id!r} appears twice")
        images[image_id] = {
            "id": image_id,
            "width": int(size[0]),
            "height": int(size[1]),
            "boxes": [],
            "labels": [],
            "difficult": [],
        }
    for k, ann in enumerate(lists["annotations"]):
        where = f"{path}: annotations[{k}]"
        image_id, cat_id, box = _image_id(ann, where), _key(ann, "category_id", where), _xywh(ann, where)
        if image_id not in images:
            raise ValueError(f"{where}: image_id {image_id!r} is not in images (ids: {_few(list(images))})")
        if not isinstance(cat_id, int) or isinstance(cat_id, bool) or cat_id not in label:
            raise ValueError(f"{where}: category_id {cat_id!r} is not in categories (ids: {sorted(categories)})")
        record = images[image_id]
        record["boxes"].append(box)
        record["labels"].append(label[cat_id])
        record["difficult"].append(any(bool(ann.get(key, False)) for key in ("iscrowd", "difficult", "ignore")))
    return GroundTruth(
        categories=[categories[i] for i in sorted(categories)],
        category_ids=sorted(categories),
        images=[ImageRecord(**record) for record in images.values()],
    )


def load_voc_gt(path: str | Path, split: str | None = None, clip_boxes: bool = False) -> GroundTruth:
    """VOC annotations: a directory of XML files (ids are the file stems), or a VOC-layout root with
    ``Annotations/`` and ``ImageSets/Main/<split>.txt`` (``split`` required).

    Categories are ``VOC_CLASSES`` when every name is a Pascal VOC class, else the sorted names. For a VOC-layout
    root the names come from every split under ImageSets/Main, as in ``VOCDetection``, so the labels agree with a
    detector trained on another split of the same root. ``clip_boxes`` clips boxes that leave the image (with a
    warning; empty ones are dropped), as ``VOCDetection`` does for training.
    """
    path = Path(path)
    if (path / "Annotations").is_dir():
        splits = [f.stem for f in split_files(path)]
        if split is None or split not in splits:
            raise ValueError(f"{path} is a VOC-layout root ({LAYOUT}): pass a split, one of {splits} (got {split!r})")
        ids = read_ids(path / "ImageSets" / "Main" / f"{split}.txt")
        others = [i for f in split_files(path) for i in read_ids(f)]
        xml = {i: path / "Annotations" / f"{i}.xml" for i in dict.fromkeys(ids + others)}
        for file in xml.values():
            if not file.is_file():
                raise FileNotFoundError(
                    f"{file} not found: every id in ImageSets/Main/*.txt needs an annotation ({LAYOUT})"
                )
    elif path.is_dir():
        if split is not None:
            raise ValueError(
                f"{path} is a directory of XML files without ImageSets/Main, so split={split!r} does not "
                f"apply; pass a VOC-layout root ({LAYOUT}) to choose a split"
            )
        xml = {f.stem: f for f in sorted(path.glob("*.xml"))}
        ids = list(xml)
        if not ids:
            raise ValueError(f"{path}: no *.xml files and no Annotations/ directory; expected {GT_FORMATS}")
    else:
        raise FileNotFoundError(f"{path} is not a directory; expected {GT_FORMATS}")
    records = {i: parse_annotation(xml[i], clip_boxes) for i in xml}
    names = sorted({o["name"] for r in records.values() for o in r["objects"]})
    categories = list(VOC_CLASSES) if set(names) <= set(VOC_CLASSES) else names
    label = {name: k + 1 for k, name in enumerate(categories)}
    images = []
    for i in ids:
        rec = records[i]
        boxes = np.array([o["bbox"] for o in rec["objects"]], dtype=np.float64).reshape(-1, 4)
        boxes[:, :2] -= 1  # VOC 1-based inclusive -> 0-based xyxy
        images.append(
            ImageRecord(
                id=i,
                width=rec["width"],
                height=rec["height"],
                boxes=boxes,
                labels=[label[o["name"]] for o in rec["objects"]],
                difficult=[o["difficult"] for o in rec["objects"]],
            )
        )
    return GroundTruth(categories=categories, images=images)


def is_coco_file(path: str | Path) -> bool:
    """Whether ``load_gt`` reads ``path`` as a COCO instances json (a ``.json`` file) rather than VOC."""
    path = Path(path)
    return path.suffix == ".json" and path.is_file()


def load_gt(path: str | Path, split: str | None = None, clip_boxes: bool = False) -> GroundTruth:
    """COCO json for a ``.json`` file, VOC for a directory."""
    path = Path(path)
    if is_coco_file(path):
        if split is not None:
            raise ValueError(f"{path} is a COCO json: split={split!r} only applies to a VOC-layout root")
        return load_coco_gt(path)
    if path.is_dir():
        return load_voc_gt(path, split, clip_boxes)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; expected {GT_FORMATS}")
    raise ValueError(f"{path} is neither a .json file nor a directory; expected {GT_FORMATS}")


def load_detections(path: str | Path, gt: GroundTruth) -> Detections:
    """A COCO results json whose image ids are those of ``gt`` (for VOC, the XML stems as strings) and whose
    categories are ``category_id`` (the ids of ``gt.category_ids``) or ``category`` (a name)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: is a JSON {type(data).__name__}, expected {RESULTS_FORMAT}")
    index = {image.id: k for k, image in enumerate(gt.images)}
    by_id = {cat_id: k + 1 for k, cat_id in enumerate(gt.category_ids)}
    by_name = {name: k + 1 for k, name in enumerate(gt.categories)}
    rows = []
    for k, det in enumerate(data):
        where = f"{path}: entry [{k}]"
        image_id = _image_id(det, where)
        if image_id not in index:
            raise ValueError(
                f"{where}: image_id {image_id!r} is not an image of the ground truth (ids: {_few(list(index))})"
            )
        labels = []
        if "category_id" in det:
            cat_id = det["category_id"]
            if not isinstance(cat_id, int) or isinstance(cat_id, bool) or cat_id not in by_id:
                raise ValueError(
                    f"{where}: category_id {cat_id!r} is not a ground-truth category (ids: {_few(gt.category_ids, 10)})"
                )
            labels.append(by_id[cat_id])
        if "category" in det:
            name = det["category"]
            if not isinstance(name, str) or name not in by_name:
                raise ValueError(
                    f"{where}: category {name!r} is not a ground-truth category (names: {_few(gt.categories, 10)})"
                )
            labels.append(by_name[name])
        if not labels:
            raise ValueError(f"{where}: missing the key 'category_id' (or 'category'), expected {RESULTS_FORMAT}")
        if len(set(labels)) > 1:
            raise ValueError(f"{where}: category_id {det['category_id']!r} and category {det['category']!r} disagree")
        box, score = _xywh(det, where), _key(det, "score", where)
        if not _is_number(score):
            raise ValueError(f"{where}: score is {score!r}, expected a finite number")
        rows.append((index[image_id], labels[0], box, float(score)))
    if not rows:
        return Detections(np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros(0))
    image_index, labels, boxes, scores = zip(*rows)
    return Detections(image_index, labels, boxes, scores)


def to_coco(gt: GroundTruth, dets: Detections) -> tuple[dict, list[dict]]:
    """The ground truth as a COCO instances dict and the detections as a COCO results list, ready for pycocotools.

    Images get ids 1..N (position + 1; pycocotools wants integers) with the original id as ``file_name``;
    categories get ids 1..C (the labels); annotation ids start at 1 because COCOeval reads a matched id of 0 as
    "unmatched". Boxes become [x, y, w, h] with w = xmax - xmin, and area = w * h.

    Difficult objects become ``iscrowd: 1``. COCOeval then ignores them: they are not counted in recall, and a
    detection matched to one is neither a true nor a false positive. Two consequences of COCO's crowd rules: a
    crowd region may absorb any number of detections, and the overlap with it is intersection / detection area,
    so a detection lying inside a difficult box is ignored whatever its size.
    """
    check_detections(gt, dets)
    images, annotations = [], []
    for k, image in enumerate(gt.images):
        images.append({"id": k + 1, "width": image.width, "height": image.height, "file_name": str(image.id)})
        for box, label, difficult in zip(image.boxes.tolist(), image.labels.tolist(), image.difficult.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": k + 1,
                    "category_id": label,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": int(difficult),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(gt.categories)]
    results = [
        {"image_id": i + 1, "category_id": label, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
        for i, label, b, s in zip(
            dets.image_index.tolist(), dets.labels.tolist(), dets.boxes.tolist(), dets.scores.tolist()
        )
    ]
    return {"images": images, "annotations": annotations, "categories": categories}, results
