"""Noise-contrastive estimation against a memory bank, and InfoNCE.

NCE as in NPID (Wu et al., CVPR 2018, arXiv:1805.01978) and PIRL (arXiv:1912.01991, Eq. 2-3):
each score s is a cosine; the model probability of the pair is P = exp(s/τ)/Z and the noise is uniform,
Pn = 1/N. With K noise samples per positive, h = P / (P + K·Pn) is the probability that a pair came from
the data, and

    loss = -mean_b [ log h(pos_b) + Σ_k log(1 - h(neg_bk)) ].

Written as binary logistic regression with logit x = s/τ - log Z - log(K/N), log h = logsigmoid(x) and
log(1 - h) = logsigmoid(-x): the same numbers without NPID's ε = 1.2e-7 inside the logs, and stable.
Z. The estimator is N · mean(exp(s/τ)) over a batch's positives and negatives (NPID's NCEAverage). With
``z_momentum = 0`` (NPID's and VISSL's code, the paper's) it is taken once, on the first batch, while the bank is still
random, and then fixed. A fixed Z makes NCE a fixed threshold on the cosine, about s* = τ·log(K·E[exp(s/τ)]) of the
random bank; once the bank holds real embeddings whose cosines pass it, the summed weight of the negatives,
Σ_k h(neg_k), grows to hundreds of times the positive's 1 - h(pos), and the gradient pushes every embedding away from
the bank's mean, its own slot included. ``z_momentum = m > 0`` re-estimates Z on every batch as an exponential moving
average, Z <- m·Z + (1 - m)·estimate (the fix Kaiming He gave in HobbitLong/CMC issue 23, m = 0.99), so the
threshold follows the bank. Z lives in a buffer so checkpoints keep it. The estimate is an explicit call,
``update_z(pos, neg)``, made by the method on the scores it chooses (PIRL: the image term's) before the loss; the loss
refuses to run before the first one. Both losses take the call, so a method holds either behind one interface, and
both report per-step diagnostics (``stats``) that the training log averages per epoch.

The NCE loss is one hand-written pass (``FusedNCE``) over cache-sized row chunks of the (B, K) scores that yields
the loss, its gradient and the negatives' weights for ``stats`` together; the autograd graph made about ten full-size
passes and fresh (B, K) tensors, and ``stats`` two more. Per chunk: the logit x; h = sigmoid(x), which is the weight
and, scaled, the gradient (d(-log(1 - h))/dx = h); and log(1 - h) taken in float64 from that h (1 - h is exact there,
so the log keeps h's float32 precision) while every h of the row is at most 0.9, else as log-sigmoid(-x), which stays
exact where h nears 1. The loss and gradient are within 1e-6 of float64's (tested). Only fast vectorised kernels run
on the whole chunk: ATen's CPU log-sigmoid, log1p and softplus run about 5 ns an element, ten times its sigmoid and
log, and log-sigmoid alone cost 3-4x the (B x 128) @ (128 x K) matmul at ImageNet scale (benchmarks/README.md, (c);
torch.compile of the loss measured no faster, needs a compiler at run time and moves the last bits).

InfoNCE (van den Oord et al. 2018, arXiv:1807.03748) is softmax cross-entropy over [pos, negatives]/τ.
Both compute in float32, also under bf16 autocast.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ssl_bench import distributed

# CPU: rows of the (B, K) negative scores per step of a fused pass, about 4 MB: the pass reuses two float32 buffers
# of that size and one float64, where whole-matrix ops make fresh (B, K) tensors. 512 KB - 4 MB measured alike at
# K = 32,000; one whole-matrix chunk made the NPID++ step 1.5x slower, 16 MB 1.2x. Fewer chunks also mean fewer
# thread-pool rounds, which cost milliseconds each when the cores are oversubscribed. Other devices take all rows at
# once (no per-core cache to fit, and every launch costs).
CHUNK_BYTES = 4 << 20


def chunk_rows(rows: int, cols: int, device: torch.device) -> int:
    """Rows of a (rows, cols) float32 matrix per chunk of a fused pass: CHUNK_BYTES on the CPU, all elsewhere."""
    if device.type != "cpu":
        return max(rows, 1)
    return max(1, min(rows, CHUNK_BYTES // (4 * max(cols, 1))))


def nce_shift(z: Tensor | float, num_negatives: int, num_data: int, device: torch.device) -> Tensor:
    """log Z + log(K·Pn), Pn = 1/N: what the logit subtracts from s/τ (float32, 0-dim)."""
    log_z = torch.log(torch.as_tensor(z, dtype=torch.float32, device=device))
    return log_z + math.log(num_negatives / num_data)


def nce_logits(scores: Tensor, temperature: float, z: Tensor | float, num_negatives: int, num_data: int) -> Tensor:
    """Logit of "came from the data": s/τ - log Z - log(K·Pn), Pn = 1/N."""
    return (scores.float() / temperature).sub_(nce_shift(z, num_negatives, num_data, scores.device))


# Rows with an h above this take log(1 - h) as log-sigmoid(-x): there h's own float32 rounding, ~6e-8·h, would be a
# larger part of 1 - h (at 0.9, 2e-7 of log(1 - h)).
NEAR_ONE = 0.9


class FusedNCE(torch.autograd.Function):
    """Binary NCE on float32 cosines pos (B,) and neg (B, K) in one pass over row chunks of neg, returning the loss
    and Σ_k h(neg_bk) per row (B,) (``stats``' weight of the negatives, not differentiable).

    Forward keeps h for each negative and -(1 - h) for the positive; backward multiplies them in place by the upstream
    gradient / (B·τ), giving h/(B·τ) and -(1 - h)/(B·τ) (the derivatives of -log(1 - h) and -log h in s) in one pass;
    a power-of-2 upstream gradient such as PIRL's λ = 0.5 scales them exactly. It keeps one (B, K) tensor, h, where
    the unfused graph made about ten.
    """

    @staticmethod
    def forward(ctx: Any, pos: Tensor, neg: Tensor, temperature: float, shift: Tensor) -> tuple[Tensor, Tensor]:
        b, k = neg.shape
        rows = chunk_rows(b, k, neg.device)
        need_grad = any(ctx.needs_input_grad[:2])
        grad_neg = torch.empty_like(neg) if need_grad else None  # h, scaled by 1 / (B·τ) in backward
        log_1mh = neg.new_empty(b)  # Σ_k log(1 - h(neg_bk))
        weights = neg.new_empty(b)  # Σ_k h(neg_bk)
        logit, wide = neg.new_empty(rows, k), neg.new_empty(rows, k, dtype=torch.float64)  # reused by every chunk
        spare = neg.new_empty(rows, k) if grad_neg is None else None
        for i in range(0, b, rows):
            n = min(rows, b - i)
            x, log_q = logit[:n], wide[:n]
            h = grad_neg[i : i + n] if spare is None else spare[:n]
            torch.div(neg[i : i + n], temperature, out=x).sub_(shift)  # x = s/τ - log Z - log(K·Pn)
            torch.sigmoid(x, out=h)
            torch.sum(h, 1, out=weights[i : i + n])
            log_q.copy_(h).neg_().add_(1).log_()  # log(1 - h), 1 - h exact in float64
            near_one = (torch.amax(h, 1) > NEAR_ONE).nonzero().squeeze(1)  # rare: rows with an h near 1
            if near_one.numel():
                log_q[near_one] = F.logsigmoid(x[near_one].neg()).double()  # log(1 - h) = log-sigmoid(-x)
            log_1mh[i : i + n] = log_q.sum(1)
        x_pos = torch.div(pos, temperature).sub_(shift)  # (B,)
        loss = -(F.logsigmoid(x_pos) + log_1mh).mean()
        if need_grad:
            grad_pos = torch.sigmoid(-x_pos).neg_()  # -(1 - h(pos)), 1 - h = sigmoid(-x)
            ctx.save_for_backward(grad_pos, grad_neg)
            ctx.scale = 1.0 / (b * temperature)  # d loss / d s: h / (B·τ) for a negative, -(1 - h) / (B·τ) for pos
        ctx.mark_non_differentiable(weights)
        return loss, weights

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor, _: Tensor | None) -> tuple[Tensor, Tensor, None, None]:
        # in place: the saved gradients are handed out once (a second backward fails autograd's version check)
        grad_pos, grad_neg = ctx.saved_tensors
        upstream = grad_loss * ctx.scale
        return grad_pos.mul_(upstream), grad_neg.mul_(upstream), None, None


def nce_loss_and_weights(
    pos: Tensor, neg: Tensor, temperature: float, z: Tensor | float, num_data: int
) -> tuple[Tensor, Tensor]:
    """``nce_loss`` and Σ_k h(neg_bk) per sample (B,), from one fused pass (``FusedNCE``), in float32."""
    shift = nce_shift(z, neg.shape[1], num_data, neg.device)
    with torch.autocast(neg.device.type, enabled=False):
        return FusedNCE.apply(pos.float(), neg.float(), temperature, shift)


def nce_loss(pos: Tensor, neg: Tensor, temperature: float, z: Tensor | float, num_data: int) -> Tensor:
    """Binary NCE: pos (B,), neg (B, K) cosines; Z the fixed normaliser; N = num_data. Mean over the batch."""
    return nce_loss_and_weights(pos, neg, temperature, z, num_data)[0]


@torch.no_grad()
def estimate_z(pos: Tensor, neg: Tensor, temperature: float, num_data: int) -> Tensor:
    """N · mean(exp(s/τ)) over all B·(1 + K) scores of a batch, computed as a log-sum-exp (no overflow): per row of
    neg (B, K), in cache-sized chunks, then over those and the positives (no copy of the whole score matrix)."""
    b, k = neg.shape
    rows = chunk_rows(b, k, neg.device)
    per_row = [torch.logsumexp(neg[i : i + rows].float() / temperature, 1) for i in range(0, b, rows)]  # (B,)
    lse = torch.logsumexp(torch.cat([pos.float().reshape(-1) / temperature, *per_row]), 0)
    return torch.exp(lse - math.log(pos.numel() + neg.numel()) + math.log(num_data))


def info_nce_loss(pos: Tensor, neg: Tensor, temperature: float) -> Tensor:
    """Cross-entropy over [pos, neg_1..neg_K]/τ with the positive at index 0; pos (B,), neg (B, K)."""
    logits = torch.cat([pos.float().unsqueeze(1), neg.float()], 1) / temperature  # (B, 1 + K)
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


class NCELoss(nn.Module):
    """``nce_loss`` with Z held in a buffer: -1 until ``update_z`` first estimates it, then fixed (``z_momentum`` 0)
    or an exponential moving average of the per-batch estimate (``z_momentum`` in (0, 1))."""

    z: Tensor

    def __init__(self, num_data: int, temperature: float = 0.07, z_momentum: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= z_momentum < 1.0:
            raise ValueError(
                f"NCE's z_momentum must be in [0, 1) (0 = Z fixed after the first batch), got {z_momentum}"
            )
        self.num_data = num_data
        self.temperature = temperature
        self.z_momentum = z_momentum
        self.register_buffer("z", torch.tensor(-1.0))
        # Σ_k h(neg_k) per sample from the last two forward passes (PIRL has two terms), keyed by the scores they saw
        # and Z's version, so that stats() on the same scores skips a pass over (B, K): (neg, versions, weights)
        self._weights: deque[tuple[weakref.ref[Tensor], tuple[int, int], Tensor]] = deque(maxlen=2)

    @property
    def estimated(self) -> bool:
        return bool(self.z > 0)

    @torch.no_grad()
    def update_z(self, pos: Tensor, neg: Tensor) -> None:
        """The first call sets Z from these scores; later calls move it by the EMA, or (z_momentum 0) do nothing."""
        if self.estimated and self.z_momentum == 0.0:
            return
        # under torch.distributed: the mean over every rank's (equal-sized) batch, the same Z everywhere
        estimate = distributed.mean(estimate_z(pos, neg, self.temperature, self.num_data))
        if self.estimated:
            estimate = self.z_momentum * self.z + (1.0 - self.z_momentum) * estimate
        self.z.copy_(estimate)

    @torch.no_grad()
    def stats(self, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        """What shows NCE failing: Z, the positive's gradient weight 1 - h(pos) and the negatives' summed weight
        Σ_k h(neg_k) (the gradient of the loss in s/τ is -(1 - h) for the positive and +h for each negative), and the
        mean cosines. Batch means, float32."""
        k = neg.shape[1]
        h_pos = torch.sigmoid(nce_logits(pos, self.temperature, self.z, k, self.num_data))  # (B,)
        weights = self._seen_weights(neg)  # (B,) from the loss's pass on these scores, or one more pass
        if weights is None:
            weights = torch.sigmoid(nce_logits(neg, self.temperature, self.z, k, self.num_data)).sum(1)
        return {
            "z": self.z.detach().clone(),
            "pos_weight": (1 - h_pos).mean(),
            "neg_weight": weights.mean(),
            "pos_sim": pos.float().mean(),
            "neg_sim": neg.float().mean(),
        }

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        if not self.estimated:
            raise RuntimeError(
                "NCE's normaliser Z is not estimated yet: call update_z(pos, neg) with the batch's "
                "scores before the loss"
            )
        loss, weights = nce_loss_and_weights(pos, neg, self.temperature, self.z, self.num_data)
        self._weights.append((weakref.ref(neg), (neg._version, self.z._version), weights))
        return loss

    def _seen_weights(self, neg: Tensor) -> Tensor | None:
        for ref, versions, weights in self._weights:
            if ref() is neg and versions == (neg._version, self.z._version):
                return weights
        return None


LOSSES = ("nce", "infonce")


def contrast_loss(kind: str, num_data: int, temperature: float = 0.07, z_momentum: float = 0.0) -> nn.Module:
    """The loss named ``kind``: "nce" (an ``NCELoss``, holding Z) or "infonce"; both map (pos, neg) to a scalar."""
    if kind not in LOSSES:
        raise ValueError(f"unknown contrastive loss {kind!r}; valid losses: {', '.join(LOSSES)}")
    return NCELoss(num_data, temperature, z_momentum) if kind == "nce" else InfoNCELoss(temperature)


class InfoNCELoss(nn.Module):
    """``info_nce_loss`` as a module, so a method can hold either loss behind one call."""

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def update_z(self, pos: Tensor, neg: Tensor) -> None:
        """InfoNCE has no normaliser to estimate."""

    @torch.no_grad()
    def stats(self, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        """The positive's gradient weight 1 - softmax(pos) and the negatives' summed weight (equal, for InfoNCE),
        and the mean cosines. Batch means, float32."""
        logits = torch.cat([pos.float().unsqueeze(1), neg.float()], 1) / self.temperature  # (B, 1 + K)
        weight = (1 - torch.softmax(logits, 1)[:, 0]).mean()  # the positive's pull = the negatives' summed push
        return {
            "pos_weight": weight,
            "neg_weight": weight,
            "pos_sim": pos.float().mean(),
            "neg_sim": neg.float().mean(),
        }

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        with torch.autocast(pos.device.type, enabled=False):
            return info_nce_loss(pos, neg, self.temperature)
