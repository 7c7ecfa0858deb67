"""Shared fixtures: a tiny backbone and random data, so every test runs on CPU in seconds without ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from ssl_bench.data.types import DataInfo

TINY = "resnet18-w0.25"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's ~/.cache (permutation sets and other generated files go to a temp dir)."""
    monkeypatch.setenv("SSL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def torch_settings() -> dict[str, Any]:
    """Torch's process-wide settings that code under test changes: an in-process ``ssl-bench run`` of the ci preset
    pins the thread count and turns on deterministic kernels (warn only), and they stay so after it returns."""
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "dtype": torch.get_default_dtype(),
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
    }


def restore_torch_settings(saved: dict[str, Any]) -> None:
    torch.set_num_threads(saved["threads"])
    torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
    torch.set_default_dtype(saved["dtype"])
    torch.backends.cudnn.deterministic = saved["cudnn.deterministic"]
    torch.backends.cudnn.benchmark = saved["cudnn.benchmark"]


@pytest.fixture(autouse=True)
def torch_settings_restored() -> Iterator[None]:
    """Every test starts from the settings the previous one found, whatever it changed (see torch_settings)."""
    saved = torch_settings()
    yield
    restore_torch_settings(saved)


@pytest.fixture
def info() -> DataInfo:
    return DataInfo("tiny", num_classes=10, num_train=16, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture
def images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(8)]
