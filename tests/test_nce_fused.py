"""The fused NCE pass (``FusedNCE``): against float64, against the plain autograd graph it replaces, chunked against
unchunked, its exact path for h near 1, and the ``stats`` it feeds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_bench.modules import nce
from ssl_bench.modules.nce import NCELoss, estimate_z, nce_logits, nce_loss

N, TAU = 5000, 0.07
SHAPES = [(1, 1), (3, 5), (7, 129), (16, 1999), (33, 3001)]  # K = 3001 is prime: no chunk size divides the rows


def scores(b: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cosine-like pos (B,), neg (B, K) and a Z near the batch's own estimate, so that logits straddle 0."""
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.rand(b, generator=g) * 1.6 - 0.6, torch.rand(b, k, generator=g) * 1.6 - 0.8
    return pos, neg, estimate_z(pos, neg, TAU, N) * 0.5


def graph_loss(pos: torch.Tensor, neg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The unfused autograd graph the fused pass replaces (the loss as written before it)."""
    k = neg.shape[1]
    log_h_pos = F.logsigmoid(nce_logits(pos, TAU, z, k, N))
    log_1mh_neg = F.logsigmoid(nce_logits(neg, TAU, z, k, N).neg_())
    return -(log_h_pos + log_1mh_neg.sum(1)).mean()


def loss_and_grads(fn, pos, neg, z, upstream: float = 1.0):
    pos, neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    loss = fn(pos, neg, z)
    (loss * upstream).backward()
    return loss.detach(), pos.grad, neg.grad


def fused(pos: torch.Tensor, neg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return nce_loss(pos, neg, TAU, z, N)


def float64_reference(pos: torch.Tensor, neg: torch.Tensor, z: torch.Tensor):
    """-mean_b[log h(pos_b) + Σ_k log(1 - h(neg_bk))] with h = P/(P + K/N), P = exp(s/τ)/Z, all in float64."""
    pos, neg = pos.double().requires_grad_(), neg.double().requires_grad_()
    noise = neg.shape[1] / N
    p_pos, p_neg = torch.exp(pos / TAU) / float(z), torch.exp(neg / TAU) / float(z)
    loss = -(torch.log(p_pos / (p_pos + noise)) + torch.log(noise / (p_neg + noise)).sum(1)).mean()
    loss.backward()
    return loss.detach(), pos.grad, neg.grad


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(params=[None, 4 * 16, 4 * 200, 4 * 1999 * 3], ids=["one-chunk", "tiny", "small", "3-rows"])
def chunk_bytes(request, monkeypatch) -> None:
    """Chunk sizes from one row (or less) to a few rows, none dividing every shape's rows."""
    if request.param is not None:
        monkeypatch.setattr(nce, "CHUNK_BYTES", request.param)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_loss_and_gradient_match_float64_to_1e_6(shape: tuple[int, int], chunk_bytes: None) -> None:
    """Norm-wise: a single float32 logit s/τ - log(Z·K/N) is itself off by up to ~1e-6 (as before the fusion)."""
    pos, neg, z = scores(*shape, seed=sum(shape))
    got, want = loss_and_grads(fused, pos, neg, z), float64_reference(pos, neg, z)
    assert got[0].dtype == got[2].dtype == torch.float32
    for g, w, name in zip(got, want, ("loss", "d/dpos", "d/dneg")):
        assert rel(g, w) < 1e-6, f"{name}: relative error {rel(g, w):.1e}"


@pytest.mark.parametrize("shape", SHAPES)
def test_fused_equals_the_autograd_graph_to_float32_rounding(shape: tuple[int, int], chunk_bytes: None) -> None:
    """The graph it replaces (log-sigmoid both ways, autograd's backward): the same loss and gradients to a few float32
    roundings; an upstream gradient of 0.5 (PIRL's λ) halves the gradient exactly, 0.3 to one rounding."""
    pos, neg, z = scores(*shape, seed=10 + sum(shape))
    one = loss_and_grads(fused, pos, neg, z)
    for got, want in zip(one, loss_and_grads(graph_loss, pos, neg, z)):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-9)
    half = loss_and_grads(fused, pos, neg, z, 0.5)
    assert torch.equal(half[0], one[0]) and torch.equal(half[1], one[1] / 2) and torch.equal(half[2], one[2] / 2)
    torch.testing.assert_close(loss_and_grads(fused, pos, neg, z, 0.3)[2], one[2] * 0.3, rtol=2e-7, atol=0)


