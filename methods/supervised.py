"""Supervised pretraining: cross-entropy on the class labels (the upper reference row of every table)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench.backbone import Backbone
from ssl_bench.data.batch import Batch
from ssl_bench.data.device_augment import deferred, named
from ssl_bench.data.transforms import light_crop
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.base import Method, MethodConfig


@dataclass(frozen=True)
class SupervisedConfig(MethodConfig):
    lr: float = 0.1  # He et al. 2016: 0.1 at batch 256, wd 1e-4 (ImageNet); 5e-4 is common on CIFAR
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0


class Supervised(Method):
    name = "supervised"
    paper = "He et al., CVPR 2016, arXiv:1512.03385 (the 'Supervised' rows of PIRL's tables)"
    Config = SupervisedConfig
    needs_labels = True

    def __init__(self, backbone: Backbone, cfg: SupervisedConfig, data: DataInfo) -> None:
        super().__init__(backbone, cfg, data)
        self.classifier = nn.Linear(backbone.num_features, data.num_classes)

    def transform(self, device_colour: bool = False) -> Callable[[Any], dict[str, Tensor]]:
        crop = deferred(light_crop(self.data.image_size, self.data.mean, self.data.std), device_colour)
        return lambda image: named("image", crop(image))

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        logits = self.classifier(self.backbone(batch.views["image"]))  # (B, classes)
        loss = F.cross_entropy(logits.float(), batch.target, label_smoothing=self.cfg.label_smoothing)
        accuracy = (logits.argmax(1) == batch.target).float().mean()
        return {"loss": loss, "train_acc": accuracy.detach()}
