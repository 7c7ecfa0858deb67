"""``--log tensorboard`` / ``--log wandb``: every number of ``metrics.jsonl`` also in TensorBoard event files and an
offline W&B run under the run directory, read back and compared; a missing extra is an error naming it."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import restore_torch_settings, torch_settings

from ssl_bench.cli import main
from ssl_bench.config import ConfigError, LogConfig
from ssl_bench.metrics_log import MetricsLog, scalars
from ssl_bench.run_config import load
from ssl_bench.runner import eval_hash, plan

TARGETS = [t for t in ("tensorboard", "wandb") if importlib.util.find_spec(t) is not None]
# The ci preset shrunk to seconds: RotNet alone, two epochs of 64 images, one probe epoch.
TINY = ["run", "--preset", "ci", "--methods", "rotnet", "--evals", "linear", "--epochs", "2", "--no-report"]
TINY += ["--set", "data.num_train=64", "--set", "data.num_test=32", "--set", "linear.epochs=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run directory of a tiny run with every installed log target, W&B offline."""
    if not TARGETS:
        pytest.skip("neither the tensorboard nor the wandb extra is installed")
    out = tmp_path_factory.mktemp("logged")
    saved = torch_settings()  # the ci preset pins threads and deterministic kernels
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        for var, sub in [("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")]:
            mp.setenv(var, str(out / "wandb-home" / sub))  # nothing written to ~
        mp.setenv("WANDB_DATA_DIR", str(out / "wandb-home" / "data"))
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        assert main([*TINY, "--out", str(out), "--log", ",".join(TARGETS)]) == 0
    restore_torch_settings(saved)
    (directory,) = (out / "runs").iterdir()
    yield directory


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_holds_every_number_of_metrics_jsonl(run_dir: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every event
    events.Reload()
    logged = records(run_dir)
    assert [r["epoch"] for r in logged] == [1, 2]
    keys = set(logged[0]) - {"epoch"}
    assert {"lr", "seconds", "loss", "rot_acc"} <= keys
    assert set(events.Tags()["scalars"]) == keys
    for key in keys:
        got = {e.step: e.value for e in events.Scalars(key)}
        want = {r["epoch"]: r[key] for r in logged}
        assert set(got) == set(want), key
        for step, value in want.items():  # TensorBoard keeps float32
            assert np.float32(got[step]) == np.float32(value), (key, step, got[step], value)


def wandb_records(path: Path) -> list[Any]:
    """The records of W&B's offline run file ``run-<id>.wandb``: a 7-byte W&B header, then LevelDB's log format
    (32 KiB blocks; chunks of a 7-byte header: crc32c, length, type full 1 / first 2 / middle 3 / last 4) holding
    ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, out, pending = path.read_bytes(), 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def test_wandb_offline_holds_every_number_of_metrics_jsonl(run_dir: Path) -> None:
    if "wandb" not in TARGETS:
        pytest.skip("the wandb extra is not installed")
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (file,) = offline.glob("run-*.wandb")
    found = wandb_records(file)
    (run,) = [r.run for r in found if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.display_name) == ("ssl-bench", run_dir.name)
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["unit"]["method"] == "rotnet" and config["run"]["train"]["epochs"] == 2
    history = [  # a key with "/" (monitor/pooled/rankme) comes as its parts
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in found
        if r.WhichOneof("record_type") == "history"
    ]
    logged = records(run_dir)
    assert [h["_step"] for h in history] == [r["epoch"] for r in logged] == [1, 2]
    for h, r in zip(history, logged):
        assert {k: v for k, v in h.items() if not k.startswith("_")} == scalars(r)


def test_scalars_are_the_numbers_but_the_epoch() -> None:
    record = {"epoch": 3, "lr": 0.1, "loss": 2, "ok": True, "name": "x", "monitor/pooled/rankme": 5.5}
    assert scalars(record) == {"lr": 0.1, "loss": 2.0, "monitor/pooled/rankme": 5.5}


def test_without_the_extra_a_clear_error_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in ("tensorboard", "wandb"):
        monkeypatch.setitem(sys.modules, extra, None)  # as if not installed: importing it fails
        message = f'log.{extra}=true needs the {extra} extra: pip install -e ".[{extra}]"'
        with pytest.raises(ConfigError) as error:
            load("ci", {"log": {extra: "true"}})
        assert str(error.value) == message
        assert main([*TINY, "--out", str(tmp_path / "out"), "--log", extra]) == 2  # when the config loads
        assert f"log.{extra}=true needs the {extra} extra" in " ".join(capsys.readouterr().err.split())
        assert not (tmp_path / "out").exists()  # before anything ran
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[tensorboard\]"'):
        MetricsLog(tmp_path, LogConfig(tensorboard=True))  # and where the writer is made


def test_the_command_line_shows_the_whole_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main([*TINY, "--out", str(tmp_path / "out"), "--log", "tensorboard"]) == 2
    assert 'pip install -e ".[tensorboard]"' in " ".join(capsys.readouterr().err.split())  # rich wraps lines


def test_logging_is_in_no_hash() -> None:
    cfg = load("ci")
    logged = dataclasses.replace(cfg, log=LogConfig(tensorboard=True, wandb=True))
    units, logged_units = plan(cfg), plan(logged)
    assert [u.run_id for u in units] == [u.run_id for u in logged_units]
    assert [eval_hash(u, e, cfg) for u in units for e in cfg.evals] == [
        eval_hash(u, e, logged) for u in logged_units for e in cfg.evals
    ]


def test_without_log_settings_only_metrics_jsonl_is_written(tmp_path: Path) -> None:
    with MetricsLog(tmp_path) as log:
        log.write({"epoch": 1, "loss": 1.5})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    assert records(tmp_path) == [{"epoch": 1, "loss": 1.5}]