def near_one_scores(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits up to ~1.3 (h <= 0.79) but for 40 negatives in every third row at ~12 (h = 1 - 6e-6)."""
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.rand(9, generator=g) * 1.6 - 0.6, torch.rand(9, 500, generator=g) - 0.8
    neg[::3, :40] = 0.95  # every third row: 40 negatives almost as close as a positive can be
    log_z = 0.95 / TAU - math.log(500 / N) - 12  # x = s/τ - log Z - log(K/N) = 12 at s = 0.95
    return pos, neg, torch.tensor(math.exp(log_z))


def test_rows_with_h_near_one_take_the_exact_path(monkeypatch) -> None:
    """1 - h from a float32 h loses digits where h nears 1; those rows take log-sigmoid(-x) and stay within 1e-6 of
    float64. With the switch moved past 1 (1 - h everywhere) the same scores miss 1e-6: the switch keeps them."""
    pos, neg, z = near_one_scores(seed=11)
    h = torch.sigmoid(nce_logits(neg, TAU, z, neg.shape[1], N))
    assert float(h.amax()) > 0.999 and float(h[1::3].amax()) < nce.NEAR_ONE  # some rows above the switch, some not
    want = float64_reference(pos, neg, z)
    got = loss_and_grads(fused, pos, neg, z)
    for g, w, name in zip(got, want, ("loss", "d/dpos", "d/dneg")):
        assert rel(g, w) < 1e-6, f"{name}: relative error {rel(g, w):.1e}"
    monkeypatch.setattr(nce, "NEAR_ONE", 2.0)
    assert rel(loss_and_grads(fused, pos, neg, z)[0], want[0]) > 1e-6


@pytest.mark.parametrize("rows_per_chunk", [1, 2, 3, 5, 64])
def test_chunked_equals_unchunked(rows_per_chunk: int, monkeypatch) -> None:
    pos, neg, z = scores(37, 4093, seed=3)
    whole, whole_z = loss_and_grads(fused, pos, neg, z), estimate_z(pos, neg, TAU, N)
    monkeypatch.setattr(nce, "CHUNK_BYTES", 4 * 4093 * rows_per_chunk)
    assert nce.chunk_rows(37, 4093, neg.device) == min(rows_per_chunk, 37)
    for got, want in zip(loss_and_grads(fused, pos, neg, z), whole):  # sigmoid's vector loop and its tail may
        torch.testing.assert_close(got, want, rtol=3e-7, atol=0)  # differ in the last bit where a chunk's rows end
    assert torch.equal(estimate_z(pos, neg, TAU, N), whole_z)


def test_no_grad_gives_the_same_loss_without_a_gradient_buffer() -> None:
    pos, neg, z = scores(5, 300, seed=4)
    with torch.no_grad():
        loss = nce_loss(pos, neg, TAU, z, N)
    assert torch.equal(loss, loss_and_grads(fused, pos, neg, z)[0]) and not loss.requires_grad


def test_backward_hands_its_buffer_out_once() -> None:
    pos, neg, z = scores(4, 50, seed=5)
    neg.requires_grad_()
    loss = nce_loss(pos, neg, TAU, z, N)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_estimate_z_matches_float64_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr(nce, "CHUNK_BYTES", 4 * 3001 * 2)  # 2 rows per chunk, 17 chunks
    pos, neg, _ = scores(33, 3001, seed=6)
    values = torch.cat([pos.double(), neg.double().flatten()]) / TAU
    want = math.exp(float(torch.logsumexp(values, 0)) - math.log(values.numel()) + math.log(N))
    assert float(estimate_z(pos, neg, TAU, N)) == pytest.approx(want, rel=1e-6)


def test_stats_reuse_the_loss_pass_and_equal_a_fresh_pass() -> None:
    pos, neg, _ = scores(6, 700, seed=7)
    module = NCELoss(N, TAU, z_momentum=0.9)
    module.update_z(pos, neg)
    fresh = NCELoss(N, TAU, z_momentum=0.9)
    fresh.load_state_dict(module.state_dict())
    module(pos, neg)
    assert module._seen_weights(neg) is not None and fresh._seen_weights(neg) is None
    seen, computed = module.stats(pos, neg), fresh.stats(pos, neg)  # from the loss's pass / from a pass of its own
    assert all(torch.equal(seen[key], computed[key]) for key in computed)
    h = torch.sigmoid(nce_logits(neg, TAU, module.z, 700, N))  # (B, K)
    assert float(seen["neg_weight"]) == pytest.approx(float(h.sum(1).mean()), rel=1e-6)

    neg2 = neg.clone()
    module(pos, neg2)
    neg2.mul_(0.5)  # changed in place after the loss: its weights no longer hold
    assert module._seen_weights(neg2) is None and module._seen_weights(neg) is not None
    module.update_z(pos, neg)  # Z moves (EMA): no weights hold
    assert module._seen_weights(neg) is None


def test_bf16_autocast_keeps_the_fused_loss_float32() -> None:
    pos, neg, z = scores(4, 33, seed=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nce_loss(pos.bfloat16(), neg.bfloat16(), TAU, z, N)
    assert loss.dtype == torch.float32
    assert torch.equal(loss, nce_loss(pos.bfloat16().float(), neg.bfloat16().float(), TAU, z, N))
