"""Detection data in Pascal VOC layout: real VOC, any VOC-layout set (e.g. BCCD) and our synthetic scenes.

Annotations are parsed and validated up front (no image decoding), so a broken file fails at construction with
its name, not in the middle of a training run. XML parsing reuses torchvision's ``VOCDetection.parse_voc_xml``;
torchvision's dataset class itself wants a ``VOCdevkit/VOC<year>`` tree, ours takes the folder that directly holds
Annotations/, ImageSets/Main/ and JPEGImages/.

Box conventions: VOC XML stores 1-based inclusive pixel coordinates (xmin = first column + 1); targets use the
torchvision/Detectron2 0-based ``xyxy`` convention (xmin - 1, ymin - 1, xmax, ymax).
"""

from __future__ import annotations

import copy
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision.datasets import VOCDetection as TorchvisionVOC
from torchvision.transforms.v2.functional import pil_to_tensor

from ssl_bench.config import ConfigError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
LAYOUT = (
    "<root>/Annotations/<id>.xml, <root>/ImageSets/Main/<split>.txt (one image id per line) and "
    "<root>/JPEGImages/<id>.jpg"
)
GET_VOC = (
    "For real Pascal VOC use torchvision.datasets.VOCDetection(<dir>, year='2007', image_set='trainval', "
    "download=True) and pass <dir>/VOCdevkit/VOC2007 as root, or download it from "
    "http://host.robots.ox.ac.uk/pascal/VOC/."
)
# A VOCdevkit directory holds one VOC-layout directory per year, VOC2007/ and VOC2012/: what the official tars unpack
# to and what torchvision's downloader writes under <dir>/VOCdevkit.
VOC_YEARS = {
    "2007": (
        "VOC2007/: trainval 5,011 + test 4,952 images, about 0.9 GB (VOCtrainval_06-Nov-2007.tar, 460 MB, and "
        "VOCtest_06-Nov-2007.tar, 451 MB)"
    ),
    "2012": "VOC2012/: trainval 11,540 images, about 2 GB (VOCtrainval_11-May-2012.tar)",
}
GET_DEVKIT = (
    "Get them with torchvision.datasets.VOCDetection(<dir>, year='2007', image_set='trainval', download=True), "
    "the same with image_set='test', and year='2012', image_set='trainval': they land in <dir>/VOCdevkit/VOC<year> "
    "(pass <dir>/VOCdevkit or <dir>). Or unpack the tars from http://host.robots.ox.ac.uk/pascal/VOC/ "
    "(voc2007/, voc2012/) into one directory: each unpacks to VOCdevkit/VOC<year>."
)
COORDS = ("xmin", "ymin", "xmax", "ymax")
FIELDS = "size/width, size/height and, for every <object>, name and bndbox/xmin, ymin, xmax, ymax"


def read_ids(path: Path) -> list[str]:
    """Image ids of a split file: the first token of every non-empty line."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def split_files(root: Path) -> list[Path]:
    """The split files under ImageSets/Main, without VOC's per-class files (lines '<id> <1|0|-1>')."""
    files = []
    for path in sorted((root / "ImageSets" / "Main").glob("*.txt")):
        with path.open() as f:
            first = next((line for line in f if line.strip()), "")
        if len(first.split()) == 1:
            files.append(path)
    return files


def _field(tree: dict, keys: Sequence[str], xml: Path, where: str) -> str:
    node: Any = tree
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(
                f"{xml}: {where} is missing the field {'/'.join(keys)}; add it (a VOC annotation needs {FIELDS})"
            )
        node = node[key]
    if not isinstance(node, str):
        raise ValueError(f"{xml}: {where} has a malformed field {'/'.join(keys)} (expected one value)")
    return node


def _number(tree: dict, keys: Sequence[str], xml: Path, where: str) -> int:
    text = _field(tree, keys, xml, where)
    try:
        return round(float(text))
    except ValueError:
        raise ValueError(f"{xml}: {where} field {'/'.join(keys)} is {text!r}, not a number") from None


