"""How invariant a representation is to the pretext transforms (PIRL Fig. 4).

For a fixed set of test images (the first ``num_images`` of the test split, centre view) and ``repeats``
transformed versions of each, the L2 distance between the unit-normalised representation of the image and of
its transformed version (0 = invariant, sqrt(2) = orthogonal, 2 = opposite):

* ``jigsaw``: the 3x3 tiles of the view (the geometry of ``data.jigsaw``, tiles centred in their cells) laid
  out in their own order vs. the same tiles in a random permutation; representation = pooled backbone features.
* ``rotation``: the view vs. the view turned by 90, 180 or 270 degrees (cycled over the repeats).
* for a method whose heads embed both the image and a transform's input (PIRL's f and g, as in the paper's figure):
  f(v_I) vs. g(v_I^t), with v_I^t the shuffled tiles (or the rotated view for PIRL-rotation); layer ``head``.

Every image, repeat and permutation is drawn from ``InvarianceConfig.seed``: all methods see the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ssl_bench.backbone import Backbone
from ssl_bench.config import each_of, positive
from ssl_bench.data.jigsaw import TileGeometry, assemble_tiles, extract_tiles
from ssl_bench.data.transforms import eval_view
from ssl_bench.data.types import DataInfo

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TRANSFORMS = ("jigsaw", "rotation")


@dataclass
class InvarianceConfig:
    """PIRL Fig. 4: L2 distance between unit-normalised representations of an image and its transformed versions."""

    num_images: int = 500  # a fixed set: the first images of the test split
    transforms: list[str] = field(default_factory=lambda: ["jigsaw", "rotation"])
    repeats: int = 4  # transformed versions per image (different permutations / rotations)
    seed: int = 0

    def check(self) -> None:
        positive("invariance", self, "num_images", "repeats")
        each_of("invariance", self, "transforms", TRANSFORMS)


def distance(a: Tensor, b: Tensor) -> Tensor:
    """(N, D), (N, D) -> (N,): L2 distance of the unit-normalised rows."""
    return (F.normalize(a.float(), dim=1) - F.normalize(b.float(), dim=1)).norm(dim=1)


def summary(d: Tensor) -> dict[str, float]:
    """mean, std and quantiles (q05 ... q95) of a distance sample."""
    out = {"mean": float(d.mean()), "std": float(d.std()) if len(d) > 1 else 0.0}
    q = torch.quantile(d.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    out.update({f"q{round(p * 100):02d}": float(v) for p, v in zip(QUANTILES, q)})
    return out


def test_views(test: Dataset, info: DataInfo, num_images: int) -> Tensor:
    """(N, 3, S, S) normalised centre views of the first ``num_images`` test images."""
    view = eval_view(info.image_size, info.mean, info.std)
    n = min(num_images, len(test))  # type: ignore[arg-type]
    return torch.stack([view(test[i][0]) for i in range(n)])


def draws(cfg: InvarianceConfig, n: int, num_tiles: int = 9) -> tuple[Tensor, Tensor]:
    """Seeded (repeats, n, num_tiles) tile orders and (repeats, n) quarter turns in 1..3, the same for every method."""
    g = torch.Generator().manual_seed(cfg.seed)
    orders = torch.argsort(torch.rand(cfg.repeats, n, num_tiles, generator=g), dim=-1)
    turns = (torch.arange(cfg.repeats)[:, None] % 3 + 1).expand(cfg.repeats, n)
    return orders, turns


def canonical_tiles(views: Tensor) -> Tensor:
    """(N, 3, S, S) -> (N, 9, 3, t, t): centred tiles of the paper's geometry at this size."""
    return extract_tiles(views, TileGeometry.for_crop(views.shape[-1]), jitter=False)


def shuffled(tiles: Tensor, order: Tensor) -> Tensor:
    """(N, 9, ...) tiles, (N, 9) orders -> tiles[n, order[n]]."""
    return tiles[torch.arange(len(tiles))[:, None], order]


@torch.no_grad()
def _batched(fn: Callable[..., Tensor], *inputs: Tensor, batch: int = 256) -> Tensor:
    return torch.cat([fn(*(x[i : i + batch] for x in inputs)) for i in range(0, len(inputs[0]), batch)])


@torch.no_grad()
def backbone_distances(
    backbone: Backbone, views: Tensor, transform: str, cfg: InvarianceConfig, device: torch.device
) -> Tensor:
    """(repeats * N,) distances between pooled backbone features of each view and its transformed versions."""
    backbone.eval()

    def pooled(x: Tensor) -> Tensor:
        return backbone(x.to(device)).float().cpu()

    orders, turns = draws(cfg, len(views))
    if transform == "jigsaw":
        tiles = canonical_tiles(views)
        base = _batched(pooled, assemble_tiles(tiles))
        out = [distance(base, _batched(pooled, assemble_tiles(shuffled(tiles, order)))) for order in orders]
    elif transform == "rotation":
        base = _batched(pooled, views)
        out = [distance(base, _batched(pooled, torch.rot90(views, int(k[0]), dims=(2, 3)))) for k in turns]
    else:
        raise ValueError(f"invariance transform {transform!r}: choose jigsaw or rotation")
    return torch.cat(out)


@torch.no_grad()
def head_distances(
    f: Callable[[Tensor], Tensor],
    g: Callable[[Tensor], Tensor],
    transform: str,
    views: Tensor,
    cfg: InvarianceConfig,
    device: torch.device,
) -> Tensor:
    """(repeats * N,) distances between f(v_I) and g(v_I^t) over many permutations (or rotations).

    ``f`` embeds views (B, 3, S, S); ``g`` embeds the transform's input: shuffled tiles (B, 9, 3, t, t) for jigsaw,
    rotated views for rotation (a trained method's ``embeddings()``, e.g. PIRL's two heads)."""
    orders, turns = draws(cfg, len(views))
    base = _batched(lambda x: f(x.to(device)).float().cpu(), views)
    out = []
    for order, k in zip(orders, turns):
        if transform == "jigsaw":
            tiles = shuffled(canonical_tiles(views), order)
            other = _batched(lambda t: g(t.to(device)).float().cpu(), tiles)
        else:
            other = _batched(lambda x: g(x.to(device)).float().cpu(), torch.rot90(views, int(k[0]), dims=(2, 3)))
        out.append(distance(base, other))
    return torch.cat(out)
