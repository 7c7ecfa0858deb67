"""torch.distributed (gloo, 2 CPU processes): identical memory banks on every rank, equal to one process's;
and a 2-process torchrun run of the `ci` preset whose results land once."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from dist_worker import one_step, worker


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [
    ("npidpp", {"loss": "infonce", "num_negatives": 16}),
    ("npidpp", {"loss": "nce", "num_negatives": 16, "shared_negatives": False}),
    ("pirl", {"num_negatives": 16}),
])  # fmt: skip
def test_two_ranks_keep_the_bank_of_one_process(name, options, tmp_path) -> None:
    mp.spawn(worker, args=(2, free_port(), name, options, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = one_step(name, options, rank=0, world=1)
    assert torch.equal(ranks[0]["bank"], ranks[1]["bank"]), "the ranks' banks differ"
    torch.testing.assert_close(ranks[0]["bank"], single["bank"], rtol=0, atol=1e-6)
    # equal halves: the mean of the ranks' losses is the one process's loss, so every sample met the same negatives
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, single["loss"], rtol=1e-5, atol=1e-6)
    if "z" in single:
        torch.testing.assert_close(ranks[0]["z"], single["z"]) and torch.testing.assert_close(ranks[1]["z"], single["z"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(), reason="no torchrun")
def test_torchrun_two_processes_run_the_ci_preset_and_write_results_once(tmp_path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc_per_node=2", "-m", "ssl_bench", "run", "--preset", "ci", "--methods", "random,supervised,pirl",
           "--evals", "linear,knn", "--epochs", "1", "--set", "data.num_train=256", "--set", "data.num_test=64",
           "--set", "pirl.num_negatives=64", "--set", "linear.epochs=2", "--set", "threads=1", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("ssl-bench run preset ci") == 1  # only rank 0 talks
    with (tmp_path / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [(r["method"], r["eval"], r["layer"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) and {k[0] for k in keys} == {"random", "supervised", "pirl"}
    for method in ("supervised", "pirl"):
        (log,) = (tmp_path / "runs").glob(f"{method}_*/metrics.jsonl")
        assert len(log.read_text().splitlines()) == 1  # one epoch, logged once (by rank 0)
    assert (tmp_path / "report" / "summary.md").exists()


@pytest.mark.slow
def test_torchrun_run_killed_mid_epoch_resumes_to_the_same_numbers(tmp_path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    base = [torchrun, "--nproc_per_node=2", "-m", "ssl_bench", "run", "--preset", "ci", "--methods", "npidpp", "--evals",
            "knn", "--epochs", "2", "--set", "data.num_train=256", "--set", "data.num_test=64", "--set", "npidpp.num_negatives=64",
            "--set", "checkpoint.every_steps=1", "--set", "threads=1", "--no-report"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run([*base, "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = subprocess.run([*base, "--out", str(tmp_path / "b")], env={**env, "SSL_BENCH_KILL_AT": "train-step:6"},
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode != 0  # both ranks SIGKILLed at their 6th step (epoch 2, step 2 of 4)
    state = torch.load(next((tmp_path / "b" / "runs").glob("*/checkpoint.pt")), weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1)
    resumed = subprocess.run([*base, "--out", str(tmp_path / "b")], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def numbers(out: Path) -> list[tuple[str, str]]:
        with (out / "results.csv").open(newline="") as f:
            return sorted((r["metric"], r["value"]) for r in csv.DictReader(f))

    assert numbers(tmp_path / "b") == numbers(tmp_path / "a")
    a, b = (next((tmp_path / d / "runs").glob("*/backbone.pt")).read_bytes() for d in ("a", "b"))
    assert a == b
