"""A run killed at any moment and started again ends with the same numbers; two runs at once lose nothing.

Real subprocesses: ``SSL_BENCH_KILL_AT`` (ssl_bench/faults.py) sends SIGKILL (or SIGINT) to the process at a named
point, so each phase is hit for sure: mid-epoch of pretraining, while a checkpoint is being written, after feature
extraction, during a linear probe, during detection fine-tuning, while results.csv is being written.

One uninterrupted run with every evaluation is the reference. A killed run does only the evaluations its kill
point needs, and one killed while evaluating starts from the reference's backbone.pt: its pretraining is covered
by the tests that kill pretraining, and every number it produces is still compared with the reference's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from ssl_bench import storage
from ssl_bench.cli import build_parser, overrides_from
from ssl_bench.run_config import load
from ssl_bench.runner import plan

# npidpp: memory bank, Z-free InfoNCE negatives drawn from the global generator in every step; 5 steps an epoch
SETTINGS = [
    "--preset",
    "ci",
    "--epochs",
    "2",
    "--set",
    "data.num_train=160",
    "--set",
    "data.num_test=60",
    "--set",
    "train.batch_size=32",
    "--set",
    "npidpp.num_negatives=64",
    "--set",
    "checkpoint.every_steps=2",
    "--set",
    "linear.epochs=3",
    "--set",
    "detection.iterations=4",
    "--set",
    "detection.synthetic_trainval=8",
    "--set",
    "detection.synthetic_test=4",
    "--set",
    "train.deterministic=true",
    "--no-report",
]
NUMBERS = ("method", "eval", "protocol", "layer", "metric", "value", "seed", "config_hash")


def argv(out: Path, methods: str, evals: str) -> list[str]:
    return ["run", *SETTINGS, "--methods", methods, "--evals", evals, "--out", str(out)]


def ssl_bench(out: Path, evals: str, kill_at: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSL_BENCH_KILL_AT": kill_at}
    cmd = [sys.executable, "-m", "ssl_bench", *argv(out, "npidpp", evals)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def numbers(out: Path, evals: str) -> list[tuple[str, ...]]:
    with (out / "results.csv").open(newline="") as f:
        return sorted(tuple(r[k] for k in NUMBERS) for r in csv.DictReader(f) if r["eval"] in evals.split(","))


def files(out: Path, pattern: str) -> list[Path]:
    return sorted((out / "runs").glob(f"*/{pattern}"))


def temp_files(out: Path) -> set[str]:
    """Temporary files of unfinished atomic writes anywhere under ``out``, the writer's pid shown as <pid>."""
    return {re.sub(r"tmp\d+$", "tmp<pid>", p.name) for p in out.rglob("*.tmp*")}


