"""The protocol labels of detection and svm rows (ssl_bench/protocol.py): written from a config, read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_bench.detection.config import DetectionConfig
from ssl_bench.eval.svm import SVMConfig
from ssl_bench.protocol import NOT_RECORDED, VOCProtocol, data_name, word


def test_each_dataset_is_named_by_what_tells_it_apart(tmp_path: Path) -> None:
    assert data_name(DetectionConfig()) == "synthetic-voc-400-200-128px"
    assert data_name(DetectionConfig(synthetic_trainval=32, synthetic_test=16, synthetic_size=64)) == (
        "synthetic-voc-32-16-64px"
    )
    assert data_name(DetectionConfig(dataset="voc", root=str(tmp_path / "BCCD"))) == "voc:BCCD"
    assert data_name(DetectionConfig(dataset="voc", root=str(tmp_path / "BCCD") + "/")) == "voc:BCCD"
    assert data_name(DetectionConfig(dataset="voc", root=str(tmp_path / "my data, v2"))) == "voc:my_data__v2"
    for devkit_set in ("voc07", "voc07+12"):  # the devkit's own directory name does not matter
        assert data_name(DetectionConfig(dataset=devkit_set, root=str(tmp_path / "anywhere"))) == devkit_set
    assert data_name(SVMConfig(dataset="voc07")) == "voc07"  # svm shares the fields


def test_labels_read_back() -> None:
    cfg = DetectionConfig(dataset="voc07+12", root="VOCdevkit")
    label = VOCProtocol.of("voc07", cfg, cfg.iterations).label
    assert label == "voc07 on voc07+12 trainval->test 25000 it"
    assert VOCProtocol.parse(label) == VOCProtocol("voc07", "voc07+12", "trainval", "test", 25000)
    assert VOCProtocol.parse(label).setting == "voc07+12 trainval->test, 25000 iterations"
    svm = VOCProtocol.of("voc07-svm", SVMConfig(test_split="my test"))
    assert svm.label == "voc07-svm on synthetic-voc-400-200-128px trainval->my_test"
    assert VOCProtocol.parse(svm.label) == svm and svm.iterations is None


@pytest.mark.parametrize("old", ["voc07", "coco", "voc07-svm", " voc07 "])
def test_rows_written_before_the_data_was_recorded_read_as_unknown(old: str) -> None:
    p = VOCProtocol.parse(old)
    assert p == VOCProtocol(old.strip()) and not p.recorded and p.setting == NOT_RECORDED and p.label == old.strip()
    assert not p.same_data(VOCProtocol.parse(old))  # unknown data matches nothing, not even itself


def test_same_data_ignores_only_the_schedule() -> None:
    table1 = VOCProtocol.parse("voc07 on voc07+12 trainval->test 25000 it")
    assert table1.same_data(VOCProtocol.parse("voc07 on voc07+12 trainval->test 100 it"))
    assert table1.same_data(VOCProtocol.parse("voc07 on voc07+12 trainval->test"))
    for other in ("coco on voc07+12 trainval->test 25000 it", "voc07 on voc07 trainval->test 25000 it"):
        assert not table1.same_data(VOCProtocol.parse(other))
    assert not table1.same_data(VOCProtocol.parse("voc07 on voc07+12 train->test 25000 it"))


def test_word() -> None:
    assert word("trainval") == "trainval" and word("a b->c") == "a_b-_c" and word("") == "_"
