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

InfoNCE (van den Oord et al. 2018, arXiv:1807.03748) is softmax cross-entropy over [pos, negatives]/τ.
Both compute in float32, also under bf16 autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench import distributed


def nce_logits(scores: Tensor, temperature: float, z: Tensor | float, num_negatives: int, num_data: int) -> Tensor:
    """Logit of "came from the data": s/τ - log Z - log(K·Pn), Pn = 1/N."""
    log_z = torch.log(torch.as_tensor(z, dtype=torch.float32, device=scores.device))
    return (scores.float() / temperature).sub_(log_z + math.log(num_negatives / num_data))


def nce_loss(pos: Tensor, neg: Tensor, temperature: float, z: Tensor | float, num_data: int) -> Tensor:
    """Binary NCE: pos (B,), neg (B, K) cosines; Z the fixed normaliser; N = num_data. Mean over the batch."""
    k = neg.shape[1]
    log_h_pos = F.logsigmoid(nce_logits(pos, temperature, z, k, num_data))  # (B,)
    log_1mh_neg = F.logsigmoid(nce_logits(neg, temperature, z, k, num_data).neg_())  # (B, K)
    return -(log_h_pos + log_1mh_neg.sum(1)).mean()


@torch.no_grad()
def estimate_z(pos: Tensor, neg: Tensor, temperature: float, num_data: int) -> Tensor:
    """N · mean(exp(s/τ)) over all B·(1 + K) scores of a batch, computed as a log-sum-exp (no overflow)."""
    scores = torch.cat([pos.float().reshape(-1), neg.float().reshape(-1)]) / temperature  # (B·(1+K),)
    return torch.exp(torch.logsumexp(scores, 0) - math.log(scores.numel()) + math.log(num_data))


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
        h_neg = torch.sigmoid(nce_logits(neg, self.temperature, self.z, k, self.num_data))  # (B, K)
        return {
            "z": self.z.detach().clone(),
            "pos_weight": (1 - h_pos).mean(),
            "neg_weight": h_neg.sum(1).mean(),
            "pos_sim": pos.float().mean(),
            "neg_sim": neg.float().mean(),
        }

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        if not self.estimated:
            raise RuntimeError(
                "NCE's normaliser Z is not estimated yet: call update_z(pos, neg) with the batch's "
                "scores before the loss"
            )
        with torch.autocast(pos.device.type, enabled=False):
            return nce_loss(pos, neg, self.temperature, self.z, self.num_data)


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
