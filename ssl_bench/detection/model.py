"""Faster R-CNN on a copy of a pretrained backbone: the PIRL paper's R50-C4 (Detectron2 style) or an FPN variant.

PIRL, 2020, arXiv:1912.01991, Table 1 follows the Detectron2 VOC07+12 recipe (``Base-RCNN-C4``): the trunk is
stem + res2..res4 (one stride-16 map), the RoI box head is the backbone's own res5 applied to 14x14 RoIAlign crops
and global-average pooled, every BatchNorm is frozen and the stem + res2 are not trained (``FREEZE_AT=2``).
Everything else (RPN, RoI sampling, losses, post-processing) is torchvision's ``FasterRCNN``.

Anchors: Detectron2 uses sizes 32..512 for an 800 px shorter side; they are scaled by ``min_size / 800`` so small
presets get anchors of their objects' size, and floored at max(4 px, the feature stride) because an anchor smaller
than the grid spacing covers too little of the image. The stride is the backbone's own (the small stem reaches
layer3 at stride 4, not 16). Detectron2's RPN proposal counts (12000 / 2000 for C4 training) scale with the number
of feature-map positions, at least 300: on small images the full counts only cost NMS time (1.4 of 5 s per 128 px
C4 step on CPU), while scaling with the image area alone starves dense maps (30-70 proposals left after NMS for the
small stem at 128 px).

Small images: anchors shrink with ``min_size`` but the strides do not, so a 128 px image leaves the stride-16 C4 map
only 8x8 positions and few anchors overlap a 20 px object (about 1.5 with IoU >= 0.5, against about 50 for the same
scene at 800 px). Upsample small images (``min_size`` several times the image size) or use the small stem.

The box predictor is initialised as in Detectron2 (class scores N(0, 0.01), box deltas N(0, 0.001)); torchvision's
nn.Linear default gives first losses near 60 on features of scale 50. Two torchvision defaults are replaced by
Detectron2's and kept as options: RoIAlign ``aligned=True`` (ROIAlignV2: a box corner at pixel x samples at x - 0.5,
the centre of its pixel; torchvision samples at x) and L1 box losses in the RPN and the box head (SMOOTH_L1_BETA = 0;
torchvision: smooth L1 with beta 1/9). Training images get a shorter side drawn from Detectron2's 480..800 per image.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import freeze_batch_norm_2d
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import LevelMapper

from ssl_bench.backbone import Backbone

HEADS = ("c4", "fpn")
BOX_LOSSES = ("l1", "smooth_l1")  # Detectron2's (SMOOTH_L1_BETA = 0) | torchvision's (beta 1/9)
ANCHOR_SIZES = (32, 64, 128, 256, 512)  # Detectron2, at an 800 px shorter side (C4: all on one map; FPN: one per level)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
MIN_ANCHOR = 4  # px
TRAIN_SIZES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)  # Detectron2 VOC MIN_SIZE_TRAIN (test: 800)
FPN_CHANNELS = 256
# Detectron2 RPN proposal counts at 800 px (PRE_NMS_TOPK per level, POST_NMS_TOPK per image), train / test
RPN_TOPK = {
    "c4": {
        "rpn_pre_nms_top_n_train": 12000,
        "rpn_pre_nms_top_n_test": 6000,
        "rpn_post_nms_top_n_train": 2000,
        "rpn_post_nms_top_n_test": 1000,
    },
    "fpn": {
        "rpn_pre_nms_top_n_train": 2000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_train": 1000,
        "rpn_post_nms_top_n_test": 1000,
    },
}
D2_STRIDE = {"c4": 16, "fpn": 4}  # Detectron2's finest feature stride, for which RPN_TOPK is set
MIN_PROPOSALS = 300  # Faster R-CNN (Ren et al. 2015) tested with 300 proposals


class Res5Head(nn.Module):
    """Detectron2's C4 box head: the backbone's res5 (layer4) on each RoI crop, then global average pooling."""

    def __init__(self, res5: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.res5 = res5
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(R, C4, 14, 14) RoI crops -> (R, C5) box features (res5 halves the crops to 7x7)."""
        return self.res5(x).mean((2, 3))


