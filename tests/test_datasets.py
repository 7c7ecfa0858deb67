"""Named datasets on tiny fixtures written in their real on-disk formats: CIFAR's python pickles, STL-10's binary
files, ImageNet-style ImageFolder trees and an unlabelled folder. Sizes, labels, pixels at their place, class-balanced
caps, the ImageNet-100 class filter, the --download pass-through and the messages for missing data."""

from __future__ import annotations

import io
import os
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar
import torchvision.datasets.stl10
from one_error import cli, wide_console  # noqa: F401 (wide_console: autouse fixture)
from PIL import Image
from torchvision.datasets import CIFAR10, STL10

from ssl_bench.cli import build_parser, main, overrides_from
from ssl_bench.config import ConfigError, DataConfig
from ssl_bench.data import cifar, imagenet
from ssl_bench.data.registry import DATASET_HELP, DATASETS, load_dataset
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.run_config import load

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MARK = (11, 222, 33)  # an RGB pixel written at a known place and read back


@pytest.fixture
def presence_only_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks the md5 sum of every CIFAR / STL-10 file (``_check_integrity`` and ``_load_meta`` call
    ``check_integrity``); a fixture cannot match the real files' sums, so here the check is only that the file exists."""
    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10):
        monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def run(out: Path, *args: str) -> list[str]:
    return ["run", "--preset", "ci", "--out", str(out), "--no-report", "--methods", "random", "--evals", "knn", *args]


def data(name: str, root: Path | str = "", **kw) -> DataConfig:
    return DataConfig(name=name, root=str(root), **{"num_train": 0, "num_test": 0} | kw)


def pixel(image: Image.Image, row: int, col: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image)[row, col])


# CIFAR: the python version -------------------------------------------------------------------------------------


def cifar_rows(labels: list[int], mark_at: int | None = None) -> np.ndarray:
    """(N, 3072) uint8 rows as CIFAR stores them: the 1024 red values, then green, then blue, each row-major 32x32."""
    rows = np.random.default_rng(len(labels)).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    if mark_at is not None:
        for channel, value in enumerate(MARK):
            rows[mark_at, channel * 1024 + 3 * 32 + 5] = value  # row 3, column 5
    return rows


def dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, train_per_class: int = 3, test_per_class: int = 2) -> Path:
    """``<root>/cifar-10-batches-py``: data_batch_1..5, test_batch, batches.meta with the real keys; train image 7 has
    MARK at row 3, column 5."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = [i % 10 for i in range(10 * train_per_class)]
    rows = cifar_rows(labels, mark_at=7)
    for b, idx in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        dump(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": [labels[i] for i in idx],
                "data": rows[idx],
                "filenames": [f"{i}.png" for i in idx],
            },
        )
    test_labels = [i % 10 for i in range(10 * test_per_class)]
    dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels,
            "data": cifar_rows(test_labels),
            "filenames": [f"t{i}.png" for i in range(len(test_labels))],
        },
    )
    dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 10000, "num_vis": 3072})
    return root


def write_cifar100(root: Path) -> Path:
    """``<root>/cifar-100-python``: train, test, meta (fine and coarse labels); train image 150 has MARK."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, per_class, mark in (("train", 2, 150), ("test", 1, None)):
        fine = [i % 100 for i in range(100 * per_class)]
        dump(
            folder / split,
            {
                "filenames": [f"{i}.png" for i in fine],
                "batch_label": split,
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": cifar_rows(fine, mark),
            },
        )
    dump(
        folder / "meta",
        {
            "fine_label_names": [f"class{i:03d}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)],
        },
    )
    return root


def test_cifar10_python_version_sizes_labels_pixel_and_published_stats(tmp_path, presence_only_checksums) -> None:
    splits = load_dataset(data("cifar10", write_cifar10(tmp_path)), tmp_path / "out")
    assert (len(splits.train), len(splits.test), splits.pretrain) == (30, 20, None)
    assert Counter(splits.train.targets) == {c: 3 for c in range(10)} and Counter(splits.test.targets) == {
        c: 2 for c in range(10)
    }
    image, label = splits.train[7]
    assert image.size == (32, 32) and label == 7 and pixel(image, 3, 5) == MARK
    assert splits.info == DataInfo(
        "cifar10", 10, 30, 32, cifar.CIFARS["cifar10"].mean, cifar.CIFARS["cifar10"].std, tuple(CIFAR10_NAMES)
    )
    assert splits.info.mean == (0.4914, 0.4822, 0.4465)  # the published constants, not measured on the fixture


def test_cifar10_root_may_name_the_extracted_folder_itself(tmp_path, presence_only_checksums) -> None:
    root = write_cifar10(tmp_path)
    assert len(load_dataset(data("cifar10", root / "cifar-10-batches-py"), tmp_path / "out").train) == 30


def test_cifar_caps_are_class_balanced_and_fixed_by_the_data_seed(tmp_path, presence_only_checksums) -> None:
    root = write_cifar10(tmp_path)
    splits = load_dataset(data("cifar10", root, num_train=10, num_test=10), tmp_path / "out")
    assert (len(splits.train), len(splits.test), splits.info.num_train) == (10, 10, 10)
    assert Counter(splits.train.targets) == {c: 1 for c in range(10)} and Counter(splits.test.targets) == {
        c: 1 for c in range(10)
    }
    assert [splits.train[i][1] for i in range(10)] == splits.train.targets  # targets match the images they label
    again = load_dataset(data("cifar10", root, num_train=10, num_test=10), tmp_path / "out")
    other = load_dataset(data("cifar10", root, num_train=10, num_test=10, seed=1), tmp_path / "out")
    assert again.train.indices == splits.train.indices != other.train.indices


def test_cifar100_python_version(tmp_path, presence_only_checksums) -> None:
    splits = load_dataset(data("cifar100", write_cifar100(tmp_path)), tmp_path / "out")
    assert (len(splits.train), len(splits.test), splits.info.num_classes) == (200, 100, 100)
    image, label = splits.train[150]
    assert label == 50 and pixel(image, 3, 5) == MARK
    assert splits.info.class_names[:2] == ("class000", "class001") and splits.info.mean == (0.5071, 0.4865, 0.4409)


def test_cifar_files_that_fail_torchvisions_checksums_say_so(tmp_path, capsys) -> None:
    root = write_cifar10(tmp_path / "data")  # real checksums: the fixture's files do not match them
    code, line = cli(run(tmp_path / "out", "--dataset", "cifar10", "--data-root", str(root)), capsys)
    folder = root / "cifar-10-batches-py"
    assert code == 1
    assert line == (
        f"error: CIFAR-10: the files in {folder} do not match torchvision's md5 checksums (an interrupted download "
        f"or extraction?); delete {folder} and run again with --download, or extract cifar-10-python.tar.gz there again"
    )


# CIFAR as an ImageFolder tree (how ~/data/cifar10 is kept) --------------------------------------------------------


def image_tree(root: Path, classes: list[str], per_class: dict[str, int], size: int = 32, ext: str = "png") -> Path:
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                    root / split / name / f"{i}.{ext}"
                )
    return root


