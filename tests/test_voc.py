from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_bench.data.render import CLASSES
from ssl_bench.data.synthetic_voc import VOC_MARKER, _visible_box, write_voc
from ssl_bench.data.voc import VOC_CLASSES, ConcatVOC, VOCDetection, write_annotation

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd-voc" / "BCCD"


@pytest.fixture(scope="module")
def synthetic_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_voc(tmp_path_factory.mktemp("voc") / "set", num_trainval=6, num_test=4, image_size=64, seed=1)


def xml_boxes(xml: Path) -> list[tuple[str, list[int], bool]]:
    """Objects of a VOC file read with plain ElementTree: independent of the loader under test."""
    out = []
    for obj in ET.parse(xml).getroot().iter("object"):
        box = [int(obj.find(f"bndbox/{c}").text) for c in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        out.append((obj.find("name").text, box, obj.find("difficult").text == "1"))  # type: ignore[union-attr]
    return out


def make_voc(
    root: Path,
    objects: list[dict],
    width: int = 64,
    height: int = 48,
    split: str = "train",
    names: tuple[str, ...] = ("img1",),
) -> Path:
    """A hand-made VOC-layout set: one JPEG and one annotation per name, all in one split."""
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (width, height), (90, 140, 200)).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        write_annotation(root / "Annotations" / f"{name}.xml", f"{name}.jpg", width, height, objects)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def test_write_voc_layout(synthetic_voc: Path) -> None:
    root = synthetic_voc
    assert (root / "ImageSets/Main/trainval.txt").read_text().split() == [f"{i:06d}" for i in range(1, 7)]
    assert (root / "ImageSets/Main/test.txt").read_text().split() == [f"{i:06d}" for i in range(7, 11)]
    assert (
        len(list((root / "JPEGImages").glob("*.jpg"))) == 10 and len(list((root / "Annotations").glob("*.xml"))) == 10
    )
    assert json.loads((root / VOC_MARKER).read_text())["num_test"] == 4
    xml = ET.parse(root / "Annotations/000001.xml").getroot()
    assert [xml.find(f"size/{k}").text for k in ("width", "height", "depth")] == ["64", "64", "3"]  # type: ignore[union-attr]
    counts = [len(xml_boxes(p)) for p in sorted((root / "Annotations").glob("*.xml"))]
    assert min(counts) >= 1 and max(counts) <= 4


def test_synthetic_voc_round_trips_through_the_loader(synthetic_voc: Path) -> None:
    train, test = VOCDetection(synthetic_voc, "trainval"), VOCDetection(synthetic_voc, "test")
    assert (len(train), len(test)) == (6, 4)
    assert train.classes == test.classes and set(train.classes) <= set(CLASSES)
    assert list(train.classes) == sorted(train.classes)
    for ds in (train, test):
        for i in range(len(ds)):
            image, target = ds[i]
            assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
            assert target["image_id"].item() == i and target["image_id"].dtype == torch.int64
            written = xml_boxes(synthetic_voc / "Annotations" / f"{ds.ids[i]}.xml")
            expected = torch.tensor([[b[0] - 1, b[1] - 1, b[2], b[3]] for _, b, _ in written], dtype=torch.float32)
            assert target["boxes"].dtype == torch.float32 and torch.equal(target["boxes"], expected)
            assert target["labels"].dtype == torch.int64
            assert [ds.classes[k - 1] for k in target["labels"].tolist()] == [n for n, _, _ in written]
            assert target["difficult"].tolist() == [d for _, _, d in written]
            assert ((target["boxes"] >= 0) & (target["boxes"] <= 64)).all()
            assert ds.annotation(i)["objects"][0]["bbox"] == tuple(written[0][1])


def test_visible_box_is_the_tight_voc_box_of_the_painted_pixels() -> None:
    seen = np.zeros((16, 16), bool)  # supersampled 2x: an 8x8 image
    seen[10:14, 4:10] = True  # image rows 5..6, columns 2..4 (0-based)
    assert _visible_box(seen) == (3, 6, 5, 7)  # 1-based inclusive: xmin = first column + 1
    seen[:] = False
    seen[3, 0:16] = True  # one image row: under two pixels tall
    assert _visible_box(seen) is None


def test_synthetic_boxes_hold_objects(synthetic_voc: Path) -> None:
    ds = VOCDetection(synthetic_voc, "trainval", classes=CLASSES)
    for i in range(len(ds)):
        image, target = ds[i]
        assert target["labels"].min() >= 1 and target["labels"].max() <= len(CLASSES)
        assert [CLASSES[k - 1] for k in target["labels"].tolist()] == [o["name"] for o in ds.annotation(i)["objects"]]
        for x0, y0, x1, y1 in target["boxes"].long().tolist():
            assert x1 - x0 >= 2 and y1 - y0 >= 2 and image[:, y0:y1, x0:x1].float().std() > 5  # not blank sky


