"""Faster R-CNN transfer: detector structure, frozen parts, the caller's backbone left alone, training, inference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Subset
from torchvision.ops import FrozenBatchNorm2d

from ssl_bench.backbone import Backbone
from ssl_bench.data.synthetic_voc import write_voc
from ssl_bench.data.voc import VOCDetection
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.detection.model import Res5Head, build_detector
from ssl_bench.detection.train import lr_factor, predict, train_detector
from ssl_bench.methods import get_method

SMALL = "resnet18-smallstem-w0.25"  # layer3 at stride 4
STANDARD = "resnet18-w0.25"  # layer3 at stride 16
CPU = torch.device("cpu")
SIZE = 64


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> VOCDetection:
    return VOCDetection(write_voc(tmp_path_factory.mktemp("voc"), 8, 4, image_size=SIZE), "trainval")


def pretrained(spec: str) -> Backbone:
    """A backbone with BN statistics of real activations and non-default BN affine parameters, as after pretraining."""
    torch.manual_seed(1)
    backbone = Backbone(spec)
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        backbone.train()(torch.randn(4, 3, SIZE, SIZE))
        for m in bns:
            m.momentum = 0.1
            m.weight.mul_(torch.empty_like(m.weight).uniform_(0.8, 1.2))  # timm's zero-initialised last BNs stay 0
            m.bias.normal_(0, 0.05)
    return backbone.eval()


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_untouched(backbone: Backbone, before: dict[str, torch.Tensor]) -> None:
    after = backbone.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    assert all(p.requires_grad for p in backbone.parameters())


def trunk_of(detector: nn.Module, head: str) -> dict[str, torch.Tensor]:
    """The detector's copy of the backbone, keyed like ``backbone.model.state_dict()``."""
    if head == "c4":
        state = dict(detector.backbone.state_dict())
        state |= {f"layer4.{k}": v for k, v in detector.roi_heads.box_head.res5.state_dict().items()}
    else:
        state = dict(detector.backbone.body.state_dict())
    return {k: v.clone() for k, v in state.items()}


def frozen_bn_state(detector: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.clone()
        for name, m in detector.named_modules()
        if isinstance(m, FrozenBatchNorm2d)
        for k, v in m.state_dict().items()
    }


def tiny_cfg(**kw) -> DetectionConfig:
    return DetectionConfig(min_size=SIZE, max_size=SIZE, batch_size=2, **kw)


@pytest.mark.parametrize(("spec", "stride", "sizes"), [(SMALL, 4, (4, 5, 10, 20, 41)), (STANDARD, 16, (16, 20, 41))])
def test_c4_uses_layer3_as_trunk_and_layer4_as_box_head(spec: str, stride: int, sizes: tuple[int, ...]) -> None:
    backbone = pretrained(spec)
    before = snapshot(backbone)
    det = build_detector(backbone, 10, "c4", min_size=SIZE, max_size=SIZE)
    assert_untouched(backbone, before)
    assert [n for n, _ in det.backbone.named_children()] == [
        "conv1",
        "bn1",
        "act1",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
    ]
    assert det.backbone(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 64, SIZE // stride, SIZE // stride)  # real stride
    assert det.rpn.anchor_generator.sizes == (sizes,)  # 32..512 x 64/800, floored at max(4, stride), deduplicated
    assert det.rpn.head.cls_logits.out_channels == 3 * len(sizes)
    # Detectron2's 12000 pre-NMS proposals x (16 x 16 positions / 50 x 50 at 800 px), at least 300
    assert det.rpn._pre_nms_top_n["training"] == (1229 if stride == 4 else 300)
    assert isinstance(det.roi_heads.box_head, Res5Head)
    assert det.roi_heads.box_roi_pool.output_size == (14, 14)
    assert det.roi_heads.box_head(torch.zeros(5, 64, 14, 14)).shape == (5, 128)
    assert det.roi_heads.box_predictor.cls_score.out_features == 11  # + background
    assert det.roi_heads.box_predictor.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.2)  # Detectron2 init
    assert not det.roi_heads.box_predictor.bbox_pred.bias.any()
    trunk, original = trunk_of(det, "c4"), backbone.model.state_dict()
    assert {k for k in original if "num_batches_tracked" not in k} == set(trunk)
    assert all(torch.equal(v, original[k]) for k, v in trunk.items())