class RoIAlignPooler(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign with roi_align's ``aligned`` and the levels' strides given (not inferred).

    ``aligned=True`` is Detectron2's ROIAlignV2; False is torchvision's forward, unchanged (and Detectron2's older
    ROIAlign). With several levels (FPN) a box goes to level floor(4 + log2(sqrt(area) / 224)), clamped
    (torchvision's LevelMapper, FPN eq. 1).
    """

    def __init__(
        self, names: list[str], strides: list[int], output_size: int, sampling_ratio: int, aligned: bool
    ) -> None:
        super().__init__(names, output_size, sampling_ratio)
        self.aligned = aligned
        self.scales = [1 / s for s in strides]
        self.map_levels = LevelMapper(int(math.log2(strides[0])), int(math.log2(strides[-1])))

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Feature maps by name, (N_i, 4) xyxy boxes per image in input pixels -> (R, C, S, S) crops, R = sum N_i."""
        if not self.aligned:
            return super().forward(x, boxes, image_shapes)
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])  # (R, 5)
        one = len(self.featmap_names) == 1
        level = torch.zeros(len(rois), dtype=torch.int64) if one else self.map_levels(boxes)  # (R,)
        first = x[self.featmap_names[0]]
        out = first.new_zeros((len(rois), first.shape[1], *self.output_size))
        for k, (name, scale) in enumerate(zip(self.featmap_names, self.scales)):
            idx = torch.where(level.to(rois.device) == k)[0]
            crops = roi_align(x[name], rois[idx], self.output_size, scale, self.sampling_ratio, aligned=True)
            out[idx] = crops.to(out.dtype)
        return out


def smooth_l1(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """Summed smooth-L1 loss; beta = 0 is L1 (Detectron2's default), torchvision uses 1/9."""
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")


class L1RPN(RegionProposalNetwork):
    """torchvision's RPN with Detectron2's anchor-box loss: smooth L1 with ``beta`` = 0 (L1; RPN.SMOOTH_L1_BETA)."""

    beta = 0.0

    def compute_loss(
        self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """torchvision's: (objectness BCE mean, box loss summed over positives / sampled anchors), with ``beta``."""
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(neg))[0]])
        labels_, targets = torch.cat(labels), torch.cat(regression_targets)  # (A,), (A, 4)
        box = smooth_l1(pred_bbox_deltas[pos], targets[pos], self.beta) / sampled.numel()
        return F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels_[sampled]), box


class L1RoIHeads(RoIHeads):
    """torchvision's RoIHeads with Detectron2's box loss: smooth L1, ``beta`` = 0 (L1; ROI_BOX_HEAD.SMOOTH_L1_BETA)."""

    beta = 0.0

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Training: torchvision's box-head losses with ``beta``; inference: torchvision's forward."""
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        crops = self.box_roi_pool(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(self.box_head(crops))
        cls, box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets, self.beta)
        return [], {"loss_classifier": cls, "loss_box_reg": box}


def fastrcnn_loss(
    class_logits: Tensor, box_regression: Tensor, labels: list[Tensor], regression_targets: list[Tensor], beta: float
) -> tuple[Tensor, Tensor]:
    """torchvision's ``fastrcnn_loss`` with ``beta``: (cross-entropy mean over the sampled RoIs, box loss of each
    foreground RoI's deltas for its own class, summed, / the number of sampled RoIs)."""
    labels_, targets = torch.cat(labels), torch.cat(regression_targets)  # (R,), (R, 4)
    fg = torch.where(labels_ > 0)[0]
    deltas = box_regression.reshape(len(labels_), -1, 4)[fg, labels_[fg]]  # (F, 4)
    return F.cross_entropy(class_logits, labels_), smooth_l1(deltas, targets[fg], beta) / labels_.numel()