def test_write_voc_is_idempotent_and_rewrites_for_new_parameters(tmp_path) -> None:
    root = write_voc(tmp_path / "v", 2, 1, image_size=32, seed=0)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert write_voc(tmp_path / "v", 2, 1, image_size=32, seed=0) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps
    write_voc(tmp_path / "v", 2, 2, image_size=32, seed=0)
    assert (root / "ImageSets/Main/test.txt").read_text().split() == ["000003", "000004"]
    assert json.loads((root / VOC_MARKER).read_text())["num_test"] == 2
    other = write_voc(tmp_path / "w", 2, 1, image_size=32, seed=0)
    assert (other / "Annotations/000002.xml").read_text() == (root / "Annotations/000002.xml").read_text()
    assert (other / "JPEGImages/000002.jpg").read_bytes() == (root / "JPEGImages/000002.jpg").read_bytes()


def test_voc_class_names_give_the_standard_voc_order(tmp_path) -> None:
    objects = [
        {"name": "dog", "bbox": (5, 6, 30, 40), "difficult": False},
        {"name": "person", "bbox": (2, 2, 10, 12), "difficult": True},
    ]
    ds = VOCDetection(make_voc(tmp_path, objects), "train")
    assert ds.classes == VOC_CLASSES and len(VOC_CLASSES) == 20 and VOC_CLASSES[11] == "dog"
    _, target = ds[0]
    assert target["labels"].tolist() == [12, 15]
    assert target["boxes"].tolist() == [[4, 5, 30, 40], [1, 1, 10, 12]]
    assert target["difficult"].tolist() == [False, True]


def test_concatenated_splits_must_share_their_classes(tmp_path) -> None:
    dog = make_voc(tmp_path / "a", [{"name": "dog", "bbox": (2, 2, 20, 20)}])
    cell = make_voc(tmp_path / "b", [{"name": "RBC", "bbox": (2, 2, 20, 20)}])
    classes = (*VOC_CLASSES, "RBC")
    both = ConcatVOC([VOCDetection(dog, "train", classes=classes), VOCDetection(cell, "train", classes=classes)])
    assert len(both) == 2 and both.classes == classes and int(both[1][1]["image_id"]) == 1
    assert both[0][1]["labels"].tolist() == [12] and both[1][1]["labels"].tolist() == [21]
    with pytest.raises(ValueError, match=r"must share one class list, got .*a: \['aeroplane'.*; .*b: \['RBC'\]"):
        ConcatVOC([VOCDetection(dog, "train", classes=VOC_CLASSES), VOCDetection(cell, "train")])


def test_classes_come_from_every_split_and_per_class_files_are_ignored(tmp_path) -> None:
    make_voc(tmp_path, [{"name": "zebra", "bbox": (1, 1, 5, 5), "difficult": False}], split="train", names=("a",))
    make_voc(tmp_path, [{"name": "apple", "bbox": (1, 1, 5, 5), "difficult": False}], split="test", names=("b",))
    (tmp_path / "ImageSets/Main/zebra_train.txt").write_text("a  1\n")
    train, test = VOCDetection(tmp_path, "train"), VOCDetection(tmp_path, "test")
    assert train.classes == test.classes == ("apple", "zebra")
    assert train[0][1]["labels"].tolist() == [2]
    with pytest.raises(ValueError, match=r"b\.xml: class \['apple'\] not in classes \['zebra'\]"):
        VOCDetection(tmp_path, "test", classes=["zebra"])


@pytest.mark.parametrize("missing", ["Annotations", "JPEGImages", "ImageSets/Main/train.txt"])
def test_missing_layout_names_the_expected_layout(tmp_path, missing: str) -> None:
    make_voc(tmp_path, [])
    target = tmp_path / missing
    if target.is_dir():
        for p in target.iterdir():
            p.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(FileNotFoundError) as err:
        VOCDetection(tmp_path, "train")
    message = str(err.value)
    assert str(target) in message
    for part in ("<root>/Annotations/<id>.xml", "<root>/ImageSets/Main/<split>.txt", "<root>/JPEGImages/<id>.jpg"):
        assert part in message
    assert "download=True" in message and "host.robots.ox.ac.uk" in message


def test_missing_root_is_a_file_not_found_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="Annotations"):
        VOCDetection(tmp_path / "nowhere", "train")


