"""torch.distributed (gloo, 2 CPU processes): identical memory banks (and NCE's Z) on every rank, equal to one
process's; a 2-process torchrun run of the `ci` preset whose results land once, and one killed mid-epoch that
resumes to the same numbers (two torchrun launches besides the uninterrupted one, which serves both tests)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from dist_worker import one_step, worker

from ssl_bench.methods import get_method


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, options",
    [
        ("npidpp", {"loss": "infonce", "num_negatives": 16}),
        ("npidpp", {"loss": "nce", "num_negatives": 16, "shared_negatives": False}),
        ("pirl", {"num_negatives": 16}),  # PIRL's default loss: NCE
    ],
)
def test_two_ranks_keep_the_bank_of_one_process(name, options, tmp_path) -> None:
    mp.spawn(worker, args=(2, free_port(), name, options, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = one_step(name, options, rank=0, world=1)
    assert torch.equal(ranks[0]["bank"], ranks[1]["bank"]), "the ranks' banks differ"
    torch.testing.assert_close(ranks[0]["bank"], single["bank"], rtol=0, atol=1e-6)
    # equal halves: the mean of the ranks' losses is the one process's loss, so every sample met the same negatives
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, single["loss"], rtol=1e-5, atol=1e-6)
    nce = get_method(name).Config(**options).loss == "nce"
    assert ("z" in single) == nce and all(("z" in r) == nce for r in ranks)  # the worker saves Z whenever there is one
    if nce:
        assert single["z"] > 0  # estimated in the step, not the -1 placeholder
        assert torch.equal(ranks[0]["z"], ranks[1]["z"]), "the ranks' Z differ"
        torch.testing.assert_close(ranks[0]["z"], single["z"])
        torch.testing.assert_close(ranks[1]["z"], single["z"])


TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
needs_torchrun = pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="no torchrun")
# npidpp trains 2 epochs of 4 global batches (256 / 64), the others 1; checkpoints every step
SETTINGS = [
    "--preset",
    "ci",
    "--epochs",
    "1",
    "--set",
    "npidpp.epochs=2",
    "--set",
    "data.num_train=256",
    "--set",
    "data.num_test=64",
    "--set",
    "npidpp.num_negatives=64",
    "--set",
    "pirl.num_negatives=64",
    "--set",
    "linear.epochs=2",
    "--set",
    "checkpoint.every_steps=1",
    "--set",
    "threads=1",
]


def torchrun(out: Path, *args: str, kill_at: str = "") -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, "--nproc_per_node=2", "-m", "ssl_bench", "run", *SETTINGS, *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSL_BENCH_KILL_AT": kill_at}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted 2-process run of four methods: checked for results written once, and the reference the
    killed run's npidpp must reproduce (one launch instead of two)."""
    out = tmp_path_factory.mktemp("straight")
    done = torchrun(out, "--methods", "npidpp,random,supervised,pirl", "--evals", "linear,knn")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done


@pytest.mark.slow
@needs_torchrun
def test_torchrun_two_processes_run_the_ci_preset_and_write_results_once(straight) -> None:
    out, done = straight
    assert done.stdout.count("ssl-bench run preset ci") == 1  # only rank 0 talks
    keys = [(r["method"], r["eval"], r["layer"], r["metric"]) for r in rows(out)]
    assert len(keys) == len(set(keys)), "duplicate rows"
    methods = ("npidpp", "random", "supervised", "pirl")
    assert {(k[0], k[1]) for k in keys} == {(m, e) for m in methods for e in ("linear", "knn")}
    for method, epochs in [("npidpp", 2), ("supervised", 1), ("pirl", 1)]:
        (log,) = (out / "runs").glob(f"{method}_*/metrics.jsonl")
        logged = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
        assert logged == list(range(1, epochs + 1))  # each epoch once: by rank 0 only
    assert (out / "report" / "summary.md").exists()


@pytest.mark.slow
@needs_torchrun
def test_torchrun_run_killed_mid_epoch_resumes_to_the_same_numbers(straight, tmp_path) -> None:
    reference, _ = straight
    args = ["--methods", "npidpp", "--evals", "knn", "--no-report"]
    killed = torchrun(tmp_path, *args, kill_at="train-step:6")  # each rank kills itself at step 6: epoch 2, step 2
    # torchrun exits 1 (ChildFailedError) and reports every failed rank; each one died of the injected SIGKILL
    assert killed.returncode == 1, killed.stderr[-3000:]
    assert "Root Cause (first observed failure)" in killed.stderr, killed.stderr[-3000:]
    exitcodes = re.findall(r"exitcode\s*:\s*(-?\d+)", killed.stderr.split("Failures:", 1)[-1])
    assert exitcodes and set(exitcodes) == {str(-signal.SIGKILL)}, killed.stderr[-3000:]
    root = killed.stderr.split("Root Cause (first observed failure):", 1)[1]
    assert re.search(r"Signal 9 \(SIGKILL\) received by PID \d+", root), root
    state = torch.load(next((tmp_path / "runs").glob("*/checkpoint.pt")), weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1)  # the last checkpoint before the 6th step
    resumed = torchrun(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def numbers(out: Path) -> list[tuple[str, ...]]:
        return sorted(
            (r["layer"], r["metric"], r["value"], r["config_hash"])
            for r in rows(out)
            if (r["method"], r["eval"]) == ("npidpp", "knn")
        )

    assert numbers(tmp_path) and numbers(tmp_path) == numbers(reference)
    a, b = (next((out / "runs").glob("npidpp_*/backbone.pt")).read_bytes() for out in (reference, tmp_path))
    assert a == b
