"""The memory bank of NPID and PIRL: one momentum-updated, unit-norm embedding per training image.

NPID, Wu et al., CVPR 2018, arXiv:1805.01978; PIRL uses the same bank.

Negatives. Every sample gets K negatives drawn uniformly, with replacement, from the N - 1 slots other
than its own (NPID's code draws from all N, so a sample could meet its own memory as a negative; that
is rare at ImageNet scale, K/N = 2.5%, but common on small sets, 0.64 per sample on CIFAR-10 with
K = 32,000, and it pulls against the positive term, so the own slot is excluded here). Two routes give
each sample exactly this distribution:

* shared (the default): one set of K indices per batch, gathered once as (K, D) and scored with one
  matmul; where a sample's own index was drawn, that one entry is redrawn for that sample. Cost O(K·D)
  memory. Samples of a batch share negatives (correlated across samples, identical marginals), so the
  expected loss is the same as with independent sets.
* per-sample (the paper's, and NPID's code): independent (B, K) indices gathered into a preallocated
  (B·K, D) buffer with ``index_select(out=)``; 4.2 GB at B = 256, K = 32,000, D = 128.

Measured on 2 CPU cores at ImageNet scale (N = 1,281,167, B = 256, K = 32,000), one NCE forward takes
~30-60 ms shared vs ~0.6-0.7 s per-sample (forward + backward ~55-80 ms vs ~1.5-1.7 s); the gather into the
reused buffer takes ~0.25-0.35 s where a fresh 4.2 GB allocation takes ~2-3 s.

K is capped at N - 1 with a warning. All scores are float32 cosines, also under bf16 autocast.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ssl_bench import distributed
from ssl_bench.config import ConfigError
from ssl_bench.modules.nce import contrast_loss


def cap_negatives(k: int, size: int) -> int:
    """K, or N - 1 with a warning when the bank holds fewer than K + 1 slots."""
    if size < 2:
        raise ValueError(f"a memory bank needs at least 2 slots (training images) to draw negatives, got {size}")
    if k > size - 1:
        warnings.warn(
            f"{k} negatives requested but the memory bank has only {size} slots (one per training image): "
            f"using {size - 1} negatives per sample (N - 1)",
            stacklevel=2,
        )
        return size - 1
    return k


def check_negatives(k: int, size: int, key: str) -> None:
    """An explicitly requested K must fit a bank of ``size`` slots (a default K is capped by ``cap_negatives`` instead)."""
    if k > size - 1:
        raise ConfigError(
            f"{key}={k} is more than this dataset allows: the memory bank has one slot per training image, {size} here, "
            f"so at most {size - 1} negatives (N - 1); set {key}={size - 1} or less, or train on more images"
        )


def check_z_momentum(m: float, key: str) -> None:
    if not 0.0 <= m < 1.0:
        raise ConfigError(f"{key}={m} must be in [0, 1): 0 fixes NCE's Z after the first batch, 0.99 is an EMA")


@dataclass
class Negatives:
    """The K negatives of each sample of a batch, gathered from the bank.

    Shared: ``index`` (K,), ``memory`` (K, D), and ``redraw`` = (rows (n,), cols (n,), memory (n, D)) replacing
    the entries where a sample drew its own slot. Per-sample: ``index`` (B, K), ``memory`` (B, K, D).
    """

    index: Tensor
    memory: Tensor
    redraw: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def shared(self) -> bool:
        return self.index.ndim == 1

    def scores(self, x: Tensor) -> Tensor:
        """(B, D) unit vectors -> (B, K) cosines with each sample's negatives, in float32."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if not self.shared:
                return torch.bmm(self.memory, x.unsqueeze(2)).squeeze(2)  # (B, K)
            if self.redraw is None:
                return x @ self.memory.T  # (B, K)
            return RedrawnScores.apply(x, self.memory, *self.redraw)