def parse_annotation(xml: Path, clip_boxes: bool = False) -> dict:
    """One VOC XML file as {filename, width, height, objects: [{name, bbox (1-based ints), difficult}]}.

    A valid box satisfies 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height. xmax == xmin would be a one
    pixel wide box by the VOC convention but in practice is a click without a drag in the annotation tool, so it is
    treated as empty. With ``clip_boxes`` a bad box is clipped to the image (dropped if that leaves it empty) and a
    warning names the file; without it the box is an error.
    """
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml}: not a readable XML file ({e})") from None
    tree = TorchvisionVOC.parse_voc_xml(root).get("annotation")
    if not isinstance(tree, dict):
        raise ValueError(f"{xml}: the root element is <{root.tag}>, expected <annotation>")
    width, height = (_number(tree, ("size", k), xml, "the annotation") for k in ("width", "height"))
    if width < 1 or height < 1:
        raise ValueError(f"{xml}: size is {width}x{height}, expected positive width and height")
    objects, fixed = [], []
    for k, obj in enumerate(tree.get("object", [])):
        where = f"object {k}"
        name = _field(obj, ("name",), xml, where).strip()
        box = [_number(obj, ("bndbox", c), xml, f"{where} ({name})") for c in COORDS]
        difficult = bool(_number(obj, ("difficult",), xml, where)) if "difficult" in obj else False
        x0, y0, x1, y1 = box
        if not (1 <= x0 < x1 <= width and 1 <= y0 < y1 <= height):
            if not clip_boxes:
                raise ValueError(
                    f"{xml}: {where} ({name}) has box (xmin, ymin, xmax, ymax) = {tuple(box)}, outside the "
                    f"{width}x{height} image or empty (VOC boxes are 1-based and inclusive: 1 <= xmin < xmax <= width, "
                    f"1 <= ymin < ymax <= height). To clip such boxes to the image with a warning (boxes left empty are "
                    f"dropped) use --set detection.clip_boxes=true or svm.clip_boxes=true (ssl-bench run), --clip-boxes "
                    f"(ssl-bench detect-eval) or clip_boxes=True (Python)."
                )
            x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, width), min(y1, height)
            empty = x0 >= x1 or y0 >= y1
            fixed.append(f"{where} ({name}) {tuple(box)} -> {'dropped (empty)' if empty else (x0, y0, x1, y1)}")
            if empty:
                continue
        objects.append({"name": name, "bbox": (x0, y0, x1, y1), "difficult": difficult})
    if fixed:
        warnings.warn(f"{xml}: clipped boxes to the {width}x{height} image: {'; '.join(fixed)}", stacklevel=3)
    filename = tree.get("filename")
    return {
        "filename": filename if isinstance(filename, str) else "",
        "width": width,
        "height": height,
        "objects": objects,
    }


