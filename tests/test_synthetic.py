from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_bench.data import render, synthetic
from ssl_bench.data.render import CLASSES, generate
from ssl_bench.data.synthetic import SyntheticImages, channel_stats, save_grid


def test_generate_is_deterministic_balanced_and_typed() -> None:
    images, labels = generate(40, 16, seed=3)
    again, labels_again = generate(40, 16, seed=3)
    other, _ = generate(40, 16, seed=4)
    assert images.shape == (40, 16, 16, 3) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert np.abs(images.astype(int) - other.astype(int)).mean() > 20
    assert np.bincount(labels, minlength=10).tolist() == [4] * 10
    assert labels[:10].tolist() != list(range(10))  # shuffled, not i % 10
    assert len(set(CLASSES)) == len(CLASSES) == 10


def test_same_seed_draws_the_same_scenes_at_every_size() -> None:
    small, _ = generate(20, 16, seed=0)
    large, _ = generate(20, 32, seed=0)
    other, _ = generate(20, 16, seed=1)
    down = large.astype(float).reshape(20, 16, 2, 16, 2, 3).mean((2, 4))
    assert np.abs(small - down).mean() < 8  # sensor noise and anti-aliasing differ, the scene does not
    assert np.abs(small.astype(float) - other).mean() > 30


@pytest.mark.parametrize("size", [15, 257])
def test_image_size_out_of_range_is_an_error(size: int) -> None:
    with pytest.raises(ValueError, match=r"image_size must be in 16\.\.256"):
        generate(10, size, seed=0)


def test_up_direction_is_visible_in_the_pixels() -> None:
    """Sky above ground: the top rows are brighter and bluer than the bottom rows, so a rotation is predictable."""
    images, _ = generate(300, 32, seed=5)
    x = images.astype(float) / 255
    top, bottom = x[:, :8].mean((1, 2)), x[:, -8:].mean((1, 2))  # (N, 3)
    brighter = top.mean(1) > bottom.mean(1)
    bluer = (top[:, 2] - top[:, 0]) > (bottom[:, 2] - bottom[:, 0])
    assert brighter.mean() > 0.85 and bluer.mean() > 0.8
    flipped = x[:, ::-1]  # the same statistic on upside-down images says the opposite
    assert (flipped[:, :8].mean((1, 2, 3)) > flipped[:, -8:].mean((1, 2, 3))).mean() < 0.15


def test_objects_are_lit_from_above() -> None:
    """A plain one-colour object is brighter in its top half than in its bottom half (dark details aside)."""
    rng = np.random.default_rng(0)
    cls = np.arange(10)
    objects = render._draw_objects(rng, cls, np.full(10, 0.5))
    objects.texture[:, 0] = 0  # plain surface
    objects.c2[:] = objects.c1
    u, v = render._grid(64)
    img = np.full((10, 64, 64, 3), 0.5, np.float32)
    masks = render._paint_objects(img, u, v, objects)
    for k in range(10):
        rows = np.flatnonzero(masks[k].any(1))
        mid = (rows[0] + rows[-1]) // 2
        lum = img[k].mean(-1)
        upper, lower = lum[: mid + 1][masks[k][: mid + 1]], lum[mid + 1 :][masks[k][mid + 1 :]]
        assert upper.max() > lower.max() * 1.1, CLASSES[k]


def test_dataset_caches_and_reloads(tmp_path, monkeypatch) -> None:
    ds = SyntheticImages(tmp_path, "train", 30, image_size=16, seed=2)
    path = tmp_path / "synthetic" / "train-n30-s16-seed2.npz"
    assert ds.path == path and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind
    assert ds.images.shape == (30, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert len(ds) == 30 and ds.classes == CLASSES
    image, label = ds[7]
    assert image.shape == (3, 16, 16) and isinstance(label, int) and label == ds.targets[7]

    def no_generation(*args: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(synthetic, "generate", no_generation)
    again = SyntheticImages(tmp_path, "train", 30, image_size=16, seed=2)
    assert torch.equal(again.images, ds.images) and again.targets == ds.targets


def test_train_and_test_splits_share_no_image(tmp_path) -> None:
    train = SyntheticImages(tmp_path, "train", 40, image_size=16, seed=0)
    test = SyntheticImages(tmp_path, "test", 40, image_size=16, seed=0)
    train_set = {bytes(x.numpy()) for x in train.images}
    assert len(train_set) == 40 and not train_set & {bytes(x.numpy()) for x in test.images}
    assert sorted(train.targets) == sorted(test.targets)  # both balanced
    with pytest.raises(ValueError, match="unknown split 'val'"):
        SyntheticImages(tmp_path, "val", 10, image_size=16)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_cache_is_regenerated_with_a_warning(tmp_path, damage: str) -> None:
    fresh = SyntheticImages(tmp_path, "test", 20, image_size=16, seed=1)
    path = fresh.path
    data = path.read_bytes()
    path.write_bytes(b"not a numpy file" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.warns(UserWarning, match=f"synthetic cache {re.escape(str(path))} is unreadable"):
        again = SyntheticImages(tmp_path, "test", 20, image_size=16, seed=1)
    assert torch.equal(again.images, fresh.images)
    with np.load(path) as f:  # the file was rewritten and is whole again
        assert f["images"].shape == (20, 16, 16, 3)


def test_cache_of_another_version_is_regenerated(tmp_path) -> None:
    fresh = SyntheticImages(tmp_path, "train", 10, image_size=16)
    np.savez(
        fresh.path,
        version=np.int64(render.VERSION - 1),
        images=np.zeros((10, 16, 16, 3), np.uint8),
        labels=np.zeros(10, np.int64),
    )
    with pytest.warns(UserWarning, match="regenerating"):
        again = SyntheticImages(tmp_path, "train", 10, image_size=16)
    assert torch.equal(again.images, fresh.images)


def test_channel_stats_match_torch() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=g)
    mean, std = channel_stats(images)
    x = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), x.mean((0, 2, 3)))
    torch.testing.assert_close(
        torch.tensor(std, dtype=torch.float64), x.transpose(0, 1).reshape(3, -1).std(1, correction=0)
    )