def test_cifar10_as_an_image_tree_is_detected_and_measured(tmp_path) -> None:
    root = image_tree(tmp_path / "c10", CIFAR10_NAMES, {"train": 2, "test": 1})
    marked = np.zeros((32, 32, 3), np.uint8)
    marked[3, 5] = MARK
    Image.fromarray(marked).save(root / "train" / "cat" / "0.png")  # lossless: the pixel survives
    splits = load_dataset(data("cifar10", root), tmp_path / "out")
    assert (len(splits.train), len(splits.test)) == (20, 10)
    assert (
        splits.info.name == "cifar10"
        and splits.info.class_names == tuple(CIFAR10_NAMES)
        and splits.info.image_size == 32
    )
    first_cat = splits.train.targets.index(CIFAR10_NAMES.index("cat"))
    assert pixel(splits.train[first_cat][0], 3, 5) == MARK
    assert splits.info.mean != cifar.CIFARS["cifar10"].mean  # measured on these images, not the published constants
    assert all(0.2 < m < 0.6 for m in splits.info.mean)
    capped = load_dataset(data("cifar10", root, num_train=10), tmp_path / "out")
    assert Counter(capped.train.targets) == {c: 1 for c in range(10)}


def test_an_image_tree_with_the_wrong_number_of_classes_is_not_cifar(tmp_path, capsys) -> None:
    root = image_tree(tmp_path / "c3", ["a", "b", "c"], {"train": 1, "test": 1})
    code, line = cli(run(tmp_path / "out", "--dataset", "cifar10", "--data-root", str(root)), capsys)
    assert code == 1
    assert line == (
        f"error: {root}: train/ has 3 class folders and test/ 3; CIFAR-10 has the same 10 in both. For other image "
        f"trees use dataset 'folder'"
    )


# CIFAR: missing data and --download ------------------------------------------------------------------------------


def cifar10_missing(root: Path, found: str, where: str = "") -> str:
    folder = root / "cifar-10-batches-py"
    return (
        f"error: CIFAR-10 not found in {root}{where}: {found}. Expected the python version, {folder}/ with data_batch_1, "
        f"data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta, or the images as an "
        f"ImageFolder tree, {root}/train/<class>/<image> and {root}/test/<class>/<image>. CIFAR-10: 60,000 32x32 images "
        f"(50,000 train, 10,000 test) in 10 classes, 163 MB as cifar-10-python.tar.gz. Get it with --download (into "
        f"{root}), or download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into {root}."
    )


def test_missing_cifar_names_the_layouts_the_size_and_how_to_get_it(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, line = cli(run(tmp_path / "out", "--dataset", "cifar10", "--data-root", str(empty)), capsys)
    assert code == 1 and line == cifar10_missing(empty, "neither layout is there")
    assert not (tmp_path / "out" / "runs").exists()

    code, line = cli(run(tmp_path / "out", "--dataset", "cifar10"), capsys)  # no --data-root: <out>/data
    assert code == 1 and line == cifar10_missing(
        tmp_path / "out" / "data", "neither layout is there", " (no --data-root given)"
    )

    partial = write_cifar10(tmp_path / "partial")
    (partial / "cifar-10-batches-py" / "data_batch_3").unlink()
    code, line = cli(run(tmp_path / "out", "--dataset", "cifar10", "--data-root", str(partial)), capsys)
    assert code == 1 and line == cifar10_missing(partial, f"{partial / 'cifar-10-batches-py'} lacks data_batch_3")


def test_download_flag_reaches_torchvisions_downloader(tmp_path, monkeypatch, presence_only_checksums) -> None:
    calls = []

    def fake_download(url: str, download_root: str, extract_root=None, filename=None, md5=None, **kw) -> None:
        calls.append((url, download_root, filename, md5))
        write_cifar10(Path(download_root))  # what extracting the archive leaves

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fake_download)
    args = build_parser().parse_args(["run", "--dataset", "cifar10", "--download"])
    assert overrides_from(args)["data"] == {"name": "cifar10", "download": True}
    assert "download" not in overrides_from(build_parser().parse_args(["run"])).get(
        "data", {}
    )  # the preset's value stands
    cfg = load("ci", overrides_from(args))
    assert cfg.data.download is True
    splits = load_dataset(cfg.data, tmp_path / "out")  # root "": <out>/data
    assert calls == [(CIFAR10.url, str(tmp_path / "out" / "data"), "cifar-10-python.tar.gz", CIFAR10.tgz_md5)]
    assert len(splits.train) == 30
    load_dataset(cfg.data, tmp_path / "out")  # present now: nothing downloaded again
    assert len(calls) == 1


