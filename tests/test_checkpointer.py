"""ssl_bench/checkpointer.py: when a save is due, a corrupt checkpoint discarded, rank 0 writing, Ctrl-C saved then
raised. The loops that use it (engine, detection) are tested end to end in test_engine.py and test_resume.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ssl_bench import checkpointer as checkpointer_module
from ssl_bench import storage
from ssl_bench.checkpointer import Checkpointer
from ssl_bench.config import CheckpointConfig
from ssl_bench.interrupt import Interrupted


class Clock:
    """A stand-in for time.monotonic that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(checkpointer_module, "time", SimpleNamespace(monotonic=fake))  # this module's clock only
    return fake


def state(step: int) -> dict:
    return {"step": step, "weight": torch.full((2, 2), float(step))}


def test_every_steps_makes_a_save_due_at_each_multiple_and_only_there(tmp_path, clock) -> None:
    ckpt = Checkpointer(tmp_path / "c.pt", "m", CheckpointConfig(minutes=0, every_steps=3))
    assert [s for s in range(1, 13) if ckpt.due(s)] == [3, 6, 9, 12]
    clock.now += 10**6  # minutes=0: time never makes a save due
    assert not ckpt.due(4)
    never = Checkpointer(tmp_path / "c.pt", "m", CheckpointConfig(minutes=0, every_steps=0))
    assert not any(never.due(s) for s in range(1, 20))


def test_minutes_count_from_the_load_and_restart_at_every_save(tmp_path, clock) -> None:
    ckpt = Checkpointer(tmp_path / "c.pt", "m", CheckpointConfig(minutes=2))
    clock.now += 500  # construction is not the start: the loop starts when it loads
    assert ckpt.load("training") is None
    clock.now += 119
    assert not ckpt.due(1)
    clock.now += 1
    assert ckpt.due(1)
    ckpt.save(lambda: state(1))
    assert not ckpt.due(2)
    clock.now += 120
    assert ckpt.due(2)


def test_after_step_saves_when_due_unless_not_periodic(tmp_path, clock) -> None:
    path = tmp_path / "c.pt"
    ckpt = Checkpointer(path, "m", CheckpointConfig(minutes=0, every_steps=2))
    ckpt.after_step(1, lambda: state(1), "step 1")
    assert not path.exists()
    ckpt.after_step(2, lambda: state(2), "step 2", periodic=False)  # e.g. an epoch's last step: saved by the loop
    assert not path.exists()
    ckpt.after_step(2, lambda: state(2), "step 2")
    torch.testing.assert_close(ckpt.load("training"), state(2))
    assert storage.sidecar(path).exists()  # written by storage.save: atomic, with its checksum


def test_a_corrupt_checkpoint_is_moved_aside_and_the_work_redone(tmp_path) -> None:
    path = tmp_path / "c.pt"
    ckpt = Checkpointer(path, "m")
    ckpt.save(lambda: state(4))
    path.write_bytes(path.read_bytes()[:100])
    discarded = "c.pt does not match its checksum.*moved to c.pt.corrupt, training of m is redone"
    with pytest.warns(UserWarning, match=discarded):
        assert ckpt.load("training of m") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt.corrupt"]


def test_with_ranks_only_rank_0_builds_and_writes_the_state(tmp_path, monkeypatch) -> None:
    path, built = tmp_path / "c.pt", []

    def tracked() -> dict:
        built.append(1)
        return state(1)

    monkeypatch.setattr(checkpointer_module.distributed, "is_main", lambda: False)
    Checkpointer(path, "m", ranks=True).save(tracked)
    assert not path.exists() and built == []  # another rank: nothing built, nothing written
    Checkpointer(path, "detection").save(tracked)  # a one-process loop writes whatever rank it runs on
    assert path.exists() and built == [1]
    monkeypatch.setattr(checkpointer_module.distributed, "is_main", lambda: True)
    path.unlink()
    Checkpointer(path, "m", ranks=True).save(tracked)
    assert path.exists() and built == [1, 1]


@pytest.mark.parametrize("ranks", [False, True])
def test_a_stop_request_saves_then_raises_saying_where(tmp_path, clock, ranks) -> None:
    path = tmp_path / "c.pt"
    ckpt = Checkpointer(path, "npidpp", CheckpointConfig(minutes=0), ranks=ranks)
    with ckpt.stop_requests():
        ckpt.after_step(1, lambda: state(1), "epoch 1, step 1 of 5")
        assert not path.exists()  # no request, nothing due
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the handler only sets the request
        with pytest.raises(Interrupted) as stopped:
            ckpt.after_step(2, lambda: state(2), "epoch 1, step 2 of 5", periodic=False)
    assert str(stopped.value) == f"npidpp: stopped by SIGINT at epoch 1, step 2 of 5; checkpoint saved to {path}"
    torch.testing.assert_close(storage.load(path), state(2))
    ckpt.after_step(3, lambda: state(3), "epoch 1, step 3 of 5")  # outside the block: no request is seen
    torch.testing.assert_close(storage.load(path), state(2))


def test_without_a_path_nothing_is_loaded_or_saved_and_the_loop_runs_on(tmp_path, clock) -> None:
    ckpt = Checkpointer(None, "detection", CheckpointConfig(minutes=0, every_steps=1))
    assert ckpt.load("detection fine-tuning") is None
    with ckpt.stop_requests():
        os.kill(os.getpid(), signal.SIGINT)
        ckpt.after_step(1, lambda: pytest.fail("no state is built without a path"), "iteration 1 of 4")
    assert list(Path(tmp_path).iterdir()) == []
