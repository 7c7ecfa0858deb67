"""The batch every method receives: named views, the class target and the dataset index of each sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """``views`` maps a view name (e.g. "image", "tiles", "rotations") to a (B, ...) tensor.

    ``index`` is each sample's position in the training set: NPID++ and PIRL key their memory bank on it,
    so it is a field of its own, never a label in disguise. ``target`` is the class label (only the
    supervised baseline and the evaluations read it).
    """

    views: dict[str, Tensor]
    target: Tensor  # (B,)
    index: Tensor  # (B,)

    def to(self, device: torch.device | str, channels_last: bool = False) -> "Batch":
        def move(t: Tensor) -> Tensor:
            t = t.to(device, non_blocking=True)
            if channels_last and t.ndim == 4 and t.is_floating_point():
                t = t.contiguous(memory_format=torch.channels_last)
            return t

        return Batch({k: move(v) for k, v in self.views.items()}, self.target.to(device), self.index.to(device))

    def __len__(self) -> int:
        return int(self.target.shape[0])


def collate(samples: list[tuple[dict[str, Tensor], int, int]]) -> Batch:
    """Stack per-sample view dicts (from a method's transform) into one Batch."""
    views = {k: torch.stack([torch.as_tensor(s[0][k]) for s in samples]) for k in samples[0][0]}
    target = torch.tensor([s[1] for s in samples], dtype=torch.long)
    index = torch.tensor([s[2] for s in samples], dtype=torch.long)
    return Batch(views, target, index)
