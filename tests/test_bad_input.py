"""Bad input ends with one clear line naming the problem and the fix: exit 2 for usage/config, 1 for data.

Complements tests/test_cli.py::test_bad_input_gives_one_clear_line_and_exit_code (unknown names, negative epochs),
tests/test_config.py, tests/test_voc.py and tests/test_detect_eval_cli.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from one_error import cli, wide_console  # noqa: F401 (wide_console: autouse fixture)
from PIL import Image

from ssl_bench.backbone import Backbone
from ssl_bench.cli import main
from ssl_bench.config import ConfigError
from ssl_bench.data.types import DataInfo
from ssl_bench.data.voc import write_annotation
from ssl_bench.methods import available_methods
from ssl_bench.methods.jigsaw import JigsawConfig
from ssl_bench.methods.pirl import PIRL
from ssl_bench.run_config import load, method_config, parse_set, requested_keys

METHODS = list(available_methods())
TINY = "resnet18-w0.25"


def run(out: Path, *args: str) -> list[str]:
    return ["run", "--preset", "ci", "--out", str(out), "--no-report", *args]


def info(num_train: int = 100, image_size: int = 32) -> DataInfo:
    return DataInfo("tiny", num_classes=2, num_train=num_train, image_size=image_size, mean=(0.5,) * 3, std=(0.25,) * 3)  # type: ignore[arg-type]


# 1. unknown names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone, message",
    [
        (
            "resnet19",
            "error: unknown backbone 'resnet19'. Did you mean 'resnet18'? Valid backbones: a timm model name "
            "such as resnet18, resnet34, resnet50 or resnet10t, optionally with -smallstem and/or -w<width>",
        ),
        (
            "resnet18-smallstm",
            "error: backbone 'resnet18-smallstm': unknown modifier 'smallstm'; valid modifiers are "
            "'-smallstem' and '-w<width>'",
        ),
    ],
)
def test_unknown_backbone_names_a_close_match_and_the_valid_form(backbone: str, message: str, tmp_path, capsys) -> None:
    code, line = cli(run(tmp_path, "--backbone", backbone), capsys)
    assert code == 2 and line.startswith(message), line
    assert not (tmp_path / "runs").exists()


# 2. wrong type or out of range -----------------------------------------------------------------------------------


def test_non_number_is_a_usage_error(tmp_path, capsys) -> None:
    assert cli(run(tmp_path, "--set", "train.lr=abc"), capsys) == (2, "error: train.lr: expected a number, got 'abc'")


def test_jigsaw_crop_too_small_for_its_tiles_fails_before_any_training(tmp_path, capsys) -> None:
    code, line = cli(run(tmp_path, "--methods", "jigsaw", "--set", "jigsaw.crop=2"), capsys)
    assert code == 2
    assert line == (
        "error: jigsaw.crop=2: its 1 px tiles do not fit in 3x3 cells of 2 // 3 = 0 px; the rule is "
        "1 <= tile <= cell = crop // 3 (tile = 0.75 x cell), so the crop must be at least 3 px (paper: 255 px "
        "crop, 85 px cells, 64 px tiles); set jigsaw.crop >= 3"
    )
    assert not (tmp_path / "runs").exists()


def test_jigsaw_crop_from_a_too_small_image_size_is_a_config_error() -> None:
    cfg = JigsawConfig()  # crop 0: the data's image size
    assert cfg.tile_geometry(32).tile == 8
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "jigsaw.crop=0 (the image size, data.image_size=2): its 1 px tiles do not fit in 3x3 cells of 2 // 3 = 0 px"
        ),
    ):
        cfg.check_data(info(image_size=2))


def test_requested_negatives_above_n_minus_1_are_refused_and_default_ones_capped() -> None:
    small = ["data.num_train=100"]
    cfg = load("ci", parse_set([*small, "npidpp.num_negatives=5000", "pirl.num_negatives=99"]))
    assert requested_keys(cfg, "npidpp") == {"num_negatives"}
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "npidpp.num_negatives=5000 is more than this dataset allows: the memory bank has one slot per training image, "
            "100 here, so at most 99 negatives (N - 1); set npidpp.num_negatives=99 or less, or train on more images"
        ),
    ):
        method_config("npidpp", cfg.method_params["npidpp"]).check_data(info(100), requested_keys(cfg, "npidpp"))
    method_config("pirl", cfg.method_params["pirl"]).check_data(
        info(100), requested_keys(cfg, "pirl")
    )  # 99 = N - 1 fits

    preset_only = load("ci", parse_set(small))  # the ci preset's 1,024 negatives: a default, capped
    assert requested_keys(preset_only, "pirl") == set()
    pirl_cfg = method_config("pirl", preset_only.method_params["pirl"])
    pirl_cfg.check_data(info(100), requested_keys(preset_only, "pirl"))
    with pytest.warns(UserWarning, match=r"1024 negatives requested .* using 99 negatives"):
        assert PIRL(Backbone(TINY), pirl_cfg, info(100)).num_negatives == 99


def test_requested_negatives_above_n_minus_1_stop_the_run_before_training(tmp_path, capsys) -> None:
    argv = run(
        tmp_path,
        "--methods",
        "npidpp",
        "--evals",
        "knn",
        "--epochs",
        "1",
        "--set",
        "data.num_train=100",
        "--set",
        "data.num_test=20",
        "--set",
        "npidpp.num_negatives=5000",
    )
    code, line = cli(argv, capsys)
    assert code == 2 and "npidpp.num_negatives=5000 is more than this dataset allows" in line and "at most 99" in line
    assert not list(tmp_path.glob("runs/*/checkpoint.pt"))


# 3. folder datasets: missing or wrong layout ---------------------------------------------------------------------


def image_tree(
    root: Path,
    splits: tuple[str, ...] = ("train", "test"),
    classes: tuple[str, ...] = ("cat", "dog"),
    per_class: int = 2,
) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.jpg", quality=95)
    return root


def folder_run(out: Path, root: Path) -> list[str]:
    return run(out, "--methods", "random", "--evals", "knn", "--dataset", "folder", "--data-root", str(root))


LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (or val/ instead of test/)"
HOW = "Make one by saving a labelled dataset's images one folder per class (e.g. CIFAR-10 as PNGs)"


def flat(root: Path) -> Path:
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / split / "a.jpg")
    return root


def file(root: Path) -> Path:
    root.write_text("not a folder")
    return root


def no_train(root: Path) -> Path:
    (root / "test" / "cat").mkdir(parents=True)
    return root


def empty_class(root: Path) -> Path:
    image_tree(root, classes=("cat",))
    (root / "train" / "dog").mkdir()
    (root / "test" / "dog").mkdir()
    return root


@pytest.mark.parametrize(
    "make, message",
    [
        (
            file,
            "error: dataset 'folder' needs --data-root pointing at an ImageFolder tree: {layout}; got {root}, which is "
            "a file. {how}",
        ),
        (flat, "error: {root}/train has no class folders; expected {layout}. {how}"),
        (
            no_train,
            "error: {root} is not an ImageFolder tree with train and test splits (no train/); expected {layout}. {how}",
        ),
        (empty_class, "error: {root}/train: Found no valid file for the classes dog. Supported extensions are: .jpg"),
    ],
)
def test_folder_root_of_the_wrong_layout_says_what_is_expected(make, message: str, tmp_path, capsys) -> None:
    root = make(tmp_path / "data")
    code, line = cli(folder_run(tmp_path / "out", root), capsys)
    assert code == 1
    assert line.startswith(message.format(root=root, layout=LAYOUT, how=HOW)), line
    if make is empty_class:
        assert line.endswith(f"put images in every class folder (or remove the empty ones): {LAYOUT}")
    assert not (tmp_path / "out" / "runs").exists()


# 4. unreadable images --------------------------------------------------------------------------------------------


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


@pytest.mark.parametrize(
    "damage, where, reason",
    [
        (truncate, "train/cat/0.jpg", r"\(.*[Tt]runcated.*\)"),
        (garbage, "test/dog/1.jpg", r"\(not an image format PIL knows\)"),
    ],
)
def test_unreadable_image_names_the_file_and_the_fix(damage, where: str, reason: str, tmp_path, capsys) -> None:
    root = image_tree(tmp_path / "data")
    damage(root / where)
    code, line = cli(folder_run(tmp_path / "out", root), capsys)
    assert code == 1
    assert re.fullmatch(
        rf"error: {re.escape(str(root / where))}: unreadable or truncated image {reason}; remove or "
        rf"replace the file",
        line,
    ), line


# 5. VOC annotations (detect-eval on a VOC-layout root) -----------------------------------------------------------


def voc_root(root: Path) -> Path:
    for d in ("Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    write_annotation(root / "Annotations/a.xml", "a.jpg", 64, 48, [{"name": "cat", "bbox": (10, 10, 20, 20)}])
    (root / "ImageSets/Main/test.txt").write_text("a\n")
    return root


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("<xmax>20</xmax>", ""),
            "object 0 (cat) is missing the field bndbox/xmax; add it (a VOC annotation needs "
            "size/width, size/height and, for every <object>, name and bndbox/xmin, ymin, xmax, ymax)",
        ),
        (
            ("<xmax>20</xmax>", "<xmax>70</xmax>"),
            "object 0 (cat) has box (xmin, ymin, xmax, ymax) = (10, 10, 70, 20), outside the 64x48 image",
        ),
    ],
)
def test_broken_voc_annotation_names_file_and_field(edit: tuple[str, str], message: str, tmp_path, capsys) -> None:
    root = voc_root(tmp_path / "voc")
    xml = root / "Annotations/a.xml"
    xml.write_text(xml.read_text().replace(*edit))
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": "a", "category": "cat", "bbox": [9, 9, 11, 11], "score": 0.9}]))
    argv = ["detect-eval", "--gt", str(root), "--split", "test", "--dets", str(dets), "--protocol", "voc07"]
    code, line = cli(argv, capsys)
    assert code == 1
    assert line.startswith(f"error: {xml}: {message}"), line
    if "outside" in message:
        assert "--clip-boxes (ssl-bench detect-eval)" in line


# 6. a non-finite loss; 7. a full disk ---------------------------------------------------------------------------

SMALL = [
    "--evals",
    "knn",
    "--epochs",
    "2",
    "--set",
    "data.num_train=128",
    "--set",
    "data.num_test=40",
    "--set",
    "train.batch_size=32",
    "--set",
    "checkpoint.every_steps=2",
]


def results_rows(out: Path) -> list[str]:
    return (out / "results.csv").read_text().splitlines()


def test_non_finite_loss_stops_keeps_the_last_good_checkpoint_and_finished_rows(tmp_path, capsys, monkeypatch) -> None:
    import torch

    from ssl_bench.methods.supervised import Supervised

    assert main(run(tmp_path, "--methods", "random", *SMALL)) == 0
    kept = results_rows(tmp_path)
    real_step, calls = Supervised.training_step, []

    def nan_at_step_7(self, batch):
        out = real_step(self, batch)
        calls.append(1)
        return {**out, "loss": out["loss"] * float("nan")} if len(calls) == 7 else out

    monkeypatch.setattr(Supervised, "training_step", nan_at_step_7)
    code, line = cli(run(tmp_path, "--methods", "random,supervised", *SMALL), capsys)
    assert code == 1
    assert re.search(
        r"supervised: the loss became nan at epoch 2, step 3; the last good checkpoint \(.*checkpoint\.pt\) "
        r"is kept\. Lower the learning rate",
        line,
    ), line
    (checkpoint,) = tmp_path.glob("runs/supervised_*/checkpoint.pt")
    state = torch.load(checkpoint, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)  # 4 steps an epoch, saved every 2: the step before the NaN
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())
    assert results_rows(tmp_path) == kept  # the finished unit's rows are untouched


def test_full_disk_names_the_file_keeps_finished_work_and_leaves_no_temp_files(tmp_path, capsys, monkeypatch) -> None:
    import errno

    import torch

    from ssl_bench import storage

    assert main(run(tmp_path, "--methods", "random", *SMALL)) == 0
    kept = results_rows(tmp_path)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "checkpoint" in str(f):
            real_save(obj, f, *args, **kwargs)  # a partial file is left behind, as a real ENOSPC would
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(storage.torch, "save", full_disk)
    code, line = cli(run(tmp_path, "--methods", "random,supervised", *SMALL), capsys)
    assert code == 1
    assert re.search(
        r"no space left on the device while writing .*supervised_.*checkpoint\.pt; free some space .* run the "
        r"same command again: finished work is kept",
        line,
    ), line
    assert results_rows(tmp_path) == kept
    assert not list(tmp_path.rglob(".*tmp*")), "temporary files left behind"
    assert not list(tmp_path.glob("runs/supervised_*/checkpoint.pt"))  # nothing half-written under the real name
