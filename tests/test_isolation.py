"""Tests do not leak torch's process-wide settings into each other (the autouse fixture of conftest.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import restore_torch_settings, torch_settings

from ssl_bench.cli import main

BEFORE = torch_settings()  # at collection, before any test ran
ran: list[str] = []


def test_run_changes_torch_settings_for_good(tmp_path) -> None:
    assert torch_settings() == BEFORE
    threads = 1 if BEFORE["threads"] != 1 else 2  # a count the run really changes, on any machine
    tiny = ["data.num_train=32", "data.num_test=16", "knn.k=5"]
    argv = [
        "run",
        "--preset",
        "ci",
        "--methods",
        "random",
        "--epochs",
        "1",
        "--evals",
        "knn",
        "--threads",
        str(threads),
        "--out",
        str(tmp_path),
        "--no-report",
    ]
    assert main([*argv, *(a for s in tiny for a in ("--set", s))]) == 0
    after = torch_settings()
    assert (after["threads"], after["deterministic"], after["warn_only"]) == (threads, True, True)
    assert (BEFORE["deterministic"], BEFORE["warn_only"]) != (True, True)
    torch.set_default_dtype(torch.float64 if BEFORE["dtype"] != torch.float64 else torch.float32)
    torch.backends.cudnn.deterministic = not BEFORE["cudnn.deterministic"]
    torch.backends.cudnn.benchmark = not BEFORE["cudnn.benchmark"]
    assert torch_settings()["dtype"] != BEFORE["dtype"]
    ran.append("run")


def test_the_next_test_sees_the_original_settings() -> None:
    if not ran:
        pytest.skip("checks what test_run_changes_torch_settings_for_good left behind: run the whole file")
    assert torch_settings() == BEFORE


def test_restore_undoes_every_setting() -> None:
    saved = torch_settings()
    torch.set_num_threads(1 if saved["threads"] != 1 else 2)
    torch.use_deterministic_algorithms(not saved["deterministic"], warn_only=not saved["warn_only"])
    torch.set_default_dtype(torch.float64 if saved["dtype"] != torch.float64 else torch.float32)
    torch.backends.cudnn.deterministic = not saved["cudnn.deterministic"]
    torch.backends.cudnn.benchmark = not saved["cudnn.benchmark"]
    changed = torch_settings()
    assert all(changed[key] != saved[key] for key in saved), changed
    restore_torch_settings(saved)
    assert torch_settings() == saved
