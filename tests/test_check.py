"""`ssl-bench check`: a results.csv against a committed baseline, through the command line as CI runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ssl_bench import check
from ssl_bench.cli import main
from ssl_bench.config import ConfigError
from ssl_bench.results import COLUMNS

T0, T1 = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"

# (method, eval, protocol, layer, metric, value, seed): two seeds for pirl's linear probe, one for the rest
BASE: list[tuple[str, str, str, str, str, float, int]] = [
    ("pirl", "linear", "", "layer4", "top1", 40.0, 0),
    ("pirl", "linear", "", "layer4", "top1", 42.0, 1),
    ("pirl", "linear", "", "layer4", "top5", 80.0, 0),
    ("pirl", "linear", "", "layer4", "top5", 82.0, 1),
    ("random", "knn", "", "pooled", "top1", 20.0, 0),
    ("pirl", "semisup", "finetune-1%", "all", "top1", 30.0, 0),
    ("pirl", "semisup", "linear-10%", "all", "top1", 35.0, 0),
    ("pirl", "detection", "voc07", "c4", "AP", 10.0, 0),
    ("pirl", "detection", "coco", "c4", "AP", 5.0, 0),
    ("pirl", "invariance", "rotation", "pooled", "mean", 0.5, 0),
]
NUMBERS = 8  # distinct keys in BASE


def row(
    method: str,
    ev: str,
    protocol: str,
    layer: str,
    metric: str,
    value: float,
    seed: int,
    created: str = T0,
    run: str = "a",
) -> dict[str, object]:
    return {
        "method": method,
        "backbone": "resnet18",
        "params": 11_000_000,
        "dataset": "synthetic",
        "preset": "ci",
        "eval": ev,
        "protocol": protocol,
        "layer": layer,
        "metric": metric,
        "value": value,
        "seed": seed,
        "config_hash": f"{method}-{ev}-{seed}-{run}",
        "run_id": f"{method}_s{seed}_{run}",
        "created": created,
    }


def write_results(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def base_rows(changes: dict[tuple[str, str, str, str, str, int], float] | None = None) -> list[dict[str, object]]:
    """BASE as rows; ``changes`` maps (method, eval, protocol, layer, metric, seed) to a new value."""
    changes = changes or {}
    return [
        row(m, ev, p, layer, metric, changes.get((m, ev, p, layer, metric, seed), value), seed)
        for m, ev, p, layer, metric, value, seed in BASE
    ]


def read_baseline(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def flat(text: str) -> str:
    """Whitespace runs as one space (table padding)."""
    return " ".join(text.split())


def unwrapped(text: str) -> str:
    """Without any whitespace: error lines wrap at 80 columns, even inside long paths."""
    return "".join(text.split())


@pytest.fixture
def baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A baseline written by `--update` from BASE."""
    path = tmp_path / "baselines" / "ci.csv"
    assert (
        main(
            [
                "check",
                "--no-fingerprints",
                "--baseline",
                str(path),
                "--results",
                str(write_results(tmp_path / "base" / "results.csv", base_rows())),
                "--update",
            ]
        )
        == 0
    )
    assert f"wrote {NUMBERS} numbers" in capsys.readouterr().out
    return path


def run_check(baseline: Path, rows: list[dict[str, object]], *flags: str) -> int:
    results = write_results(baseline.parent.parent / "now" / "results.csv", rows)
    return main(["check", "--no-fingerprints", "--baseline", str(baseline), "--results", str(results), *flags])


def test_update_writes_sorted_means_over_seeds(baseline: Path) -> None:
    rows = read_baseline(baseline)
    assert list(rows[0]) == [
        "method",
        "backbone",
        "dataset",
        "preset",
        "eval",
        "protocol",
        "layer",
        "metric",
        "value",
        "seeds",
        "sd",
        "band",
    ]
    keys = [tuple(r[c] for c in check.KEY) for r in rows]
    assert keys == sorted(keys) and len(keys) == NUMBERS
    by_key = {(r["method"], r["eval"], r["protocol"], r["metric"]): r for r in rows}
    assert (float(by_key["pirl", "linear", "", "top1"]["value"]), by_key["pirl", "linear", "", "top1"]["seeds"]) == (
        41.0,
        "2",
    )
    assert (float(by_key["pirl", "linear", "", "top5"]["value"]), by_key["pirl", "linear", "", "top5"]["seeds"]) == (
        81.0,
        "2",
    )
    assert float(by_key["pirl", "semisup", "linear-10%", "top1"]["value"]) == 35.0  # protocol is part of the key
    assert by_key["pirl", "detection", "coco", "AP"]["preset"] == "ci"