def test_fpn_returns_four_levels_and_a_pooled_one() -> None:
    backbone = pretrained(STANDARD)
    before = snapshot(backbone)
    det = build_detector(backbone, 10, "fpn", min_size=SIZE, max_size=SIZE)
    assert_untouched(backbone, before)
    maps = det.backbone(torch.zeros(1, 3, SIZE, SIZE))
    assert list(maps) == ["0", "1", "2", "3", "pool"]
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2, 1]
    assert det.backbone.out_channels == 128 and all(m.shape[1] == 128 for m in maps.values())  # widest stage < 256
    assert det.rpn.anchor_generator.sizes == ((4,), (8,), (16,), (32,), (64,))  # floored at each level's stride
    trunk, original = trunk_of(det, "fpn"), backbone.model.state_dict()
    assert {k for k in original if "num_batches_tracked" not in k} == set(trunk)
    assert all(torch.equal(v, original[k]) for k, v in trunk.items())


def test_frozen_batch_norm_and_freeze_at() -> None:
    det = build_detector(pretrained(STANDARD), 10, "c4")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in det.modules())
    frozen = {n.split(".")[0] for n, p in det.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}  # bn1 and layer1's BNs have no parameters left
    assert all(p.requires_grad for p in det.backbone.layer2.parameters())

    det = build_detector(pretrained(STANDARD), 10, "c4", freeze_bn=False, freeze_at=3)
    assert isinstance(det.backbone.bn1, FrozenBatchNorm2d) and isinstance(det.backbone.layer2[0].bn1, FrozenBatchNorm2d)
    assert isinstance(det.backbone.layer3[0].bn1, nn.BatchNorm2d)
    assert isinstance(det.roi_heads.box_head.res5[0].bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in det.backbone.layer3.parameters())

    det = build_detector(pretrained(STANDARD), 10, "fpn", freeze_at=0, multiscale=True, min_size=160)
    assert all(p.requires_grad for p in det.parameters())
    assert det.transform.min_size == (96, 102, 109, 115, 122, 128, 134, 141, 147, 154, 160)  # 480..800 x 0.2


def test_bad_arguments_name_the_valid_choices() -> None:
    backbone = Backbone(STANDARD)
    with pytest.raises(ValueError, match="unknown detection head 'c5'; valid heads: c4, fpn"):
        build_detector(backbone, 10, "c5")
    with pytest.raises(ValueError, match=r"freeze_at must be in 0\.\.5"):
        build_detector(backbone, 10, freeze_at=6)


@pytest.mark.parametrize("head", ["c4", "fpn"])
def test_training_moves_only_the_trainable_parts(voc: VOCDetection, head: str) -> None:
    backbone = pretrained(STANDARD)
    before = snapshot(backbone)
    det = build_detector(backbone, len(voc.classes), head, min_size=SIZE, max_size=SIZE)
    bn, start = frozen_bn_state(det), trunk_of(det, head)
    assert len(bn) == 4 * sum(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())  # weight, bias, mean, var
    logs = train_detector(det, voc, tiny_cfg(iterations=3), 0.02, 1, CPU, seed=0)
    assert [r["iteration"] for r in logs] == [0, 1, 2]
    assert all(math.isfinite(r["loss"]) for r in logs)
    assert logs[0]["lr"] == pytest.approx(0.02 * 0.001) and logs[1]["lr"] == pytest.approx(0.02)
    after = frozen_bn_state(det)
    assert all(torch.equal(v, after[k]) for k, v in bn.items())
    trunk = trunk_of(det, head)
    for name, value in start.items():
        moved = not torch.equal(value, trunk[name])
        if name.startswith(("conv1.", "layer1.")) or "bn" in name or "downsample.1" in name:
            assert not moved, name
        elif name.endswith(".weight"):  # convolutions of layer2..layer4
            assert moved, name
    assert_untouched(backbone, before)


