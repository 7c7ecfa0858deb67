from __future__ import annotations

import math

import pytest
import torch

from ssl_bench.modules.nce import InfoNCELoss, NCELoss, contrast_loss, estimate_z, info_nce_loss, nce_loss


def nce_reference(pos: torch.Tensor, neg: torch.Tensor, tau: float, z: float, n: int) -> float:
    """Slow, obviously-correct NCE in float64 with explicit loops."""
    batch, k = neg.shape
    noise = 1.0 / n
    total = 0.0
    for b in range(batch):
        p = math.exp(float(pos[b]) / tau) / z
        total -= math.log(p / (p + k * noise))
        for j in range(k):
            p = math.exp(float(neg[b, j]) / tau) / z
            total -= math.log(1.0 - p / (p + k * noise))
    return total / batch


def z_reference(pos: torch.Tensor, neg: torch.Tensor, tau: float, n: int) -> float:
    values = [math.exp(float(s) / tau) for s in pos] + [math.exp(float(s) / tau) for row in neg for s in row]
    return sum(values) / len(values) * n


def info_nce_reference(pos: torch.Tensor, neg: torch.Tensor, tau: float) -> float:
    total = 0.0
    for b in range(neg.shape[0]):
        logits = [float(pos[b]) / tau] + [float(s) / tau for s in neg[b]]
        total -= logits[0] - math.log(sum(math.exp(v) for v in logits))
    return total / neg.shape[0]


