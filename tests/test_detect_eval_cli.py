"""Error messages of detect_eval and the loaders: each names the file and the problem (CLI tests come later)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ssl_bench.data.voc import write_annotation
from ssl_bench.detection.detect_eval import PROTOCOLS, detect_eval
from ssl_bench.detection.records import load_coco_gt, load_gt

GOOD = {"image_id": "A", "category": "cat", "bbox": [0, 0, 10, 10], "score": 0.5}


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    (tmp_path / "xml").mkdir()
    write_annotation(tmp_path / "xml/A.xml", "A.jpg", 100, 100, [{"name": "cat", "bbox": (1, 1, 10, 10)}])
    write_annotation(tmp_path / "xml/B.xml", "B.jpg", 100, 100, [{"name": "dog", "bbox": (21, 21, 40, 40)}])
    return tmp_path / "xml"


def write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_valid_files_score_with_both_protocols(voc_dir: Path, tmp_path: Path) -> None:
    dets = write(tmp_path / "dets.json", [GOOD, dict(GOOD, image_id="B", category="dog", bbox=[20, 20, 20, 20])])
    assert detect_eval(voc_dir, dets, "voc07") == {
        "AP": 100.0,
        "AP50": 100.0,
        "AP75": 100.0,
        "per_class_AP50/cat": 100.0,
        "per_class_AP50/dog": 100.0,
    }
    assert detect_eval(voc_dir, dets, "coco") == pytest.approx(
        {
            "AP": 100.0,
            "AP50": 100.0,
            "AP75": 100.0,
            "APs": 100.0,  # both boxes are small (< 32 x 32); no medium or large box, so no APm or APl
            "per_class_AP/cat": 100.0,
            "per_class_AP/dog": 100.0,
        }
    )


BAD_DETECTIONS = {
    "not json": ("[{'image_id': 'A'}]", r"not a JSON file"),
    "not a list": ({"annotations": []}, r"is a JSON dict, expected a JSON list of .*COCO results format"),
    "missing bbox": ([GOOD, {k: v for k, v in GOOD.items() if k != "bbox"}], r"entry \[1\]: missing the key 'bbox'"),
    "three numbers": ([dict(GOOD, bbox=[0, 0, 10])], r"entry \[0\]: bbox is \[0, 0, 10\], expected 4 finite numbers"),
    "negative width": ([dict(GOOD, bbox=[5, 0, -1, 10])], r"entry \[0\]: bbox is .*width >= 0 and height >= 0"),
    "unknown image": (
        [GOOD, GOOD, dict(GOOD, image_id="C")],
        r"entry \[2\]: image_id 'C' is not an image of the "
        r"ground truth \(ids: 'A', 'B'\)",
    ),
    "int image id": ([dict(GOOD, image_id=1)], r"entry \[0\]: image_id 1 is not an image .*'A', 'B'"),
    "unknown category id": (
        [dict(GOOD, category_id=99)],
        r"entry \[0\]: category_id 99 is not a ground-truth "
        r"category \(ids: 1, 2, 3",
    ),
    "unknown category name": (
        [dict(GOOD, category="zebra")],
        r"category 'zebra' is not a ground-truth category "
        r"\(names: 'aeroplane'",
    ),
    "no category": ([{k: v for k, v in GOOD.items() if k != "category"}], r"missing the key 'category_id' \(or "),
    "categories disagree": ([dict(GOOD, category_id=1)], r"category_id 1 and category 'cat' disagree"),
    "nan score": (
        '[{"image_id": "A", "category": "cat", "bbox": [0, 0, 1, 1], "score": NaN}]',
        r"entry \[0\]: score is nan, expected a finite number",
    ),
    "string score": ([dict(GOOD, score="0.5")], r"entry \[0\]: score is '0.5', expected a finite number"),
}


@pytest.mark.parametrize("case", list(BAD_DETECTIONS))
def test_malformed_detections_name_the_file_entry_and_field(voc_dir: Path, tmp_path: Path, case: str) -> None:
    data, message = BAD_DETECTIONS[case]
    path = write(tmp_path / "dets.json", data)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        detect_eval(voc_dir, path, "voc07")


def test_unknown_protocol_lists_the_valid_ones(voc_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown detection protocol 'voc12'; valid protocols: voc07, coco"):
        detect_eval(voc_dir, write(tmp_path / "dets.json", [GOOD]), "voc12")
    assert list(PROTOCOLS) == ["voc07", "coco"]


COCO_GT = {
    "images": [{"id": 1, "width": 64, "height": 48}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
    "categories": [{"id": 1, "name": "cat"}],
}
# a small cat (10 x 12) and a medium dog (40 x 50), image ids not 1..N, category ids 3 and 8
COCO_GT_TWO_SIZES = {
    "images": [{"id": 17, "width": 100, "height": 100}, {"id": 5, "width": 100, "height": 100}],
    "annotations": [
        {"id": 1, "image_id": 17, "category_id": 3, "bbox": [0.1, 0.2, 10.0, 12.0], "area": 120.0, "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 8, "bbox": [30.3, 20.7, 40.0, 50.0], "area": 2000.0, "iscrowd": 0},
    ],
    "categories": [{"id": 3, "name": "cat"}, {"id": 8, "name": "dog"}],
}
COCO_DETECTIONS = [
    {"image_id": 17, "category_id": 3, "bbox": [0.1, 0.2, 10.0, 12.0], "score": 0.9},
    {"image_id": 5, "category_id": 8, "bbox": [30.3, 20.7, 40.0, 50.0], "score": 0.8},
]
BAD_GT = {
    "not json": ("images: []", r"not a JSON file"),
    "a list": ([], r"is a JSON list, expected an object with images, annotations and categories"),
    "no images": ({k: v for k, v in COCO_GT.items() if k != "images"}, r"missing the key 'images'"),
    "missing bbox": (
        dict(COCO_GT, annotations=[{"id": 1, "image_id": 1, "category_id": 1}]),
        r"annotations\[0\]: missing the key 'bbox'",
    ),
    "unknown image": (
        dict(COCO_GT, annotations=[dict(COCO_GT["annotations"][0], image_id=5)]),
        r"annotations\[0\]: image_id 5 is not in images \(ids: 1\)",
    ),
    "unknown category": (
        dict(COCO_GT, annotations=[dict(COCO_GT["annotations"][0], category_id=2)]),
        r"annotations\[0\]: category_id 2 is not in categories \(ids: \[1\]\)",
    ),
    "no size": (dict(COCO_GT, images=[{"id": 1, "width": 64}]), r"images\[0\]: missing the key 'height'"),
    "duplicate image": (dict(COCO_GT, images=COCO_GT["images"] * 2), r"images\[1\]: image id 1 appears twice"),
}


@pytest.mark.parametrize("case", list(BAD_GT))
def test_malformed_coco_gt_names_the_file_entry_and_field(tmp_path: Path, case: str) -> None:
    data, message = BAD_GT[case]
    path = write(tmp_path / "gt.json", data)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        load_coco_gt(path)


def test_ground_truth_paths_say_what_is_expected(tmp_path: Path, voc_dir: Path) -> None:
    expected = r"expected a COCO instances file .*a directory of VOC XML files, or a VOC-layout root"
    with pytest.raises(
        ValueError,
        match=re.escape(str(tmp_path / "gt.txt")) + r" is neither a \.json file nor a "
        r"directory; " + expected,
    ):
        load_gt(write(tmp_path / "gt.txt", "x"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere.json")) + " not found; " + expected):
        load_gt(tmp_path / "nowhere.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty")) + r": no \*\.xml files"):
        load_gt(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"split='test' does not apply"):
        load_gt(voc_dir, "test")
    with pytest.raises(ValueError, match=r"COCO json: split='test' only applies to a VOC-layout root"):
        load_gt(write(tmp_path / "gt.json", COCO_GT), "test")


def test_voc_root_needs_a_known_split(tmp_path: Path) -> None:
    for d in ("Annotations", "ImageSets/Main"):
        (tmp_path / d).mkdir(parents=True)
    write_annotation(tmp_path / "Annotations/a.xml", "a.jpg", 64, 48, [{"name": "cat", "bbox": (1, 1, 5, 5)}])
    (tmp_path / "ImageSets/Main/test.txt").write_text("a\nb\n")
    for split in (None, "val"):
        with pytest.raises(
            ValueError,
            match=rf"{re.escape(str(tmp_path))} is a VOC-layout root .*pass a split, one "
            rf"of \['test'\] \(got {split!r}\)",
        ):
            load_gt(tmp_path, split)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "Annotations/b.xml")) + " not found"):
        load_gt(tmp_path, "test")


def test_broken_voc_xml_names_the_file(voc_dir: Path, tmp_path: Path) -> None:
    (voc_dir / "B.xml").write_text("<annotation><size><width>64</width></size></annotation>")
    with pytest.raises(ValueError, match=re.escape(str(voc_dir / "B.xml")) + ": .*missing the field size/height"):
        detect_eval(voc_dir, write(tmp_path / "dets.json", [GOOD]), "coco")


def test_cli_prints_the_scores(voc_dir: Path, tmp_path: Path, capsys) -> None:
    from ssl_bench.cli import main

    dets = write(tmp_path / "dets.json", [GOOD, dict(GOOD, image_id="B", category="dog", bbox=[20, 20, 10, 10])])
    assert main(["detect-eval", "--gt", str(voc_dir), "--dets", str(dets), "--protocol", "voc07", "--per-class"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"AP50\W+50\.00", out) and re.search(r"per_class_AP50/cat\W+100\.00", out)


def test_cli_json_prints_every_metric_at_full_precision(tmp_path: Path, capsys) -> None:
    """--json: one JSON object on stdout, per-class included, whose floats are detect_eval's to the last bit."""
    from ssl_bench.cli import main

    gt = write(tmp_path / "gt.json", COCO_GT_TWO_SIZES)
    dets = write(tmp_path / "dets.json", [dict(d, bbox=[b + 0.1 for b in d["bbox"]]) for d in COCO_DETECTIONS])
    for protocol in ("coco", "voc07"):
        assert main(["detect-eval", "--gt", str(gt), "--dets", str(dets), "--protocol", protocol, "--json"]) == 0
        out = capsys.readouterr().out
        printed = json.loads(out)
        assert printed == detect_eval(gt, dets, protocol) and out.count("\n") == 1
        assert all(isinstance(v, float) for v in printed.values())
    assert set(printed) == {"AP", "AP50", "AP75", "per_class_AP50/cat", "per_class_AP50/dog"}  # voc07
    main(["detect-eval", "--gt", str(gt), "--dets", str(dets), "--protocol", "coco", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"AP", "AP50", "AP75", "APs", "APm", "per_class_AP/cat", "per_class_AP/dog"}
    assert 0 < printed["APs"] < 100 and 0 < printed["APm"] < 100
    assert any(len(repr(v)) > 8 for v in printed.values())  # not rounded to the table's two decimals


def test_cli_table_shows_the_area_metrics_and_per_class_on_request(tmp_path: Path, capsys) -> None:
    from ssl_bench.cli import main

    gt = write(tmp_path / "gt.json", COCO_GT_TWO_SIZES)
    argv = ["detect-eval", "--gt", str(gt), "--dets", str(write(tmp_path / "dets.json", COCO_DETECTIONS))]
    assert main([*argv, "--protocol", "coco"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"APs\W+100\.00", out) and re.search(r"APm\W+100\.00", out) and "per_class" not in out
    assert main([*argv, "--protocol", "coco", "--per-class"]) == 0
    assert re.search(r"per_class_AP/dog\W+100\.00", capsys.readouterr().out)


def test_cli_errors_are_one_clear_line(voc_dir: Path, tmp_path: Path, capsys) -> None:
    from ssl_bench.cli import main

    dets = write(tmp_path / "dets.json", [dict(GOOD, image_id="C")])
    assert main(["detect-eval", "--gt", str(voc_dir), "--dets", str(dets), "--protocol", "coco"]) == 1
    err = capsys.readouterr().err
    assert "dets.json" in err and "image_id 'C'" in err and "Traceback" not in err
    assert main(["detect-eval", "--gt", str(voc_dir), "--dets", str(dets), "--protocol", "voc12"]) == 2
    assert "unknown protocol 'voc12'" in capsys.readouterr().err
    assert main(["detect-eval", "--gt", str(tmp_path / "nope"), "--dets", str(dets), "--protocol", "coco"]) == 1
    assert "nope" in capsys.readouterr().err


def test_cli_clip_boxes_option(tmp_path: Path, capsys) -> None:
    from ssl_bench.cli import main

    (tmp_path / "xml").mkdir()
    xml = tmp_path / "xml/A.xml"
    xml.write_text(
        "<annotation><filename>A.jpg</filename><size><width>50</width><height>50</height></size>"
        "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax>"
        "<ymax>60</ymax></bndbox></object></annotation>"
    )
    dets = write(tmp_path / "dets.json", [dict(GOOD, bbox=[0, 0, 20, 50])])
    argv = ["detect-eval", "--gt", str(tmp_path / "xml"), "--dets", str(dets), "--protocol", "voc07"]
    assert main(argv) == 1
    assert "--clip-boxes (ssl-bench detect-eval)" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="clipped boxes"):
        assert main([*argv, "--clip-boxes"]) == 0
    assert re.search(r"AP50\W+100\.00", capsys.readouterr().out)