# STL-10 ----------------------------------------------------------------------------------------------------------


def stl_images(n: int, seed: int, mark: tuple[int, int, int] | None = None) -> np.ndarray:
    """(N, 3, 96, 96) uint8 in STL-10's file order: per channel, column-major ([n, channel, column, row]);
    ``mark`` = (image, row, column) gets MARK."""
    x = np.random.default_rng(seed).integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
    if mark is not None:
        i, row, col = mark
        x[i, :, col, row] = MARK
    return x


def write_stl10(root: Path, unlabeled: int = 12, train_per_class: int = 2, test_per_class: int = 1) -> Path:
    """``<root>/stl10_binary``: unlabeled image 4 has MARK at row 10, column 40; train image 3 at row 90, column 5."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    stl_images(unlabeled, 0, (4, 10, 40)).tofile(folder / "unlabeled_X.bin")
    for split, per_class, mark in (("train", train_per_class, (3, 90, 5)), ("test", test_per_class, None)):
        labels = np.array([1 + i % 10 for i in range(10 * per_class)], np.uint8)  # 1-based in the files
        stl_images(len(labels), 1, mark).tofile(folder / f"{split}_X.bin")
        labels.tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text(
        "\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n"
    )
    return root


def test_stl10_pretrains_on_unlabeled_and_evaluates_on_train_and_test(tmp_path, presence_only_checksums) -> None:
    splits = load_dataset(data("stl10", write_stl10(tmp_path)), tmp_path / "out")
    assert (len(splits.pretrain), len(splits.train), len(splits.test)) == (12, 20, 10)
    assert splits.pretraining() is splits.pretrain
    assert set(splits.pretrain.labels.tolist()) == {-1}
    assert (
        Counter(splits.train.labels.tolist()) == {c: 2 for c in range(10)} and splits.train[0][1] == 0
    )  # 1-based file
    image, label = splits.pretrain[4]
    assert image.size == (96, 96) and label == -1 and pixel(image, 10, 40) == MARK and pixel(image, 40, 10) != MARK
    assert pixel(splits.train[3][0], 90, 5) == MARK
    info = splits.info
    assert (info.name, info.num_classes, info.num_train, info.image_size) == ("stl10", 10, 12, 96)
    assert info.class_names[7] == "monkey"


def test_stl10_caps_and_image_size(tmp_path, presence_only_checksums) -> None:
    root = write_stl10(tmp_path, unlabeled=30)
    splits = load_dataset(data("stl10", root, num_train=10, num_test=5, image_size=64), tmp_path / "out")
    assert (len(splits.pretrain), len(splits.train), len(splits.test)) == (10, 10, 5)
    assert splits.info.num_train == 10 and splits.info.image_size == 64  # the methods see 64 px
    assert Counter(splits.train.targets) == {c: 1 for c in range(10)} and set(splits.pretrain.targets) == {-1}
    assert len(set(splits.test.targets)) == 5


def test_stl10_download_flag_reaches_torchvisions_downloader(tmp_path, monkeypatch, presence_only_checksums) -> None:
    calls = []

    def fake_download(url: str, download_root: str, extract_root=None, filename=None, md5=None, **kw) -> None:
        calls.append((url, download_root, filename, md5))
        write_stl10(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.stl10, "download_and_extract_archive", fake_download)
    splits = load_dataset(data("stl10", tmp_path / "stl", download=True), tmp_path / "out")
    assert calls == [(STL10.url, str(tmp_path / "stl"), "stl10_binary.tar.gz", STL10.tgz_md5)]
    assert len(splits.pretrain) == 12


def test_missing_stl10_names_the_files_the_size_and_how_to_get_it(tmp_path, capsys) -> None:
    root = tmp_path / "stl"
    root.mkdir()
    code, line = cli(run(tmp_path / "out", "--dataset", "stl10", "--data-root", str(root)), capsys)
    folder = root / "stl10_binary"
    assert code == 1
    assert line == (
        f"error: STL-10 not found in {root}: there is no {folder}. Expected the binary version, {folder}/ with "
        f"train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin, test_y.bin (and class_names.txt). STL-10: "
        f"113,000 96x96 images (100,000 unlabeled, 5,000 labelled train, 8,000 test) in 10 classes, 2.5 GB as "
        f"stl10_binary.tar.gz. Get it with --download (into {root}), or download "
        f"http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz and extract it into {root}."
    )


# ImageNet and ImageNet-100 ---------------------------------------------------------------------------------------


def jpeg_bytes(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (120, 60, 30)).save(buf, "JPEG")
    return buf.getvalue()


def wnid_tree(root: Path, wnids: list[str], per_class: dict[str, int]) -> Path:
    blob = jpeg_bytes()
    for split, n in per_class.items():
        for w in wnids:
            (root / split / w).mkdir(parents=True)
            for i in range(n):
                (root / split / w / f"{w}_{i}.JPEG").write_bytes(blob)
    return root


@pytest.fixture(scope="module")
def imagenet_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 wnid folders with one small JPEG each in train/ and val/."""
    return wnid_tree(tmp_path_factory.mktemp("imagenet"), [f"n{i:08d}" for i in range(1000)], {"train": 1, "val": 1})


