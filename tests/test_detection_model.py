"""Faster R-CNN transfer: detector structure, frozen parts, the caller's backbone left alone, training, inference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Subset
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.roi_heads import fastrcnn_loss as torchvision_fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from ssl_bench.backbone import Backbone
from ssl_bench.data.synthetic_voc import write_voc
from ssl_bench.data.voc import VOCDetection
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.detection.model import (
    L1RPN,
    L1RoIHeads,
    Res5Head,
    RoIAlignPooler,
    build_detector,
    fastrcnn_loss,
)
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


STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def c4_stages(det: nn.Module) -> dict[str, list[nn.Module]]:
    """The C4 detector's copy of each backbone stage (layer4 is the box head's res5)."""
    trunk = det.backbone
    return {
        "stem": [trunk.conv1, trunk.bn1],
        "layer1": [trunk.layer1],
        "layer2": [trunk.layer2],
        "layer3": [trunk.layer3],
        "layer4": [det.roi_heads.box_head.res5],
    }


@pytest.mark.parametrize("freeze_bn", [True, False])
@pytest.mark.parametrize("freeze_at", [0, 2, 5])
def test_freeze_at_stops_the_first_stages_and_freeze_bn_the_other_batch_norms(freeze_at: int, freeze_bn: bool) -> None:
    det = build_detector(pretrained(STANDARD), 10, "c4", freeze_bn=freeze_bn, freeze_at=freeze_at)
    for k, (stage, modules) in enumerate(c4_stages(det).items()):
        frozen = k < freeze_at  # Detectron2 FREEZE_AT: the first k of stem, res2 .. res5
        params = [p for m in modules for p in m.parameters()]
        assert params and all(p.requires_grad != frozen for p in params), stage
        norms = [n for m in modules for n in m.modules() if isinstance(n, (nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert norms and all(isinstance(n, FrozenBatchNorm2d) == (frozen or freeze_bn) for n in norms), stage
    heads = [det.rpn.head, det.roi_heads.box_predictor]
    assert all(p.requires_grad for m in heads for p in m.parameters())


def test_fine_tuned_batch_norm_learns_and_tracks_the_batch(voc: VOCDetection) -> None:
    """freeze_bn=False (MoCo's SyncBN runs): the trained stages' BNs update statistics and affine; frozen ones do not."""
    det = build_detector(pretrained(STANDARD), len(voc.classes), "c4", freeze_bn=False, min_size=SIZE, max_size=SIZE)
    trained, frozen = det.backbone.layer3[0].bn1, det.backbone.layer1[0].bn1
    assert isinstance(trained, nn.BatchNorm2d) and isinstance(frozen, FrozenBatchNorm2d)
    before = snapshot(det)
    train_detector(det, voc, tiny_cfg(iterations=2), 0.02, 0, CPU, seed=0)
    after = det.state_dict()
    for name in ("running_mean", "running_var", "weight", "bias"):
        assert not torch.equal(before[f"backbone.layer3.0.bn1.{name}"], after[f"backbone.layer3.0.bn1.{name}"]), name
        assert torch.equal(before[f"backbone.layer1.0.bn1.{name}"], after[f"backbone.layer1.0.bn1.{name}"]), name


def test_multiscale_draws_a_shorter_side_per_training_image_and_tests_at_min_size() -> None:
    det = build_detector(pretrained(STANDARD), 10, "c4", min_size=160, max_size=400)
    sizes = (96, 102, 109, 115, 122, 128, 134, 141, 147, 154, 160)  # Detectron2's 480, 512, ..., 800 x 160 / 800
    assert det.transform.min_size == sizes
    images = [torch.rand(3, 40, 50) for _ in range(40)]
    torch.manual_seed(0)
    drawn = {h for h, _ in det.transform.train()(images)[0].image_sizes}
    assert drawn <= set(sizes) and len(drawn) >= 6  # one draw per image ("choice"), not one per batch
    assert {h for h, _ in det.transform.eval()(images)[0].image_sizes} == {160}
    single = build_detector(pretrained(STANDARD), 10, "c4", min_size=160, max_size=400, multiscale=False)
    assert single.transform.min_size == (160,)


def test_aligned_roi_align_samples_half_a_pixel_earlier() -> None:
    """Hand-computed: on a map whose value is the x coordinate, a 1x1 RoIAlign of the box [0, 4] samples its centre:
    x = 2 as torchvision's RoIAlign, x = 1.5 as ROIAlignV2 (the box's pixels span [-0.5, 3.5] in pixel centres)."""
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # value = x
    box = [torch.tensor([[0.0, 0.0, 4.0, 4.0]])]
    for aligned, value in [(False, 2.0), (True, 1.5)]:
        pooler = RoIAlignPooler(["0"], [1], output_size=1, sampling_ratio=1, aligned=aligned)
        assert pooler({"0": ramp}, box, [(8, 8)]).item() == pytest.approx(value)


@pytest.mark.parametrize("names, strides", [(["0"], [16]), (["0", "1", "2", "3"], [4, 8, 16, 32])])
def test_roi_pooler_is_torchvisions_unaligned_and_roi_align_v2_aligned(names: list[str], strides: list[int]) -> None:
    torch.manual_seed(0)
    image = 256
    maps = {name: torch.randn(2, 3, image // s, image // s) for name, s in zip(names, strides)}
    corners = torch.rand(2, 30, 2) * 200
    boxes = [torch.cat([c, c + 4 + torch.rand(30, 2) * 200], dim=1) for c in corners]  # from 4 px to 200 px wide
    shapes = [(image, image)] * 2
    theirs = MultiScaleRoIAlign(names, 7, 2)(maps, boxes, shapes)
    assert torch.equal(RoIAlignPooler(names, strides, 7, 2, aligned=False)(maps, boxes, shapes), theirs)
    ours = RoIAlignPooler(names, strides, 7, 2, aligned=True)(maps, boxes, shapes)
    assert ours.shape == theirs.shape and not torch.allclose(ours, theirs)
    if len(names) == 1:  # one level: roi_align(aligned=True) on every box
        from torchvision.ops import roi_align

        assert torch.equal(ours, roi_align(maps["0"], boxes, 7, 1 / 16, 2, aligned=True))


def box_head_inputs() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """3 sampled RoIs over 2 images (classes 1, background, 2 of 2 + background): logits, deltas, labels, targets."""
    deltas = torch.full((3, 12), 7.0)  # other classes' deltas and the background RoI's: not in the loss
    deltas[0, 4:8] = torch.tensor([0.5, -0.2, 0.0, 0.05])  # RoI 0, class 1
    deltas[2, 8:12] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # RoI 2, class 2
    targets = [torch.tensor([[0.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]), torch.tensor([[0.5, 0.5, 2.0, 1.0]])]
    return torch.zeros(3, 3), deltas, [torch.tensor([1, 0]), torch.tensor([2])], targets


def test_box_head_l1_loss_by_hand_and_torchvisions_at_its_beta() -> None:
    logits, deltas, labels, targets = box_head_inputs()
    cls, box = fastrcnn_loss(logits, deltas, labels, targets, beta=0.0)
    assert cls.item() == pytest.approx(math.log(3))  # uniform logits over 3 classes
    assert box.item() == pytest.approx((0.5 + 0.2 + 0.0 + 0.05 + 0.5 + 0.5 + 1.0 + 0.0) / 3)  # L1 / sampled RoIs
    smooth = [4.5 * x * x if x < 1 / 9 else x - 1 / 18 for x in (0.5, 0.2, 0.0, 0.05, 0.5, 0.5, 1.0, 0.0)]  # beta 1/9
    by_hand = sum(smooth) / 3
    ninth = fastrcnn_loss(logits, deltas, labels, targets, beta=1 / 9)
    assert ninth[1].item() == pytest.approx(by_hand)
    assert all(torch.equal(a, b) for a, b in zip(ninth, torchvision_fastrcnn_loss(logits, deltas, labels, targets)))


def test_rpn_l1_loss_by_hand_and_torchvisions_at_its_beta() -> None:
    l1 = build_detector(pretrained(STANDARD), 10, "c4", min_size=SIZE, max_size=SIZE).rpn
    plain = build_detector(pretrained(STANDARD), 10, "c4", min_size=SIZE, max_size=SIZE, box_loss="smooth_l1").rpn
    assert type(l1) is L1RPN and type(plain) is RegionProposalNetwork
    labels = [torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, -1.0])]  # 2 positives, 3 negatives, 1 ignored: all 5 sampled
    deltas = torch.full((6, 4), 5.0)  # negatives' and the ignored anchor's deltas: not in the loss
    deltas[:2] = torch.tensor([[0.5, -0.5, 0.0, 0.0], [0.1, 0.0, 0.0, 0.2]])
    targets = [torch.zeros(6, 4)]
    objectness = torch.zeros(6, 1)
    obj, box = l1.compute_loss(objectness, deltas, labels, targets)
    assert obj.item() == pytest.approx(math.log(2))
    assert box.item() == pytest.approx((0.5 + 0.5 + 0.1 + 0.2) / 5)  # L1 / sampled anchors
    l1.beta = 1 / 9
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            l1.compute_loss(objectness, deltas, labels, targets),
            plain.compute_loss(objectness, deltas, labels, targets),
        )
    )


def test_l1_heads_train_as_torchvisions_but_for_the_loss(voc: VOCDetection) -> None:
    """At torchvision's beta the L1 subclasses give torchvision's losses, step for step; at beta 0 the box losses
    differ and nothing else does."""
    images, targets = zip(*(voc[i] for i in range(2)))
    images = [im.float() / 255 for im in images]
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]

    def losses(box_loss: str, beta: float | None = None) -> dict[str, float]:
        torch.manual_seed(0)
        det = build_detector(pretrained(SMALL), len(voc.classes), "c4", min_size=SIZE, max_size=SIZE, box_loss=box_loss)
        if beta is not None:
            det.rpn.beta = det.roi_heads.beta = beta
        torch.manual_seed(1)
        return {k: v.item() for k, v in det.train()(images, targets).items()}

    theirs = losses("smooth_l1")
    assert losses("l1", beta=1 / 9) == pytest.approx(theirs)
    ours = losses("l1")
    assert ours["loss_classifier"] == theirs["loss_classifier"] and ours["loss_objectness"] == theirs["loss_objectness"]
    assert ours["loss_box_reg"] > theirs["loss_box_reg"] and ours["loss_rpn_box_reg"] > theirs["loss_rpn_box_reg"]


def test_the_paper_path_is_built_by_default() -> None:
    det = build_detector(pretrained(STANDARD), 10, "c4")
    assert type(det.rpn) is L1RPN and type(det.roi_heads) is L1RoIHeads
    assert isinstance(det.roi_heads.box_roi_pool, RoIAlignPooler) and det.roi_heads.box_roi_pool.aligned
    assert det.transform.min_size == (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    assert (det.transform.max_size, det.roi_heads.box_roi_pool.sampling_ratio) == (1333, 0)
    old = build_detector(pretrained(STANDARD), 10, "fpn", roi_aligned=False, box_loss="smooth_l1", multiscale=False)
    assert type(old.rpn) is RegionProposalNetwork and type(old.roi_heads) is RoIHeads
    assert not old.roi_heads.box_roi_pool.aligned and old.transform.min_size == (800,)


def test_bad_arguments_name_the_valid_choices() -> None:
    backbone = Backbone(STANDARD)
    with pytest.raises(ValueError, match="unknown detection head 'c5'; valid heads: c4, fpn"):
        build_detector(backbone, 10, "c5")
    with pytest.raises(ValueError, match=r"freeze_at must be in 0\.\.5"):
        build_detector(backbone, 10, freeze_at=6)
    with pytest.raises(ValueError, match="unknown box loss 'l2'; valid box losses: l1, smooth_l1"):
        build_detector(backbone, 10, box_loss="l2")


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
    assert paper_schedule("npidpp", cfg) == (0.002, 1000)  # VISSL pirl_npid/rn50_transfer_voc0712_npid_pirl.yaml
    assert paper_schedule("pirl", cfg) == (0.002, 1000)
    short = DetectionConfig(batch_size=4, iterations=2000)
    assert paper_schedule("pirl", short) == (pytest.approx(0.002 / 4), 500)  # batch-scaled, warm-up <= iterations / 4
    assert paper_schedule("jigsaw", short) == (pytest.approx(0.005), 100)
    assert paper_schedule("pirl", DetectionConfig(batch_size=4, iterations=100, lr=0.1, warmup_iters=80)) == (0.1, 80)


def test_lr_factor_is_detectron2_warmup_multistep() -> None:
    assert lr_factor(0, 100, [170]) == pytest.approx(0.001)
    assert lr_factor(50, 100, [170]) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(100, 100, [170]) == 1.0
    assert lr_factor(169, 100, [170]) == 1.0
    assert lr_factor(170, 100, [170]) == pytest.approx(0.1)
    assert lr_factor(5, 0, [2, 4]) == pytest.approx(0.01)
