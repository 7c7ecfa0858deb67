"""RotNet and Jigsaw: labels match the applied transformation, one CPU step trains the backbone, paper defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError, TrainConfig
from ssl_bench.data.batch import Batch, collate
from ssl_bench.data.jigsaw import JigsawView
from ssl_bench.data.permutations import cache_file_name, permutation_set
from ssl_bench.data.types import DataInfo
from ssl_bench.engine import optimisation
from ssl_bench.methods.jigsaw import Jigsaw, JigsawConfig
from ssl_bench.methods.rotnet import RotationViews, RotNet, RotNetConfig

TINY = "resnet18-w0.25"
INFO = DataInfo(name="t", num_classes=10, num_train=8, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def perm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ssl_bench_cache")


@pytest.fixture(autouse=True)
def private_cache(perm_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_BENCH_CACHE", str(perm_cache))  # never write to ~/.cache from tests


def uint8_images(n: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(n)]


def batch_for(method, images: list[torch.Tensor]) -> Batch:
    transform = method.transform()
    return collate([(transform(img), i % 10, i) for i, img in enumerate(images)])


def step_reaches_backbone(method, images: list[torch.Tensor], metric: str) -> None:
    out = method.training_step(batch_for(method, images))
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    assert 0.0 <= float(out[metric]) <= 1.0
    out["loss"].backward()
    grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_rot90_is_the_authors_counter_clockwise_rotation() -> None:
    x = np.arange(12).reshape(3, 4)
    authors_90 = np.flipud(np.transpose(x))  # Gidaris et al.'s rotate_img(img, 90)
    assert np.array_equal(torch.rot90(torch.from_numpy(x), 1, (-2, -1)).numpy(), authors_90)
    assert authors_90[0, 0] == x[0, -1]  # the top-right corner moves to the top-left


def test_rotnet_all_four_rotations_with_their_labels() -> None:
    method = RotNet(Backbone(TINY), RotNetConfig(), INFO)
    out = method.transform()(uint8_images(1)[0])
    assert out["rotations"].shape == (4, 3, 32, 32) and out["labels"].tolist() == [0, 1, 2, 3]
    for k in range(4):
        assert torch.equal(out["rotations"][k], torch.rot90(out["rotations"][0], k, (-2, -1)))


def test_rotnet_single_rotation_label_matches_the_rotation() -> None:
    crop = RotNet(Backbone(TINY), RotNetConfig(), INFO).transform().crop
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        one = RotationViews(crop, all_rotations=False)(uint8_images(1)[0])
        torch.manual_seed(seed)
        unrotated = RotationViews(crop, all_rotations=True)(uint8_images(1)[0])["rotations"][0]  # same crop draws
        label = int(one["labels"][0])
        assert one["rotations"].shape == (1, 3, 32, 32)
        assert torch.equal(one["rotations"][0], torch.rot90(unrotated, label, (-2, -1)))
        seen.add(label)
    assert seen == {0, 1, 2, 3}


@pytest.mark.parametrize("cfg", [RotNetConfig(), RotNetConfig(all_rotations=False, mlp_head=True)])
def test_rotnet_one_cpu_step(cfg: RotNetConfig) -> None:
    torch.manual_seed(0)
    step_reaches_backbone(RotNet(Backbone(TINY), cfg, INFO), uint8_images(), "rot_acc")


def test_jigsaw_one_cpu_step_with_paper_defaults(perm_cache: Path) -> None:
    torch.manual_seed(0)
    method = Jigsaw(Backbone(TINY), JigsawConfig(), INFO)
    assert method.perms.shape == (2000, 9) and method.classifier.out_features == 2000
    assert (perm_cache / "permutations" / cache_file_name(2000, "maxavg", 0)).is_file()
    batch = batch_for(method, uint8_images())
    assert batch.views["tiles"].shape == (4, 9, 3, 8, 8) and batch.views["perm"].shape == (4,)
    step_reaches_backbone(method, uint8_images(), "perm_acc")


def test_jigsaw_transform_uses_the_method_permutations_and_labels_them() -> None:
    cfg = JigsawConfig(num_permutations=50, grayscale_p=0.0)
    method = Jigsaw(Backbone(TINY), cfg, INFO)
    assert torch.equal(method.perms, permutation_set(50, "maxavg", 0))
    assert "perms" in method.state_dict()
    transform = method.transform()
    identity = JigsawView(32, INFO.mean, INFO.std, torch.arange(9).expand(50, 9), scale=None, grayscale_p=0.0)
    for seed in range(4):
        torch.manual_seed(seed)
        out = transform(uint8_images(1, seed)[0])
        torch.manual_seed(seed)
        plain = identity(uint8_images(1, seed)[0])  # the same draws without the shuffle
        label = int(out["perm"])
        assert torch.equal(out["tiles"][method.perms[label].argsort()], plain["tiles"])


def test_jigsaw_learns_a_fixed_batch() -> None:
    """A few SGD steps on one batch raise the permutation accuracy above chance (the labels carry signal)."""
    torch.manual_seed(0)
    method = Jigsaw(Backbone(TINY), JigsawConfig(num_permutations=10, tile_dim=64), INFO)
    batch = batch_for(method, uint8_images(8))
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = method.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_jigsaw_crop_follows_the_data_or_the_config() -> None:
    assert Jigsaw(Backbone(TINY), JigsawConfig(num_permutations=10), INFO).geometry.tile == 8
    paper = Jigsaw(Backbone(TINY), JigsawConfig(num_permutations=10, crop=255), INFO).geometry
    assert (paper.crop, paper.cell, paper.tile) == (255, 85, 64)


def test_paper_defaults() -> None:
    rot, jig = RotNetConfig(), JigsawConfig()
    assert (rot.lr, rot.weight_decay, rot.momentum, rot.nesterov, rot.all_rotations) == (0.05, 5e-4, 0.9, True, True)
    assert (jig.lr, jig.weight_decay, jig.momentum, jig.nesterov, jig.per_tile_norm) == (0.1, 1e-4, 0.9, False, False)
    assert (jig.num_permutations, jig.permutation_variant, jig.grayscale_p, jig.tile_dim) == (
        2000,
        "maxavg",
        0.66,
        1000,
    )


def test_jigsaw_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"between 1 and 9! = 362880, got 0"):
        JigsawConfig(num_permutations=0).check()
    with pytest.raises(ConfigError, match="choose one of maxavg, maxmin"):
        JigsawConfig(permutation_variant="hamming").check()


def test_rotnet_rate_is_gidaris_per_network_input() -> None:
    """Gidaris et al.: 0.1 at 128 images x 4 rotations. The rate follows the inputs a step sends, so one rotation per
    image trains at the same per-input rate (a quarter of the all-rotations rate at the same image batch)."""
    assert TrainConfig(batch_size=128).resolved(RotNetConfig()).lr == pytest.approx(0.1)
    assert TrainConfig(batch_size=128).resolved(RotNetConfig(all_rotations=False)).lr == pytest.approx(0.025)
    assert TrainConfig(batch_size=128).resolved(JigsawConfig()).lr == pytest.approx(0.05)  # per image, 9 tiles each
    method = RotNet(Backbone(TINY), RotNetConfig(), INFO)
    assert optimisation(method, TrainConfig(batch_size=128)).nesterov is True


def test_jigsaw_tiles_are_normalised_per_tile_only_when_asked() -> None:
    """Goyal et al. (the default): the crop's mean/std normalisation only; Noroozi & Favaro: each tile on its own."""
    image = uint8_images(1)[0]
    perms = permutation_set(10, "maxavg", 0, 3)
    goyal = JigsawView(32, INFO.mean, INFO.std, perms, grayscale_p=0.0)(image)["tiles"]  # (9, 3, t, t)
    noroozi = JigsawView(32, INFO.mean, INFO.std, perms, grayscale_p=0.0, per_tile_norm=True)(image)["tiles"]
    per_tile_mean = noroozi.mean(dim=(-2, -1))
    torch.testing.assert_close(per_tile_mean, torch.zeros_like(per_tile_mean), atol=1e-5, rtol=0)
    assert goyal.mean(dim=(-2, -1)).abs().max() > 0.1  # uniform noise in [0, 1] normalised by 0.5/0.25: not zero
    assert Jigsaw(Backbone(TINY), JigsawConfig(num_permutations=10), INFO).transform().per_tile_norm is False
