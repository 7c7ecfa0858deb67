"""End to end through the command line, as a user runs it (the ci preset, on the built-in dataset)."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest

from ssl_bench.cli import main
from ssl_bench.data.registry import DATASETS
from ssl_bench.detection.config import DATASETS as DETECTION_DATASETS
from ssl_bench.eval.harness import EVALS
from ssl_bench.eval.svm import DATASETS as SVM_DATASETS
from ssl_bench.methods import METHODS, available_methods

# Small enough for a structure check (files, rows, messages), not for numbers: 128 + 64 images, one probe epoch.
SMALL = ["--set", "data.num_train=128", "--set", "data.num_test=64", "--set", "linear.epochs=1"]


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def squeezed(text: str) -> str:
    """``text`` without any whitespace: rich wraps long lines (even inside a path) at the console width."""
    return "".join(text.split())


def listed(out: str) -> dict[str, list[str]]:
    """``ssl-bench list`` output as {section title: the names in its first column}. A title starts at column 0, a
    row at column 2 (name, then its description); a wrapped description continues further right and is skipped."""
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.strip() and not line[0].isspace():
            title = line.strip()
            sections[title] = []
        elif line.startswith("  ") and len(line) > 2 and not line[2].isspace():
            sections[title].append(line.split()[0])
    return sections


def unset(tree: object, at: str = "") -> list[str]:
    """The dotted keys whose value is null anywhere in a JSON tree."""
    if isinstance(tree, dict):
        return [key for k, v in tree.items() for key in unset(v, f"{at}{k}.")]
    return [at.rstrip(".")] if tree is None else []


@pytest.mark.slow
def test_ci_run_writes_results_and_report_and_reruns_without_duplicates(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "--preset",
        "ci",
        "--methods",
        "random,supervised,autoencoder",
        "--epochs",
        "1",
        "--evals",
        "linear,knn",
        *SMALL,
        "--out",
        str(out),
    ]
    assert main(args) == 0
    first = rows(out / "results.csv")
    methods = {r["method"] for r in first}
    assert methods == {"random", "supervised", "autoencoder"}
    assert {r["eval"] for r in first} == {"linear", "knn"}
    assert {r["layer"] for r in first if r["eval"] == "linear"} == {"stem", "layer1", "layer2", "layer3", "layer4"}
    for name in ("summary.md", "accuracy_vs_params.png", "accuracy_vs_params.svg"):
        assert (out / "report" / name).stat().st_size > 0
    for method in ("supervised", "autoencoder"):
        run_dir = next((out / "runs").glob(f"{method}_*"))
        assert {"config.json", "metrics.jsonl", "checkpoint.pt", "backbone.pt"} <= {p.name for p in run_dir.iterdir()}
        saved = json.loads((run_dir / "config.json").read_text())
        assert unset(saved) == [], f"config.json of {method} leaves {unset(saved)} unresolved"
        assert saved["run"]["train"]["lr"] == pytest.approx(
            saved["unit"]["method_cfg"]["lr"] * 64 / 256
        )  # ci: batch 64

    capsys.readouterr()
    assert main(args) == 0
    said = squeezed(capsys.readouterr().out)
    assert squeezed(f"All 3 units are already in {out / 'results.csv'}: nothing to do.") in said
    assert rows(out / "results.csv") == first  # no duplicate rows, nothing rewritten

    assert main([*args, "--evals", "knn", "--set", "knn.k=10"]) == 0  # a changed eval config is a new unit
    assert len(rows(out / "results.csv")) == len(first) + 3 * 2


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["run", "--methods", "supervized"], 2, "unknown method 'supervized'. Did you mean 'supervised'?"),
        (["run", "--evals", "linaer"], 2, "unknown evaluation 'linaer'"),
        (["run", "--dataset", "imagenette"], 2, "unknown dataset 'imagenette'"),
        (["run", "--preset", "nope"], 2, "unknown preset 'nope'"),
        (["run", "--set", "train.epochs=-3"], 2, "train.epochs must be positive"),
        (
            ["run", "--set", "jigsaw.epochs=-1"],
            2,
            "jigsaw.epochs must be positive (leave it unset for train.epochs), got -1",
        ),
        (["run", "--set", "autoencoder.nosie_std=1"], 2, "Did you mean 'noise_std'?"),
        (
            ["run", "--dataset", "folder", "--data-root", "/does/not/exist"],
            1,
            "needs --data-root pointing at an ImageFolder tree",
        ),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_code(argv, code, needle, tmp_path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path), "--no-report"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert needle in " ".join(err.split()), err
    assert "Traceback" not in err


def test_list_names_every_method_eval_dataset_and_preset(capsys) -> None:
    assert main(["list"]) == 0
    sections = listed(capsys.readouterr().out)
    files = resources.files("ssl_bench.presets").iterdir()
    presets = [f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")]
    assert set(METHODS) <= set(available_methods())
    assert sorted(sections["methods"]) == sorted(available_methods())
    assert sorted(sections["evaluations"]) == sorted(EVALS)
    assert sorted(sections["datasets"]) == sorted(DATASETS)
    assert sorted(sections["detection datasets (--set detection.dataset=NAME)"]) == sorted(list(DETECTION_DATASETS))
    assert sorted(sections["svm datasets (--set svm.dataset=NAME)"]) == sorted(SVM_DATASETS)
    assert sorted(sections["presets"]) == sorted(presets) and {"ci", "default"} <= set(presets)
    options = sections["evaluation options (--set KEY=VALUE)"]
    assert {"linear.protocol", "linear.pool", "linear.val_fraction", "semisup.nesterov"} <= set(options)


def test_listed_reads_names_as_whole_cells() -> None:
    out = "methods\n  pirl      Misra & van der Maaten,\n            ci cifar10 jigsaw\npresets\n  cifar10   CIFAR\n"
    assert listed(out) == {"methods": ["pirl"], "presets": ["cifar10"]}  # no "ci" in "cifar10", nor in a wrapped line


def test_report_on_missing_results_explains(tmp_path, capsys) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 1
    err = squeezed(capsys.readouterr().err)
    expected = f"error: no results table at {tmp_path / 'results.csv'}: run `ssl-bench run --out {tmp_path}` first"
    assert squeezed(expected) in err


@pytest.mark.slow
def test_every_pretext_runs_through_the_ci_preset(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = [
        "run",
        "--preset",
        "ci",
        "--methods",
        "rotnet,jigsaw,npidpp,pirl",
        "--epochs",
        "1",
        "--evals",
        "knn,linear",
        *SMALL,
        "--set",
        "linear.layers=layer4",
        "--set",
        "jigsaw.epochs=2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "epochs 1 (jigsaw 2)" in " ".join(capsys.readouterr().out.split())
    got = rows(out / "results.csv")
    assert {r["method"] for r in got} == {"rotnet", "jigsaw", "npidpp", "pirl"}
    for method in ("rotnet", "jigsaw", "npidpp", "pirl"):
        own = {("knn", "head")} if method in ("npidpp", "pirl") else set()  # NPID's kNN on the 128-d embedding
        assert {(r["eval"], r["layer"]) for r in got if r["method"] == method} == {
            ("knn", "pooled"),
            ("linear", "layer4"),
        } | own
        logged = (next((out / "runs").glob(f"{method}_*")) / "metrics.jsonl").read_text().splitlines()
        assert len(logged) == (2 if method == "jigsaw" else 1), method  # `jigsaw.epochs` gives Jigsaw its own budget


def test_out_of_range_method_parameter_fails_before_any_training(tmp_path, capsys) -> None:
    assert main(["run", "--preset", "ci", "--set", "pirl.lam=1.5", "--out", str(tmp_path), "--no-report"]) == 2
    assert "pirl.lam must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_ci_preset_runs_every_evaluation_for_every_method(tmp_path) -> None:
    out = tmp_path / "out"
    shrink = [
        "linear.layers=layer4",
        "semisup.min_steps=2",
        "semisup.epochs=1",
        "detection.iterations=2",
        "detection.batch_size=2",
        "detection.synthetic_trainval=8",
        "detection.synthetic_test=4",
        "invariance.num_images=8",
        "invariance.repeats=1",
        "svm.synthetic_trainval=12",
        "svm.synthetic_test=6",
        "svm.layers=layer4",
    ]
    argv = ["run", "--preset", "ci", "--methods", "random,supervised,pirl", "--epochs", "1", "--out", str(out)]
    assert main([*argv, *SMALL, *(a for s in shrink for a in ("--set", s))]) == 0
    got = rows(out / "results.csv")
    for method in ("random", "supervised", "pirl"):
        mine = [r for r in got if r["method"] == method]
        assert {r["eval"] for r in mine} == {"linear", "knn", "semisup", "detection", "svm", "invariance"}
        assert {r["metric"] for r in mine if r["eval"] == "linear"} == {"top1", "top5", "val_top1"}
        assert {(r["protocol"], r["layer"], r["metric"]) for r in mine if r["eval"] == "svm"} == {
            ("voc07-svm on synthetic-voc-12-6-64px trainval->test", "layer4", "mAP")
        }
        assert {r["protocol"] for r in mine if r["eval"] == "semisup"} == {
            "finetune-1%",
            "finetune-10%",
            "linear-1%",
            "linear-10%",
        }
        assert {(r["protocol"], r["layer"], r["metric"]) for r in mine if r["eval"] == "detection"} == {
            (f"{p} on synthetic-voc-8-4-64px trainval->test 2 it", "c4", m)  # the data and schedule in the key
            for p in ("voc07", "coco")
            for m in ("AP", "AP50", "AP75")
        }
        expected = {("jigsaw", "pooled"), ("rotation", "pooled")} | (
            {("jigsaw", "head")} if method == "pirl" else set()
        )
        assert {(r["protocol"], r["layer"]) for r in mine if r["eval"] == "invariance"} == expected
    assert len(list((out / "subsets").glob("*.json"))) == 2  # one saved subset per fraction, shared by all methods
