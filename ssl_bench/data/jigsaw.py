"""The jigsaw tiler shared by Jigsaw and PIRL: tile geometry, tile extraction, per-tile normalisation, shuffling.

Paper geometry (Noroozi & Favaro, ECCV 2016, arXiv:1603.09246; ResNet-50 settings of Goyal et al., ICCV 2019,
arXiv:1905.01235, also used by PIRL, arXiv:1912.01991): a 255 px crop, a 3x3 grid of 85 px cells and one random
64x64 tile per cell (up to 21 px of jitter, so tiles never share an edge). Noroozi & Favaro also normalise each tile
on its own so that low-level statistics cannot solve the puzzle; Goyal et al. (VISSL) do not. ``per_tile_norm``
chooses; it is off by default, as in Goyal et al.

Tile k is the cell in row r = k // grid, column c = k % grid (row-major). All extraction is index arithmetic on
whole tensors (one gather), never a Python loop over tiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

from ssl_bench.data import device_augment
from ssl_bench.data.transforms import RandomPhotometric, photometric

PAPER_TILE_RATIO = 64 / 85  # Goyal et al. / PIRL: 64 px tiles in 85 px cells


@dataclass(frozen=True)
class TileGeometry:
    """A ``crop``-px square cut into ``grid`` x ``grid`` cells of ``crop // grid`` px, one ``tile``-px tile per cell.

    Proportions at any resolution: cell = crop // grid and tile = round(tile_ratio * cell) with the paper's
    tile_ratio = 64/85 (~0.75); 255 -> cell 85, tile 64. ``tile=0`` applies this rule. When crop is not a
    multiple of grid, the grid of cells is centred (``margin`` px left over on the top and left sides).
    """

    crop: int
    grid: int = 3
    tile: int = 0  # 0 = round(PAPER_TILE_RATIO * cell)

    def __post_init__(self) -> None:
        if self.grid < 1 or self.crop < self.grid:
            raise ValueError(f"TileGeometry: need crop >= grid >= 1, got crop={self.crop}, grid={self.grid}")
        if self.tile == 0:
            object.__setattr__(self, "tile", max(1, round(PAPER_TILE_RATIO * self.cell)))
        if not 1 <= self.tile <= self.cell:
            raise ValueError(
                f"TileGeometry: tile {self.tile} px does not fit in a cell of {self.cell} px (crop {self.crop} // grid {self.grid})"
            )

    @classmethod
    def for_crop(cls, crop: int, grid: int = 3, tile_ratio: float = PAPER_TILE_RATIO) -> "TileGeometry":
        cell = crop // grid
        return cls(crop=crop, grid=grid, tile=max(1, round(tile_ratio * cell)))

    @property
    def cell(self) -> int:
        return self.crop // self.grid

    @property
    def margin(self) -> int:
        return (self.crop - self.grid * self.cell) // 2

    @property
    def num_tiles(self) -> int:
        return self.grid * self.grid


def extract_tiles(
    images: Tensor,
    geometry: TileGeometry,
    generator: torch.Generator | None = None,
    jitter: bool = True,
    return_offsets: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """(B, C, crop, crop) or (C, crop, crop) -> (B, G*G, C, tile, tile) or (G*G, C, tile, tile).

    Tile k comes from row-major cell k, at an offset within the cell drawn uniformly from 0..cell-tile per axis
    (``jitter``) or centred. With ``return_offsets`` also returns each tile's top-left corner in the image,
    (B, G*G, 2) as (y, x).
    """
    single = images.ndim == 3
    x = images[None] if single else images  # (B, C, S, S)
    b, c, h, w = x.shape
    g, t, s = geometry.grid, geometry.tile, geometry.crop
    if (h, w) != (s, s):
        raise ValueError(f"extract_tiles: images are {h}x{w}, the geometry expects {s}x{s}")
    room = geometry.cell - t
    if jitter:
        offsets = torch.randint(0, room + 1, (b, g * g, 2), generator=generator)  # (B, G*G, 2)
    else:
        offsets = torch.full((b, g * g, 2), room // 2, dtype=torch.long)
    k = torch.arange(g * g)
    cell_corner = geometry.margin + geometry.cell * torch.stack([k // g, k % g], dim=-1)  # (G*G, 2)
    corner = (cell_corner + offsets).to(x.device)  # (B, G*G, 2)
    steps = torch.arange(t, device=x.device)
    rows = corner[..., 0, None] + steps  # (B, G*G, t)
    cols = corner[..., 1, None] + steps  # (B, G*G, t)
    flat_index = (rows[..., :, None] * s + cols[..., None, :]).reshape(b, g * g, 1, t * t)  # (B, G*G, 1, t*t)
    source = x.reshape(b, 1, c, s * s).expand(b, g * g, c, s * s)
    tiles = torch.gather(source, 3, flat_index.expand(b, g * g, c, t * t)).reshape(b, g * g, c, t, t)
    tiles = tiles[0] if single else tiles
    if return_offsets:
        return tiles, (corner[0] if single else corner)
    return tiles


def normalize_tiles(tiles: Tensor, eps: float = 1e-5) -> Tensor:
    """Each tile, each channel to zero mean and unit std over its own pixels: (..., C, t, t) -> same shape."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    var = tiles.var(dim=(-2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / torch.sqrt(var + eps)


