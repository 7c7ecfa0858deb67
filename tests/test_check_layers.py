"""`ssl-bench check`'s two layers: measured bands for the accuracy layer, the fingerprint layer, and how they combine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_check import base_rows, read_baseline, row, unwrapped, write_results

from ssl_bench import check, fingerprints
from ssl_bench.cli import main

DETECTION = ["--select", "evaluations.detection"]  # the fingerprints that compute in milliseconds


def seeds_rows(values: list[float], metric: str = "top1") -> list[dict[str, object]]:
    return [row("pirl", "linear", "", "layer4", metric, v, seed) for seed, v in enumerate(values)]


def update(tmp_path: Path, *tables: list[dict[str, object]]) -> Path:
    paths = [str(write_results(tmp_path / f"run{i}" / "results.csv", rows)) for i, rows in enumerate(tables)]
    baseline = tmp_path / "baselines" / "ci.csv"
    assert main(["check", "--no-fingerprints", "--baseline", str(baseline), "--update", "--results", *paths]) == 0
    return baseline


def test_the_band_is_six_standard_deviations_with_a_floor(tmp_path: Path) -> None:
    values = [30.0, 33.0, 36.0]  # sd 3
    (got,) = read_baseline(update(tmp_path, seeds_rows(values)))
    assert (float(got["value"]), got["seeds"], float(got["sd"]), float(got["band"])) == (33.0, "3", 3.0, 18.0)
    (tight,) = read_baseline(update(tmp_path / "b", seeds_rows([30.0, 30.1])))
    assert float(tight["band"]) == 1.0  # 6 x 0.07 is below the one-point floor


def test_a_number_whose_samples_agree_by_chance_gets_its_peers_spread(tmp_path: Path) -> None:
    rows = [*seeds_rows([30.0, 33.0, 36.0])]  # pirl layer4: sd 3
    rows += [
        row("jigsaw", "linear", "", "layer4", "top1", v, seed) for seed, v in enumerate([20.0, 20.1, 20.2])
    ]  # sd 0.1
    rows += [
        row("jigsaw", "linear", "", "layer1", "top1", v, seed) for seed, v in enumerate([50.0, 50.1, 50.2])
    ]  # no peer
    bands = {(r["method"], r["layer"]): float(r["band"]) for r in read_baseline(update(tmp_path, rows))}
    assert bands["jigsaw", "layer4"] == pytest.approx(
        6 * math.sqrt((9 + 0.01) / 2), abs=1e-4
    )  # the pooled sd of layer4
    assert bands["pirl", "layer4"] == 18.0  # its own sd is the larger
    assert bands["jigsaw", "layer1"] == 1.0  # 6 x 0.1 < the floor; no other method has a layer1 number


def test_several_results_tables_pool_into_one_band(tmp_path: Path) -> None:
    # two machines, seed 0 each: two samples, not one replacing the other
    (got,) = read_baseline(update(tmp_path, seeds_rows([30.0]), seeds_rows([34.0])))
    assert (float(got["value"]), got["seeds"]) == (32.0, "2")
    assert float(got["band"]) == pytest.approx(6 * math.sqrt(8), abs=1e-4)


def test_a_single_sample_gets_the_floor_and_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = update(tmp_path, base_rows())
    out = unwrapped(capsys.readouterr().out)
    assert unwrapped("warning: 6 of 8 numbers have one sample, so their band is the floor alone, not measured") in out
    bands = {(r["method"], r["eval"], r["metric"]): float(r["band"]) for r in read_baseline(baseline)}
    assert bands["pirl", "invariance", "mean"] == 0.03 and bands["random", "knn", "top1"] == 1.0


def test_a_number_inside_its_band_passes_and_outside_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = update(tmp_path, seeds_rows([30.0, 33.0, 36.0]))  # 33 ± 18
    for value, code in ((50.9, 0), (15.5, 0), (51.1, 1), (14.0, 1)):
        results = write_results(tmp_path / "now" / "results.csv", seeds_rows([value]))
        assert main(["check", "--no-fingerprints", "--baseline", str(baseline), "--results", str(results)]) == code, (
            value
        )
    out = " ".join(capsys.readouterr().out.split())
    assert "pirl linear layer4 top1 33 14 -19 ±18 REGRESSION" in out and "the accuracy layer found a regression" in out


def test_a_baseline_without_bands_cannot_be_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "ci.csv"
    old.write_text(
        "method,backbone,dataset,preset,eval,protocol,layer,metric,value,seeds\n"
        "pirl,resnet18,synthetic,ci,linear,,layer4,top1,41,1\n"
    )
    results = write_results(tmp_path / "results.csv", base_rows())
    assert main(["check", "--no-fingerprints", "--baseline", str(old), "--results", str(results)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert (
        unwrapped("lacks column(s): sd, band") in err and unwrapped("needs several seeds (e.g. `--seeds 0,1,2`)") in err
    )


# ---- the fingerprint layer --------------------------------------------------------------------------------------------


@pytest.fixture
def prints(tmp_path: Path) -> Path:
    """The detection fingerprints of this code, written by --update (all of them would take a minute)."""
    path = tmp_path / "fingerprints.json"
    fingerprints.write(fingerprints.compute(["evaluations.detection"]), path)
    return path


def test_fingerprints_of_this_code_hold(prints: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--fingerprints", "--fingerprints-file", str(prints), *DETECTION]) == 0
    out = capsys.readouterr().out
    assert "fingerprints hold: 14 of 14 values match" in out and "check passed: fingerprints" in out


def test_a_moved_fingerprint_fails_and_is_named(prints: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(prints.read_text())
    ap = data["evaluations"]["detection"]["voc07"]["AP50"]
    data["evaluations"]["detection"]["voc07"]["AP50"] = ap * (1 + 3e-4)  # beyond rtol 1e-4
    data["evaluations"]["detection"]["coco"]["AP"] *= 1 + 5e-5  # within it
    prints.write_text(json.dumps(data))
    assert main(["check", "--fingerprints", "--fingerprints-file", str(prints), *DETECTION]) == 1
    out = unwrapped(capsys.readouterr().out)
    assert unwrapped("fingerprints moved: 1 of 14 values differ") in out
    assert unwrapped(f"evaluations.detection.voc07.AP50: {ap * (1 + 3e-4):.9g} -> {ap:.9g} (relative") in out
    assert unwrapped("check --fingerprints --fingerprints-file") in out and "--update" in out


def test_missing_or_foreign_fingerprints_cannot_be_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert main(["check", "--fingerprints", "--fingerprints-file", str(missing), *DETECTION]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert unwrapped(f"cannot compare: no fingerprints at {missing}") in err and "--update" in err
    foreign = tmp_path / "old.json"
    foreign.write_text(json.dumps({"schema": 0}))
    assert main(["check", "--fingerprints", "--fingerprints-file", str(foreign), *DETECTION]) == 2
    assert unwrapped("have schema 0, this ssl-bench writes schema 1") in unwrapped(capsys.readouterr().err)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert main(["check", "--fingerprints", "--fingerprints-file", str(broken), *DETECTION]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_with_a_baseline_both_layers_run_and_each_failure_is_named(
    tmp_path: Path, prints: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = update(tmp_path, seeds_rows([30.0, 33.0, 36.0]))
    (baseline.parent / "fingerprints.json").write_text(prints.read_text())  # the default place: beside the baseline
    capsys.readouterr()
    good = write_results(tmp_path / "now" / "results.csv", seeds_rows([33.0]))
    assert main(["check", "--baseline", str(baseline), "--results", str(good), *DETECTION]) == 0
    assert "check passed: fingerprints, accuracy" in capsys.readouterr().out
    bad = write_results(tmp_path / "bad" / "results.csv", seeds_rows([3.0]))
    assert main(["check", "--baseline", str(baseline), "--results", str(bad), *DETECTION]) == 1
    out = capsys.readouterr().out
    assert "fingerprints hold" in out and "accuracy out of band" in out
    assert "check failed: the accuracy layer found a regression (checked: fingerprints, accuracy)" in out
    (baseline.parent / "fingerprints.json").unlink()
    assert (
        main(["check", "--baseline", str(baseline), "--results", str(good), *DETECTION]) == 2
    )  # a layer cannot be skipped silently


def test_update_rewrites_the_fingerprints(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    path = tmp_path / "fp.json"
    monkeypatch.setattr(
        fingerprints,
        "compute",
        lambda select=(), progress=None: {
            "schema": fingerprints.SCHEMA,
            "rtol": 1e-4,
            "atol": 1e-6,
            "methods": {},
            "evaluations": {"x": {"y": 1.5}},
        },
    )
    assert main(["check", "--fingerprints", "--fingerprints-file", str(path), "--update"]) == 0
    written = json.loads(path.read_text())
    assert written["evaluations"] == {"x": {"y": 1.5}} and written["environment"] == check.environment()
    assert (
        main(["check", "--fingerprints", "--update", "--select", "methods.pirl", "--fingerprints-file", str(path)]) == 2
    )
    assert "--update rewrites every fingerprint; drop --select" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--fingerprints", "--no-fingerprints"], "exclude each other"),
        (["--no-fingerprints"], "needs --baseline"),
        (["--no-fingerprints", "--baseline", "b.csv", "--select", "methods.pirl"], "--select chooses fingerprints"),
        (["--baseline", "b.csv", "--results", "a.csv", "b.csv"], "pooled only by --update"),
    ],
)
def test_contradictory_flags_exit_2(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *flags]) == 2
    assert message in capsys.readouterr().err


def test_flatten_and_compare_rules() -> None:
    base = {"rtol": 1e-4, "atol": 1e-6, "a": {"steps": [{"loss": 2.0, "name": "x"}], "zero": 0.0, "shape": [1, 2]}}
    same = {"a": {"steps": [{"loss": 2.0001, "name": "x"}], "zero": 5e-7, "shape": [1, 2]}}
    assert fingerprints.flatten(base["a"]) == {"steps.0.loss": 2.0, "steps.0.name": "x", "zero": 0.0, "shape": [1, 2]}
    assert fingerprints.compare(base, same) == ([], 4)
    moved = {"a": {"steps": [{"loss": 2.001, "name": "y"}], "shape": [1, 3], "new": 1}}
    keys = [d.key for d in fingerprints.compare(base, moved)[0]]
    assert keys == ["a.new", "a.shape", "a.steps.0.loss", "a.steps.0.name", "a.zero"]
    assert fingerprints.compare(base, moved, ["a.steps"])[1] == 2


# Jigsaw in `ci` learns its task (90% of 100 permutations after 6 epochs) but its backbone evaluates within the bands of
# random-init's: the accuracy layer cannot tell it from a Jigsaw that stopped learning (the fingerprints see a change
# to its code). Known since issue 16 (gamma = 1 init, no per-tile normalisation); strict, so a fix shows.
BLIND = pytest.mark.xfail(strict=True, reason="ci's Jigsaw evaluates within random-init's bands")
# NPID++ was 1.34 bands from random-init (invariance) in the baseline before issue 19's NCE pass; the pass moved its
# numbers at float32 rounding and the re-sampled baseline puts it at 0.999 of a band (README: Regression check)
BLIND_NPIDPP = pytest.mark.xfail(strict=True, reason="ci's NPID++ evaluates within 0.999 of a band of random-init's")


@pytest.mark.parametrize(
    "method",
    [
        "supervised",
        "autoencoder",
        "rotnet",
        pytest.param("jigsaw", marks=BLIND),
        pytest.param("npidpp", marks=BLIND_NPIDPP),
        "pirl",
    ],
)
def test_the_committed_bands_see_a_method_that_stopped_learning(method: str) -> None:
    """A method that stopped learning evaluates like the random-init backbone it started from (same seed, same
    weights): its numbers replaced by random-init's must leave the committed bands somewhere."""
    base = check.load_baseline(Path(__file__).parents[1] / "results" / "baselines" / "ci.csv", Path("results.csv"))
    random = base[base["method"] == "random"].set_index(["eval", "protocol", "layer", "metric"])["value"]
    now = base.copy()
    mine = now["method"] == method
    keys = list(now.loc[mine, ["eval", "protocol", "layer", "metric"]].itertuples(index=False, name=None))
    now.loc[mine, "value"] = [random.get(k, v) for k, v in zip(keys, now.loc[mine, "value"])]
    failed = [r for r in check.compare(base, now) if r.failed]
    assert failed and {r.method for r in failed} == {method}


