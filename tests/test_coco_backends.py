"""The coco protocol's two backends: pycocotools (the reference) and faster-coco-eval give the same numbers (to 1e-9)
on the same inputs; the backend is checked where it is set and leaves the result hashes alone at its default."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from test_detection_eval import (
    ROUND_TRIP_DETECTIONS,
    ROUND_TRIP_GT,
    detections,
    hand_fixture,
    random_coco_files,
    random_fixture,
    write_json,
)

from ssl_bench.cli import main
from ssl_bench.config import ConfigError
from ssl_bench.detection.coco import coco_eval, cocoeval_scores
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.detection.detect_eval import detect_eval, score
from ssl_bench.run_config import hashed

FASTER = "faster-coco-eval"
needs_faster = pytest.mark.skipif(
    importlib.util.find_spec("faster_coco_eval") is None, reason='pip install -e ".[faster-coco-eval]"'
)


def assert_same(reference: dict, other: dict) -> None:
    """The same keys, every number (per-class ones too) within 1e-9."""
    assert set(other) == set(reference)
    for key, value in reference.items():
        if isinstance(value, dict):
            assert set(other[key]) == set(value), key
            for name, v in value.items():
                assert other[key][name] == pytest.approx(v, abs=1e-9, rel=0), (key, name)
        else:
            assert other[key] == pytest.approx(value, abs=1e-9, rel=0), key


def both(gt: dict, results: list[dict]) -> tuple[dict, dict]:
    """cocoeval_scores of each backend on its own copy (COCOeval writes into the dicts)."""
    return tuple(cocoeval_scores(copy.deepcopy(gt), copy.deepcopy(results), b) for b in ("pycocotools", FASTER))


def random_set(seed: int, images: int = 150, classes: int = 6, string_ids: bool = False) -> tuple[dict, list[dict]]:
    """A seeded COCO ground truth and results: boxes of every area range, crowd regions, near duplicates, background
    detections, scores on a coarse grid (ties), some images without boxes; image ids sparse (or strings)."""
    rng = np.random.default_rng(seed)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 100 * images), images, replace=False))
    image_ids = [f"im{i}" for i in ids] if string_ids else ids  # "im10" sorts before "im9"
    gt_images, annotations, results = [], [], []
    for image_id in image_ids:
        gt_images.append({"id": image_id, "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 8))):
            w, h = (float(v) for v in rng.uniform(4, 250, 2))
            x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            cat = int(rng.integers(1, classes + 1))
            crowd = int(rng.random() < 0.05)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            for _ in range(int(rng.integers(0, 4))):
                dx, dy, dw, dh = rng.normal(0, 0.1, 4) * [w, h, w, h]
                box = [x + dx, y + dy, max(w + dw, 1.0), max(h + dh, 1.0)]
                results.append(
                    {"image_id": image_id, "category_id": cat, "bbox": box, "score": rng.integers(1, 20) / 20}
                )
        for _ in range(int(rng.integers(0, 12))):
            w, h = (float(v) for v in rng.uniform(4, 200, 2))
            box = [float(rng.uniform(0, 600)), float(rng.uniform(0, 440)), w, h]
            cat = int(rng.integers(1, classes + 1))
            results.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": rng.integers(1, 20) / 20})
    categories = [{"id": k, "name": f"class{k}"} for k in range(1, classes + 1)]
    order = rng.permutation(len(results))
    return {"images": gt_images, "annotations": annotations, "categories": categories}, [results[k] for k in order]


@needs_faster
def test_backends_agree_on_the_round_trip_fixture() -> None:
    reference, faster = both(ROUND_TRIP_GT, ROUND_TRIP_DETECTIONS)
    assert set(reference) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class_AP"}
    assert_same(reference, faster)


@needs_faster
@pytest.mark.parametrize(("seed", "string_ids"), [(0, False), (1, False), (2, True)])
def test_backends_agree_on_a_larger_random_set(seed: int, string_ids: bool) -> None:
    gt, results = random_set(seed, string_ids=string_ids)
    reference, faster = both(gt, results)
    assert all(0 < reference[k] < 100 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")), reference
    assert len(reference["per_class_AP"]) == 6
    assert_same(reference, faster)


@needs_faster
@pytest.mark.parametrize("seed", range(4))
def test_backends_agree_on_files_and_records(seed: int, tmp_path: Path) -> None:
    gt_file, results_file = random_coco_files(seed, tmp_path)  # the files' own contents (coco_eval_files)
    assert_same(
        detect_eval(gt_file, results_file, "coco"), detect_eval(gt_file, results_file, "coco", None, False, FASTER)
    )
    gt, dets = random_fixture(seed)  # records (to_coco), as the in-run evaluation scores them (detect_eval.score)
    assert_same(score("coco", gt, dets), score("coco", gt, dets, FASTER))
    assert score("voc07", gt, dets, FASTER) == score("voc07", gt, dets)  # the backend is coco's only


@needs_faster
def test_backends_agree_without_detections() -> None:
    gt, _ = hand_fixture()
    assert (
        coco_eval(gt, detections([]), FASTER)
        == coco_eval(gt, detections([]))
        == {
            "AP": 0.0,
            "AP50": 0.0,
            "AP75": 0.0,
            "APs": 0.0,
            "per_class_AP": {"cat": 0.0},
        }
    )


@needs_faster
def test_detect_eval_coco_backend_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_file = write_json(tmp_path / "gt.json", ROUND_TRIP_GT)
    results_file = write_json(tmp_path / "results.json", ROUND_TRIP_DETECTIONS)
    argv = ["detect-eval", "--gt", str(gt_file), "--dets", str(results_file), "--protocol", "coco", "--json"]
    assert main(argv) == 0
    reference = json.loads(capsys.readouterr().out)
    assert main([*argv, "--coco-backend", FASTER]) == 0
    assert_same(reference, json.loads(capsys.readouterr().out))
    assert main([*argv, "--coco-backend", "cocoapi"]) == 2
    err = capsys.readouterr().err
    assert "--coco-backend='cocoapi' is not valid; choose one of pycocotools, faster-coco-eval" in " ".join(err.split())


def test_the_backend_is_checked_where_it_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="detection.coco_backend='cocoapi' is not valid; choose one of pycocotools"):
        DetectionConfig(coco_backend="cocoapi").check()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faster_coco_eval" else real(name)
    )
    with pytest.raises(ConfigError) as err:
        DetectionConfig(coco_backend=FASTER).check()
    assert 'pip install -e ".[faster-coco-eval]"' in str(err.value) and "detection.coco_backend" in str(err.value)
    DetectionConfig().check()  # pycocotools, a dependency


def test_the_default_backend_leaves_the_result_hash_alone() -> None:
    assert "coco_backend" not in hashed("detection", DetectionConfig())
    assert hashed("detection", DetectionConfig(coco_backend=FASTER))["coco_backend"] == FASTER
