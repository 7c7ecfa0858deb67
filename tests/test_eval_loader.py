"""The evaluations' loaders on CUDA: pinned batches (so non_blocking copies overlap), on the CPU as before."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from ssl_bench.eval.features import eval_loader


def images(n: int = 4) -> TensorDataset:
    return TensorDataset(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8), torch.arange(n))


def test_batches_are_pinned_for_a_cuda_device_only() -> None:
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert eval_loader(images(), 8, mean, std, 2, 0, device=torch.device("cuda:0")).pin_memory
    assert not eval_loader(images(), 8, mean, std, 2, 0, device=torch.device("cpu")).pin_memory
    assert not eval_loader(images(), 8, mean, std, 2, 0).pin_memory


def test_the_cpu_batches_are_the_test_view_in_order() -> None:
    data = images(5)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    batches = list(eval_loader(data, 8, mean, std, 2, 0, device=torch.device("cpu")))
    x = torch.cat([b[0] for b in batches])
    expected = (data.tensors[0].float() / 255 - 0.5) / 0.25  # 8 px images at size 8: used whole, normalised
    torch.testing.assert_close(x, expected)
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 1, 2, 3, 4]
