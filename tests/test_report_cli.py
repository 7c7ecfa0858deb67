"""`ssl-bench report --published/--no-published` reaches the report; the default depends on the dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ssl_bench.cli import build_parser, main
from ssl_bench.report import results


def write(out: Path, dataset: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results.REQUIRED_COLUMNS))
        writer.writeheader()
        for method, value in (("random", 10.0), ("pirl", 50.0)):
            writer.writerow(
                {
                    "method": method,
                    "backbone": "resnet18",
                    "params": 11_000_000,
                    "dataset": dataset,
                    "preset": "p",
                    "eval": "linear",
                    "protocol": "",
                    "layer": "layer4",
                    "metric": "top1",
                    "value": value,
                    "seed": 0,
                    "config_hash": "h",
                    "run_id": f"{method}-0",
                    "created": "2026-01-01T00:00:00+00:00",
                }
            )
    return out


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--published"], True), (["--no-published"], False)])
def test_flag_parses(flags: list[str], expected: bool | None) -> None:
    assert build_parser().parse_args(["report", "--out", "x", *flags]).published is expected


@pytest.mark.parametrize(
    ("dataset", "flags", "shown"),
    [
        ("cifar10", [], False),
        ("cifar10", ["--published"], True),
        ("imagenet", [], True),
        ("imagenet", ["--no-published"], False),
    ],
)
def test_report_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str, flags: list[str], shown: bool
) -> None:
    out = write(tmp_path, dataset)
    assert main(["report", "--out", str(out), *flags]) == 0
    assert ("PIRL (published)" in (out / "report" / "summary.md").read_text()) is shown
    assert "index.html" in capsys.readouterr().out


def test_missing_results_is_still_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 1
    assert "no results table" in capsys.readouterr().err