def shuffle_tiles(tiles: Tensor, perms: Tensor, index: Tensor) -> Tensor:
    """(B, N, ...) tiles, (P, N) permutations, (B,) indices -> (B, N, ...) with out[b, j] = tiles[b, perms[index[b], j]].

    Position j of the shuffled sequence holds original tile perms[index[b]][j]; undo it with
    ``out.gather`` by the inverse permutation ``perms[index].argsort(1)``.
    """
    order = perms.to(tiles.device)[index.to(tiles.device)]  # (B, N)
    rows = torch.arange(tiles.shape[0], device=tiles.device)[:, None]  # (B, 1)
    return tiles[rows, order]


def assemble_tiles(tiles: Tensor, grid: int = 3) -> Tensor:
    """(B, G*G, C, t, t) -> (B, C, G*t, G*t) (or unbatched): the tiles laid out row-major, for tests and pictures."""
    single = tiles.ndim == 4
    x = tiles[None] if single else tiles
    b, n, c, t, _ = x.shape
    if n != grid * grid:
        raise ValueError(f"assemble_tiles: {n} tiles do not make a {grid}x{grid} grid")
    out = x.reshape(b, grid, grid, c, t, t).permute(0, 3, 1, 4, 2, 5).reshape(b, c, grid * t, grid * t)
    return out[0] if single else out


