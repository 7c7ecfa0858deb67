"""Autoencoder: encode with the shared backbone, decode the last stage back to pixels, MSE on pixels.

The denoising variant (Vincent et al., ICML 2008) corrupts the input with Gaussian noise and reconstructs
the clean image. The decoder is a stack of stride-2 transposed convolutions, one per factor of two between
the last-stage map and the image (ceil(log2(image / map)) of them), halving the channels each time.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class AutoencoderConfig(MethodConfig):
    lr: float = 0.05
    weight_decay: float = 1e-4
    noise_std: float = 0.0  # > 0: denoising autoencoder (std in normalised-pixel units)
    min_channels: int = 32  # decoder width floor


def decoder(in_channels: int, feature_size: int, image_size: int, min_channels: int) -> nn.Sequential:
    """(B, C, h, w) -> (B, 3, image, image) by ceil(log2(image / h)) transposed convolutions."""
    steps = max(0, math.ceil(math.log2(image_size / feature_size)))
    layers: list[nn.Module] = []
    c = in_channels
    for _ in range(steps):
        out = max(min_channels, c // 2)
        layers += [
            nn.ConvTranspose2d(c, out, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        c = out
    layers += [nn.Conv2d(c, 3, 3, padding=1)]
    return nn.Sequential(*layers)


class Autoencoder(Method):
    name = "autoencoder"
    paper = "Hinton & Salakhutdinov, Science 2006; denoising: Vincent et al., ICML 2008"
    Config = AutoencoderConfig

    def __init__(self, backbone: Backbone, cfg: AutoencoderConfig, data: DataInfo) -> None:
        super().__init__(backbone, cfg, data)
        with torch.no_grad():
            was_training = backbone.training
            fmap = backbone.eval().forward_map(torch.zeros(1, 3, data.image_size, data.image_size))
            backbone.train(was_training)
        self.decoder = decoder(fmap.shape[1], fmap.shape[-1], data.image_size, cfg.min_channels)

    def transform(self, device_colour: bool = False) -> Callable[[Any], dict[str, Tensor]]:
        crop = deferred(light_crop(self.data.image_size, self.data.mean, self.data.std), device_colour)
        return lambda image: named("image", crop(image))

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        clean = batch.views["image"]  # (B, 3, H, W)
        noisy = clean + self.cfg.noise_std * torch.randn_like(clean) if self.cfg.noise_std > 0 else clean
        recon = self.decoder(self.backbone.forward_map(noisy))  # (B, 3, H', W')
        if recon.shape[-2:] != clean.shape[-2:]:
            recon = F.interpolate(recon, size=clean.shape[-2:], mode="bilinear", align_corners=False)
        return {"loss": F.mse_loss(recon.float(), clean.float())}
