"""Every shipped preset loads, resolves and plans; the paper-scale presets hold the paper's numbers (PIRL, 2020,
arXiv:1912.01991) and the small-scale ones the literature's recipe."""

from __future__ import annotations

from importlib import resources
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ssl_bench.backbone import Backbone
from ssl_bench.data.registry import DATASETS
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.engine import lr_factor, optimisation
from ssl_bench.methods import available_methods
from ssl_bench.run_config import available_presets, load, method_config, resolve
from ssl_bench.runner import eval_hash, plan

PRESETS = available_presets()
METHODS = list(available_methods())


def units(name: str) -> dict:
    return {u.method: u for u in plan(load(name, {}))}


def peak_lr(method: str, params: dict, name: str) -> float:
    """The peak rate the engine gives ``method`` under preset ``name`` (its paper rate x batch / 256)."""
    cfg = load(name, {})
    return optimisation(SimpleNamespace(cfg=method_config(method, params)), cfg.train).lr  # type: ignore[arg-type]


def test_the_new_presets_ship() -> None:
    assert {"ci", "default", "quick", "cifar10", "stl10", "imagenet-paper", "voc07+12"} <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_resolves_plans_and_says_what_it_shrinks(name: str) -> None:
    cfg = load(name, {})
    assert PRESETS[name], f"preset {name} has no description"
    assert cfg.preset == name
    assert len(plan(cfg)) == len(cfg.methods) * len(cfg.all_backbones) * len(cfg.seeds)
    text = resources.files("ssl_bench.presets").joinpath(f"{name}.toml").read_text()
    assert any(line.lstrip().startswith("#") and "paper" in line for line in text.splitlines()), (
        f"{name}.toml has no comment relating it to the paper"
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_dataset_is_registered(name: str) -> None:
    dataset = load(name, {}).data.name
    assert dataset in DATASETS, f"preset {name} names dataset {dataset!r}, not one of {sorted(DATASETS)}"


def test_imagenet_paper_pretraining_is_the_papers() -> None:
    cfg = load("imagenet-paper", {})
    assert cfg.backbones == ["resnet50"] and (cfg.data.name, cfg.data.image_size) == ("imagenet", 224)
    assert (cfg.data.num_train, cfg.data.num_test) == (0, 0)  # all of ImageNet
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.lr, cfg.train.weight_decay, cfg.train.warmup_epochs) == (
        1024,
        800,
        None,
        None,
        0.0,
    )  # unset: each method's paper values (run_config.resolve)
    got = units("imagenet-paper")
    assert set(got) == {"random", "supervised", "rotnet", "jigsaw", "npidpp", "pirl"}
    pirl, npid = got["pirl"].method_cfg, got["npidpp"].method_cfg
    assert (pirl.num_negatives, pirl.temperature, pirl.lam, pirl.loss, pirl.transform) == (
        32000,
        0.07,
        0.5,
        "nce",
        "jigsaw",
    )
    assert (npid.num_negatives, npid.temperature, npid.loss) == (32000, 0.07, "nce")
    # the preset restates the paper's values: they are the methods' Config defaults, not overrides of them
    assert pirl == method_config("pirl", {}) and npid == method_config("npidpp", {})
    total = 1251 * 800  # 1,281,167 images / 1,024 per step, 800 epochs
    for method in ("pirl", "npidpp"):
        opt = optimisation(SimpleNamespace(cfg=got[method].method_cfg), cfg.train)  # type: ignore[arg-type]
        assert opt.lr == pytest.approx(0.12) and opt.weight_decay == 1e-4 and opt.momentum == 0.9
        assert opt.lr * lr_factor(total, total, 0) == pytest.approx(1.2e-4)  # cosine down to 0.00012
        assert opt.lr * lr_factor(0, total, 0) == pytest.approx(0.12)  # no warm-up
    jigsaw = got["jigsaw"].method_cfg
    assert (jigsaw.num_permutations, jigsaw.lr, jigsaw.weight_decay, jigsaw.grayscale_p) == (2000, 0.1, 1e-4, 0.66)
    geometry = jigsaw.tile_geometry(cfg.data.image_size)
    assert (geometry.crop, geometry.cell, geometry.tile) == (255, 85, 64)  # Goyal et al.'s tiles
    assert got["rotnet"].method_cfg.all_rotations is True


