"""train.precision: which autocast dtype a device gets (``engine.autocast_dtype``), without needing a GPU."""

from __future__ import annotations

import pytest
import torch

from ssl_bench.engine import autocast_dtype


@pytest.fixture
def two_gpus(monkeypatch):
    """cuda:0 an Ampere card (capability 8.0), cuda:1 a Turing card (7.5, bf16 only emulated); CUDA, not ROCm."""
    capability = {0: (8, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[torch.device(device).index])
    monkeypatch.setattr(torch.version, "hip", None)


def test_auto_asks_the_runs_own_gpu_for_native_bf16(two_gpus) -> None:
    assert autocast_dtype("auto", torch.device("cuda:0")) is torch.bfloat16
    assert autocast_dtype("auto", torch.device("cuda:1")) is None  # emulated bf16 is slower than fp32: not chosen


def test_explicit_precisions_are_honoured_on_any_device(two_gpus) -> None:
    for device in (torch.device("cpu"), torch.device("cuda:1")):
        assert autocast_dtype("fp32", device) is None
        assert autocast_dtype("bf16", device) is torch.bfloat16


def test_rocm_counts_as_native_bf16(monkeypatch) -> None:
    monkeypatch.setattr(torch.version, "hip", "6.2")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert autocast_dtype("auto", torch.device("cuda:0")) is torch.bfloat16


def test_auto_on_the_cpu_follows_onednn_bf16_support() -> None:
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("auto", torch.device("cpu")) is (torch.bfloat16 if native else None)