def test_imagenet_tree_loads_with_imagenet_normalisation(imagenet_tree, tmp_path) -> None:
    splits = load_dataset(data("imagenet", imagenet_tree), tmp_path / "out")
    assert (len(splits.train), len(splits.test)) == (1000, 1000)
    info = splits.info
    assert (info.name, info.num_classes, info.image_size, info.mean, info.std) == (
        "imagenet",
        1000,
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    )
    assert info.class_names[:2] == ("n00000000", "n00000001") and splits.train.targets[:3] == [0, 1, 2]
    capped = load_dataset(data("imagenet", imagenet_tree, num_train=500, num_test=100), tmp_path / "out")
    assert (len(capped.train), len(capped.test), len(set(capped.train.targets))) == (500, 100, 500)


SIX = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]


def test_imagenet100_keeps_exactly_the_listed_classes(tmp_path) -> None:
    root = wnid_tree(tmp_path / "in", SIX, {"train": 3, "val": 2})
    listed = tmp_path / "mine.txt"
    listed.write_text("# three of six\nn01491361 tiger shark\n\nn01440764 tench\nn01484850\n")
    splits = load_dataset(data("imagenet100", root, classes=str(listed)), tmp_path / "out")
    keep = ["n01440764", "n01484850", "n01491361"]  # sorted: labels 0, 1, 2
    assert (
        splits.info.class_names == tuple(keep) and splits.info.num_classes == 3 and splits.info.name == "imagenet3:mine"
    )
    assert (len(splits.train), len(splits.test)) == (9, 6)
    assert sorted({Path(p).parent.name for p, _ in splits.train.samples}) == keep
    assert all(keep[label] == Path(p).parent.name for p, label in splits.train.samples + splits.test.samples)

    as_list = load_dataset(data("imagenet100", root, classes="n01496331,n01443537"), tmp_path / "out")
    assert as_list.info.class_names == ("n01443537", "n01496331") and as_list.info.name == "imagenet2:list"


