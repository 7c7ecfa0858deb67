"""Noise-contrastive estimation against a memory bank, and InfoNCE.

NCE as in NPID (Wu et al., CVPR 2018, arXiv:1805.01978) and PIRL (arXiv:1912.01991, Eq. 2-3):
each score s is a cosine; the model probability of the pair is P = exp(s/τ)/Z and the noise is uniform,
Pn = 1/N. With K noise samples per positive, h = P / (P + K·Pn) is the probability that a pair came from
the data, and

    loss = -mean_b [ log h(pos_b) + Σ_k log(1 - h(neg_bk)) ].

Written as binary logistic regression with logit x = s/τ - log Z - log(K/N), log h = logsigmoid(x) and
log(1 - h) = logsigmoid(-x): the same numbers without NPID's ε = 1.2e-7 inside the logs, and stable.
Z is estimated once, from the first batch, as N · mean(exp(s/τ)) over its positives and negatives (NPID's
NCEAverage), then fixed; it lives in a buffer so checkpoints keep it. The estimate is an explicit call,
``fix_z(pos, neg)``, made by the method on the scores it chooses (PIRL: the image term's); the loss refuses to run
before it. Both losses take the call, so a method holds either behind one interface.

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
    """``nce_loss`` with Z held in a buffer: -1 until ``fix_z`` estimates it on the first batch, then fixed."""

    z: Tensor

    def __init__(self, num_data: int, temperature: float = 0.07) -> None:
        super().__init__()
        self.num_data = num_data
        self.temperature = temperature
        self.register_buffer("z", torch.tensor(-1.0))

    @property
    def estimated(self) -> bool:
        return bool(self.z > 0)

    @torch.no_grad()
    def fix_z(self, pos: Tensor, neg: Tensor) -> None:
        """Estimate Z from these scores if it is not fixed yet (the first batch); afterwards, nothing."""
        if not self.estimated:
            # under torch.distributed: the mean over every rank's (equal-sized) batch, the same Z everywhere
            self.z.copy_(distributed.mean(estimate_z(pos, neg, self.temperature, self.num_data)))

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        if not self.estimated:
            raise RuntimeError(
                "NCE's normaliser Z is not estimated yet: call fix_z(pos, neg) with the first batch's "
                "scores before the loss"
            )
        with torch.autocast(pos.device.type, enabled=False):
            return nce_loss(pos, neg, self.temperature, self.z, self.num_data)


LOSSES = ("nce", "infonce")


def contrast_loss(kind: str, num_data: int, temperature: float = 0.07) -> nn.Module:
    """The loss named ``kind``: "nce" (an ``NCELoss``, holding Z) or "infonce"; both map (pos, neg) to a scalar."""
    if kind not in LOSSES:
        raise ValueError(f"unknown contrastive loss {kind!r}; valid losses: {', '.join(LOSSES)}")
    return NCELoss(num_data, temperature) if kind == "nce" else InfoNCELoss(temperature)


class InfoNCELoss(nn.Module):
    """``info_nce_loss`` as a module, so a method can hold either loss behind one call."""

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def fix_z(self, pos: Tensor, neg: Tensor) -> None:
        """InfoNCE has no normaliser to estimate."""

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        with torch.autocast(pos.device.type, enabled=False):
            return info_nce_loss(pos, neg, self.temperature)
