"""A run killed at any moment and started again ends with the same numbers; two runs at once lose nothing.

Real subprocesses: ``SSL_BENCH_KILL_AT`` (ssl_bench/faults.py) sends SIGKILL (or SIGINT) to the process at a named
point, so each phase is hit for sure: mid-epoch of pretraining, while a checkpoint is being written, after feature
extraction, during a linear probe, during detection fine-tuning, while results.csv is being written.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# npidpp: memory bank, Z-free InfoNCE negatives drawn from the global generator in every step
RUN = ["run", "--preset", "ci", "--methods", "npidpp", "--evals", "linear,knn,detection", "--epochs", "2",
       "--set", "data.num_train=160", "--set", "data.num_test=60", "--set", "train.batch_size=32", "--set", "npidpp.num_negatives=64",
       "--set", "checkpoint.every_steps=2", "--set", "linear.epochs=3", "--set", "detection.iterations=4",
       "--set", "detection.synthetic_trainval=8", "--set", "detection.synthetic_test=4",
       "--set", "train.deterministic=true", "--no-report"]  # fmt: skip
NUMBERS = ("method", "eval", "protocol", "layer", "metric", "value", "seed", "config_hash")


def ssl_bench(out: Path, *extra: str, kill_at: str = "", argv: list[str] = RUN) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSL_BENCH_KILL_AT": kill_at}
    cmd = [sys.executable, "-m", "ssl_bench", *argv, *extra, "--out", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def numbers(out: Path) -> list[tuple[str, ...]]:
    with (out / "results.csv").open(newline="") as f:
        return sorted(tuple(r[k] for k in NUMBERS) for r in csv.DictReader(f))


def files(out: Path, pattern: str) -> list[Path]:
    return sorted((out / "runs").glob(f"*/{pattern}"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    done = ssl_bench(out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["train-step:8", "checkpoint:3", "features:1", "probe:2", "detection-step:3", "results:2"])
def test_killed_run_resumes_to_the_same_numbers(kill_at, reference, tmp_path) -> None:
    killed = ssl_bench(tmp_path, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    resumed = ssl_bench(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert numbers(tmp_path) == numbers(reference)
    assert files(tmp_path, "backbone.pt")[0].read_bytes() == files(reference, "backbone.pt")[0].read_bytes()
    epochs = [line for line in files(tmp_path, "metrics.jsonl")[0].read_text().splitlines()]
    assert [json.loads(l)["epoch"] for l in epochs] == [1, 2]  # each epoch logged once
    assert not list(tmp_path.rglob(".*.tmp*")) or kill_at in ("checkpoint:3", "results:2")  # only a kill mid-write leaves a temp file


@pytest.mark.slow
def test_mid_epoch_kill_resumes_from_the_checkpoint_not_from_scratch(tmp_path) -> None:
    killed = ssl_bench(tmp_path, kill_at="train-step:8")  # 5 steps an epoch: killed at epoch 2, step 3
    assert killed.returncode == -signal.SIGKILL
    import torch

    state = torch.load(files(tmp_path, "checkpoint.pt")[0], weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)  # saved every 2 steps, mid-epoch, with the RNG and running sums
    assert set(state) >= {"method", "optimizer", "scheduler", "rng", "sums"} and "memory" in "".join(state["method"])


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(reference, tmp_path) -> None:
    stopped = ssl_bench(tmp_path, kill_at="train-step:3:INT")
    assert stopped.returncode == 130
    message = " ".join(stopped.stderr.split())
    assert "npidpp: stopped by SIGINT at epoch 1, step 3 of 5; checkpoint saved to" in message
    assert "to resume, run the same command again: ssl-bench run --preset ci" in message
    assert "Traceback" not in stopped.stderr
    resumed = ssl_bench(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert numbers(tmp_path) == numbers(reference)


@pytest.mark.slow
def test_corrupt_checkpoint_is_redone_with_a_warning(reference, tmp_path) -> None:
    assert ssl_bench(tmp_path, kill_at="train-step:8").returncode == -signal.SIGKILL
    checkpoint = files(tmp_path, "checkpoint.pt")[0]
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated on disk
    resumed = ssl_bench(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "does not match its checksum" in " ".join(resumed.stderr.split())
    assert numbers(tmp_path) == numbers(reference)  # retrained from scratch, same numbers


@pytest.mark.slow
def test_two_runs_at_once_lose_no_rows_and_do_no_unit_twice(tmp_path) -> None:
    argv = [*RUN[:4], "random,supervised,autoencoder", *RUN[5:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ssl_bench", *argv, "--evals", "linear,knn", "--out", str(tmp_path)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    with (tmp_path / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [(r["method"], r["eval"], r["layer"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    assert {(m, e) for m, e, _, _ in keys} == {(m, e) for m in ("random", "supervised", "autoencoder") for e in ("linear", "knn")}
    for log in files(tmp_path, "metrics.jsonl"):
        assert len(log.read_text().splitlines()) == 2, f"{log}: a unit was trained twice"
    assert len({r["run_id"] for r in rows}) == 3
