"""Jigsaw: recover which of a fixed set of permutations shuffled the nine tiles of an image.

Noroozi & Favaro, ECCV 2016, arXiv:1603.09246, with the ResNet-50 settings of Goyal et al., ICCV 2019,
arXiv:1905.01235 (and their VISSL config ``pretrain/jigsaw/jigsaw_8gpu_resnet.yaml``). Each tile goes through the
shared backbone on its own; its pooled features pass a shared FC-BN-ReLU (1000-d); the nine outputs, in the
order the tiles were presented, are concatenated (9000-d) and a linear layer scores the permutations.
The permutation set is the greedy maximal-average-Hamming set of ``ssl_bench.data.permutations``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.batch import Batch
from ssl_bench.data.jigsaw import PAPER_TILE_RATIO, JigsawView, TileGeometry
from ssl_bench.data.permutations import VARIANTS, permutation_set
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.base import Method, MethodConfig

GRID = 3


@dataclass(frozen=True)
class JigsawConfig(MethodConfig):
    # Goyal et al. 2019 (VISSL jigsaw_8gpu_resnet.yaml): SGD lr 0.1 at batch 256 images, momentum 0.9, wd 1e-4.
    lr: float = 0.1
    weight_decay: float = 1e-4
    momentum: float = 0.9
    num_permutations: int = 2000  # Goyal et al.'s ResNet-50 setting (VISSL 'perm 2K'); Noroozi & Favaro used 1000
    permutation_variant: str = "maxavg"  # Noroozi & Favaro, Sec. 3.3
    permutation_seed: int = 0
    grayscale_p: float = 0.66  # Goyal et al. (VISSL RandomGrayscale p=0.66), on the whole crop before tiling
    tile_dim: int = 1000  # shared per-tile FC-BN-ReLU width (VISSL head: 2048 -> 1000, then 9000 -> #perms)
    crop: int = 0  # 0 = the data's image size (255 at paper scale: 85 px cells, 64 px tiles)
    crop_scale_min: float = (
        0.0  # 0 = Goyal et al.: resize to 256/255 of the crop + random crop; > 0: RandomResizedCrop((min, 1))
    )
    # Goyal et al. / VISSL normalise the crop with the dataset's mean and std only; Noroozi & Favaro's code also
    # normalises every tile on its own (so low-level statistics cannot solve the puzzle): per_tile_norm = true
    per_tile_norm: bool = False

    def check(self) -> None:
        limit = math.factorial(GRID * GRID)
        if not 1 <= self.num_permutations <= limit:
            raise ConfigError(
                f"jigsaw.num_permutations must be between 1 and 9! = {limit}, got {self.num_permutations}"
            )
        if self.permutation_variant not in VARIANTS:
            valid = ", ".join(VARIANTS)
            raise ConfigError(
                f"jigsaw.permutation_variant {self.permutation_variant!r} is not valid; choose one of {valid}"
            )
        if not 0.0 <= self.grayscale_p <= 1.0 or not 0.0 <= self.crop_scale_min <= 1.0:
            raise ConfigError("jigsaw.grayscale_p and jigsaw.crop_scale_min must be in [0, 1]")
        if self.tile_dim < 1 or self.crop < 0:
            raise ConfigError(f"jigsaw.tile_dim must be >= 1 and jigsaw.crop >= 0, got {self.tile_dim}, {self.crop}")
        if self.crop:
            self.tile_geometry(self.crop)

    def check_data(self, data: DataInfo, requested: Collection[str] = ()) -> None:
        self.tile_geometry(data.image_size)

    def tile_geometry(self, image_size: int) -> TileGeometry:
        """The 3x3 tiling of the crop (``crop``, or the image size if 0); a ConfigError if a tile cannot fit its cell."""
        crop = self.crop or image_size
        try:
            return TileGeometry.for_crop(crop, GRID)
        except ValueError:
            cell, tile = crop // GRID, max(1, round(PAPER_TILE_RATIO * (crop // GRID)))
            given = f"jigsaw.crop={crop}" if self.crop else f"jigsaw.crop=0 (the image size, data.image_size={crop})"
            raise ConfigError(
                f"{given}: its {tile} px tiles do not fit in {GRID}x{GRID} cells of {crop} // {GRID} = {cell} px; the rule is "
                f"1 <= tile <= cell = crop // {GRID} (tile = {PAPER_TILE_RATIO:.2f} x cell), so the crop must be at least "
                f"{GRID} px (paper: 255 px crop, 85 px cells, 64 px tiles); set jigsaw.crop >= {GRID}"
            ) from None


class Jigsaw(Method):
    name = "jigsaw"
    paper = (
        "Noroozi & Favaro, ECCV 2016, arXiv:1603.09246; ResNet-50 settings: Goyal et al., ICCV 2019, arXiv:1905.01235"
    )
    Config = JigsawConfig

    def __init__(self, backbone: Backbone, cfg: JigsawConfig, data: DataInfo) -> None:
        super().__init__(backbone, cfg, data)
        cfg.check()
        self.geometry = cfg.tile_geometry(data.image_size)
        perms = permutation_set(cfg.num_permutations, cfg.permutation_variant, cfg.permutation_seed, GRID)  # (P, 9)
        self.register_buffer("perms", perms)  # checkpointed: the labels mean these permutations
        self.tile_head = nn.Sequential(
            nn.Linear(backbone.num_features, cfg.tile_dim, bias=False),
            nn.BatchNorm1d(cfg.tile_dim),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(GRID * GRID * cfg.tile_dim, cfg.num_permutations)

    def transform(self) -> Callable[[Any], dict[str, Tensor]]:
        scale = (self.cfg.crop_scale_min, 1.0) if self.cfg.crop_scale_min > 0 else None
        return JigsawView(
            self.geometry.crop,
            self.data.mean,
            self.data.std,
            self.perms.cpu(),
            scale=scale,
            grayscale_p=self.cfg.grayscale_p,
            geometry=self.geometry,
            per_tile_norm=self.cfg.per_tile_norm,
        )

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        tiles = batch.views["tiles"]  # (B, 9, C, t, t), in shuffled order
        labels = batch.views["perm"]  # (B,) permutation index
        b, n = tiles.shape[:2]
        per_tile = self.tile_head(self.backbone(tiles.flatten(0, 1)))  # (B*9, tile_dim)
        logits = self.classifier(per_tile.reshape(b, n * self.cfg.tile_dim))  # (B, P)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "perm_acc": accuracy.detach()}
