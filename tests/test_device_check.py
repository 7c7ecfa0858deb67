"""benchmarks/device_check.py (issue 19, the first GPU session's check), run here on the CPU at its --small sizes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ssl_bench.eval import harness
from ssl_bench.methods import METHODS

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "device_check.py"
TRAINED = [name for name, cls in METHODS.items() if cls.trains]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The script as a module (registered while it loads: its dataclasses look their module up by name)."""
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def table_rows(text: str) -> dict[str, list[str]]:
    """ "step: pirl" -> the row's other cells, for every row of the printed table."""
    rows = {}
    for line in text.splitlines():
        if line.startswith(("| step: ", "| eval: ")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def mib(cell: str) -> float:
    assert cell.endswith(" MiB"), cell
    return float(cell[:-4].replace(",", ""))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:32000 negatives requested")  # NPID++ / PIRL cap K at the 256 images: expected
def test_every_method_steps_and_every_evaluation_runs_on_the_cpu(script, capsys) -> None:
    code = script.main(["--small", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "preset cifar10 on cpu" in out and "- data: synthetic (built-in" in out and "256 train / 64 test" in out
    assert "`resnet18-smallstem-w0.25`, batch 16" in out and "peak RSS" in out
    assert "- colour augmentation: per sample in the loader (train.device_augment=auto)" in out  # auto: off on CPU
    assert "on the backbone of pirl after its steps" in out  # the last method trained: its heads reach kNN, invariance
    rows = table_rows(out)
    assert list(rows) == [f"step: {m}" for m in METHODS] + [f"eval: {e}" for e in harness.EVALS]
    assert rows["step: random"][-1] == "no steps (not trained)" and rows["step: random"][:6] == [""] * 6
    for name in TRAINED:
        step, loader, ratio, limits, memory, seconds, result = rows[f"step: {name}"]
        assert float(step.replace(",", "")) > 0 and float(loader.replace(",", "")) > 0, name
        assert float(ratio) > 0 and limits in ("no", "**yes**") and float(seconds) > 0, name
        assert mib(memory) > 0 and result.startswith("ok, loss "), name
    for name in harness.EVALS:
        *empty, seconds, result = rows[f"eval: {name}"]
        # a tiny evaluation can take under 5 ms on a fast machine: the cell is a time, not necessarily above 0.00
        assert empty == [""] * 5 and float(seconds) >= 0 and result.startswith("ok, "), name
        assert int(result.split()[1]) > 0, name  # numbers the evaluation returned
    assert "0 errors" in out


def test_a_failing_step_and_evaluation_are_reported_and_the_rest_still_runs(script, capsys, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("injected evaluation failure")

    def broken_step(self, batch):
        raise ValueError("injected step failure")

    monkeypatch.setitem(harness.EVALS, "svm", harness.Evaluation(boom, ("svm",), "raises"))
    monkeypatch.setattr(METHODS["autoencoder"], "training_step", broken_step)
    argv = ["--small", "--device", "cpu", "--methods", "random,supervised,autoencoder", "--evals", "linear,svm,knn"]
    code = script.main(argv)
    captured = capsys.readouterr()
    assert code == 1
    rows = table_rows(captured.out)
    assert list(rows) == [
        "step: random",
        "step: supervised",
        "step: autoencoder",
        "eval: linear",
        "eval: svm",
        "eval: knn",
    ]
    assert rows["step: supervised"][-1].startswith("ok, loss ")
    assert rows["step: autoencoder"][-1] == "**ERROR** ValueError: injected step failure"
    assert rows["eval: svm"][-1] == "**ERROR** RuntimeError: injected evaluation failure"
    assert rows["eval: linear"][-1].startswith("ok, ") and rows["eval: knn"][-1].startswith("ok, ")
    assert "on the backbone of supervised after its steps" in captured.out  # the last method whose steps ran
    assert "2 errors" in captured.out
    assert "Traceback" in captured.err and "injected evaluation failure" in captured.err
    assert "device_check: step: autoencoder failed" in captured.err


@pytest.mark.filterwarnings("ignore:32000 negatives requested")
def test_the_batched_colour_path_is_measured_when_asked_for(script, capsys) -> None:
    """``--device-augment on`` on the CPU: the loader makes uint8 crops and parameters, the step finishes them."""
    code = script.main(
        ["--small", "--device", "cpu", "--methods", "supervised,pirl", "--evals", "", "--device-augment", "on"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        "- colour augmentation: on the device (train.device_augment=on; Jigsaw's tiles per sample in the loader)" in out
    )
    rows = table_rows(out)
    assert list(rows) == ["step: supervised", "step: pirl"]
    for step, loader, *_, result in rows.values():
        assert (
            float(step.replace(",", "")) > 0 and float(loader.replace(",", "")) > 0 and result.startswith("ok, loss ")
        )


def test_a_configuration_mistake_stops_before_anything_runs(script, capsys) -> None:
    code = script.main(["--small", "--device", "cpu", "--methods", "pirll"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown method 'pirll'" in err and "Did you mean 'pirl'?" in err


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--set", "train.batch_size=0"]])
def test_bad_sizes_are_configuration_mistakes(script, capsys, argv: list[str]) -> None:
    assert script.main(["--small", "--device", "cpu", *argv]) == 2
    assert "device_check: " in capsys.readouterr().err