BROKEN = {
    "size/height": "<annotation><filename>img1.jpg</filename><size><width>64</width></size></annotation>",
    "name": (
        "<annotation><size><width>64</width><height>48</height></size><object><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    ),
    "bndbox/xmax": (
        "<annotation><size><width>64</width><height>48</height></size><object><name>cat</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><ymax>5</ymax></bndbox></object></annotation>"
    ),
}


@pytest.mark.parametrize("field", list(BROKEN))
def test_missing_field_names_file_and_field(tmp_path, field: str) -> None:
    make_voc(tmp_path, [])
    xml = tmp_path / "Annotations" / "img1.xml"
    xml.write_text(BROKEN[field])
    with pytest.raises(ValueError, match=f"{re.escape(str(xml))}: .*missing the field {field}"):
        VOCDetection(tmp_path, "train")


def test_box_outside_the_image_is_an_error_or_clipped_with_a_warning(tmp_path) -> None:
    make_voc(
        tmp_path,
        [
            {"name": "cat", "bbox": (10, 10, 20, 20), "difficult": False},
            {"name": "dog", "bbox": (30, 5, 40, 15), "difficult": False},
        ],
    )
    xml = tmp_path / "Annotations" / "img1.xml"
    text = xml.read_text().replace("<xmax>20</xmax>", "<xmax>70</xmax>").replace("<ymin>5</ymin>", "<ymin>0</ymin>")
    xml.write_text(text)
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(xml))}: object 0 \(cat\) has box .* = \(10, 10, 70, 20\), outside the 64x48 image.*clip_boxes=True",
    ):
        VOCDetection(tmp_path, "train")
    with pytest.warns(
        UserWarning,
        match=rf"{re.escape(str(xml))}: clipped boxes .*\(10, 10, 70, 20\) -> \(10, 10, 64, 20\).*\(30, 0, 40, 15\) -> \(30, 1, 40, 15\)",
    ):
        ds = VOCDetection(tmp_path, "train", clip_boxes=True)
    assert ds[0][1]["boxes"].tolist() == [[9, 9, 64, 20], [29, 0, 40, 15]]


def test_empty_box_is_an_error_or_dropped(tmp_path) -> None:
    make_voc(
        tmp_path,
        [
            {"name": "cat", "bbox": (10, 10, 20, 20), "difficult": False},
            {"name": "dog", "bbox": (30, 5, 40, 15), "difficult": False},
        ],
    )
    xml = tmp_path / "Annotations" / "img1.xml"
    xml.write_text(xml.read_text().replace("<xmin>30</xmin>", "<xmin>40</xmin>"))  # xmax == xmin: a click, no drag
    with pytest.raises(ValueError, match=r"object 1 \(dog\) has box .* = \(40, 5, 40, 15\)"):
        VOCDetection(tmp_path, "train")
    with pytest.warns(UserWarning, match=r"\(40, 5, 40, 15\) -> dropped \(empty\)"):
        ds = VOCDetection(tmp_path, "train", clip_boxes=True)
    assert ds[0][1]["labels"].tolist() == [ds.classes.index("cat") + 1]


def test_writer_refuses_boxes_the_loader_would_reject(tmp_path) -> None:
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        write_annotation(tmp_path / "a.xml", "a.jpg", 64, 48, [{"name": "cat", "bbox": (0, 1, 10, 10)}])


def test_truncated_image_names_the_file(tmp_path) -> None:
    make_voc(tmp_path, [{"name": "cat", "bbox": (10, 10, 20, 20), "difficult": False}])
    jpg = tmp_path / "JPEGImages" / "img1.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(jpg, quality=95)
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])
    ds = VOCDetection(tmp_path, "train")  # annotations only: no image is decoded up front
    with pytest.raises(OSError, match=f"{re.escape(str(jpg))}: unreadable or truncated image"):
        ds[0]


def test_image_of_the_wrong_size_is_an_error(tmp_path) -> None:
    make_voc(tmp_path, [{"name": "cat", "bbox": (10, 10, 20, 20), "difficult": False}])
    Image.new("RGB", (32, 32)).save(tmp_path / "JPEGImages" / "img1.jpg")
    with pytest.raises(ValueError, match=r"img1\.jpg is 32x32 but its annotation says 64x48"):
        VOCDetection(tmp_path, "train")[0]


@pytest.mark.skipif(not BCCD.is_dir(), reason="the shared BCCD copy is not available")
def test_real_bccd_set() -> None:
    with pytest.raises(ValueError, match=r"BloodImage_00\d+\.xml: object \d+ \(RBC\) has box.*clip_boxes=True"):
        VOCDetection(BCCD, "trainval")
    with pytest.warns(UserWarning) as caught:
        train = VOCDetection(BCCD, "trainval", clip_boxes=True)
    assert sorted({Path(str(w.message).split(":")[0]).name for w in caught}) == [
        "BloodImage_00338.xml",
        "BloodImage_00343.xml",
    ]
    with pytest.warns(UserWarning):
        test = VOCDetection(BCCD, "test", clip_boxes=True)
    assert (len(train), len(test)) == (292, 72)
    assert train.classes == test.classes == ("Platelets", "RBC", "WBC")
    image, target = train[0]
    assert image.shape == (3, 480, 640) and image.dtype == torch.uint8
    assert len(target["boxes"]) == len(train.annotation(0)["objects"]) > 0
    boxes = torch.tensor([o["bbox"] for i in range(len(train)) for o in train.annotation(i)["objects"]])
    assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes[:, :2] >= 1).all()
    assert boxes[:, 2].max() <= 640 and boxes[:, 3].max() <= 480
    total = sum(len(ds.annotation(i)["objects"]) for ds in (train, test) for i in range(len(ds)))
    assert total == 4888 - 2  # every box of the 364 images but the two empty ones
