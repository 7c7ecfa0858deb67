"""ssl-bench export: timm-named safetensors that timm or ``load_backbone`` load to the wrapper's exact outputs, a
config and a model card with the run's numbers, and no export silently replacing another."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from ssl_bench import storage
from ssl_bench.backbone import Backbone
from ssl_bench.cli import main
from ssl_bench.config import ConfigError
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.eval.harness import Row
from ssl_bench.export import CARD, CONFIG, WEIGHTS, export, export_config, load_backbone, model_card, run_numbers
from ssl_bench.report.results import read_results
from ssl_bench.results import ResultsTable
from ssl_bench.run_config import load
from ssl_bench.runner import plan, pretrain, result_rows, unit_record, write_json

PLAIN = "resnet10t"  # a plain timm architecture (5 M parameters)
VARIANT = "resnet18-smallstem-w0.25"  # a stem timm cannot build
WIDTH = "resnet18-w0.25"  # timm builds it from the name and model_args' channels
INFO = DataInfo("tiny", 10, 16, 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
ROWS = [
    ("linear", Row("layer1", "top1", 12.3456)),
    ("linear", Row("layer4", "top1", 45.5)),
    ("knn", Row("pooled", "top1", 33.25)),
    ("detection", Row("c4", "AP", 7.125, "coco on tiny")),
]


def make_run(out: Path, spec: str) -> Path:
    """A finished run directory as the runner writes it (config.json, backbone.pt through ``pretrain``) and its
    results rows; the ``random`` method, so nothing trains."""
    cfg = load("ci", {"backbones": [spec], "methods": ["random"]})
    unit = plan(cfg)[0]
    run_dir = out / "runs" / unit.run_id
    write_json(run_dir / "config.json", unit_record(unit, INFO))
    backbone = pretrain(unit, cfg, Splits([], [], INFO), torch.device("cpu"), run_dir, None)  # type: ignore[arg-type]
    for name in dict(ROWS):  # one evaluation's rows in one append, as the runner writes them
        rows = [row for eval_name, row in ROWS if eval_name == name]
        ResultsTable(out / "results.csv").append(
            result_rows(unit, name, f"{name}-{unit.run_id}", rows, backbone, INFO, cfg)
        )
    return run_dir


def wrapper(run_dir: Path, spec: str) -> Backbone:
    """The backbone the evaluations use: the wrapper loaded from backbone.pt."""
    backbone = Backbone(spec)
    backbone.load_state_dict(storage.load(run_dir / "backbone.pt"), strict=True)
    return backbone.eval()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("out")
    return {spec: make_run(out, spec) for spec in (PLAIN, VARIANT, WIDTH)}


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = runs[PLAIN].parent.parent
    to = tmp_path_factory.mktemp("export")
    dirs = export(out, to)
    assert sorted(dirs) == sorted(to / r.name for r in runs.values())
    return {spec: to / run.name for spec, run in runs.items()}


def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_export_writes_timm_named_weights_config_and_card(runs, exported) -> None:
    directory = exported[VARIANT]
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS, CONFIG, CARD])
    weights = load_file(directory / WEIGHTS)
    model_state = wrapper(runs[VARIANT], VARIANT).model.state_dict()
    assert set(weights) == set(model_state)  # timm's own names: no "model." prefix
    assert all(torch.equal(weights[k], v) for k, v in model_state.items())
    config = json.loads((directory / CONFIG).read_text())
    record = json.loads((runs[VARIANT] / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["spec"] == VARIANT
    assert config["modifiers"] == {"small_stem": True, "width": 0.25} and config["timm_loadable"] is False
    assert config["model_args"] == {"channels": [16, 32, 64, 128]}
    assert (config["method"], config["dataset"], config["image_size"], config["preset"]) == ("random", "tiny", 32, "ci")
    assert (config["seed"], config["pretrain_hash"]) == (0, record["unit"]["pretrain_hash"])
    assert (config["epochs"], config["pretrained"], config["num_features"]) == (0, False, 128)
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.4, 0.3] and config["pretrained_cfg"]["num_classes"] == 0
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert set(config["versions"]) == {"ssl_bench", "torch", "timm", "safetensors"}


def test_model_card_has_front_matter_numbers_and_load_snippets(exported) -> None:
    card = (exported[VARIANT] / CARD).read_text()
    assert card.startswith("---\nlibrary_name: timm\nlicense: mit\n")
    assert "tags:\n- image-feature-extraction\n- timm\n" in card
    for line in (
        "| linear | - | layer1 | top1 | 12.3456 |",
        "| linear | - | layer4 | top1 | 45.5 |",
        "| knn | - | pooled | top1 | 33.25 |",
        "| detection | coco on tiny | c4 | AP | 7.125 |",
    ):
        assert line in card
    assert "ssl_bench.load_backbone(" in card and "timm alone cannot rebuild" in card
    plain = (exported[PLAIN] / CARD).read_text()
    assert 'timm.create_model("local-dir:' in plain and 'pretrained_cfg_overlay=dict(file="' in plain


def test_model_card_of_a_run_without_results_says_so(runs) -> None:
    results = read_results(runs[PLAIN].parent.parent / "results.csv")
    numbers = run_numbers(results, "no_such_run")
    assert numbers.empty
    config = json.loads((runs[PLAIN] / "config.json").read_text())
    card = model_card(export_config("no_such_run", config, wrapper(runs[PLAIN], PLAIN)), numbers)
    assert "No evaluation of this run is in results.csv yet." in card and "| linear |" not in card


def test_timm_loads_a_plain_architecture_strictly_with_the_wrappers_outputs(runs, exported, caplog) -> None:
    file = exported[PLAIN] / WEIGHTS
    with caplog.at_level(logging.INFO, logger="timm"):
        model = timm.create_model(PLAIN, pretrained=True, pretrained_cfg_overlay=dict(file=str(file)), num_classes=0)
    assert "Missing keys" not in caplog.text and "Unexpected keys" not in caplog.text
    weights = load_file(file)
    state = model.state_dict()
    assert set(state) == set(weights)  # strict: nothing missing, nothing left over
    assert all(torch.equal(state[k], weights[k]) for k in state)
    x = images()
    expected = wrapper(runs[PLAIN], PLAIN)(x)
    assert torch.equal(model.eval()(x), expected)
    from_dir = timm.create_model(f"local-dir:{exported[PLAIN]}", pretrained=True).eval()  # config.json's own cfg
    assert torch.equal(from_dir(x), expected)
    assert tuple(timm.data.resolve_data_config({}, model=from_dir)["mean"]) == INFO.mean


def test_timm_builds_a_width_variant_from_its_config(runs, exported) -> None:
    model = timm.create_model(f"local-dir:{exported[WIDTH]}", pretrained=True).eval()
    x = images()
    assert torch.equal(model(x), wrapper(runs[WIDTH], WIDTH)(x))


def test_load_backbone_gives_the_plain_timm_module_with_the_wrappers_outputs(runs, exported) -> None:
    model = load_backbone(exported[VARIANT])
    assert not isinstance(model, Backbone) and not model.training
    x = images()
    assert torch.equal(model(x), wrapper(runs[VARIANT], VARIANT)(x))
    with pytest.raises(RuntimeError, match="conv1.weight"):  # why the card says timm alone cannot: the stem differs
        timm.create_model(f"local-dir:{exported[VARIANT]}", pretrained=True)


def test_an_export_never_replaces_a_different_one(runs, exported) -> None:
    out, to = runs[PLAIN].parent.parent, exported[PLAIN].parent
    before = {p: p.stat().st_mtime_ns for p in exported[PLAIN].iterdir()}
    assert export(out, to, units=[runs[PLAIN]]) == [exported[PLAIN]]  # the same files: left as they are
    assert {p: p.stat().st_mtime_ns for p in exported[PLAIN].iterdir()} == before
    card = exported[PLAIN] / CARD
    card.write_text(card.read_text() + "edited\n")
    with pytest.raises(ConfigError, match=rf"{exported[PLAIN]} already holds a different export \(README.md differs\)"):
        export(out, to, units=[runs[PLAIN]])
    assert card.read_text().endswith("edited\n")


def test_cli_exports_a_method_and_prints_each_directory(runs, tmp_path, capsys) -> None:
    out = runs[PLAIN].parent.parent
    assert main(["export", "--out", str(out), "--method", "random", "--to", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert sorted(line.split()[-1] for line in printed.splitlines()) == sorted(
        str(tmp_path / r.name) for r in runs.values()
    )


@pytest.mark.parametrize(
    "case, needle",
    [
        ("no results", "no results table at"),
        ("no runs", "no finished pretraining run"),
        ("unknown method", "no finished run of method 'pirl'"),
        ("unfinished unit", "has no backbone.pt"),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_fix(case, needle, runs, tmp_path, capsys) -> None:
    out = runs[PLAIN].parent.parent
    argv = {
        "no results": ["--out", str(tmp_path)],
        "no runs": ["--out", str(tmp_path)],
        "unknown method": ["--out", str(out), "--method", "pirl"],
        "unfinished unit": ["--out", str(out), "--unit", str(tmp_path)],
    }[case]
    if case == "no runs":
        (tmp_path / "results.csv").write_text((out / "results.csv").read_text())
    assert main(["export", *argv, "--to", str(tmp_path / "to")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert err.startswith("error: ") and needle in err
    assert not (tmp_path / "to").exists()
