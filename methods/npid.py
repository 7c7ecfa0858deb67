"""NPID++: instance discrimination against a memory bank, with NCE and many negatives.

NPID (Wu et al., CVPR 2018, arXiv:1805.01978) treats every training image as its own class: the 128-d
unit embedding f(v) of an augmented view should score high against the image's memory-bank slot and low
against K random other slots, by noise-contrastive estimation. "NPID++" is PIRL's stronger re-run
(Misra & van der Maaten, CVPR 2020, arXiv:1912.01991, Sec. 4): K = 32,000 negatives instead of 4,096 and
PIRL's longer schedule. After the loss, the batch's slots move towards f(v) (momentum 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.batch import Batch
from ssl_bench.data.device_augment import deferred, named
from ssl_bench.data.transforms import npid_view, npidpp_view
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.base import Method, MethodConfig
from ssl_bench.modules.heads import LinearEmbedding
from ssl_bench.modules.memory_bank import bank_and_loss, check_negatives, check_z_momentum

AUGMENTATIONS = {"vissl": npidpp_view, "npid": npid_view}


@dataclass(frozen=True)
class NPIDConfig(MethodConfig):
    # PIRL's optimisation (paper's implementation details; VISSL pirl config): SGD momentum 0.9, wd 1e-4,
    # lr 0.12 at batch 1024 = 0.03 at 256; the cosine decay to 1.2e-4 is the engine's schedule
    lr: float = 0.03
    weight_decay: float = 1e-4
    momentum: float = 0.9
    embedding_dim: int = 128  # NPID and PIRL
    num_negatives: int = 32_000  # the "++" of PIRL; NPID used 4,096. Capped at N - 1 (warning).
    temperature: float = 0.07  # NPID and PIRL
    bank_momentum: float = 0.5  # NPID's code (lemniscate --nce-m 0.5), PIRL's VISSL config
    loss: str = "nce"  # "nce" (NPID, PIRL) | "infonce"
    z_momentum: float = 0.0  # NCE's Z: 0 = fixed after the first batch (NPID, VISSL); 0.99 = EMA (CMC issue 23)
    shared_negatives: bool = True  # one negative set per batch (fast); False = independent (B, K) sets as in the paper
    augmentation: str = "vissl"  # "vissl": VISSL's NPID++ (jitter 0.4 x 4, no grayscale); "npid": lemniscate's
    crop_scale: float = 0.08  # smallest RandomResizedCrop area: VISSL's NPID++ (torchvision's default); NPID's code 0.2

    def check(self) -> None:
        if self.num_negatives < 1:
            raise ConfigError(f"npidpp.num_negatives must be at least 1, got {self.num_negatives}")
        check_z_momentum(self.z_momentum, "npidpp.z_momentum")
        if self.augmentation not in AUGMENTATIONS:
            raise ConfigError(
                f"npidpp.augmentation={self.augmentation!r} is not valid; choose one of {', '.join(AUGMENTATIONS)}"
            )

    def check_data(self, data: DataInfo, requested: Collection[str] = ()) -> None:
        if "num_negatives" in requested:
            check_negatives(self.num_negatives, data.num_train, "npidpp.num_negatives")


class NPIDpp(Method):
    """f = normalize(linear(pooled backbone features)); NCE of f(v) against bank[index] and K bank negatives."""

    name = "npidpp"
    display_name: ClassVar[str] = "NPID++"
    paper = "Wu et al., CVPR 2018, arXiv:1805.01978; '++' as in Misra & van der Maaten, CVPR 2020, arXiv:1912.01991"
    Config = NPIDConfig
    detection_schedule: ClassVar[tuple[float, int]] = (0.002, 1000)  # VISSL's NPID++ / PIRL configs (see Method)

    def __init__(self, backbone: Backbone, cfg: NPIDConfig, data: DataInfo) -> None:
        super().__init__(backbone, cfg, data)
        self.cfg: NPIDConfig = cfg
        self.head = LinearEmbedding(backbone.num_features, cfg.embedding_dim)
        self.bank, self.criterion, self.num_negatives = bank_and_loss(cfg, data.num_train)

    def transform(self, device_colour: bool = False) -> Callable[[Any], dict[str, Tensor]]:
        view = AUGMENTATIONS[self.cfg.augmentation]
        crop = view(self.data.image_size, self.data.mean, self.data.std, scale=(self.cfg.crop_scale, 1.0))
        crop = deferred(crop, device_colour)
        return lambda image: named("image", crop(image))

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        f = self.head(self.backbone(batch.views["image"]))  # (B, 128), unit, float32
        negatives = self.bank.negatives(batch.index, self.num_negatives, shared=self.cfg.shared_negatives)
        pos = self.bank.positive_scores(f, batch.index)  # (B,)
        neg = negatives.scores(f)  # (B, K)
        self.criterion.update_z(pos, neg)  # NCE: Z from the first batch's scores (NPID's NCEAverage), then fixed or EMA
        loss = self.criterion(pos, neg)
        stats = self.criterion.stats(pos, neg)  # Z, the weights of the positive and the negatives, mean cosines
        self.bank.update(batch.index, f.detach())  # the side effect, after the loss: slots move towards f(v)
        return {"loss": loss, **stats}

    def embeddings(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """f: the 128-d unit embedding the bank holds (what NPID's own kNN classifies), from images or from the
        backbone's pooled features."""
        return {"image": lambda x: self.head(self.backbone(x)), "pooled": self.head}