class VOCDetection(Dataset):
    """One split of a VOC-layout detection set: (image (3, H, W) uint8, target dict) per image.

    ``classes=None`` takes the sorted class names found in the annotations of every split under ImageSets/Main
    (so train and test agree), or ``VOC_CLASSES`` when every name is a Pascal VOC class. Labels are 1..C; 0 is
    the background of torchvision's detectors.
    """

    def __init__(
        self, root: str | Path, split: str, classes: Sequence[str] | None = None, clip_boxes: bool = False
    ) -> None:
        self.root = Path(root)
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        for need in (self.root / "Annotations", self.root / "JPEGImages", split_file):
            if not need.exists():
                raise FileNotFoundError(f"{need} not found: a VOC-layout dataset needs {LAYOUT}. {GET_VOC}")
        self.split = split
        self.ids = read_ids(split_file)
        wanted = list(self.ids)
        if classes is None:  # parse every split once, so the class list does not depend on the split
            seen = set(wanted)
            wanted += [i for f in split_files(self.root) for i in read_ids(f) if not (i in seen or seen.add(i))]
        records = {}
        for image_id in wanted:
            xml = self.root / "Annotations" / f"{image_id}.xml"
            if not xml.is_file():
                raise FileNotFoundError(
                    f"{xml} not found: every id in ImageSets/Main/*.txt needs an annotation ({LAYOUT})"
                )
            records[image_id] = parse_annotation(xml, clip_boxes)
        if classes is None:
            names = sorted({o["name"] for r in records.values() for o in r["objects"]})
            classes = VOC_CLASSES if set(names) <= set(VOC_CLASSES) else names
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"classes must be distinct and non-empty, got {list(classes)}")
        self.classes = tuple(classes)
        index = {name: k + 1 for k, name in enumerate(self.classes)}
        self._records = [records[i] for i in self.ids]
        self._targets = []
        for image_id, rec in zip(self.ids, self._records):
            unknown = sorted({o["name"] for o in rec["objects"]} - set(index))
            if unknown:
                raise ValueError(
                    f"{self.root / 'Annotations' / image_id}.xml: class {unknown} not in classes {list(self.classes)}"
                )
            boxes = torch.tensor([o["bbox"] for o in rec["objects"]], dtype=torch.float32).reshape(-1, 4)
            boxes[:, :2] -= 1  # VOC 1-based inclusive -> 0-based xyxy
            self._targets.append(
                {
                    "boxes": boxes,  # (N, 4)
                    "labels": torch.tensor([index[o["name"]] for o in rec["objects"]], dtype=torch.int64),  # (N,)
                    "difficult": torch.tensor([o["difficult"] for o in rec["objects"]], dtype=torch.bool),  # (N,)
                }
            )

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, i: int) -> Path:
        """JPEGImages/<id>.jpg as in VOC, else the annotation's <filename>."""
        path = self.root / "JPEGImages" / f"{self.ids[i]}.jpg"
        named = self._records[i]["filename"]
        return self.root / "JPEGImages" / named if not path.exists() and named else path

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        path, rec = self.image_path(i), self._records[i]
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: image {self.ids[i]} of split {self.split!r} ({LAYOUT})")
        try:  # PIL, not torchvision.io: torchvision 0.29 deprecated its image decoders
            with Image.open(path) as im:
                image = pil_to_tensor(
                    im.convert("RGB")
                ).contiguous()  # (3, H, W) uint8; convert decodes, truncation -> OSError
        except OSError as e:
            raise OSError(f"{path}: unreadable or truncated image ({e})") from None
        if tuple(image.shape[1:]) != (rec["height"], rec["width"]):
            raise ValueError(
                f"{path} is {image.shape[2]}x{image.shape[1]} but its annotation says {rec['width']}x{rec['height']}"
            )
        target = {k: t.clone() for k, t in self._targets[i].items()}
        target["image_id"] = torch.tensor(i, dtype=torch.int64)
        return image, target

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """Image i's boxes, labels and difficult flags (as ``__getitem__`` gives them) without decoding the image."""
        return {k: t.clone() for k, t in self._targets[i].items()}

    def annotation(self, i: int) -> dict:
        """The parsed record: filename, width, height, objects [{name, bbox (VOC 1-based ints), difficult}]."""
        return copy.deepcopy(self._records[i])


class ConcatVOC(ConcatDataset):
    """Several VOC-layout splits with one class list as one training set (PIRL's VOC07+12: VOC2007 trainval then
    VOC2012 trainval). Items are VOCDetection's, with ``image_id`` the index in the concatenation."""

    def __init__(self, parts: Sequence[VOCDetection]) -> None:
        if len({p.classes for p in parts}) != 1:
            listed = "; ".join(f"{p.root}: {list(p.classes)}" for p in parts)
            raise ValueError(f"the splits to concatenate must share one class list, got {listed}")
        super().__init__(parts)
        self.parts = tuple(parts)
        self.classes = parts[0].classes

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, target = super().__getitem__(i)
        target["image_id"] = torch.tensor(i % len(self), dtype=torch.int64)
        return image, target


# The VOC devkit's image-level classification labels (ImageSets/Main/<class>_<split>.txt): per image and class.
POSITIVE, DIFFICULT, NEGATIVE = 1, 0, -1


