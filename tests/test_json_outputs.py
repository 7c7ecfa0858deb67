"""Machine-readable outputs: `list --json`, `check --json` (both layers) and the report's results_wide.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_check import NUMBERS, base_rows, row, write_results
from test_report import fixture_rows, write_csv

from ssl_bench import fingerprints
from ssl_bench.cli import main
from ssl_bench.methods import available_methods
from ssl_bench.report import make_report

SECTIONS = [
    "methods",
    "evaluations",
    "datasets",
    "detection_datasets",
    "svm_datasets",
    "evaluation_options",
    "presets",
    "backbones",
]
TOP = ["passed", "exit_code", "error", "layers"]
ACCURACY = ["passed", "checked", "ok", "failures", "missing", "new", "baseline_file", "results_file", "note"]
ENTRY = [
    "method",
    "backbone",
    "dataset",
    "eval",
    "protocol",
    "layer",
    "metric",
    "baseline",
    "now",
    "delta",
    "band",
    "status",
]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    """(exit code, the JSON object that is the whole of stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_list_json_has_every_section_and_method(capsys: pytest.CaptureFixture[str]) -> None:
    code, listed, _ = run_json(capsys, "list", "--json")
    assert code == 0
    assert list(listed) == SECTIONS
    assert set(listed["methods"]) == set(available_methods()) and "pirl" in listed["methods"]
    assert {"linear", "knn", "detection"} <= set(listed["evaluations"])
    assert {"ci", "default"} <= set(listed["presets"])
    assert "detection.multiscale / roi_aligned / box_loss / freeze_at / freeze_bn" in listed["evaluation_options"]
    assert all(isinstance(v, str) and v for items in listed.values() for v in items.values())


# --- check --json, accuracy layer (the tables of tests/test_check.py)


@pytest.fixture
def baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "baselines" / "ci.csv"
    results = write_results(tmp_path / "base" / "results.csv", base_rows())
    assert main(["check", "--no-fingerprints", "--baseline", str(path), "--results", str(results), "--update"]) == 0
    capsys.readouterr()
    return path


def check_both(
    capsys: pytest.CaptureFixture[str], baseline: Path, rows: list[dict[str, object]], *flags: str
) -> tuple[int, dict, str, str]:
    """Check ``rows`` against ``baseline`` in text mode, then with --json: (exit code, JSON, JSON-mode stderr, text
    stdout); the two exit codes must agree."""
    results = write_results(baseline.parent.parent / "now" / "results.csv", rows)
    argv = ["check", "--no-fingerprints", "--baseline", str(baseline), "--results", str(results), *flags]
    text_code = main(argv)
    text = capsys.readouterr().out
    code, report, err = run_json(capsys, *argv, "--json")
    assert code == text_code == report["exit_code"]
    assert list(report) == TOP
    return code, report, err, text


def test_check_json_pass(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err, text = check_both(capsys, baseline, base_rows())
    assert code == 0 and report["passed"] is True and report["error"] is None
    assert list(report["layers"]) == ["accuracy"]
    accuracy = report["layers"]["accuracy"]
    assert list(accuracy) == ACCURACY
    assert (accuracy["checked"], accuracy["ok"], accuracy["failures"], accuracy["missing"]) == (
        NUMBERS,
        NUMBERS,
        [],
        [],
    )
    assert accuracy["baseline_file"] == str(baseline) and accuracy["note"] is None
    assert "accuracy holds" in err and "accuracy holds" in text  # the text report goes to stderr


def test_check_json_regression_missing_and_new(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [r for r in base_rows({("random", "knn", "", "pooled", "top1", 0): 17.0}) if r["protocol"] != "coco"]
    rows.append(row("jigsaw", "linear", "", "layer3", "top1", 12.0, 0))
    code, report, _, text = check_both(capsys, baseline, rows)
    assert code == 1 and report["passed"] is False and "REGRESSION" in text
    accuracy = report["layers"]["accuracy"]
    assert (accuracy["passed"], accuracy["checked"], accuracy["ok"]) == (False, NUMBERS, NUMBERS - 2)
    (failure,) = accuracy["failures"]
    assert list(failure) == ENTRY
    assert failure == {
        "method": "random",
        "backbone": "resnet18",
        "dataset": "synthetic",
        "eval": "knn",
        "protocol": "",
        "layer": "pooled",
        "metric": "top1",
        "baseline": 20.0,
        "now": 17.0,
        "delta": -3.0,
        "band": 1.0,
        "status": "REGRESSION",
    }
    (missing,) = accuracy["missing"]
    assert (missing["protocol"], missing["baseline"], missing["now"], missing["status"]) == (
        "coco",
        5.0,
        None,
        "missing",
    )
    (new,) = accuracy["new"]
    assert (new["method"], new["baseline"], new["now"], new["band"], new["status"]) == (
        "jigsaw",
        None,
        12.0,
        None,
        "new",
    )


def test_check_json_keeps_full_precision(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text shows 6 significant digits of a band (±0.123457); the JSON the float itself."""
    tolerance = 0.12345678901234567
    rows = base_rows({("random", "knn", "", "pooled", "top1", 0): 20.5})
    code, report, _, text = check_both(capsys, baseline, rows, "--tolerance", f"top1={tolerance!r}", "--all")
    assert code == 1 and "±0.123457" in text
    (failure,) = report["layers"]["accuracy"]["failures"]
    assert failure["band"] == tolerance and failure["now"] == 20.5 and failure["delta"] == 0.5


def test_check_json_cannot_compare_and_refused_flags(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "--no-fingerprints", "--baseline", str(baseline), "--results", str(baseline.parent / "no.csv")]
    assert main(argv) == 2
    capsys.readouterr()
    code, report, err = run_json(capsys, *argv, "--json")
    assert code == 2 and list(report) == TOP
    assert (report["passed"], report["exit_code"], report["layers"]) == (False, 2, {})
    assert "no results table at" in report["error"] and "cannot compare" in err
    assert main([*argv, "--json", "--update"]) == 2  # a usage error: said on stderr, nothing on stdout
    captured = capsys.readouterr()
    assert captured.out == "" and "--json reports a comparison" in captured.err


# --- check --json, fingerprint layer (detection only: milliseconds)


def test_check_json_fingerprints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    select = "evaluations.detection"
    computed = fingerprints.compute([select])
    path = tmp_path / "fingerprints.json"
    fingerprints.write(computed, path)
    argv = ["check", "--fingerprints", "--fingerprints-file", str(path), "--select", select]
    code, report, err = run_json(capsys, *argv, "--json")
    assert code == 0 and report["passed"] is True and "fingerprints hold" in err
    layer = report["layers"]["fingerprints"]
    assert list(layer) == ["passed", "file", "rtol", "atol", "checked", "moved"]
    checked = len([k for k in fingerprints.flatten(computed) if k.startswith(select)])
    assert (layer["file"], layer["checked"], layer["moved"]) == (str(path), checked, [])

    stored = json.loads(path.read_text())
    stored["evaluations"]["detection"]["coco"]["AP"] += 1.0
    del stored["evaluations"]["detection"]["voc07"]["AP50"]
    path.write_text(json.dumps(stored))
    assert main(argv) == 1
    capsys.readouterr()
    code, report, _ = run_json(capsys, *argv, "--json")
    assert code == 1 and report["passed"] is False and report["layers"]["fingerprints"]["checked"] == checked
    moved = {m["key"]: m for m in report["layers"]["fingerprints"]["moved"]}
    ap = computed["evaluations"]["detection"]["coco"]["AP"]
    assert moved[f"{select}.coco.AP"] == {
        "key": f"{select}.coco.AP",
        "baseline": ap + 1.0,
        "now": ap,  # bit for bit
        "relative": abs(ap - (ap + 1.0)) / (ap + 1.0),
        "status": "changed",
    }
    ap50 = moved[f"{select}.voc07.AP50"]
    assert (ap50["baseline"], ap50["now"], ap50["relative"], ap50["status"]) == (
        None,
        computed["evaluations"]["detection"]["voc07"]["AP50"],
        None,
        "new",
    )


# --- report/results_wide.csv (the fixture of tests/test_report.py)


def test_results_wide_csv_is_the_summary_frame(tmp_path: Path) -> None:
    files = make_report(write_csv(tmp_path, fixture_rows()))
    path = tmp_path / "report" / "results_wide.csv"
    assert files.results_wide_csv == path and path in files.written
    wide = pd.read_csv(path, keep_default_na=False, na_values=[""])
    summary = files.summary
    assert len(wide) == len(summary) == 6  # one row per model: 3 methods x 2 backbones
    assert list(wide.columns[:5]) == ["dataset", "preset", "backbone", "method", "params"]
    assert set(wide.columns) == set(summary.columns)
    assert list(wide.columns[5:12]) == [
        "linear_top1",
        "linear_top1_std",
        "linear_top1_low",
        "linear_top1_high",
        "linear_seeds",
        "linear_layer",
        "linear_chosen_on",
    ]
    assert wide.columns[12] == "knn_top1"
    for column in summary.columns:
        if pd.api.types.is_numeric_dtype(summary[column]):  # every digit read back
            assert np.array_equal(wide[column].to_numpy(float), summary[column].to_numpy(float), equal_nan=True)
        else:
            assert list(wide[column].fillna("")) == list(summary[column].fillna("")), column
    pirl = wide[(wide["method"] == "pirl") & (wide["backbone"] == "resnet18")].iloc[0]
    assert (pirl["linear_top1"], pirl["linear_layer"], pirl["linear_seeds"], pirl["knn_top1"]) == (
        61.0,
        "layer4",
        2,
        54.0,
    )


def test_results_wide_csv_of_an_empty_table_has_the_columns(tmp_path: Path) -> None:
    files = make_report(write_csv(tmp_path, []))
    wide = pd.read_csv(files.results_wide_csv)
    assert wide.empty and list(wide.columns[:7]) == [
        "dataset",
        "preset",
        "backbone",
        "method",
        "params",
        "linear_top1",
        "linear_top1_std",
    ]
