"""Checks of nce_pass.py (not timed): a small run prints its three rows, both losses against float64, and one row per
ATen kernel. They run with ``pytest benchmarks/`` and are skipped under ``--benchmark-only``."""

from __future__ import annotations

import re

import nce_pass
import pytest


def test_a_small_run_reports_every_row_and_losses_within_1e_6(capsys: pytest.CaptureFixture[str]) -> None:
    nce_pass.main(["--batch", "8", "--negatives", "300", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "| one (8 x 128) @ (128 x 300) matmul |" in out and "B = 8, K = 300, float32" in out
    for label in ("`FusedNCE` (in use)", "autograd graph of log-sigmoid (replaced)"):
        (ratio,) = re.findall(rf"\| {re.escape(label)} \| [\d.]+ \| ([\d.]+) \|", out)
        assert float(ratio) > 0
    errors = [float(e) for e in re.findall(r"relative error ([\d.e+-]+)", out)]
    assert len(errors) == 2 and max(errors) < 1e-6
    for kernel in ("sigmoid(x)", "exp(x)", "log(1 - h)", "log-sigmoid(-x)", "log1p(-h)", "softplus(x)"):
        assert re.search(rf"\| {re.escape(kernel)} \| [\d.]+ \|", out), kernel
