"""Small projection heads onto the unit sphere, shared by NPID++ and PIRL.

``LinearEmbedding`` is NPID's and PIRL's f (pooled features -> linear -> 128-d); ``TileEmbedding`` is PIRL's
g for jigsaw (PIRL, Misra & van der Maaten, CVPR 2020, arXiv:1912.01991, Sec. 3.2): every tile's pooled
features go through one shared linear layer to 128-d, the nine vectors are concatenated in the order the
tiles come in, and a second linear layer maps the concatenation to 128-d. Outputs are L2-normalised float32.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LinearEmbedding(nn.Module):
    """(B, in) -> (B, dim) unit vectors."""

    def __init__(self, in_features: int, dim: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x).float(), dim=1)


class TileEmbedding(nn.Module):
    """(B, T, in) per-tile features -> shared linear (B, T, dim) -> concat (B, T·dim) -> linear -> (B, dim) unit vectors."""

    def __init__(self, in_features: int, num_tiles: int = 9, dim: int = 128) -> None:
        super().__init__()
        self.num_tiles = num_tiles
        self.tile = nn.Linear(in_features, dim)
        self.joint = nn.Linear(num_tiles * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.num_tiles:
            raise ValueError(f"expected (B, {self.num_tiles}, features) tile features, got {tuple(x.shape)}")
        per_tile = self.tile(x)  # (B, T, dim)
        return F.normalize(self.joint(per_tile.flatten(1)).float(), dim=1)
