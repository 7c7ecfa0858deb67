"""The ``detection`` section: Faster R-CNN transfer settings, checked next to their fields.

The learning rate and warm-up are the pretraining method's (VISSL fine-tunes NPID++ / PIRL backbones more gently
than supervised / Jigsaw ones): left ``None``, ``resolved`` fills them from the method's
``Method.detection_schedule`` (lr, warm-up iterations at the paper's batch of 16).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field

from ssl_bench.config import ConfigError, each_of, non_negative, one_of, positive

HEADS = ("c4", "fpn")
BOX_LOSSES = ("l1", "smooth_l1")
DATASETS = ("synthetic", "voc", "voc07", "voc07+12")
PROTOCOL_NAMES = ("voc07", "coco")
PAPER_BATCH = 16  # the batch the paper's rates are given at (Detectron2 IMS_PER_BATCH)
# Who runs COCOeval for the coco protocol: pycocotools (the reference) or faster-coco-eval (its C++ port, same numbers;
# an optional extra). name -> the module to import.
COCO_BACKENDS = {"pycocotools": "pycocotools", "faster-coco-eval": "faster_coco_eval"}


@dataclass
class DetectionConfig:
    """Faster R-CNN transfer (PIRL Table 1; Detectron2 VOC07+12 R50-C4 recipe as VISSL runs it, frozen BN).

    Paper schedule (VISSL's VOC07+12 configs): VOC07+12 trainval, 25k iterations at batch 16, step at 17k, lr 0.02
    with 100 warm-up iterations for supervised / Jigsaw (and any other method), 0.002 with 1000 for NPID++ / PIRL;
    shorter side 480-800 (train) / 800 (test). Small presets shrink iterations, batch and image size.
    """

    # synthetic: built-in VOC-layout scenes under <out>/data; voc: one VOC-layout `root` (train_split / test_split of it);
    # voc07+12: the paper's Table 1 data, VOC2007 + VOC2012 trainval -> VOC2007 test; voc07: VOC2007 trainval -> test.
    dataset: str = "synthetic"
    # voc: the directory holding Annotations/, ImageSets/Main/, JPEGImages/;
    # voc07, voc07+12: the VOCdevkit directory holding VOC2007/ (and VOC2012/)
    root: str = ""
    train_split: str = "trainval"
    test_split: str = "test"
    clip_boxes: bool = False  # clip boxes outside the image (with a warning) instead of stopping
    head: str = "c4"  # c4 (res5 as the RoI head, the paper's) | fpn
    # true: every BatchNorm frozen (Detectron2 RESNETS.NORM "FrozenBN", kept by VISSL's configs); false: the trained
    # stages' BatchNorms normalise with the step's batch statistics and learn (MoCo's detection configs: SyncBN)
    freeze_bn: bool = True
    # the first k of stem, layer1 .. layer4 are not trained, their BNs frozen (Detectron2 BACKBONE.FREEZE_AT: 2 = stem
    # + res2; MoCo's configs: 0)
    freeze_at: int = 2
    roi_batch_size: int = (
        512  # sampled RoIs per training image (Detectron2 BATCH_SIZE_PER_IMAGE); most of a C4 step's cost
    )
    min_size: int = 800  # shorter image side at test time, the largest one in training (Detectron2 MIN_SIZE_TEST)
    max_size: int = 1333  # longer side at most (Detectron2 MAX_SIZE_TRAIN = MAX_SIZE_TEST)
    # true: each training image's shorter side drawn from 480, 512, ..., 800 x min_size / 800 (Detectron2 VOC
    # MIN_SIZE_TRAIN, sampling "choice"); false: min_size, as a small preset's fixed upsampling needs
    multiscale: bool = True
    # true: RoIAlign samples at box corner - 0.5 px (Detectron2's ROIAlignV2); false: torchvision's RoIAlign, kept
    # so results computed before the switch can be reproduced
    roi_aligned: bool = True
    # l1: Detectron2's RPN and box-head regression loss (SMOOTH_L1_BETA = 0); smooth_l1: torchvision's (beta 1/9),
    # kept so results computed before the switch can be reproduced
    box_loss: str = "l1"
    iterations: int = 25000
    batch_size: int = 16
    lr: float | None = None  # None = the method's paper rate at batch 16 (see above), scaled with batch_size / 16
    warmup_iters: int | None = None  # None = the method's paper warm-up (100 or 1000), at most iterations / 4
    steps: list[float] = field(default_factory=lambda: [17000 / 25000])  # lr x0.1 at these fractions of iterations
    weight_decay: float = 1e-4
    momentum: float = 0.9
    protocols: list[str] = field(default_factory=lambda: ["voc07", "coco"])
    coco_backend: str = "pycocotools"  # pycocotools | faster-coco-eval (see COCO_BACKENDS); the numbers are the same
    synthetic_trainval: int = 400  # the built-in scenes: how many, and their size in px
    synthetic_test: int = 200
    synthetic_size: int = 128

    def check(self) -> None:
        positive(
            "detection",
            self,
            "min_size",
            "max_size",
            "iterations",
            "batch_size",
            "roi_batch_size",
            "lr",
            "synthetic_trainval",
            "synthetic_test",
            "synthetic_size",
        )
        non_negative("detection", self, "warmup_iters")
        if self.freeze_at not in range(6):
            raise ConfigError(
                f"detection.freeze_at must be in 0..5 (how many of stem, layer1 .. layer4 stay untrained), "
                f"got {self.freeze_at}"
            )
        one_of("detection", self, "head", HEADS)
        one_of("detection", self, "box_loss", BOX_LOSSES)
        one_of("detection", self, "dataset", DATASETS)
        each_of("detection", self, "protocols", PROTOCOL_NAMES)
        one_of("detection", self, "coco_backend", tuple(COCO_BACKENDS))
        require_coco_backend(self.coco_backend, "detection.coco_backend")
        for value in self.steps:
            if not 0 < value < 1:
                raise ConfigError(f"detection.steps: {value} is not a fraction of the iterations in (0, 1)")

    def resolved(self, schedule: tuple[float, int]) -> DetectionConfig:
        """This config with the method's paper ``schedule`` (lr, warm-up at batch 16) where lr / warm-up are unset.

        The paper's rate is scaled with batch_size / 16 (linear scaling); its warm-up is clipped to a quarter of the
        iterations so short schedules still reach the full rate. A value set in the config is used as given.
        """
        lr, warmup = schedule
        return dataclasses.replace(
            self,
            lr=self.lr if self.lr is not None else lr * self.batch_size / PAPER_BATCH,
            warmup_iters=self.warmup_iters if self.warmup_iters is not None else min(warmup, self.iterations // 4),
        )


def require_coco_backend(name: str, where: str = "--coco-backend") -> None:
    """A ConfigError unless ``name`` is a COCO backend that is installed; ``where`` names the setting in the message."""
    if name not in COCO_BACKENDS:
        raise ConfigError(f"{where}={name!r} is not valid; choose one of {', '.join(COCO_BACKENDS)}")
    if importlib.util.find_spec(COCO_BACKENDS[name]) is None:
        raise ConfigError(
            f"{where}={name} needs the {name} package, an optional extra: "
            f'pip install -e ".[{name}]" (or pip install {name})'
        )