def image_labels(dataset: VOCDetection) -> torch.Tensor:
    """(N, C) int8, the VOC devkit's per-class image labels as its ``<class>_<split>.txt`` files hold them: 1 = the
    image has a non-difficult object of the class, 0 = only difficult ones, -1 = none of the class.

    The same rule as OpenMMLab's VOC classification set (mmpretrain ``mmcls/datasets/voc.py``: difficult first, then
    positives over them), read from our parsed annotations; FSSB and VISSL read the devkit's files themselves.
    """
    out = torch.full((len(dataset), len(dataset.classes)), NEGATIVE, dtype=torch.int8)
    for i in range(len(dataset)):
        target = dataset.target(i)
        labels = target["labels"] - 1  # 1..C -> 0..C-1
        out[i, labels[target["difficult"]]] = DIFFICULT
        out[i, labels[~target["difficult"]]] = POSITIVE
    return out


def write_annotation(path: str | Path, filename: str, width: int, height: int, objects: Sequence[dict]) -> None:
    """Write one standard VOC XML file; objects are {name, bbox (1-based inclusive ints), difficult[, truncated]}."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for o in objects:
        x0, y0, x1, y1 = (int(c) for c in o["bbox"])
        if not (1 <= x0 < x1 <= width and 1 <= y0 < y1 <= height):  # the rule parse_annotation checks
            raise ValueError(f"{path}: box {o['bbox']} of {o['name']} is outside the {width}x{height} image or empty")
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(o["name"])
        ET.SubElement(obj, "pose").text = str(o.get("pose", "Unspecified"))
        ET.SubElement(obj, "truncated").text = str(int(bool(o.get("truncated", False))))
        ET.SubElement(obj, "difficult").text = str(int(bool(o.get("difficult", False))))
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(COORDS, (x0, y0, x1, y1)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root, "\t")
    ET.ElementTree(root).write(path, encoding="unicode")


DEVKIT_SETS = {"voc07": (("2007",), "2007"), "voc07+12": (("2007", "2012"), "2007")}  # (train years, test year)


def devkit_root(dataset: str, root_dir: str, train_split: str, test_split: str, section: str = "detection") -> Path:
    """The VOCdevkit directory ``root_dir`` for ``dataset`` (voc07 / voc07+12, the ``<section>.*`` settings: detection
    or svm), checked to hold every year and split it reads."""
    train_years, test_year = DEVKIT_SETS[dataset]
    years = sorted({*train_years, test_year})
    need = " and ".join(f"VOC{y}/" for y in years)
    about = f"{'; '.join(VOC_YEARS[y] for y in years)}. Each VOC<year>/ holds {LAYOUT.replace('<root>', 'VOC<year>')}"
    if not root_dir:
        raise ConfigError(
            f"{section}.dataset={dataset} needs {section}.root=<VOCdevkit dir> holding {need}: {about}. {GET_DEVKIT}"
        )
    root = Path(root_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"{section}.root {root} does not exist; for {section}.dataset={dataset} it should be a "
            f"VOCdevkit directory holding {need}: {about}. {GET_DEVKIT}"
        )
    if not (root / "VOC2007").is_dir() and (root / "VOCdevkit").is_dir():
        root = root / "VOCdevkit"  # the directory given to torchvision's downloader
    if (root / "Annotations").is_dir():
        raise ConfigError(
            f"{section}.root {root} is one year's VOC-layout directory; {section}.dataset={dataset} "
            f"needs its parent, the VOCdevkit directory holding {need} (or use {section}.dataset=voc "
            f"for this directory alone)"
        )
    missing = [f"VOC{y}/" for y in years if not (root / f"VOC{y}").is_dir()]
    if missing:
        raise ConfigError(
            f"{section}.dataset={dataset}: {root} has no {' or '.join(missing)}; it should be a VOCdevkit "
            f"directory holding {need}: {about}. {GET_DEVKIT}"
        )
    for year, split in [(y, train_split) for y in train_years] + [(test_year, test_split)]:
        path = root / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt"
        if not path.is_file():
            own = (
                (
                    " (VOC2007's test set is a download of its own: VOCtest_06-Nov-2007.tar, or torchvision's year='2007', "
                    "image_set='test')"
                )
                if (year, split) == ("2007", "test")
                else ""
            )
            raise ConfigError(
                f"{section}.dataset={dataset} reads split {split!r} of VOC{year}, but {path} is "
                f"missing{own}. {GET_DEVKIT}"
            )
    return root
