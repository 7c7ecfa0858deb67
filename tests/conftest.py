"""Shared fixtures: a tiny backbone and random data, so every test runs on CPU in seconds without ../shared."""

from __future__ import annotations

import pytest
import torch

from ssl_bench.data.dataset import DataInfo

TINY = "resnet18-w0.25"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's ~/.cache (permutation sets and other generated files go to a temp dir)."""
    monkeypatch.setenv("SSL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def info() -> DataInfo:
    return DataInfo("tiny", num_classes=10, num_train=16, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture
def images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(8)]
