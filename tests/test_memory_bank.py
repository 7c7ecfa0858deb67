from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from ssl_bench.modules.memory_bank import MemoryBank, cap_negatives
from ssl_bench.modules.nce import info_nce_loss, nce_loss


def unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_init_is_unit_norm_seeded_and_from_npid_range() -> None:
    bank = MemoryBank(50, 16, generator=torch.Generator().manual_seed(0))
    assert bank.memory.shape == (50, 16) and bank.size == 50 and bank.dim == 16
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(50))
    raw = torch.rand(50, 16, generator=torch.Generator().manual_seed(0)) * 2 / math.sqrt(16 / 3) - 1 / math.sqrt(16 / 3)
    torch.testing.assert_close(bank.memory, F.normalize(raw, dim=1))
    again = MemoryBank(50, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.memory, bank.memory)
    assert "memory" in bank.state_dict() and list(bank.state_dict()) == ["memory"]


@pytest.mark.parametrize("momentum", [0.5, 0.0, 0.9])
def test_update_follows_the_formula_and_touches_only_the_batch(momentum: float) -> None:
    bank = MemoryBank(20, 8, momentum=momentum, generator=torch.Generator().manual_seed(1))
    before = bank.memory.clone()
    index, v = torch.tensor([3, 0, 17]), unit(3, 8, seed=2)
    bank.update(index, v)
    for row, i in enumerate(index.tolist()):
        expected = momentum * before[i] + (1 - momentum) * v[row]
        torch.testing.assert_close(bank.memory[i], expected / expected.norm())
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(bank.memory[untouched], before[untouched])


def test_update_needs_no_grad_and_leaves_v_alone() -> None:
    bank = MemoryBank(10, 4, generator=torch.Generator().manual_seed(0))
    v = unit(2, 4, seed=3).requires_grad_()
    v_before = v.detach().clone()
    bank.update(torch.tensor([1, 2]), v)
    assert not bank.memory.requires_grad and torch.equal(v.detach(), v_before)


def test_k_is_capped_at_n_minus_1_with_a_warning() -> None:
    with pytest.warns(
        UserWarning, match=r"32000 negatives requested but the memory bank has only 100 slots .* using 99"
    ):
        assert cap_negatives(32_000, 100) == 99
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cap_negatives(99, 100) == 99 and cap_negatives(5, 100) == 5
    with pytest.raises(ValueError, match="at least 2 slots"):
        cap_negatives(5, 1)
    with pytest.raises(ValueError, match="cap_negatives"):
        MemoryBank(10, 4).negatives(torch.tensor([0]), 10)