def test_save_grid_draws_one_labelled_row_per_class(tmp_path) -> None:
    images, labels = generate(30, 32, seed=0)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    path = save_grid(tmp_path / "grid.png", tensor, labels.tolist(), CLASSES, per_class=3)
    grid = np.asarray(Image.open(path).convert("RGB"))
    tile, pad, label_w = 96, 4, 100  # 32 px upscaled 3x
    assert grid.shape == (10 * (tile + pad) + pad, label_w + 3 * (tile + pad) + pad, 3)
    first_of_class_2 = int(np.flatnonzero(labels == 2)[0])
    y0, x0 = pad + 2 * (tile + pad), label_w
    np.testing.assert_array_equal(
        grid[y0 : y0 + tile, x0 : x0 + tile], images[first_of_class_2].repeat(3, 0).repeat(3, 1)
    )
    assert (grid[pad : pad + tile, :label_w] < 128).any()  # the class name is written left of the row


def _object_heights(monkeypatch, framing: str) -> np.ndarray:
    """The heights (fraction of the image) of the objects ``generate`` draws with ``framing``."""
    seen = []
    draw = render._draw_objects

    def recording(*args, **kwargs):
        objects = draw(*args, **kwargs)
        seen.append(objects.height)
        return objects

    monkeypatch.setattr(render, "_draw_objects", recording)
    generate(200, 16, seed=0, framing=framing)
    return np.concatenate(seen)


def test_close_framing_makes_the_object_fill_the_scene(monkeypatch) -> None:
    wide, close = _object_heights(monkeypatch, "wide"), _object_heights(monkeypatch, "close")
    (lo, _), (near, _) = render.FRAMINGS["close"]
    # height = scale x (0.75 + 0.45 depth) x the class's relative height, capped by the ground line
    assert close.min() >= lo * (0.75 + 0.45 * near) * render.HEIGHT.min() - 1e-6
    assert close.mean() > 1.6 * wide.mean()
    assert close.max() <= 0.93 + 1e-6  # stands on the ground inside the image


def test_the_configs_framings_are_the_renderers() -> None:
    from ssl_bench import config

    assert config.FRAMINGS == tuple(render.FRAMINGS)


def _background_share(images: np.ndarray) -> np.ndarray:
    """Per image, the share of pixels within sensor noise (12 of 255 in every channel) of the image's median colour."""
    x = images.astype(int)
    median = np.median(x.reshape(len(x), -1, 3), 1)[:, None, None, :]
    return (np.abs(x - median).max(-1) <= 12).mean((1, 2))


def test_bare_framing_leaves_the_object_the_only_cue_of_up() -> None:
    wide, wide_labels = generate(200, 32, seed=0)
    bare, bare_labels = generate(200, 32, seed=0, framing="bare")
    np.testing.assert_array_equal(wide_labels, bare_labels)
    # one flat colour around the object (the outdoor scenes: sky, ground, haze; almost no pixel at their median)
    assert _background_share(bare).min() > 0.75 and _background_share(wide).mean() < 0.2
    top_bottom = np.abs(bare[:, 0].astype(float).mean(1) - bare[:, -1].astype(float).mean(1)).max(-1)
    assert top_bottom.max() < 8  # no sky above ground: the first and last rows are the same colour
    # the object at any height: some scenes show it wholly in the upper half, some wholly in the lower one (on the
    # outdoor scenes it stands on the ground, below the horizon at 42-66% of the height)
    fg = np.abs(bare.astype(int) - np.median(bare.reshape(200, -1, 3), 1)[:, None, None, :]).max(-1) > 12
    rows = np.arange(32)[None, :]
    lowest = np.where(fg.any(2), rows, -1).max(1)
    highest = np.where(fg.any(2), rows, 99).min(1)
    assert (lowest < 16).mean() > 0.08 and (highest >= 16).mean() > 0.08


def test_framing_keeps_the_labels_and_names_its_files(tmp_path) -> None:
    wide, wide_labels = generate(40, 16, seed=1)
    close, close_labels = generate(40, 16, seed=1, framing="close")
    np.testing.assert_array_equal(wide_labels, close_labels)  # the same classes, drawn first
    assert not np.array_equal(wide, close)
    ds = SyntheticImages(tmp_path, "train", 40, image_size=16, seed=1, framing="close")
    assert ds.path.name == "train-n40-s16-seed1-close.npz"
    assert synthetic.dataset_name("close") == "synthetic-close" and synthetic.dataset_name("wide") == "synthetic"
    with pytest.raises(ValueError, match=r"unknown framing 'tight'; valid framings: wide, close, bare"):
        generate(4, 16, seed=0, framing="tight")


def test_close_scenes_load_under_their_own_name_and_picture(tmp_path) -> None:
    from ssl_bench.config import DataConfig

    splits = synthetic.load_synthetic(DataConfig(num_train=20, num_test=10, image_size=16, framing="close"), tmp_path)
    assert splits.info.name == "synthetic-close"
    files = sorted(p.name for p in (tmp_path / "data" / "synthetic").iterdir())
    assert files == ["grid-s16-close.png", "test-n10-s16-seed0-close.npz", "train-n20-s16-seed0-close.npz"]
    wide = synthetic.load_synthetic(DataConfig(num_train=20, num_test=10, image_size=16), tmp_path)
    assert wide.info.name == "synthetic" and not torch.equal(wide.train.images, splits.train.images)