class RedrawnScores(torch.autograd.Function):
    """x (B, D) @ memory (K, D).T, with the n entries (rows, cols) scored against their redrawn memories (n, D).

    The numbers of ``(x @ memory.T).index_put((rows, cols), (x[rows] * redrawn).sum(1))`` without its two copies of
    the (B, K) scores: forward writes the n entries in place, and backward zeroes them in the incoming gradient for
    the matmul and puts them back (autograd's index_put copies the whole gradient to zero them).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, memory: Tensor, rows: Tensor, cols: Tensor, redrawn: Tensor) -> Tensor:
        scores = x @ memory.T  # (B, K)
        scores.index_put_((rows, cols), (x[rows] * redrawn).sum(1))
        ctx.save_for_backward(memory, rows, cols, redrawn)
        return scores

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        memory, rows, cols, redrawn = ctx.saved_tensors
        at = grad[rows, cols]  # (n,) the redrawn entries' gradient
        masked = grad if grad.is_contiguous() else grad.contiguous()  # writable: an expanded gradient is copied
        masked.index_put_((rows, cols), torch.zeros_like(at))
        grad_x = masked @ memory  # (B, D)
        masked.index_put_((rows, cols), at)  # the incoming gradient as it came
        grad_x += torch.zeros_like(grad_x).index_put_((rows,), at.unsqueeze(1) * redrawn, accumulate=True)
        return grad_x, None, None, None, None


class MemoryBank(nn.Module):
    """(N, D) unit vectors in a buffer (so checkpoints hold it), updated as normalize(m·old + (1 - m)·v)."""

    memory: Tensor

    def __init__(
        self, size: int, dim: int = 128, momentum: float = 0.5, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"memory-bank momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        bound = 1.0 / math.sqrt(dim / 3)  # NPID's init: uniform in ±1/sqrt(D/3), then L2-normalised
        memory = torch.rand(size, dim, generator=generator).mul_(2 * bound).sub_(bound)
        self.register_buffer("memory", F.normalize(memory, dim=1))
        self._gathered = torch.empty(0)  # per-sample negatives, reused across steps (not state)

    @property
    def size(self) -> int:
        return self.memory.shape[0]

    @property
    def dim(self) -> int:
        return self.memory.shape[1]

    @torch.no_grad()
    def update(self, index: Tensor, v: Tensor) -> None:
        """In place: slots ``index`` (B,) become normalize(m·old + (1 - m)·v), v (B, D). Indices must be distinct.

        Under torch.distributed the whole global batch's (index, v) is gathered and applied on every rank, so the
        banks of all ranks stay identical (and equal to one process that saw the global batch).
        """
        index, v = distributed.gather_cat(index), distributed.gather_cat(v.detach().contiguous())
        old = self.memory.index_select(0, index)  # (B, D)
        new = old.mul_(self.momentum).add_(v.detach().to(old.dtype), alpha=1.0 - self.momentum)
        self.memory.index_copy_(0, index, F.normalize(new, dim=1))

    def positive_scores(self, x: Tensor, index: Tensor) -> Tensor:
        """(B, D) unit vectors, (B,) slots -> (B,) float32 cosines with their own memories."""
        with torch.autocast(x.device.type, enabled=False):
            return (x.float() * self.memory.index_select(0, index)).sum(1)  # not memory[index]: split over threads

    def sample_negatives(
        self, k: int, exclude: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Uniform slot indices with replacement: (K,) over all N if ``exclude`` is None, else (B, K) where row b
        avoids slot exclude[b] (draw from N - 1 values, shift those >= exclude[b] up by one)."""
        device = self.memory.device
        if exclude is None:
            return torch.randint(0, self.size, (k,), generator=generator, device=device)
        drawn = torch.randint(0, self.size - 1, (exclude.shape[0], k), generator=generator, device=device)  # (B, K)
        return drawn + (drawn >= exclude.unsqueeze(1)).long()

    @torch.no_grad()
    def negatives(
        self, index: Tensor, k: int, shared: bool = True, generator: torch.Generator | None = None
    ) -> Negatives:
        """K negatives for each sample of a batch with slots ``index`` (B,); see the module docstring.

        Per-sample draws reuse one gather buffer: the next draw overwrites it, so call backward first
        (autograd raises "modified by an inplace operation" otherwise).

        Under torch.distributed the draw is made for the global batch (every rank's slots, gathered) from a generator
        that every rank holds in the same state, and each rank keeps its own rows: the negatives of a sample do not
        depend on the number of processes.
        """
        local = index.shape[0]
        offset = distributed.rank() * local
        index = distributed.gather_cat(index)
        if k > self.size - 1:
            raise ValueError(f"{k} negatives from a bank of {self.size} slots: cap K with cap_negatives() first")
        if shared:
            idx = self.sample_negatives(k, generator=generator)  # (K,)
            # (c,) columns that are some sample's own slot; a mask over the N slots, not torch.isin, which sorts the K
            # draws (1.9 ms vs 0.11 ms at K = 32,000, N = 1.28M: benchmarks/README.md, "Side by side with a peer")
            own = torch.zeros(self.size, dtype=torch.bool, device=idx.device).index_fill_(0, index, True)
            candidates = own[idx].nonzero().squeeze(1)
            hits = idx[candidates].unsqueeze(0) == index.unsqueeze(1)  # (B, c)
            rows, hit_cols = hits.nonzero(as_tuple=True)
            cols = candidates[hit_cols]
            redraw = None
            if rows.numel():
                again = self.sample_negatives(1, exclude=index[rows], generator=generator).squeeze(1)  # (n,)
                mine = (rows >= offset) & (rows < offset + local)
                if mine.any():
                    redraw = (rows[mine] - offset, cols[mine], self.memory.index_select(0, again[mine]))
            return Negatives(idx, self.memory.index_select(0, idx), redraw)
        idx = self.sample_negatives(k, exclude=index, generator=generator)[offset : offset + local]  # (B, K)
        n = idx.numel()
        buf = self._gathered
        if buf.numel() != n * self.dim or buf.device != self.memory.device or buf.dtype != self.memory.dtype:
            self._gathered = torch.empty(n, self.dim, dtype=self.memory.dtype, device=self.memory.device)
        out = self._gathered.view(n, self.dim)
        torch.index_select(self.memory, 0, idx.view(-1), out=out)
        return Negatives(idx, out.view(*idx.shape, self.dim))


def bank_and_loss(cfg: Any, num_data: int) -> tuple[MemoryBank, nn.Module, int]:
    """The memory-bank setup NPID++ and PIRL share: (bank, contrastive loss, K) for a method config with
    ``embedding_dim``, ``bank_momentum``, ``loss``, ``temperature``, ``z_momentum`` and ``num_negatives``; K capped
    at N - 1."""
    bank = MemoryBank(num_data, cfg.embedding_dim, cfg.bank_momentum)
    criterion = contrast_loss(cfg.loss, num_data, cfg.temperature, cfg.z_momentum)  # NCE holds Z in a buffer
    return bank, criterion, cap_negatives(cfg.num_negatives, num_data)