def cosines(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def test_nce_matches_reference_and_estimates_z_once() -> None:
    n, tau = 1000, 0.07
    module = NCELoss(num_data=n, temperature=tau)
    assert float(module.z) == -1.0 and not module.estimated
    pos1, neg1 = cosines(6, seed=0), cosines(6, 9, seed=1)
    with pytest.raises(RuntimeError, match="call update_z"):
        module(pos1, neg1)  # no loss before Z is estimated: the method says from which scores
    module.update_z(pos1, neg1)
    loss1 = module(pos1, neg1)
    z1 = z_reference(pos1, neg1, tau, n)
    assert float(module.z) == pytest.approx(z1, rel=1e-5)
    assert float(loss1) == pytest.approx(nce_reference(pos1, neg1, tau, z1, n), rel=1e-5)

    pos2, neg2 = cosines(6, seed=2) * 0.5, cosines(6, 9, seed=3) * 0.5  # a different batch: Z must not move
    module.update_z(pos2, neg2)
    loss2 = module(pos2, neg2)
    assert float(module.z) == pytest.approx(z1, rel=1e-5)
    assert float(loss2) == pytest.approx(nce_reference(pos2, neg2, tau, z1, n), rel=1e-5)
    assert float(loss2) != pytest.approx(nce_reference(pos2, neg2, tau, z_reference(pos2, neg2, tau, n), n), rel=1e-3)


def test_nce_function_with_given_z_and_z_estimate() -> None:
    pos, neg = cosines(4, seed=4), cosines(4, 17, seed=5)
    for tau, z, n in [(0.07, 3e5, 5000), (0.2, 12.0, 50), (1.0, 1.0, 2)]:
        got = nce_loss(pos, neg, tau, z, n)
        assert got.dtype == torch.float32
        assert float(got) == pytest.approx(nce_reference(pos, neg, tau, z, n), rel=1e-5)
        assert float(estimate_z(pos, neg, tau, n)) == pytest.approx(z_reference(pos, neg, tau, n), rel=1e-5)


def test_info_nce_matches_reference() -> None:
    pos, neg = cosines(5, seed=6), cosines(5, 11, seed=7)
    for tau in (0.07, 0.5):
        assert float(info_nce_loss(pos, neg, tau)) == pytest.approx(info_nce_reference(pos, neg, tau), rel=1e-5)
        assert float(InfoNCELoss(tau)(pos, neg)) == pytest.approx(info_nce_reference(pos, neg, tau), rel=1e-5)


def test_losses_are_float32_under_bf16_autocast() -> None:
    pos, neg = cosines(4, seed=8).bfloat16(), cosines(4, 7, seed=9).bfloat16()
    module = NCELoss(100, 0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        module.update_z(pos, neg)
        nce, info = module(pos, neg), InfoNCELoss(0.07)(pos, neg)
    assert nce.dtype == info.dtype == module.z.dtype == torch.float32
    z = z_reference(pos.double(), neg.double(), 0.07, 100)
    assert float(nce) == pytest.approx(nce_reference(pos.double(), neg.double(), 0.07, z, 100), rel=1e-5)
    assert float(info) == pytest.approx(info_nce_reference(pos.double(), neg.double(), 0.07), rel=1e-5)


def test_nce_gradient_matches_float64_autograd() -> None:
    pos, neg = cosines(3, seed=10).requires_grad_(), cosines(3, 5, seed=11).requires_grad_()
    nce_loss(pos, neg, 0.1, 40.0, 200).backward()
    pos64, neg64 = pos.detach().double().requires_grad_(), neg.detach().double().requires_grad_()
    k, noise = 5, 1 / 200
    p_pos, p_neg = torch.exp(pos64 / 0.1) / 40.0, torch.exp(neg64 / 0.1) / 40.0
    naive = -(torch.log(p_pos / (p_pos + k * noise)) + torch.log(1 - p_neg / (p_neg + k * noise)).sum(1)).mean()
    naive.backward()
    torch.testing.assert_close(pos.grad.double(), pos64.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(neg.grad.double(), neg64.grad, rtol=1e-4, atol=1e-6)


def test_z_is_state_and_round_trips(tmp_path) -> None:
    module = NCELoss(500, 0.07)
    module.update_z(cosines(4, seed=12), cosines(4, 8, seed=13))
    torch.save(module.state_dict(), tmp_path / "nce.pt")
    fresh = NCELoss(500, 0.07)
    fresh.load_state_dict(torch.load(tmp_path / "nce.pt", weights_only=True), strict=True)
    assert fresh.estimated and torch.equal(fresh.z, module.z)
    pos, neg = cosines(4, seed=14), cosines(4, 8, seed=15)
    assert torch.equal(fresh(pos, neg), module(pos, neg))


def test_contrast_loss_by_name() -> None:
    assert isinstance(contrast_loss("nce", 10), NCELoss)
    assert isinstance(contrast_loss("infonce", 10), InfoNCELoss)
    with pytest.raises(ValueError, match="unknown contrastive loss 'nec'; valid losses: nce, infonce"):
        contrast_loss("nec", 10)


def test_z_momentum_ema_matches_float64_loop_reference() -> None:
    """Z <- m·Z + (1 - m)·N·mean(exp(s/τ)) on every batch after the first, and the loss uses this step's Z."""
    n, tau, m = 800, 0.07, 0.9
    module = NCELoss(num_data=n, temperature=tau, z_momentum=m)
    z = None
    for step in range(5):
        scale = 1.0 - 0.15 * step  # batches whose cosines drift, as a bank filling up would make them
        pos, neg = cosines(5, seed=20 + step) * scale, cosines(5, 7, seed=40 + step) * scale
        estimate = z_reference(pos.double(), neg.double(), tau, n)
        z = estimate if z is None else m * z + (1 - m) * estimate
        module.update_z(pos, neg)
        assert float(module.z) == pytest.approx(z, rel=1e-5)
        assert float(module(pos, neg)) == pytest.approx(nce_reference(pos.double(), neg.double(), tau, z, n), rel=1e-5)


def test_z_momentum_zero_is_todays_fixed_z_bit_for_bit() -> None:
    """z_momentum 0: Z is the first batch's estimate and never moves, and every loss is the plain function's."""
    n, tau = 500, 0.07
    module = NCELoss(num_data=n, temperature=tau, z_momentum=0.0)
    first = (cosines(4, seed=60), cosines(4, 9, seed=61))
    z = estimate_z(*first, tau, n)
    for step in range(4):
        pos, neg = first if step == 0 else (cosines(4, seed=62 + step) * 0.7, cosines(4, 9, seed=70 + step) * 0.7)
        module.update_z(pos, neg)
        assert torch.equal(module.z, z)
        assert torch.equal(module(pos, neg), nce_loss(pos, neg, tau, z, n))


def test_stats_give_the_gradient_weights() -> None:
    """pos_weight = 1 - h(pos) and neg_weight = Σ_k h(neg_k): the magnitudes of d loss / d(s/τ) per sample."""
    n, tau = 300, 0.1
    module = NCELoss(num_data=n, temperature=tau)
    pos, neg = cosines(3, seed=80), cosines(3, 6, seed=81)
    module.update_z(pos, neg)
    stats = module.stats(pos, neg)
    pos_, neg_ = (pos / tau).requires_grad_(), (neg / tau).requires_grad_()
    (nce_loss(pos_ * tau, neg_ * tau, tau, module.z, n) * 3).backward()  # undo the batch mean
    assert float(stats["pos_weight"]) == pytest.approx(float(-pos_.grad.mean()), rel=1e-4)
    assert float(stats["neg_weight"]) == pytest.approx(float(neg_.grad.sum(1).mean()), rel=1e-4)
    assert float(stats["z"]) == float(module.z)
    assert float(stats["pos_sim"]) == pytest.approx(float(pos.mean()))


def test_z_momentum_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"z_momentum must be in \[0, 1\)"):
        NCELoss(10, 0.07, z_momentum=1.0)