def test_per_sample_negatives_avoid_the_own_slot_and_are_uniform() -> None:
    bank = MemoryBank(7, 4)
    exclude = torch.tensor([0, 3, 6])
    idx = bank.sample_negatives(60_000, exclude=exclude, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (3, 60_000) and idx.dtype == torch.long
    for row, own in enumerate(exclude.tolist()):
        counts = torch.bincount(idx[row], minlength=7).double()
        assert counts[own] == 0
        others = counts[torch.arange(7) != own] / 60_000
        torch.testing.assert_close(others, torch.full((6,), 1 / 6, dtype=torch.float64), atol=0.01, rtol=0)
    shared = bank.sample_negatives(70_000, generator=torch.Generator().manual_seed(1))
    assert shared.shape == (70_000,)
    frequencies = torch.bincount(shared, minlength=7).double() / 70_000
    torch.testing.assert_close(frequencies, torch.full((7,), 1 / 7, dtype=torch.float64), atol=0.01, rtol=0)


@pytest.mark.parametrize("shared", [True, False])
def test_negative_scores_are_cosines_with_other_slots(shared: bool) -> None:
    bank = MemoryBank(5, 8, generator=torch.Generator().manual_seed(2))
    index, x = torch.arange(5), unit(5, 8, seed=3)
    torch.manual_seed(0)
    negs = bank.negatives(index, 4, shared=shared)  # 4 of 5 slots: own-slot hits are certain in shared mode
    scores = negs.scores(x)  # (5, 4)
    assert scores.shape == (5, 4) and scores.dtype == torch.float32
    all_cos = x @ bank.memory.T  # (5, 5)
    for b in range(5):
        for k in range(4):
            matches = torch.isclose(all_cos[b], scores[b, k], atol=1e-6).nonzero().flatten().tolist()
            assert matches and index[b].item() not in matches
    if shared:
        assert negs.redraw is not None and negs.index.shape == (4,)
        hit = negs.index[None, :] == index[:, None]
        torch.testing.assert_close(scores[~hit], (x @ bank.memory[negs.index].T)[~hit])
    torch.testing.assert_close(bank.positive_scores(x, index), (x * bank.memory).sum(1))


@pytest.mark.parametrize("shared", [True, False])
def test_negative_scores_backpropagate_to_x(shared: bool) -> None:
    bank = MemoryBank(6, 8, generator=torch.Generator().manual_seed(4))
    index, x = torch.tensor([0, 2, 5]), unit(3, 8, seed=5).requires_grad_()
    torch.manual_seed(1)
    negs = bank.negatives(index, 5, shared=shared)
    negs.scores(x).sum().backward()
    if shared:  # d/dx_b sum_k <x_b, m_k> = sum of the memories sample b was scored against
        expected = bank.memory[negs.index].sum(0).expand(3, 8).clone()
        rows, cols, memory = negs.redraw
        for r, c, m in zip(rows.tolist(), cols.tolist(), memory):
            expected[r] += m - bank.memory[negs.index[c]]
    else:
        expected = bank.memory[negs.index].sum(1)
    torch.testing.assert_close(x.grad, expected)


def test_redrawn_scores_equal_index_put_bit_for_bit_and_leave_the_gradient_alone() -> None:
    """Shared scores with redraws: the numbers of (x @ m.T).index_put(...) under autograd, without its copies."""
    bank = MemoryBank(40, 16, generator=torch.Generator().manual_seed(6))
    index = torch.arange(0, 40, 3)  # 14 samples
    negs = bank.negatives(index, 30, shared=True, generator=torch.Generator().manual_seed(7))
    assert negs.redraw is not None and negs.redraw[0].numel() > 1
    upstream = torch.randn(14, 30, generator=torch.Generator().manual_seed(8))
    x, x_ref = unit(14, 16, seed=9).requires_grad_(), unit(14, 16, seed=9).requires_grad_()
    rows, cols, memory = negs.redraw
    want = (x_ref @ negs.memory.T).index_put((rows, cols), (x_ref[rows] * memory).sum(1))
    got = negs.scores(x)
    assert torch.equal(got, want)
    grad = upstream.clone()
    got.backward(grad)
    want.backward(upstream)
    assert torch.equal(x.grad, x_ref.grad)
    assert torch.equal(grad, upstream)  # zeroed for the matmul and put back


def test_per_sample_gather_reuses_one_buffer() -> None:
    bank = MemoryBank(30, 8)
    index = torch.tensor([1, 2, 3])
    first = bank.negatives(index, 10, shared=False)
    second = bank.negatives(index, 10, shared=False)
    assert first.memory.data_ptr() == second.memory.data_ptr()
    torch.testing.assert_close(second.memory, bank.memory[second.index])
    x = unit(3, 8, seed=9).requires_grad_()
    stale = bank.negatives(index, 10, shared=False).scores(x).sum()
    bank.negatives(index, 10, shared=False)  # overwrites the buffer the first graph saved
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()


def test_scores_are_float32_under_bf16_autocast() -> None:
    bank = MemoryBank(40, 8)
    x = unit(4, 8, seed=6).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for shared in (True, False):
            assert bank.negatives(torch.arange(4), 7, shared=shared).scores(x).dtype == torch.float32
        assert bank.positive_scores(x, torch.arange(4)).dtype == torch.float32


def expected_nce(bank: MemoryBank, x: torch.Tensor, index: torch.Tensor, k: int, tau: float, z: float) -> float:
    """Exact expectation over uniform negatives from the other N - 1 slots: NCE is a sum over negatives."""
    n = bank.size
    cos = x.double() @ bank.memory.double().T  # (B, N)
    p = torch.exp(cos / tau) / z
    log_h = torch.log(p / (p + k / n))
    log_1mh = torch.log(1 - p / (p + k / n))
    total = 0.0
    for b, i in enumerate(index.tolist()):
        others = [j for j in range(n) if j != i]
        total += -log_h[b, i].item() - k * log_1mh[b, others].mean().item()
    return total / len(index)


def test_shared_and_per_sample_negatives_give_the_same_expected_loss() -> None:
    bank = MemoryBank(12, 8, generator=torch.Generator().manual_seed(7))
    index, k, tau, z, draws = torch.tensor([0, 4, 5, 11]), 6, 0.5, 30.0, 6000
    x = F.normalize(bank.memory[index] + 0.8 * unit(4, 8, seed=8), dim=1)  # near their own memories
    pos = bank.positive_scores(x, index)
    means, sems = {}, {}
    torch.manual_seed(0)
    for loss_name in ("nce", "infonce"):
        for shared in (True, False):
            losses = torch.empty(draws, dtype=torch.float64)
            for t in range(draws):
                neg = bank.negatives(index, k, shared=shared).scores(x)
                loss = nce_loss(pos, neg, tau, z, bank.size) if loss_name == "nce" else info_nce_loss(pos, neg, tau)
                losses[t] = float(loss)
            means[loss_name, shared] = losses.mean().item()
            sems[loss_name, shared] = losses.std().item() / math.sqrt(draws)
    exact = expected_nce(bank, x, index, k, tau, z)
    for shared in (True, False):
        assert abs(means["nce", shared] - exact) < 4 * sems["nce", shared], (means, exact)
    for loss_name in ("nce", "infonce"):
        gap = abs(means[loss_name, True] - means[loss_name, False])
        assert gap < 4 * math.hypot(sems[loss_name, True], sems[loss_name, False]), (loss_name, means, sems)
