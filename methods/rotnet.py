"""RotNet: predict which of four rotations (0, 90, 180, 270 degrees) was applied to an image.

Gidaris et al., ICLR 2018, arXiv:1803.07728. By default all four rotated copies of every image go into the same
batch, which the paper found clearly better than one random rotation per image (Sec. 3.1, implementation details);
``all_rotations=False`` is VISSL's one-random-rotation variant. Rotation k is ``torch.rot90(x, k, (-2, -1))``:
k * 90 degrees counter-clockwise as displayed, the same as the authors' ``rotate_img`` (flipud of the transpose).
The head is a 4-way linear classifier on the backbone's pooled features (the shared-backbone protocol; the paper
also uses conv heads on intermediate blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench.backbone import Backbone
from ssl_bench.data.batch import Batch
from ssl_bench.data.device_augment import deferred, named
from ssl_bench.data.transforms import light_crop
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.base import Method, MethodConfig

NUM_ROTATIONS = 4


@dataclass(frozen=True)
class RotNetConfig(MethodConfig):
    # Gidaris et al. (code: config/CIFAR10_RotNet_NIN4blocks.py): SGD with Nesterov momentum 0.9, wd 5e-4, lr 0.1 at
    # 128 images x 4 rotations = 512 network inputs -> 0.05 per 256 inputs. The rate scales with the inputs a step
    # really sends (``inputs_per_image``): 4 per image with all_rotations, 1 with one random rotation, so both
    # variants train at Gidaris's per-input rate.
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    all_rotations: bool = True  # False: one uniformly random rotation per image (VISSL)
    mlp_head: bool = False  # True: Linear-BN-ReLU (hidden = num_features) before the 4-way classifier

    @property
    def inputs_per_image(self) -> int:
        return NUM_ROTATIONS if self.all_rotations else 1


def rotate(images: Tensor, k: Tensor | int) -> Tensor:
    """Rotate (C, H, W) by k * 90 degrees counter-clockwise (torch.rot90 over the last two dims)."""
    return torch.rot90(images, int(k), dims=(-2, -1))


class RotationViews:
    """Per-sample views: {"rotations": (R, C, H, W), "labels": (R,)}, R = 4 (labels 0..3) or 1 (a random label)."""

    def __init__(self, crop: Callable[[Any], Tensor], all_rotations: bool) -> None:
        self.crop = crop
        self.all_rotations = all_rotations

    def __call__(self, image: Any) -> dict[str, Tensor]:
        made = self.crop(image)  # (C, H, W), or a uint8 crop and its colour parameters (device_colour)
        x = (made[0] if isinstance(made, tuple) else made).as_subclass(Tensor)
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rotnet: crops must be square so that all rotations stack, got {tuple(x.shape)}")
        labels = torch.arange(NUM_ROTATIONS) if self.all_rotations else torch.randint(NUM_ROTATIONS, (1,))
        rotations = torch.stack([rotate(x, k) for k in labels])  # colour commutes with quarter turns
        made = (rotations, made[1].expand(len(labels), -1)) if isinstance(made, tuple) else rotations
        return {**named("rotations", made), "labels": labels}


class RotNet(Method):
    name = "rotnet"
    paper = "Gidaris et al., ICLR 2018, arXiv:1803.07728"
    Config = RotNetConfig

    def __init__(self, backbone: Backbone, cfg: RotNetConfig, data: DataInfo) -> None:
        super().__init__(backbone, cfg, data)
        f = backbone.num_features
        hidden: list[nn.Module] = (
            [nn.Linear(f, f, bias=False), nn.BatchNorm1d(f), nn.ReLU(inplace=True)] if cfg.mlp_head else []
        )
        self.head = nn.Sequential(*hidden, nn.Linear(f, NUM_ROTATIONS))

    def transform(self, device_colour: bool = False) -> Callable[[Any], dict[str, Tensor]]:
        # Gidaris et al.: CIFAR pad-4 random crop + flip (light_crop at <= 64 px), random resized crop + flip above.
        crop = deferred(light_crop(self.data.image_size, self.data.mean, self.data.std), device_colour)
        return RotationViews(crop, self.cfg.all_rotations)

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        images = batch.views["rotations"].flatten(0, 1)  # (B*R, C, H, W): all rotations share the batch statistics
        labels = batch.views["labels"].flatten()  # (B*R,)
        logits = self.head(self.backbone(images))  # (B*R, 4)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "rot_acc": accuracy.detach()}