def test_imagenet100_defaults_to_cmcs_class_list(tmp_path, capsys) -> None:
    wnids, name = imagenet.class_list("")
    assert name == "imagenet100" and len(set(wnids)) == 100 and all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert (
        wnids[:3] == ["n02869837", "n01749939", "n02488291"] and wnids[-1] == "n02090622"
    )  # CMC's imagenet100.txt order
    root = wnid_tree(
        tmp_path / "in", sorted(wnids) + SIX[:1], {"train": 1, "val": 1}
    )  # ImageNet-100 plus one more class
    splits = load_dataset(data("imagenet100", root), tmp_path / "out")
    assert (
        splits.info.name == "imagenet100"
        and splits.info.class_names == tuple(sorted(wnids))
        and len(splits.train) == 100
    )

    few = wnid_tree(tmp_path / "few", SIX, {"train": 1, "val": 1})
    code, line = cli(run(tmp_path / "out", "--dataset", "imagenet100", "--data-root", str(few)), capsys)
    assert code == 1
    assert line == (
        f"error: {few / 'train'}: 100 of the 100 listed classes have no folder (n02869837, n01749939, n02488291, "
        f"n02107142, n13037406, ...); expected <root>/train/<wnid>/<image> and <root>/val/<wnid>/<image>"
    )


def test_imagenet_errors_say_what_is_expected(tmp_path, capsys) -> None:
    code, line = cli(run(tmp_path / "out", "--dataset", "imagenet", "--data-root", str(tmp_path / "nope")), capsys)
    assert code == 1
    assert line.startswith(
        f"error: dataset 'imagenet' needs --data-root pointing at the ImageNet tree <root>/train/<wnid>/<image> "
        f"and <root>/val/<wnid>/<image>; got {tmp_path / 'nope'}, which does not exist. ImageNet: 1,281,167 "
        f"train and 50,000 val images in 1,000 classes, 138 GB as ILSVRC2012_img_train.tar"
    )
    assert "cannot be downloaded automatically" in line and "https://image-net.org/download-images.php" in line

    flat = wnid_tree(tmp_path / "flat", SIX[:2], {"train": 1})
    (flat / "val").mkdir()
    (flat / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(jpeg_bytes())
    code, line = cli(run(tmp_path / "out", "--dataset", "imagenet", "--data-root", str(flat)), capsys)
    assert code == 1 and line == (
        f"error: {flat / 'val'} holds the validation images without class folders (as "
        f"ILSVRC2012_img_val.tar extracts); sort them into val/<wnid>/ with {imagenet.VALPREP} "
        f"(run it inside val/)"
    )

    small = wnid_tree(tmp_path / "small", SIX, {"train": 1, "val": 1})
    code, line = cli(run(tmp_path / "out", "--dataset", "imagenet", "--data-root", str(small)), capsys)
    assert code == 1 and line == (
        f"error: {small}/train has 6 class folders, ImageNet has 1,000; for a subset use dataset "
        f"imagenet100 with data.classes=<file of wnids>, or dataset folder"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--dataset", "imagenet", "--download"],
            "error: --download: ImageNet cannot be downloaded automatically (its "
            "licence asks for an account): sign in at https://image-net.org/download-images.php",
        ),
        (
            ["--dataset", "folder", "--download"],
            "error: --download: dataset 'folder' has nothing to download; the datasets "
            "that download are cifar10, cifar100, stl10",
        ),
        (
            ["--dataset", "cifar10", "--set", "data.classes=a.txt"],
            "error: data.classes is the class list of dataset imagenet100; dataset 'cifar10' does not use it",
        ),
        (
            ["--dataset", "imagenet100", "--data-root", ".", "--set", "data.classes=n01440764,n01440764"],
            "error: data.classes='n01440764,n01440764' repeats n01440764; list at least two distinct class folders (wnids)",
        ),
        (
            ["--dataset", "imagenet100", "--set", "data.classes=/no/such/file.txt"],
            "error: data.classes='/no/such/file.txt': no such file; give a file with one wnid per line, or the wnids themselves",
        ),
    ],
)
def test_data_options_that_do_not_fit_the_dataset(args: list[str], message: str, tmp_path, capsys) -> None:
    code, line = cli(run(tmp_path / "out", *args), capsys)
    assert line.startswith(message), line
    assert code == (1 if "no such file" in message else 2)