def resumed_cleanly(out: Path) -> None:
    """No temporary file is left: none of the resumed run's, and the killed write's were removed by the next write
    of the same file (storage.atomic: their pid no longer runs)."""
    assert temp_files(out) == set()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    done = ssl_bench(out, "linear,knn,detection")
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at, checkpoint, steps_left, left_by_kill",
    [
        ("train-step:8", (1, 2), 3, set()),  # epoch 2, step 3: the step-2 checkpoint is on disk
        # the end-of-epoch-1 checkpoint is being written: its temporary file is left, the step-4 checkpoint is used
        ("checkpoint:3", (0, 4), 6, {".checkpoint.pt.tmp<pid>", ".checkpoint.pt.sha256.tmp<pid>"}),
    ],
    ids=["train-step:8", "checkpoint:3"],
)
def test_run_killed_while_pretraining_resumes_from_its_last_checkpoint_to_the_same_numbers(
    kill_at, checkpoint, steps_left, left_by_kill, reference, tmp_path
) -> None:
    killed = ssl_bench(tmp_path, "knn", kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert temp_files(tmp_path) == left_by_kill
    (path,) = files(tmp_path, "checkpoint.pt")
    state = torch.load(path, weights_only=True)
    assert (state["epoch"], state["step"]) == checkpoint  # saved every 2 steps, mid-epoch, with RNG and running sums
    assert set(state) >= {"method", "optimizer", "scheduler", "rng", "sums"} and "memory" in "".join(state["method"])
    # not from scratch: the resumed run takes only the steps after the checkpoint (one more would kill it)
    resumed = ssl_bench(tmp_path, "knn", kill_at=f"train-step:{steps_left + 1}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = numbers(reference, "knn")
    assert expected and numbers(tmp_path, "knn") == expected
    assert files(tmp_path, "backbone.pt")[0].read_bytes() == files(reference, "backbone.pt")[0].read_bytes()
    epochs = files(tmp_path, "metrics.jsonl")[0].read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in epochs] == [1, 2]  # each epoch logged once
    resumed_cleanly(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at, evals, done_before",
    [
        ("features:1", "knn", set()),  # features extracted, not yet saved
        ("probe:2", "linear", set()),
        ("detection-step:3", "detection", set()),
        ("results:2", "knn,linear", {"knn"}),  # linear's rows in results.csv's temporary file, not yet renamed
    ],
    ids=["features:1", "probe:2", "detection-step:3", "results:2"],
)
def test_run_killed_while_evaluating_resumes_to_the_same_numbers(
    kill_at, evals, done_before, reference, tmp_path
) -> None:
    (trained,) = files(reference, "backbone.pt")
    (heads,) = files(reference, "checkpoint.pt")  # NPID++'s own embedding (kNN's "head" rows) lives here
    run_dir = tmp_path / "runs" / trained.parent.name
    run_dir.mkdir(parents=True)
    for path in (trained, storage.sidecar(trained), heads, storage.sidecar(heads)):
        shutil.copy(path, run_dir)
    killed = ssl_bench(tmp_path, evals, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    before = numbers(tmp_path, evals) if (tmp_path / "results.csv").exists() else []
    assert {r[1] for r in before} == done_before
    left_by_kill = {".results.csv.tmp<pid>"} if kill_at.startswith("results") else set()
    assert temp_files(tmp_path) == left_by_kill
    resumed = ssl_bench(tmp_path, evals)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = numbers(reference, evals)
    assert {r[1] for r in expected} == set(evals.split(",")) and numbers(tmp_path, evals) == expected
    resumed_cleanly(tmp_path)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(reference, tmp_path) -> None:
    stopped = ssl_bench(tmp_path, "knn", kill_at="train-step:3:INT")
    assert stopped.returncode == 130
    message = " ".join(stopped.stderr.split())
    assert "npidpp: stopped by SIGINT at epoch 1, step 3 of 5; checkpoint saved to" in message
    assert "to resume, run the same command again: ssl-bench run --preset ci" in message
    assert "Traceback" not in stopped.stderr
    state = torch.load(files(tmp_path, "checkpoint.pt")[0], weights_only=True)
    assert (state["epoch"], state["step"]) == (0, 3)
    resumed = ssl_bench(tmp_path, "knn")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = numbers(reference, "knn")
    assert expected and numbers(tmp_path, "knn") == expected


@pytest.mark.slow
def test_corrupt_checkpoint_is_redone_with_a_warning(reference, tmp_path) -> None:
    assert ssl_bench(tmp_path, "knn", kill_at="train-step:8").returncode == -signal.SIGKILL
    (checkpoint,) = files(tmp_path, "checkpoint.pt")
    truncated = checkpoint.read_bytes()[:1000]
    checkpoint.write_bytes(truncated)  # truncated on disk
    resumed = ssl_bench(tmp_path, "knn")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    warning = " ".join(resumed.stderr.split())
    assert "does not match its checksum" in warning
    assert "moved to checkpoint.pt.corrupt, training of npidpp is redone" in warning
    assert checkpoint.with_name("checkpoint.pt.corrupt").read_bytes() == truncated  # moved aside, never loaded
    expected = numbers(reference, "knn")
    assert expected and numbers(tmp_path, "knn") == expected  # retrained from scratch, same numbers


def wait_for(proc: subprocess.Popen, text: str) -> None:
    """Read ``proc``'s output until ``text`` (whitespace-normalised: rich wraps long lines); fail if it ends first."""
    watchdog = threading.Timer(600, proc.kill)  # a hung run ends the read instead of the test hanging
    watchdog.start()
    seen = ""
    try:
        for line in proc.stdout:
            seen += line
            if text in " ".join(seen.split()):
                return
    finally:
        watchdog.cancel()
    pytest.fail(f"the run ended (exit {proc.wait()}) without printing {text!r}:\n{seen[-3000:]}")


@pytest.mark.slow
def test_two_runs_at_once_lose_no_rows_and_do_no_unit_twice(tmp_path) -> None:
    """Runs A and B list the same two units in opposite orders. The test holds both claims, as other ssl-bench
    processes would, until A waits for random and B, started while A waits, for supervised. Released, each does the
    unit it waited for, both at once, then waits for the other's unit and finds it done."""
    methods, evals = ["random,supervised", "supervised,random"], "linear,knn"
    args = build_parser().parse_args(argv(tmp_path, methods[0], evals))
    units = {u.method: u.run_id for u in plan(load(args.preset, overrides_from(args)))}
    held = [storage.Claim(tmp_path / "runs" / run_id / ".claim") for run_id in units.values()]
    assert all(claim.try_acquire() for claim in held)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = []
    try:
        for order in methods:
            cmd = [sys.executable, "-m", "ssl_bench", *argv(tmp_path, order, evals)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            first = units[order.split(",")[0]]
            wait_for(procs[-1], f"{first}: another ssl-bench process is working on it; waiting")
        assert [p.poll() for p in procs] == [None, None]  # both waiting on a claim at the same time
        assert not (tmp_path / "results.csv").exists()
        for run_id in units.values():
            assert [p.name for p in (tmp_path / "runs" / run_id).iterdir()] == [".claim"]  # left alone
    except BaseException:
        for p in procs:
            p.kill()
        raise
    finally:
        for claim in held:
            claim.release()
    logs = [" ".join(p.communicate(timeout=600)[0].split()) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert [int(re.search(r"(\d+) evaluations done", log).group(1)) for log in logs] == [2, 2], logs  # one unit each
    with (tmp_path / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [(r["method"], r["eval"], r["layer"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    assert {(m, e) for m, e, _, _ in keys} == {(m, e) for m in ("random", "supervised") for e in ("linear", "knn")}
    assert {r["run_id"] for r in rows} == set(units.values())
    (log,) = files(tmp_path, "metrics.jsonl")  # supervised trains, random does not
    assert len(log.read_text().splitlines()) == 2, f"{log}: the unit was trained twice"