def test_imagenet_paper_evaluations_are_the_papers() -> None:
    cfg = load("imagenet-paper", {})
    assert cfg.evals == ["linear", "knn", "semisup", "detection"]
    assert (cfg.linear.layers, cfg.linear.max_dims, cfg.linear.epochs, cfg.linear.lr, cfg.linear.weight_decay) == (
        ["all"],
        9216,
        28,
        0.01,
        5e-4,
    )
    assert (cfg.knn.k, cfg.knn.temperature) == (200, 0.07)
    assert cfg.semisup.fractions == [0.01, 0.1] and "finetune" in cfg.semisup.modes
    paper = DetectionConfig()
    assert cfg.detection == DetectionConfig(dataset="voc07+12")  # everything else is the paper's default schedule
    assert (paper.iterations, paper.batch_size, paper.head, paper.freeze_bn, paper.steps) == (
        25000,
        16,
        "c4",
        True,
        [0.68],
    )
    # Detectron2's: FREEZE_AT 2, MIN_SIZE_TRAIN 480..800 ("choice") / MIN_SIZE_TEST 800, ROIAlignV2, L1 box losses
    assert (paper.freeze_at, paper.multiscale, paper.min_size, paper.max_size) == (2, True, 800, 1333)
    assert (paper.roi_aligned, paper.box_loss) == (True, "l1")
    schedule = {m: (d.lr, d.warmup_iters) for m in ("pirl", "jigsaw") for d in [resolve(cfg, m).run.detection]}
    assert schedule == {"pirl": (0.002, 1000), "jigsaw": (0.02, 100)}  # VISSL's VOC07+12 configs


def test_voc07_plus_12_is_the_detection_of_imagenet_paper() -> None:
    cfg, paper = load("voc07+12", {}), load("imagenet-paper", {})
    assert cfg.evals == ["detection"]
    assert cfg.detection == DetectionConfig(dataset="voc07+12") == paper.detection
    mine, theirs = units("voc07+12"), units("imagenet-paper")
    assert set(mine) == set(theirs)
    for method, unit in mine.items():  # the same backbones: voc07+12 reuses what imagenet-paper pretrained ...
        assert unit.pretrain_hash == theirs[method].pretrain_hash, method
        # ... and a detection result of either counts for both
        assert eval_hash(unit, "detection", cfg) == eval_hash(theirs[method], "detection", paper), method


@pytest.mark.parametrize("name, images", [("cifar10", 32), ("stl10", 96)])
def test_small_scale_presets_use_each_methods_paper_rate(name: str, images: int) -> None:
    cfg = load(name, {})
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (200, 256, None)
    assert (cfg.data.name, cfg.data.image_size, cfg.data.num_train, cfg.data.num_test) == (name, images, 0, 0)
    assert cfg.knn.k == 200 and cfg.linear.max_dims == 9216
    assert set(cfg.methods) == set(METHODS) & {
        "random",
        "supervised",
        "autoencoder",
        "rotnet",
        "jigsaw",
        "npidpp",
        "pirl",
    }
    got = units(name)
    assert got["pirl"].method_cfg.num_negatives == 32000 and got["rotnet"].method_cfg.all_rotations is True
    for method, rate in (("pirl", 0.03), ("npidpp", 0.03), ("jigsaw", 0.1), ("rotnet", 0.2), ("supervised", 0.1)):
        assert peak_lr(method, cfg.method_params.get(method, {}), name) == pytest.approx(rate), method  # batch 256


def test_cifar10_uses_the_small_image_stem() -> None:
    (spec,) = load("cifar10", {}).backbones
    model = Backbone(spec).model
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1)) and isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        assert Backbone(spec).eval().forward_map(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_stl10_uses_the_standard_stem_at_96_px() -> None:
    (spec,) = load("stl10", {}).backbones
    backbone = Backbone(spec).eval()
    assert (backbone.model.conv1.kernel_size, backbone.model.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(backbone.model.maxpool, nn.MaxPool2d)
    with torch.no_grad():
        assert backbone.forward_map(torch.zeros(1, 3, 96, 96)).shape[-2:] == (3, 3)  # 96 / 32, as 224 -> 7