def _rgb_to_hsv(x: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV in [0, 1]."""
    r, g, b = x.unbind(-3)
    maxc, minc = x.max(-3).values, x.min(-3).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], -3)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(-3)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -3)  # (..., 3, H, W)
    return v.unsqueeze(-3) - v.unsqueeze(-3) * s.unsqueeze(-3) * (torch.minimum(k, 4 - k).clamp(0, 1))


def draw_tile_colour(
    n: int,
    strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2),
    gray_p: float = 0.2,
    photometric_p: float = 0.66,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """The random draws of ``jitter_tiles`` for ``n`` tiles, in its order: the jitter's four factors (torchvision's
    ranges; hue as a shift), ``RandomPhotometric``'s draw (if ``photometric_p`` > 0), the grayscale and flip coins,
    each (n,)."""
    bri, con, sat, hue = strength

    def factor(spread: float) -> Tensor:
        return (1 - spread + 2 * spread * torch.rand(n, generator=generator)).clamp_min(0)

    drawn: dict[str, Any] = {"brightness": factor(bri), "contrast": factor(con), "saturation": factor(sat)}
    drawn["hue"] = (2 * torch.rand(n, generator=generator) - 1) * hue
    drawn["photometric"] = RandomPhotometric(photometric_p).draw(n, generator) if photometric_p > 0 else None
    drawn["gray"] = torch.rand(n, generator=generator) < gray_p
    drawn["flip"] = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return drawn


def jitter_tiles(
    tiles: Tensor,
    strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2),
    gray_p: float = 0.2,
    photometric_p: float = 0.66,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PIRL's per-tile augmentation (VISSL pirl_jigsaw: every patch on its own gets ColorJitter(0.4, 0.4, 0.4, 0.2),
    ``ImgPilRandomPhotometric`` p = 0.66, grayscale 0.2 and a horizontal flip, in that order): (T, 3, t, t) in [0, 1]
    -> same, independent draws per tile (``draw_tile_colour``).

    The jitter is computed for all tiles at once, with torchvision's factor ranges; its order is fixed (brightness,
    contrast, saturation, hue) where torchvision shuffles it, which a batched version cannot do per tile. The
    photometric step runs per tile on uint8 (``photometric``).
    """
    n = tiles.shape[0]
    drawn = draw_tile_colour(n, strength, gray_p, photometric_p, flip, generator)

    def gray(x: Tensor) -> Tensor:
        return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)

    x = (tiles * drawn["brightness"].view(n, 1, 1, 1)).clamp(0, 1)
    c, s = drawn["contrast"].view(n, 1, 1, 1), drawn["saturation"].view(n, 1, 1, 1)
    x = (x * c + (1 - c) * gray(x).mean((-3, -2, -1), keepdim=True)).clamp(0, 1)
    x = (x * s + (1 - s) * gray(x)).clamp(0, 1)
    hsv = _rgb_to_hsv(x)
    x = _hsv_to_rgb(torch.stack([(hsv[:, 0] + drawn["hue"].view(n, 1, 1)) % 1.0, hsv[:, 1], hsv[:, 2]], 1))
    if drawn["photometric"] is not None:
        chosen, bits, sharpness, threshold = drawn["photometric"]
        levels = x.mul(255).round_().to(torch.uint8)
        if chosen.any():
            levels[chosen] = photometric(levels[chosen], bits[chosen], sharpness[chosen], threshold[chosen])
        x = levels.float().div_(255)
    x = torch.where(drawn["gray"].view(n, 1, 1, 1), gray(x), x)
    return torch.where(drawn["flip"].view(n, 1, 1, 1), x.flip(-1), x)


