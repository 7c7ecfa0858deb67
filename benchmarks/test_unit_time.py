"""Checks of unit_time.py (not timed): the report's arithmetic and verdicts, the stopwatch, and a --small run.

They run with ``pytest benchmarks/`` and are skipped under ``--benchmark-only``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import unit_time

SCRIPT = Path(unit_time.__file__)


def rows(text: str, first: str) -> list[list[str]]:
    """The cells of every table row whose first cell is ``first``."""
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith(f"| {first} |")]


def test_render_judges_each_target() -> None:
    fast = unit_time.UnitResult("supervised", 2, 25, 40, 0.5, 44.0, 41.0, {"linear": 20.0, "knn": 5.0})
    slow = unit_time.UnitResult("pirl", 2, 50, 40, 0.5, 60.0, 50.0, {"linear": 60.0, "knn": 30.0})
    text = unit_time.render([fast, slow], ["Machine: test CPU."], ["linear", "knn"], small=False)
    (unit, evals), (pirl_unit, pirl_evals) = rows(text, "supervised"), rows(text, "pirl")
    # 2 epochs x 40 steps x 0.5 s = 40 s alone; 44 s the unit: 1.10
    assert unit == ["supervised", "2", "40", "500", "40", "41", "44", "1.10", "<= 1.2", "PASS"]
    assert pirl_unit[-3:] == ["1.50", "<= 1.2", "**FAIL**"]
    # 25 s of evaluations against 44 / 2 x 25 = 550 s of pretraining: 4.5%
    assert evals == ["supervised", "20", "5", "25", "25", "550", "4.5%", "<= 5%", "PASS"]
    assert pirl_evals[-4:] == ["1,500", "6.0%", "<= 5%", "**FAIL**"]
    assert text.rstrip().endswith("2 of 4 targets met.") and "Smoke sizes" not in text
    assert "- Machine: test CPU." in text


def test_stopwatch_times_and_restores() -> None:
    module = types.SimpleNamespace(f=lambda x, y=0: x + y)
    original = module.f
    with unit_time.stopwatch(module, "f") as calls:
        assert module.f(2, y=3) == 5 and module.f(1) == 1
    assert module.f is original
    assert [args for args, _ in calls] == [(2,), (1,)] and all(s >= 0 for _, s in calls)


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(SystemExit, match="the preset's methods that train: supervised, autoencoder"):
        unit_time.main(["--small", "--methods", "random"])  # random-init does not train


@pytest.mark.slow
def test_small_run_has_a_row_per_method() -> None:
    """The smoke run end to end (two methods, about 20-30 s): real units through ssl_bench.run, then their steps."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--small", "--methods", "supervised,npidpp"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    assert "Smoke sizes" in text and "preset `ci`" in text
    for name in ("supervised", "npidpp"):
        unit, evals = rows(text, name)
        epochs, steps, step_ms, alone, loops, unit_s, ratio = (float(c.replace(",", "")) for c in unit[1:8])
        assert (epochs, steps) == (1, 4)  # 256 images at batch 64
        assert min(step_ms, alone, loops, unit_s) > 0
        assert alone == pytest.approx(epochs * steps * step_ms / 1e3, rel=0.01)
        assert 0.5 <= ratio and unit_s >= loops  # the unit holds its epoch loops and more
        linear, knn, total = (float(c) for c in evals[1:4])
        assert linear > 0 and knn > 0 and total == pytest.approx(linear + knn, rel=0.01)
        assert evals[4] == "6"  # the ci preset's epochs
    assert "targets met." in text


def test_readme_has_the_markers() -> None:
    text = unit_time.ratios.README.read_text()
    for kind in ("avx512", "avx2"):
        begin, end = unit_time.ratios.markers(unit_time.BEGIN, unit_time.END, kind)
        assert text.index(begin) < text.index(end)