def anchor_size(size: int, min_size: int, stride: int) -> int:
    """A Detectron2 anchor size (for an 800 px shorter side) at ``min_size``, floored at max(4 px, stride)."""
    return max(round(size * min_size / 800), stride, MIN_ANCHOR)


def proposals(count: int, head: str, min_size: int, stride: int) -> int:
    """A Detectron2 proposal count scaled with the number of positions of the finest feature map, at least 300.

    Detectron2 sets ``count`` for an 800 px shorter side at stride 16 (C4) or 4 (FPN); ``stride`` is ours.
    """
    positions = (min_size / stride) ** 2 / (800 / D2_STRIDE[head]) ** 2
    return max(round(count * positions), MIN_PROPOSALS)


def build_detector(
    backbone: Backbone,
    num_classes: int,
    head: str = "c4",
    freeze_bn: bool = True,
    min_size: int = 800,
    max_size: int = 1333,
    freeze_at: int = 2,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    multiscale: bool = True,
    roi_batch_size: int = 512,
    roi_aligned: bool = True,
    box_loss: str = "l1",
) -> FasterRCNN:
    """A Faster R-CNN whose trunk (and, for C4, box head) is a deep copy of ``backbone``; the caller's is untouched.

    ``num_classes`` excludes the background. ``freeze_bn`` turns every BatchNorm into ``FrozenBatchNorm2d``
    (statistics and affine fixed: Detectron2's FrozenBN); otherwise the trained stages keep ``BatchNorm2d``, which
    normalises with the statistics of the whole step's batch (one forward over every image, as SyncBN across GPUs)
    and trains its affine parameters. ``freeze_at`` = k stops training the first k stages of
    ``backbone.stage_names`` (stem, layer1, ...; Detectron2 FREEZE_AT, default 2 = stem + res2); their BatchNorms
    are frozen too, whatever ``freeze_bn`` says. ``image_mean`` / ``image_std`` are the normalisation the backbone
    was pretrained with (default: torchvision's ImageNet values); the model takes float images in [0, 1].
    ``multiscale`` trains at Detectron2's shorter sides 480, 512, ..., 800 scaled by min_size / 800, one drawn per
    image (MIN_SIZE_TRAIN_SAMPLING "choice"), and tests at ``min_size``; otherwise both use ``min_size``.
    ``roi_batch_size`` is the number of sampled RoIs per training image the box head sees (Detectron2
    ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512; most of a C4 step's cost, so small presets lower it). ``roi_aligned``:
    RoIAlign as ROIAlignV2 (``RoIAlignPooler``); ``box_loss``: "l1" (Detectron2's) or "smooth_l1" (torchvision's,
    beta 1/9) for the RPN and box-head regression.
    """
    if head not in HEADS:
        raise ValueError(f"unknown detection head {head!r}; valid heads: {', '.join(HEADS)}")
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"unknown box loss {box_loss!r}; valid box losses: {', '.join(BOX_LOSSES)}")
    if not 0 <= freeze_at <= len(backbone.stage_names):
        raise ValueError(
            f"freeze_at must be in 0..{len(backbone.stage_names)} ({backbone.stage_names}), got {freeze_at}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (background excluded), got {num_classes}")
    model = copy.deepcopy(backbone.model).requires_grad_(True)
    if not hasattr(model, "layer4"):
        raise ValueError(f"backbone {backbone.spec!r}: detection needs a ResNet (stem, layer1..layer4)")
    if freeze_bn:
        freeze_batch_norm_2d(model)  # in place below the root, which is not a BatchNorm
    children = [name for name, _ in model.named_children()]
    stem = children[: children.index("layer1")]  # conv1, bn1, act1, maxpool
    for stage in backbone.stage_names[:freeze_at]:
        for name in stem if stage == "stem" else [stage]:
            setattr(model, name, freeze_batch_norm_2d(getattr(model, name)).requires_grad_(False))
    strides = dict(zip(backbone.stage_names, (info["reduction"] for info in model.feature_info)))
    channels = dict(zip(backbone.stage_names, backbone.stage_channels))
    finest = strides["layer3" if head == "c4" else "layer1"]
    sizes = (min_size,) if not multiscale else tuple(round(s * min_size / 800) for s in TRAIN_SIZES[:-1]) + (min_size,)
    common = dict(
        min_size=sizes,
        max_size=max_size,
        box_batch_size_per_image=roi_batch_size,
        image_mean=None if image_mean is None else list(image_mean),
        image_std=None if image_std is None else list(image_std),
        **{k: proposals(n, head, min_size, finest) for k, n in RPN_TOPK[head].items()},
    )

    if head == "c4":
        trunk = nn.Sequential(
            OrderedDict((name, getattr(model, name)) for name in stem + ["layer1", "layer2", "layer3"])
        )
        trunk.out_channels = channels["layer3"]  # type: ignore[assignment]
        anchors = AnchorGenerator(
            (tuple(sorted({anchor_size(s, min_size, strides["layer3"]) for s in ANCHOR_SIZES})),), (ASPECT_RATIOS,)
        )
        detector = FasterRCNN(
            trunk,
            None,
            rpn_anchor_generator=anchors,
            rpn_head=RPNHead(channels["layer3"], anchors.num_anchors_per_location()[0]),
            box_roi_pool=RoIAlignPooler(["0"], [strides["layer3"]], 14, 0, roi_aligned),  # Detectron2: 14, 0
            box_head=Res5Head(model.layer4, channels["layer4"]),
            box_predictor=FastRCNNPredictor(channels["layer4"], num_classes + 1),
            **common,
        )
        return _init_predictor(_with_box_loss(detector, box_loss))

    levels = ["layer1", "layer2", "layer3", "layer4"]
    out_channels = min(FPN_CHANNELS, max(channels[n] for n in levels))  # narrow backbones: the widest stage, not 256
    trunk = BackboneWithFPN(
        model,
        {n: str(k) for k, n in enumerate(levels)},
        [channels[n] for n in levels],
        out_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    level_strides = [strides[n] for n in levels] + [2 * strides["layer4"]]  # + the max-pooled "pool" level
    anchors = AnchorGenerator(
        tuple((anchor_size(s, min_size, st),) for s, st in zip(ANCHOR_SIZES, level_strides)),
        (ASPECT_RATIOS,) * len(ANCHOR_SIZES),
    )
    detector = FasterRCNN(
        trunk,
        num_classes + 1,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(out_channels, len(ASPECT_RATIOS)),
        # torchvision's FPN pooler (7 x 7, sampling ratio 2; Detectron2's FPN configs: 7, 0) on levels 0..3
        box_roi_pool=RoIAlignPooler(["0", "1", "2", "3"], [strides[n] for n in levels], 7, 2, roi_aligned),
        **common,
    )
    return _init_predictor(_with_box_loss(detector, box_loss))


def _with_box_loss(detector: FasterRCNN, box_loss: str) -> FasterRCNN:
    """``detector`` with L1 box losses ("l1": its RPN and RoI heads become the L1 subclasses, state unchanged) or
    torchvision's smooth L1 ("smooth_l1": as built)."""
    if box_loss == "l1":
        detector.rpn.__class__, detector.roi_heads.__class__ = L1RPN, L1RoIHeads
    return detector


def _init_predictor(detector: FasterRCNN) -> FasterRCNN:
    """Detectron2's FastRCNNOutputLayers init (torchvision keeps nn.Linear's): class scores N(0, 0.01), box deltas
    N(0, 0.001), zero biases, so the first losses do not depend on the scale of the pretrained features."""
    predictor = detector.roi_heads.box_predictor
    for layer, std in ((predictor.cls_score, 0.01), (predictor.bbox_pred, 0.001)):
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)
    return detector