def tile_colour_parameters(drawn: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``draw_tile_colour``'s draws as the device's parameters (``device_augment``), (n, SIZE): the jitter in
    ``jitter_tiles``' fixed order, photometric, then grayscale. The flip is geometry: the worker does it."""
    n = len(drawn["gray"])
    p = device_augment.blank(mean, std, n)
    p[:, device_augment.BRIGHTNESS : device_augment.HUE + 1] = torch.stack(
        [drawn[k] for k in ("brightness", "contrast", "saturation", "hue")], 1
    )
    p[:, device_augment.ORDER] = torch.arange(4.0)
    p[:, device_augment.GRAY_AFTER] = drawn["gray"].float()
    if drawn["photometric"] is not None:
        chosen, bits, sharpness, threshold = drawn["photometric"]
        columns = [device_augment.PHOTOMETRIC, device_augment.BITS, device_augment.SHARPNESS, device_augment.THRESHOLD]
        p[:, columns] = torch.stack([chosen.float(), bits.float(), sharpness, threshold.float()], 1)
    return p


class JigsawView:
    """Per-sample view maker: image -> {"tiles": (G*G, C, t, t), "perm": ...} for the DataLoader.

    Random crop to ``crop`` px (``scale`` range of RandomResizedCrop; ``scale=None`` is Goyal et al.'s
    resize-to-256/255-of-the-crop then random crop), horizontal flip, image-level grayscale with ``grayscale_p``
    (0.66 in Goyal et al.'s Jigsaw), tiles, optional per-tile augmentation (PIRL: ``jitter_tiles``), mean/std
    normalisation, optional per-tile normalisation (Noroozi & Favaro), then a shuffle. With ``perms`` a permutation index p is drawn
    uniformly and "perm" is that int64 scalar; with ``perms=None`` (PIRL: tiles in random order) the order is a
    uniformly random permutation and "perm" is that (G*G,) order. Either way tiles[j] = unshuffled[order[j]].

    ``device_colour`` (with ``tile_color_jitter``, PIRL): the tiles are cut from the uint8 crop and flipped here, their
    colour is only drawn (``draw_tile_colour``, the same draws) and applied on the device (``data.device_augment``):
    "tiles" is (G*G, C, t, t) uint8 and "tiles.colour" its (G*G, P) parameters, shuffled alike. Jigsaw's own tiles
    (image-level grayscale only) stay per sample.
    """

    def __init__(
        self,
        crop: int,
        mean: Sequence[float],
        std: Sequence[float],
        perms: Tensor | None,
        scale: tuple[float, float] | None = (0.6, 1.0),
        grayscale_p: float = 0.66,
        tile_color_jitter: bool = False,
        geometry: TileGeometry | None = None,
        flip: bool = True,
        per_tile_norm: bool = False,
        device_colour: bool = False,
    ) -> None:
        if device_colour and (not tile_color_jitter or per_tile_norm):
            raise ValueError("JigsawView: device_colour needs tile_color_jitter and no per_tile_norm")
        self.device_colour = device_colour
        self.mean, self.std = list(mean), list(std)
        self.geometry = geometry or TileGeometry.for_crop(crop)
        if self.geometry.crop != crop:
            raise ValueError(f"JigsawView: geometry is for a {self.geometry.crop} px crop, not {crop}")
        if perms is not None and (perms.ndim != 2 or perms.shape[1] != self.geometry.num_tiles):
            raise ValueError(f"JigsawView: perms must be (P, {self.geometry.num_tiles}), got {tuple(perms.shape)}")
        self.perms = None if perms is None else perms.long().cpu()
        if scale is None:  # Goyal et al. / VISSL: Resize(256) + RandomCrop(255)
            cropping: list[Any] = [v2.Resize(math.ceil(crop * 256 / 255), antialias=True), v2.RandomCrop(crop)]
        else:
            cropping = [v2.RandomResizedCrop(crop, scale=scale, antialias=True)]
        steps = [v2.ToImage(), *cropping] + ([v2.RandomHorizontalFlip()] if flip else [])
        to_float = [v2.ToDtype(torch.float32, scale=True)] if not device_colour else []
        steps += [*to_float, v2.RandomGrayscale(p=grayscale_p)]
        if device_colour:  # uint8 throughout; a float input is taken to uint8 first
            steps.insert(1, v2.ToDtype(torch.uint8, scale=True))
        self.image_ops = v2.Compose(steps)
        # PIRL's per-tile augmentation (VISSL pirl_jigsaw config): colour jitter, photometric, grayscale, flip per tile
        self.tile_color_jitter = tile_color_jitter
        self.normalize = v2.Normalize(list(mean), list(std))
        self.per_tile_norm = per_tile_norm  # Noroozi & Favaro: yes; Goyal et al. and PIRL (VISSL): no

    def __call__(self, image: Any) -> dict[str, Tensor]:
        x = self.image_ops(image).as_subclass(Tensor)  # (C, crop, crop) in [0, 1] (uint8 with device_colour)
        tiles = extract_tiles(x, self.geometry)  # (G*G, C, t, t)
        if self.device_colour:
            drawn = draw_tile_colour(len(tiles))
            tiles = torch.where(drawn["flip"].view(-1, 1, 1, 1), tiles.flip(-1), tiles)
            params = tile_colour_parameters(drawn, self.mean, self.std)  # (G*G, P)
            order = torch.randperm(self.geometry.num_tiles)
            return {"tiles": tiles[order], device_augment.colour_key("tiles"): params[order], "perm": order}
        if self.tile_color_jitter:
            tiles = jitter_tiles(tiles)  # independent draws per tile, all tiles at once
        tiles = self.normalize(tiles)
        if self.per_tile_norm:
            tiles = normalize_tiles(tiles)
        if self.perms is None:
            order = torch.randperm(self.geometry.num_tiles)  # (G*G,)
            return {"tiles": tiles[order], "perm": order}
        p = torch.randint(len(self.perms), ())
        return {"tiles": tiles[self.perms[p]], "perm": p}
