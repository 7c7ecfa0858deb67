"""PIRL: pretext-invariant representations, contrasted against a memory bank.

Misra & van der Maaten, CVPR 2020, arXiv:1912.01991. An image I gives two views: v_I, the standard
augmented crop, and v_I^t, a transformed one (jigsaw: nine shuffled, separately coloured tiles of a crop;
or, Table 5, a rotated crop). f(v_I) and g(v_I^t) are 128-d unit vectors; both are pulled towards the
image's memory m_I and pushed from K bank negatives by NCE:

    L = λ · NCE(m_I, g(v_I^t)) + (1 - λ) · NCE(m_I, f(v_I)),   λ = 0.5   (Eq. 5)

and m_I moves towards f(v_I) only. NCE's Z is estimated from the image term's scores on the first batch (an
explicit ``update_z`` call), and both terms use the same draw of negatives: with λ = 0 PIRL is exactly NPID++ on the
same inputs. Sharing the draw is a choice of ours (VISSL draws per term); each term still sees uniform negatives.
Z from the image term is ours too (VISSL's comes from its first forward, the tile term's): the bank holds f's
embeddings, so f's scores are the ones Z normalises; on the first batch both terms score the same random bank.
With ``z_momentum`` > 0, Z follows the image term's per-batch estimate as an EMA (see ``ssl_bench.modules.nce``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.batch import Batch
from ssl_bench.data.device_augment import deferred, named
from ssl_bench.data.jigsaw import JigsawView
from ssl_bench.data.transforms import pirl_view
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.base import Method, MethodConfig
from ssl_bench.modules.heads import LinearEmbedding, TileEmbedding
from ssl_bench.modules.memory_bank import bank_and_loss, check_negatives, check_z_momentum

TRANSFORMS = ("jigsaw", "rotation")
PAPER_CROP_RATIO = 255 / 224  # VISSL's PIRL: 255 px jigsaw crops of 224 px images


@dataclass(frozen=True)
class PIRLConfig(MethodConfig):
    # PIRL's implementation details and VISSL pirl config: SGD momentum 0.9, wd 1e-4, lr 0.12 at batch 1024
    # = 0.03 at 256, cosine to 1.2e-4 (engine), 800 epochs in the paper preset
    lr: float = 0.03
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lam: float = 0.5  # λ of Eq. 5
    transform: str = "jigsaw"  # "jigsaw" | "rotation" (Table 5)
    embedding_dim: int = 128
    num_negatives: int = 32_000  # capped at N - 1 (warning)
    temperature: float = 0.07
    bank_momentum: float = 0.5
    loss: str = "nce"  # "nce" | "infonce"
    z_momentum: float = 0.0  # NCE's Z: 0 = fixed after the first batch (VISSL); 0.99 = EMA (CMC issue 23)
    shared_negatives: bool = True  # see ssl_bench.modules.memory_bank
    crop_scale: float = 0.08  # v_I's RandomResizedCrop, VISSL pirl config
    tile_crop_scale: float = 0.6  # the jigsaw crop covers 0.6-1 of the image (PIRL's jigsaw setup)
    # the jigsaw crop's size: 0 = VISSL's 255 px per 224 px of image (85 px cells, 64 px tiles), at any image size
    tile_crop: int = 0

    def check(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"pirl.transform={self.transform!r} is not valid; choose one of {', '.join(TRANSFORMS)}")
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"pirl.lam must be in [0, 1] (the weight of the transformed-view term), got {self.lam}")
        if self.num_negatives < 1:
            raise ConfigError(f"pirl.num_negatives must be at least 1, got {self.num_negatives}")
        if self.tile_crop and self.tile_crop < 3:
            raise ConfigError(f"pirl.tile_crop must be 0 (255/224 of the image) or at least 3 px, got {self.tile_crop}")
        check_z_momentum(self.z_momentum, "pirl.z_momentum")

    def check_data(self, data: DataInfo, requested: Collection[str] = ()) -> None:
        if "num_negatives" in requested:
            check_negatives(self.num_negatives, data.num_train, "pirl.num_negatives")


class PIRLViews:
    """image -> {"image": v_I (3, H, W), "tiles": (9, 3, t, t)} or {"image": v_I, "rotated": (3, H, W)}."""

    def __init__(self, cfg: PIRLConfig, data: DataInfo, device_colour: bool = False) -> None:
        size, mean, std = data.image_size, data.mean, data.std
        self.kind = cfg.transform
        self.image = deferred(pirl_view(size, mean, std, scale=(cfg.crop_scale, 1.0)), device_colour)
        # VISSL's PIRL: a 255 px crop (per 224 px image) in 9 tiles, each augmented on its own (jitter, photometric,
        # grayscale 0.2, flip: ``jitter_tiles``); no image-level grayscale or flip, no per-tile standardisation
        self.jigsaw = JigsawView(
            cfg.tile_crop or round(size * PAPER_CROP_RATIO),
            mean,
            std,
            perms=None,
            scale=(cfg.tile_crop_scale, 1.0),
            grayscale_p=0.0,
            tile_color_jitter=True,
            flip=False,
            per_tile_norm=False,
            device_colour=device_colour,
        )
        self.rotated = deferred(pirl_view(size, mean, std, scale=(cfg.crop_scale, 1.0)), device_colour)

    def __call__(self, image: Any) -> dict[str, Tensor]:
        if self.kind == "jigsaw":
            image_view = named("image", self.image(image))  # drawn first, then the tiles (in random order already)
            return {**image_view, **{k: v for k, v in self.jigsaw(image).items() if k != "perm"}}
        quarter_turns = int(torch.randint(4, ()))
        image_view, rotated = self.image(image), self.rotated(image)
        turn = lambda x: torch.rot90(x, quarter_turns, dims=(1, 2))  # noqa: E731  (colour commutes with it)
        rotated = (turn(rotated[0]), rotated[1]) if isinstance(rotated, tuple) else turn(rotated)
        return {**named("image", image_view), **named("rotated", rotated)}


class PIRL(Method):
    """f on v_I, g on v_I^t, NCE of both against the memory of I; the bank follows f."""

    name = "pirl"
    display_name: ClassVar[str] = "PIRL"
    paper = "Misra & van der Maaten, CVPR 2020, arXiv:1912.01991"
    Config = PIRLConfig
    detection_schedule: ClassVar[tuple[float, int]] = (0.002, 1000)  # VISSL's NPID++ / PIRL configs (see Method)

    def __init__(self, backbone: Backbone, cfg: PIRLConfig, data: DataInfo) -> None:
        super().__init__(backbone, cfg, data)
        cfg.check()
        self.cfg: PIRLConfig = cfg
        self.head = LinearEmbedding(backbone.num_features, cfg.embedding_dim)  # f
        self.transform_head: nn.Module = (  # g
            TileEmbedding(backbone.num_features, 9, cfg.embedding_dim)
            if cfg.transform == "jigsaw"
            else LinearEmbedding(backbone.num_features, cfg.embedding_dim)
        )
        self.bank, self.criterion, self.num_negatives = bank_and_loss(cfg, data.num_train)

    def transform(self, device_colour: bool = False) -> Callable[[Any], dict[str, Tensor]]:
        return PIRLViews(self.cfg, self.data, device_colour)

    def embed_transformed(self, views: dict[str, Tensor]) -> Tensor:
        """g(v_I^t): (B, 128) unit vectors from the tiles (each through the backbone) or the rotated crop."""
        if self.cfg.transform == "rotation":
            return self.transform_head(self.backbone(views["rotated"]))
        tiles = views["tiles"]  # (B, 9, 3, t, t)
        features = self.backbone(tiles.flatten(0, 1))  # (B·9, F)
        return self.transform_head(features.view(tiles.shape[0], tiles.shape[1], -1))  # (B, 9, F) -> (B, 128)

    def embeddings(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """f(v_I) and g(v_I^t): the pair whose distance is the paper's invariance measure (Fig. 4)."""
        if self.cfg.transform == "rotation":
            g = lambda x: self.embed_transformed({"rotated": x})  # noqa: E731
        else:
            g = lambda tiles: self.embed_transformed({"tiles": tiles})  # noqa: E731
        return {"image": lambda x: self.head(self.backbone(x)), "pooled": self.head, self.cfg.transform: g}

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        index = batch.index
        f = self.head(self.backbone(batch.views["image"]))  # (B, 128)
        g = self.embed_transformed(batch.views)  # (B, 128)
        negatives = self.bank.negatives(
            index, self.num_negatives, shared=self.cfg.shared_negatives
        )  # one draw, both terms
        pos_f, pos_g = self.bank.positive_scores(f, index), self.bank.positive_scores(g, index)  # (B,)
        neg_f = negatives.scores(f)  # (B, K)
        self.criterion.update_z(pos_f, neg_f)  # NCE: Z from the image term's scores (first batch, or EMA)
        loss_image = self.criterion(pos_f, neg_f)
        neg_g = negatives.scores(g)
        loss_transformed = self.criterion(pos_g, neg_g)
        loss = self.cfg.lam * loss_transformed + (1.0 - self.cfg.lam) * loss_image
        stats = self.criterion.stats(pos_f, neg_f)  # the image term: Z, weights of positive and negatives, cosines
        transformed = self.criterion.stats(pos_g, neg_g)
        self.bank.update(index, f.detach())  # the side effect, after the loss: m_I moves towards f(v_I)
        return {
            "loss": loss,
            "loss_image": loss_image.detach(),
            "loss_transformed": loss_transformed.detach(),
            **stats,
            "pos_sim_transformed": transformed["pos_sim"],
            "neg_weight_transformed": transformed["neg_weight"],
        }