def test_same_results_pass(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(baseline, base_rows()) == 0
    out = capsys.readouterr().out
    assert f"{NUMBERS} of {NUMBERS} numbers within their band; 0 out of their band; 0 missing" in out
    assert "REGRESSION" not in out and "--update" not in out


def test_change_within_tolerance_passes(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # one seed +1.8 moves the mean over two seeds by 0.9 < 1 point; a distance moves by 0.02 < 0.03
    changes = {
        ("pirl", "linear", "", "layer4", "top1", 1): 43.8,
        ("pirl", "invariance", "rotation", "pooled", "mean", 0): 0.52,
    }
    assert run_check(baseline, base_rows(changes)) == 0
    assert f"{NUMBERS} of {NUMBERS} numbers within their band" in capsys.readouterr().out


def test_top1_beyond_tolerance_fails_and_names_it(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(baseline, base_rows({("random", "knn", "", "pooled", "top1", 0): 17.0})) == 1
    out = flat(capsys.readouterr().out)
    assert "random knn pooled top1 20 17 -3 ±1 REGRESSION" in out
    assert "pirl" not in out  # only failing rows are listed
    assert f"{NUMBERS - 1} of {NUMBERS} numbers within their band; 1 out of their band; 0 missing" in out
    assert "--update" in out


def test_a_jump_up_beyond_tolerance_also_fails(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(baseline, base_rows({("pirl", "detection", "coco", "c4", "AP", 0): 6.5})) == 1
    assert "pirl detection coco c4 AP 5 6.5 +1.5 ±1 REGRESSION" in flat(capsys.readouterr().out)


def test_distance_beyond_tolerance_fails(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(baseline, base_rows({("pirl", "invariance", "rotation", "pooled", "mean", 0): 0.55})) == 1
    assert "pirl invariance rotation pooled mean 0.5 0.55 +0.05 ±0.03 REGRESSION" in flat(capsys.readouterr().out)


def test_missing_key_fails(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [r for r in base_rows() if r["protocol"] != "coco"]
    assert run_check(baseline, rows) == 1
    out = flat(capsys.readouterr().out)
    assert "pirl detection coco c4 AP 5 – – ±1 missing" in out
    assert f"{NUMBERS - 1} of {NUMBERS} numbers within their band; 0 out of their band; 1 missing" in out


def test_new_key_does_not_fail(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [*base_rows(), row("jigsaw", "linear", "", "layer3", "top1", 12.0, 0)]
    assert run_check(baseline, rows) == 0
    out = capsys.readouterr().out
    assert "jigsaw" not in out  # not listed without --all
    assert "0 missing; 1 new (not in the baseline, not checked)" in out
    assert run_check(baseline, rows, "--all") == 0
    out = flat(capsys.readouterr().out)
    assert "jigsaw linear layer3 top1 – 12 – – new" in out  # no band: not checked
    assert "pirl linear layer4 top1 41 41 +0 ±8.4853 ok"  # 6 x the sd of 40 and 42 in out


def test_latest_run_of_a_key_and_seed_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # seed 0 was run twice: the newer run (T1) is listed first, the older one (T0) last; seed 1 once
    rows = [
        row("pirl", "linear", "", "layer4", "top1", 50.0, 0, created=T1, run="new"),
        row("pirl", "linear", "", "layer4", "top1", 10.0, 1, created=T0),
        row("pirl", "linear", "", "layer4", "top1", 99.0, 0, created=T0, run="old"),
    ]
    results = write_results(tmp_path / "results.csv", rows)
    path = tmp_path / "ci.csv"
    assert main(["check", "--no-fingerprints", "--baseline", str(path), "--results", str(results), "--update"]) == 0
    (only,) = read_baseline(path)
    assert (float(only["value"]), only["seeds"]) == (30.0, "2")  # mean of 50 and 10; 99 superseded
    assert main(["check", "--no-fingerprints", "--baseline", str(path), "--results", str(results)]) == 0


def test_tolerance_flag_widens_one_metric(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = base_rows({("random", "knn", "", "pooled", "top1", 0): 23.0})
    assert run_check(baseline, changed, "--tolerance", "top1=5") == 0
    assert run_check(baseline, changed, "--tolerance", "AP=5,top5=5") == 1
    assert run_check(baseline, changed, "--tolerance", "5") == 0  # a bare number: every metric
    capsys.readouterr()
    assert run_check(baseline, changed, "--tolerance", "5", "--tolerance", "top1=2") == 1  # a named metric wins
    assert "random knn pooled top1 20 23 +3 ±2 REGRESSION" in flat(capsys.readouterr().out)


def test_parse_tolerances() -> None:
    got = check.parse_tolerances(["top1=2,AP=0.5", " mean = 0.1 "], ["top1", "AP", "mean"])
    assert got == {"top1": 2.0, "AP": 0.5, "mean": 0.1}  # only the overridden metrics: the rest keep their bands
    assert check.parse_tolerances([], ["top1"]) == {}
    assert set(check.parse_tolerances(["0"], ["top1", "weird"]).values()) == {0.0}
    assert check.parse_tolerances(["weird=3"], ["weird"])["weird"] == 3.0
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        check.parse_tolerances(["top1=-1"], [])
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        check.parse_tolerances(["top1=lots"], [])


def test_unknown_tolerance_metric_exits_2_and_names_valid_ones(
    baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_check(baseline, base_rows(), "--tolerance", "top2=3") == 2
    err = flat(capsys.readouterr().err)
    assert "--tolerance: unknown metric 'top2'. Did you mean" in err
    assert "Valid metrics: AP, AP50, AP75, mAP, mean, q05, q25, q50, q75, q95, std, top1, top5, val_top1." in err


def test_missing_baseline_says_how_to_create_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = write_results(tmp_path / "results.csv", base_rows())
    path = tmp_path / "nope.csv"
    assert main(["check", "--no-fingerprints", "--baseline", str(path), "--results", str(results)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert unwrapped(f"cannot compare: no baseline at {path}") in err
    assert unwrapped(f"ssl-bench check --no-fingerprints --baseline {path} --update --results {results}") in err
    assert "Traceback" not in err


def test_missing_results_says_to_run_first(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "ci-out" / "results.csv"
    for extra in ([], ["--update"]):
        assert main(["check", "--no-fingerprints", "--baseline", str(baseline), "--results", str(results), *extra]) == 2
        err = unwrapped(capsys.readouterr().err)
        assert (
            unwrapped(f"no results table at {results}: run `ssl-bench run --preset ci --out {results.parent}` first")
            in err
        )
    assert len(read_baseline(baseline)) == NUMBERS  # --update without results left the baseline alone


def test_baseline_with_missing_columns_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ci.csv"
    path.write_text("method,backbone,dataset,eval,layer,metric,value\npirl,resnet18,synthetic,linear,layer4,top1,41\n")
    results = write_results(tmp_path / "results.csv", base_rows())
    assert main(["check", "--no-fingerprints", "--baseline", str(path), "--results", str(results)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert unwrapped(f"baseline {path} lacks column(s): preset, protocol, seeds, sd, band.") in err
    assert "--update" in err


def test_update_refuses_an_empty_results_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = write_results(tmp_path / "results.csv", [])
    path = tmp_path / "ci.csv"
    assert main(["check", "--no-fingerprints", "--baseline", str(path), "--results", str(results), "--update"]) == 2
    assert "no numeric results to write" in capsys.readouterr().err
    assert not path.exists()


def test_update_records_the_environment_beside_the_baseline(baseline: Path) -> None:
    recorded = json.loads((baseline.parent / "ci.env.json").read_text())
    assert recorded == check.environment()
    assert {"python", "torch", "torchvision", "timm", "cpu"} <= set(recorded)
    assert check.environment_differences(baseline) == []


def test_a_failure_in_another_environment_says_so(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = baseline.parent / "ci.env.json"
    env.write_text(json.dumps({**check.environment(), "torch": "0.0.1"}))
    capsys.readouterr()
    assert run_check(baseline, base_rows({("random", "knn", "", "pooled", "top1", 0): 25.0})) == 1
    out = unwrapped(capsys.readouterr().out)
    assert (
        unwrapped(
            f"this environment differs from the one that wrote the baseline (torch 0.0.1 -> "
            f"{check.environment()['torch']})"
        )
        in out
    )
    assert unwrapped("may be this machine's spread, not the code's: the fingerprint layer tells") in out
    env.unlink()
    assert run_check(baseline, base_rows({("random", "knn", "", "pooled", "top1", 0): 25.0})) == 1
    assert unwrapped("has no environment record (ci.env.json)") in unwrapped(capsys.readouterr().out)


def test_a_failure_in_the_same_environment_adds_no_note(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run_check(baseline, base_rows({("random", "knn", "", "pooled", "top1", 0): 25.0})) == 1
    assert "environment" not in capsys.readouterr().out