def test_training_is_seeded(voc: VOCDetection) -> None:
    runs = [
        train_detector(
            build_detector(pretrained(STANDARD), 10, min_size=SIZE, max_size=SIZE),
            voc,
            tiny_cfg(iterations=2),
            0.02,
            0,
            CPU,
            seed=3,
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_overfitting_two_images_lowers_the_loss(voc: VOCDetection) -> None:
    det = build_detector(pretrained(SMALL), len(voc.classes), "c4", min_size=SIZE, max_size=SIZE)
    det.roi_heads.fg_bg_sampler.batch_size_per_image = 64  # speed: 64 sampled RoIs per image instead of 512
    logs = train_detector(det, Subset(voc, [0, 1]), tiny_cfg(iterations=30), 0.005, 3, CPU, seed=0)
    losses = [r["loss"] for r in logs]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses


def test_non_finite_loss_names_the_iteration(voc: VOCDetection) -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, images: list, targets: list) -> dict[str, torch.Tensor]:
            return {"loss_classifier": self.w * float("nan")}

    with pytest.raises(FloatingPointError, match="non-finite detection loss at iteration 0"):
        train_detector(Broken(), voc, tiny_cfg(iterations=2), 0.02, 0, CPU, seed=0)  # type: ignore[arg-type]


def test_predict_gives_boxes_in_original_pixels(voc: VOCDetection) -> None:
    test = VOCDetection(voc.root, "test")
    det = build_detector(pretrained(SMALL), len(voc.classes), "c4", min_size=2 * SIZE, max_size=2 * SIZE)  # upsampled
    out = predict(det, test, CPU, batch_size=3, score_thresh=0.0)
    assert len(out) == len(test) and det.roi_heads.detections_per_img == 100
    for p in out:
        n = len(p["boxes"])
        assert 0 < n <= 100 and p["boxes"].shape == (n, 4) and p["scores"].shape == p["labels"].shape == (n,)
        x0, y0, x1, y1 = p["boxes"].T
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= SIZE).all() and (y1 <= SIZE).all()
        assert (x1 >= x0).all() and (y1 >= y0).all()
        assert ((p["labels"] >= 1) & (p["labels"] <= len(voc.classes))).all()
        assert ((p["scores"] >= 0) & (p["scores"] <= 1)).all()
    assert max(p["boxes"].max() for p in out) > SIZE / 2  # spread over the image, not squeezed into a corner
    predict(det, Subset(test, [0]), CPU)
    assert det.roi_heads.score_thresh == 0.05  # Detectron2's default


def paper_schedule(method: str, cfg: DetectionConfig) -> tuple[float, int]:
    """(lr, warm-up) of ``cfg`` resolved with ``method``'s detection schedule, as run_config.resolve does."""
    out = cfg.resolved(get_method(method).detection_schedule)
    return out.lr, out.warmup_iters


def test_paper_schedule() -> None:
    cfg = DetectionConfig()  # batch 16, 25k iterations
    assert paper_schedule("supervised", cfg) == (0.02, 100)
    assert paper_schedule("jigsaw", cfg) == (0.02, 100)
    assert paper_schedule("rotnet", cfg) == (0.02, 100)
    assert paper_schedule("npidpp", cfg) == (0.003, 1000)
    assert paper_schedule("pirl", cfg) == (0.003, 1000)
    short = DetectionConfig(batch_size=4, iterations=2000)
    assert paper_schedule("pirl", short) == (pytest.approx(0.003 / 4), 500)  # batch-scaled, warm-up <= iterations / 4
    assert paper_schedule("jigsaw", short) == (pytest.approx(0.005), 100)
    assert paper_schedule("pirl", DetectionConfig(batch_size=4, iterations=100, lr=0.1, warmup_iters=80)) == (0.1, 80)


def test_lr_factor_is_detectron2_warmup_multistep() -> None:
    assert lr_factor(0, 100, [170]) == pytest.approx(0.001)
    assert lr_factor(50, 100, [170]) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(100, 100, [170]) == 1.0
    assert lr_factor(169, 100, [170]) == 1.0
    assert lr_factor(170, 100, [170]) == pytest.approx(0.1)
    assert lr_factor(5, 0, [2, 4]) == pytest.approx(0.01)
