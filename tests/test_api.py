"""The Python API (``ssl_bench.run``, ``report``, ``load_results``, ``list_methods``, ``load_backbone``) and the command
line as its thin layer: one tiny run of the ci preset, then every function on its output."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import restore_torch_settings, torch_settings
from rich.console import Console

import ssl_bench
from ssl_bench import api
from ssl_bench.cli import main
from ssl_bench.config import ConfigError
from ssl_bench.report import ReportFiles
from ssl_bench.report.results import REQUIRED_COLUMNS

SEVEN = ["random", "supervised", "autoencoder", "rotnet", "jigsaw", "npidpp", "pirl"]
# The ci preset shrunk to seconds: 64 + 32 images, one pretraining and one probe epoch, the linear probe alone.
TINY: dict[str, Any] = {
    "methods": ["random", "rotnet"],
    "evals": "linear",
    "epochs": 1,
    "set": {"data.num_train": 64, "data.num_test": 32},
    "linear__epochs": 1,
}


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, pd.DataFrame, str]]:
    """(out, the frame ``run`` returned, what it printed) of the tiny run, without the report."""
    out = tmp_path_factory.mktemp("api") / "results"
    saved = torch_settings()  # the ci preset pins threads and deterministic kernels
    console = quiet()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        df = ssl_bench.run("ci", out, report=False, console=console, **TINY)
    restore_torch_settings(saved)
    yield out, df, console.file.getvalue()


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_import_is_cheap_and_exports_are_lazy() -> None:
    code = (
        "import json, sys, ssl_bench; "
        "print(json.dumps([[m for m in ('torch', 'pandas', 'ssl_bench.api') if m in sys.modules], ssl_bench.__all__]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, names = json.loads(out)
    assert loaded == [] and sorted(names) == [
        "__version__",
        "list_methods",
        "load_backbone",
        "load_results",
        "report",
        "run",
    ]
    for name in ("run", "load_results", "list_methods"):
        assert getattr(ssl_bench, name) is getattr(api, name)


def test_report_is_callable_whoever_imported_the_subpackage_first() -> None:
    """``ssl_bench.report`` is the report subpackage (``from ssl_bench.report import make_report``) and callable as
    the API's ``report``, even when the subpackage was imported before ``ssl_bench.report`` was first asked for."""
    code = (
        "from ssl_bench.report.results import clean; import ssl_bench; from ssl_bench import report; "
        "import ssl_bench.report.tables; "
        "print(callable(ssl_bench.report), report is ssl_bench.report, hasattr(ssl_bench.report, 'make_report'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True True True"
    assert callable(ssl_bench.report) and ssl_bench.report.make_report is not None


def test_run_returns_the_rows_it_wrote(ran: tuple[Path, pd.DataFrame, str]) -> None:
    out, df, printed = ran
    assert list(df.columns) == list(REQUIRED_COLUMNS)
    written = csv_rows(out / "results.csv")
    assert len(df) == len(written) > 0
    assert set(df["method"]) == {"random", "rotnet"} and set(df["eval"]) == {"linear"}
    assert set(df["preset"]) == {"ci"} and set(df["dataset"]) == {"synthetic"} and set(df["seed"]) == {0}
    assert {"top1", "top5"} <= set(df["metric"])
    assert pd.api.types.is_float_dtype(df["value"]) and df["value"].between(0, 100).all()
    assert sorted(zip(df["run_id"], df["layer"], df["metric"], df["value"])) == sorted(
        (r["run_id"], r["layer"], r["metric"], float(r["value"])) for r in written
    )
    for run_id in set(df["run_id"]):
        assert (out / "runs" / run_id / "backbone.pt").is_file()
    # epochs=1 and linear__epochs=1 reached the config the unit ran with
    record = json.loads((out / "runs" / df.loc[df["method"] == "rotnet", "run_id"].iloc[0] / "config.json").read_text())
    assert record["run"]["train"]["epochs"] == 1 and record["run"]["linear"]["epochs"] == 1
    assert record["run"]["data"]["num_train"] == 64 and record["run"]["overrides"] == sorted(
        ["methods", "evals", "train.epochs", "data.num_train", "data.num_test", "linear.epochs"]
    )
    assert "ssl-bench run" in printed and "2 evaluations done, 0 of 2 units cached" in printed
    assert not (out / "report").exists()  # report=False


def test_load_results_equals_what_run_returned(ran: tuple[Path, pd.DataFrame, str]) -> None:
    out, df, _ = ran
    pd.testing.assert_frame_equal(ssl_bench.load_results(out), df)
    pd.testing.assert_frame_equal(ssl_bench.load_results(out / "results.csv"), df)
    assert ssl_bench.load_results(out).attrs["notes"] == []
    with pytest.raises(FileNotFoundError, match="no results table"):
        ssl_bench.load_results(out / "nowhere")


def test_a_second_run_is_cached_and_returns_the_same_rows(ran: tuple[Path, pd.DataFrame, str]) -> None:
    out, df, _ = ran
    console = quiet()
    saved = torch_settings()
    again = ssl_bench.run("ci", out, report=False, console=console, **TINY)
    restore_torch_settings(saved)
    pd.testing.assert_frame_equal(again, df)
    assert "0 evaluations done, 2 of 2 units cached" in console.file.getvalue()


def test_report_writes_the_files_it_returns(ran: tuple[Path, pd.DataFrame, str]) -> None:
    out, _, _ = ran
    files = ssl_bench.report(out)
    assert isinstance(files, ReportFiles) and files.directory == out / "report"
    assert files.summary_md.is_file() and files.index_html is not None and files.index_html.is_file()
    assert files.written and all(p.is_file() and p.parent == out / "report" for p in files.written)
    assert set(files.summary["method"]) == {"random", "rotnet"}
    console = quiet()
    files = ssl_bench.report(str(out), published=False, console=console)  # the CLI's output: each file named
    assert files.published is False
    assert all(f"wrote {p}" in console.file.getvalue() for p in files.written)


def test_list_methods_is_what_ssl_bench_list_shows(capsys: pytest.CaptureFixture[str]) -> None:
    methods = ssl_bench.list_methods()
    assert list(methods)[:7] == SEVEN
    assert methods["pirl"].startswith("Misra & van der Maaten") and all(methods.values())
    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["methods"] == methods


def test_load_backbone_is_exported_lazily() -> None:
    if importlib.util.find_spec("ssl_bench.export") is None:
        pytest.skip("ssl_bench/export.py (load_backbone) is not there yet")
    from ssl_bench.export import load_backbone

    assert callable(ssl_bench.load_backbone) and ssl_bench.load_backbone is load_backbone


def test_an_unknown_key_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'linear\.epoch'\. Did you mean 'epochs'\?"):
        ssl_bench.run("ci", tmp_path / "out", console=quiet(), linear__epoch=1)
    with pytest.raises(ConfigError, match=r"unknown config key 'method'\. Did you mean 'methods'\?"):
        ssl_bench.run("ci", tmp_path / "out", console=quiet(), set={"method": "pirl"})
    with pytest.raises(ConfigError, match=r"unknown method 'pirl2'"):
        ssl_bench.run("ci", tmp_path / "out", console=quiet(), methods=["pirl2"])
    with pytest.raises(ConfigError, match=r"unknown log target 'tb'\. .*Valid log targets: tensorboard, wandb\."):
        ssl_bench.run("ci", tmp_path / "out", console=quiet(), log="tb")
    with pytest.raises(ConfigError, match=r"linear\.epochs given twice, in set= and as a keyword argument"):
        ssl_bench.run("ci", tmp_path / "out", console=quiet(), set={"linear.epochs": 1}, linear__epochs=2)
    assert not (tmp_path / "out").exists()  # nothing ran


def test_overrides_named_win_as_flags_win_over_set() -> None:
    named = {"methods": ("pirl", "jigsaw"), "epochs": 3, "data_root": Path("/data"), "seeds": None}
    settings = {"train.epochs": 30, "train.batch_size": 64, "pirl": {"lam": 0.5}}
    keywords = {"linear__epochs": 2, "threads": 1}
    assert api.config_overrides(named, "tensorboard,wandb", settings, keywords) == {
        "methods": ["pirl", "jigsaw"],
        "train": {"epochs": 3, "batch_size": 64},
        "data": {"root": "/data"},
        "pirl": {"lam": 0.5},
        "linear": {"epochs": 2},
        "threads": 1,
        "log": {"tensorboard": True, "wandb": True},
    }


def test_the_command_line_is_a_thin_layer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(api, "run", lambda *a, **k: calls.append((a, k)))
    argv = ["run", "--preset", "ci", "--methods", "pirl,jigsaw", "--epochs", "3", "--log", "tensorboard"]
    argv += ["--set", "linear.epochs=2", "--set", "pirl.lam=0.5", "--out", str(tmp_path), "--no-report"]
    assert main(argv) == 0
    (args, kwargs), *more = calls
    assert not more and args == ("ci", str(tmp_path))
    assert kwargs["methods"] == "pirl,jigsaw" and kwargs["epochs"] == 3 and kwargs["log"] == "tensorboard"
    assert kwargs["set"] == {"linear": {"epochs": "2"}, "pirl": {"lam": "0.5"}} and kwargs["report"] is False
    assert kwargs["download"] is None and kwargs["backbones"] is None
    reports: list[tuple[Any, ...]] = []
    monkeypatch.setattr(api, "report", lambda out, published, console: reports.append((out, published)))
    assert main(["report", "--out", str(tmp_path), "--no-published"]) == 0
    assert reports == [(str(tmp_path), False)]
