"""The fingerprint layer catches one-line changes: each edit below, made to a copy of the package, makes
`ssl-bench check --fingerprints` exit 1 and name the values that moved; the unedited copy passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINTS = ROOT / "results" / "baselines" / "fingerprints.json"

# (what, file, old text, new text, fingerprint sections to compute, a key prefix that must be named)
CHANGES = [
    (
        "NPID++ temperature 0.07 -> 0.2",
        "methods/npid.py",
        "temperature: float = 0.07",
        "temperature: float = 0.2",
        ["methods.npidpp", "configs"],
        "methods.npidpp.steps.",
    ),
    (
        "PIRL lambda 0.5 -> 0.4",
        "methods/pirl.py",
        "lam: float = 0.5",
        "lam: float = 0.4",
        ["methods.pirl"],
        "methods.pirl.steps.",
    ),
    (
        "Jigsaw grayscale 0.66 -> 0.5",
        "methods/jigsaw.py",
        "grayscale_p: float = 0.66",
        "grayscale_p: float = 0.5",
        ["methods.jigsaw"],
        "methods.jigsaw.steps.",
    ),
    (
        "RotNet all four rotations -> one",
        "methods/rotnet.py",
        "all_rotations: bool = True",
        "all_rotations: bool = False",
        ["methods.rotnet"],
        "methods.rotnet.steps.",
    ),
    (
        "linear-probe weight decay 5e-4 -> 1e-4",
        "ssl_bench/eval/linear_probe.py",
        "lr: float = 0.1\n    weight_decay: float = 5e-4",
        "lr: float = 0.1\n    weight_decay: float = 1e-4",
        ["evaluations.linear"],
        "evaluations.linear.",
    ),
    (
        "voc07 IoU threshold > -> >=",
        "ssl_bench/detection/voc07.py",
        "hit = ovmax > threshold",
        "hit = ovmax >= threshold",
        ["evaluations.detection"],
        "evaluations.detection.voc07.",
    ),
]


def package_copy(tmp_path: Path) -> Path:
    """ssl_bench/ and methods/ laid out as the installed package (methods/ is ssl_bench.methods)."""
    shutil.copytree(ROOT / "ssl_bench", tmp_path / "ssl_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "methods", tmp_path / "ssl_bench" / "methods", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def edit(copy: Path, file: str, old: str, new: str) -> None:
    path = copy / ("ssl_bench/" + file if file.startswith("methods/") else file)
    text = path.read_text()
    assert text.count(old) == 1, f"{file}: the edited line must occur once"
    path.write_text(text.replace(old, new))


def fingerprint_check(copy: Path, select: list[str]) -> subprocess.CompletedProcess[str]:
    flags = [f for s in select for f in ("--select", s)]
    env = {**os.environ, "PYTHONPATH": str(copy), "COLUMNS": "200"}
    code = "import sys, ssl_bench, ssl_bench.cli as c; assert ssl_bench.__file__.startswith(sys.argv[1]); sys.exit(c.main(sys.argv[2:]))"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(copy),
            "check",
            "--fingerprints",
            "--fingerprints-file",
            str(FINGERPRINTS),
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=copy,
        timeout=600,
    )


def test_the_unedited_copy_passes(tmp_path: Path) -> None:
    done = fingerprint_check(package_copy(tmp_path), ["evaluations", "configs"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fingerprints hold" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("what, file, old, new, select, named", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_one_line_change_fails_the_gate(
    tmp_path: Path, what: str, file: str, old: str, new: str, select: list[str], named: str
) -> None:
    copy = package_copy(tmp_path)
    edit(copy, file, old, new)
    done = fingerprint_check(copy, select)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "fingerprints moved" in out and "check failed: the fingerprints layer" in out
    assert f"  {named}" in out, out  # a value of the changed part itself, not only its config, is named