# folder: unlabelled pretraining data ------------------------------------------------------------------------------


def test_a_folder_of_images_without_classes_is_unlabelled_pretraining_data(tmp_path) -> None:
    (tmp_path / "u" / "train").mkdir(parents=True)
    for i in range(5):
        marked = np.full((16, 16, 3), 40 * i, np.uint8)
        marked[3, 5] = MARK
        Image.fromarray(marked).save(tmp_path / "u" / "train" / f"img{i}.png")
    (tmp_path / "u" / "train" / "notes.txt").write_text("not an image")
    splits = load_dataset(data("folder", tmp_path / "u", image_size=16), tmp_path / "out")
    assert (len(splits.train), len(splits.test), splits.info.num_classes, splits.info.num_train) == (5, 0, 0, 5)
    assert splits.train.targets == [-1] * 5 and splits.info.class_names == ()
    image, label = splits.train[2]
    assert label == -1 and pixel(image, 3, 5) == MARK and pixel(image, 0, 0) == (80, 80, 80)
    assert len(load_dataset(data("folder", tmp_path / "u", image_size=16, num_train=3), tmp_path / "out").train) == 3


def test_folder_has_no_native_image_size(tmp_path) -> None:
    root = image_tree(tmp_path / "f", ["a", "b"], {"train": 1, "test": 1})
    with pytest.raises(ConfigError, match="dataset 'folder' has no native image size: set data.image_size"):
        load_dataset(data("folder", root), tmp_path / "out")


# all -------------------------------------------------------------------------------------------------------------


def test_native_image_size_unless_set(tmp_path) -> None:
    assert DataConfig().image_size is None
    synthetic = load_dataset(DataConfig(num_train=10, num_test=10), tmp_path / "out")
    assert synthetic.info.image_size == 32 and synthetic.train[0][0].shape == (3, 32, 32)
    imagenet_like = wnid_tree(tmp_path / "in", SIX[:2], {"train": 1, "val": 1})
    assert (
        load_dataset(data("imagenet100", imagenet_like, classes=",".join(SIX[:2])), tmp_path / "out").info.image_size
        == 224
    )
    assert (
        load_dataset(
            data("imagenet100", imagenet_like, classes=",".join(SIX[:2]), image_size=64), tmp_path / "out"
        ).info.image_size
        == 64
    )


def test_splits_pretrain_on_train_unless_a_pretraining_set_is_given() -> None:
    info = DataInfo("x", 2, 3, 32, (0.5,) * 3, (0.25,) * 3)  # type: ignore[arg-type]
    assert Splits([1, 2, 3], [4], info).pretraining() == [1, 2, 3]  # type: ignore[arg-type]
    assert Splits([1, 2, 3], [4], info, pretrain=[]).pretraining() == []  # type: ignore[arg-type]  (an empty set is still it)


def test_every_dataset_is_listed(capsys) -> None:
    assert (
        set(DATASET_HELP)
        == set(DATASETS)
        == {"synthetic", "folder", "cifar10", "cifar100", "stl10", "imagenet", "imagenet100"}
    )
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, text in DATASET_HELP.items():
        assert re.search(rf"^\s*{name}\s+{re.escape(text[:30])}", out, re.M), name


def test_every_detection_dataset_is_listed(capsys) -> None:
    from ssl_bench.detection.config import DATASETS as DETECTION_DATASETS
    from ssl_bench.detection.evaluation import DETECTION_DATASET_HELP

    assert list(DETECTION_DATASET_HELP) == list(DETECTION_DATASETS)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "detection datasets (--set detection.dataset=NAME)" in out
    for name, text in DETECTION_DATASET_HELP.items():
        assert re.search(rf"^\s*{re.escape(name)}\s+{re.escape(text[:30])}", out, re.M), name
