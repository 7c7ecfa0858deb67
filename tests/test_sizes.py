"""``sizes``: Fig. 2's other model sizes, each pretrained for every method and evaluated with a few evaluations only."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import restore_torch_settings, torch_settings
from rich.console import Console

import ssl_bench
from ssl_bench import api
from ssl_bench.config import ConfigError
from ssl_bench.run_config import load, parse_set
from ssl_bench.runner import eval_hash, plan

MAIN = "resnet18-smallstem-w0.25"
SMALL = "resnet18-smallstem-w0.0625"


def sized(*sets: str) -> list:
    return plan(load("ci", parse_set([f"sizes.backbones={SMALL}", *sets])))


def test_a_size_runs_every_method_with_its_evaluations_only() -> None:
    units = sized()
    main = [u for u in units if u.backbone == MAIN]
    small = [u for u in units if u.backbone == SMALL]
    assert [u.method for u in small] == [u.method for u in main] == load("ci", {}).methods
    assert all(u.evals == ("linear", "knn", "semisup", "detection", "svm", "invariance") for u in main)
    assert all(u.evals == ("linear",) for u in small)
    assert units[: len(main)] == main  # the run's backbones first: their results come before the extra sizes'


def test_a_size_hashes_as_the_same_backbone_among_backbones() -> None:
    """A result computed on a `sizes` backbone is the one a run naming it in `backbones` finds cached, and back."""
    small = {u.method: u for u in sized() if u.backbone == SMALL}
    listed = load("ci", parse_set([f"backbones={SMALL}"]))
    for unit in plan(listed):
        assert unit.pretrain_hash == small[unit.method].pretrain_hash
        assert eval_hash(unit, "linear", listed) == eval_hash(small[unit.method], "linear", load("ci", {}))


def test_the_main_backbones_keep_their_hashes() -> None:
    before = {u.run_id for u in plan(load("ci", {}))}
    assert {u.run_id for u in sized() if u.backbone == MAIN} == before


def test_a_size_whose_evaluations_the_run_does_not_ask_for_is_not_run() -> None:
    assert {u.backbone for u in sized("evals=knn,detection")} == {MAIN}
    units = sized("evals=knn", "sizes.evals=knn,svm")
    assert {u.evals for u in units if u.backbone == SMALL} == {("knn",)}


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["sizes.backbones=resnet18-smallstem-x2"], "unknown modifier .x2."),
        ([f"sizes.backbones={MAIN}"], f"sizes.backbones names '{MAIN}', which backbones runs already"),
        (["sizes.evals=linaer"], "unknown evaluation 'linaer'"),
    ],
)
def test_bad_sizes_name_the_fix(sets: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        plan(load("ci", parse_set(sets)))


def test_naming_a_backbone_drops_the_presets_sizes_unless_sizes_are_named_too() -> None:
    preset = {"sizes": {"backbones": [SMALL]}}
    named = api.config_overrides({"backbones": "resnet18-smallstem-w0.125"}, None, preset, {})
    assert named["sizes"]["backbones"] == [SMALL]  # named by the caller: kept
    alone = api.config_overrides({"backbones": "resnet18-smallstem-w0.125"}, None, {}, {})
    assert alone["sizes"]["backbones"] == []
    assert "sizes" not in api.config_overrides({"methods": "pirl"}, None, {}, {})


def test_a_run_with_a_size_writes_its_rows(tmp_path: Path) -> None:
    """End to end on tiny settings: the size's units are pretrained and probed (linear), nothing else, and the
    report's plot gets two x positions."""
    saved = torch_settings()
    console = Console(file=io.StringIO(), width=200)
    df = ssl_bench.run(
        "ci",
        tmp_path / "out",
        methods="random,rotnet",
        evals="linear,knn",
        epochs=1,
        console=console,
        set={"data.num_train": 64, "data.num_test": 32, "linear.epochs": 1, "sizes.backbones": SMALL},
    )
    restore_torch_settings(saved)
    by_backbone = df.groupby("backbone")["eval"].unique().map(sorted).to_dict()
    assert by_backbone == {MAIN: ["knn", "linear"], SMALL: ["linear"]}
    assert df.groupby("backbone")["params"].first()[SMALL] < df.groupby("backbone")["params"].first()[MAIN]
    printed = console.file.getvalue()
    assert f"(+ {SMALL}: linear only)" in printed
    assert (tmp_path / "out" / "report" / "accuracy_vs_params.png").exists()
    # the headline: one table per size, named in full in its title, each with the columns it has numbers for
    small, main = printed.split(f"ssl-bench headline numbers: synthetic · {SMALL}")[1].split(
        f"ssl-bench headline numbers: synthetic · {MAIN}"
    )
    assert "linear top1" in small and "knn top1" not in small
    assert "linear top1" in main and "knn top1" in main


def test_the_default_preset_draws_three_sizes_and_the_detection_table() -> None:
    """Issue 20: `ssl-bench run` gives Fig. 2 a curve (three sizes, linear probe on each) and Table 1 (detection on
    the main size, every method)."""
    cfg = load("default", {})
    units = plan(cfg)
    sizes = {u.backbone for u in units}
    assert len(sizes) == 3 and len(units) == 3 * len(cfg.methods)
    assert all("linear" in u.evals for u in units)
    detected = [u for u in units if "detection" in u.evals]
    assert {u.backbone for u in detected} == set(cfg.backbones) and len(detected) == len(cfg.methods)
    assert {u.evals for u in units if u.backbone not in cfg.backbones} == {("linear",)}