def test_a_missing_results_table_fails_before_the_fingerprints_are_computed(
    tmp_path: Path, prints: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = update(tmp_path, seeds_rows([30.0, 33.0, 36.0]))
    (baseline.parent / "fingerprints.json").write_text(prints.read_text())

    def too_late(*args, **kwargs):
        raise AssertionError("the fingerprints were computed before the missing results table was noticed")

    monkeypatch.setattr(fingerprints, "compute", too_late)
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "nope" / "results.csv")]) == 2
    assert "cannot compare: no results table at" in capsys.readouterr().err


def test_the_committed_baseline_keys_detection_by_the_ci_presets_data_and_schedule() -> None:
    """The baseline's detection protocols are the labels a ci run writes (scoring, scenes, splits, iterations): a
    change to the ci preset's detection data or to the label format shows here, not as 42 missing numbers."""
    from ssl_bench.protocol import VOCProtocol
    from ssl_bench.run_config import load

    base = check.load_baseline(Path(__file__).parents[1] / "results" / "baselines" / "ci.csv", Path("results.csv"))
    cfg = load("ci").detection
    labels = {VOCProtocol.of(scoring, cfg, cfg.iterations).label for scoring in cfg.protocols}
    assert labels == {
        "voc07 on synthetic-voc-16-8-64px trainval->test 5 it",
        "coco on synthetic-voc-16-8-64px trainval->test 5 it",
    }
    assert set(base.loc[base["eval"] == "detection", "protocol"]) == labels
