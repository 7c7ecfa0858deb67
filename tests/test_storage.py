"""ssl_bench/storage.py: atomic writes with checksum sidecars, corrupt files detected, locks and claims across
processes.

The cross-process tests fork a child (it inherits the imported modules, so it starts in milliseconds) and hand
over with multiprocessing Events; that a child is blocked on a lock is read from the kernel (/proc/locks).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import multiprocessing
import os
import pickle
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from ssl_bench import storage
from ssl_bench.storage import CorruptFile

FORK = multiprocessing.get_context("fork")
OLD = {"weight": torch.arange(6.0).view(2, 3), "step": 3}
NEW = {"weight": torch.ones(100, 10), "step": 4}
EIO = OSError(errno.EIO, "Input/output error")


def saved(tmp_path: Path) -> Path:
    """``checkpoint.pt`` holding OLD, with its sidecar."""
    path = tmp_path / "checkpoint.pt"
    storage.save(OLD, path)
    return path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_save_writes_the_file_and_a_sidecar_holding_its_digest(tmp_path) -> None:
    path = saved(tmp_path)
    assert names(tmp_path) == ["checkpoint.pt", "checkpoint.pt.sha256"]
    assert storage.sidecar(path).read_text() == hashlib.sha256(path.read_bytes()).hexdigest() + "\n"
    storage.verify(path)
    torch.testing.assert_close(storage.load(path), OLD)


def failing(error: BaseException, half_write: bool = False):
    """A stand-in for torch.save / os.fsync / os.replace that raises ``error`` (after writing half a file)."""

    def fail(*args, **kwargs):
        if half_write:
            Path(args[1]).write_bytes(b"PK\x03\x04 the first half of a zip")
        raise error

    return fail


@pytest.mark.parametrize(
    "where, error",
    [
        ("torch.save", EIO),
        ("os.fsync", EIO),
        ("os.replace", EIO),  # the rename into place
        ("torch.save", pickle.PicklingError("Can't pickle <lambda>")),  # not an OSError: cleaned up all the same
        ("torch.save", KeyboardInterrupt("Ctrl-C")),
    ],
    ids=["write-EIO", "fsync-EIO", "rename-EIO", "write-PicklingError", "write-Ctrl-C"],
)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(where, error, tmp_path, monkeypatch) -> None:
    path = saved(tmp_path)
    before = path.read_bytes(), storage.sidecar(path).read_bytes()
    module, name = where.split(".")
    monkeypatch.setattr({"torch": torch, "os": os}[module], name, failing(error, half_write=where == "torch.save"))
    with pytest.raises(type(error), match=re.escape(str(error))):
        storage.save(NEW, path)
    monkeypatch.undo()
    assert (path.read_bytes(), storage.sidecar(path).read_bytes()) == before
    torch.testing.assert_close(storage.load(path), OLD)
    assert names(tmp_path) == ["checkpoint.pt", "checkpoint.pt.sha256"]


def test_a_full_disk_says_what_to_do_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    path = saved(tmp_path)
    monkeypatch.setattr(torch, "save", failing(OSError(errno.ENOSPC, "No space left on device"), half_write=True))
    with pytest.raises(OSError, match="no space left on the device while writing .*checkpoint.pt; free some") as err:
        storage.save(NEW, path)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    torch.testing.assert_close(storage.load(path), OLD)
    assert names(tmp_path) == ["checkpoint.pt", "checkpoint.pt.sha256"]


def test_the_file_is_renamed_into_place_before_its_sidecar(tmp_path, monkeypatch) -> None:
    path, renames, replace = saved(tmp_path), [], os.replace

    def recorded(src, dst) -> None:
        renames.append((Path(src).name, Path(dst).name))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", recorded)
    storage.save(NEW, path)
    pid = os.getpid()
    assert renames == [
        (f".checkpoint.pt.tmp{pid}", "checkpoint.pt"),
        (f".checkpoint.pt.sha256.tmp{pid}", "checkpoint.pt.sha256"),
    ]
    torch.testing.assert_close(storage.load(path), NEW)


@pytest.mark.parametrize(
    "crash, previous, outcome",
    [
        ("before the renames", True, "old"),  # at the fault point "checkpoint": the old file and sidecar untouched
        ("between the renames", True, "redone"),  # the new file beside the old sidecar: CorruptFile, never used
        ("between the renames", False, "new"),  # the first version, complete (fsynced) but without its sidecar: loads
    ],
)
def test_a_crash_while_saving_never_leaves_a_file_that_passes_for_another(
    crash, previous, outcome, tmp_path, monkeypatch
) -> None:
    """The crash is a KeyboardInterrupt raised there: the file and sidecar it leaves are what a kill there leaves."""
    path = saved(tmp_path) if previous else tmp_path / "checkpoint.pt"
    if crash == "before the renames":
        monkeypatch.setattr(storage.faults, "point", failing(KeyboardInterrupt()))
    else:
        replace = os.replace

        def crash_at_the_sidecar(src, dst) -> None:
            if dst == storage.sidecar(path):
                raise KeyboardInterrupt
            replace(src, dst)

        monkeypatch.setattr(os, "replace", crash_at_the_sidecar)
    with pytest.raises(KeyboardInterrupt):
        storage.save(NEW, path)
    monkeypatch.undo()
    if outcome == "redone":
        with pytest.raises(CorruptFile, match="does not match its checksum"):
            storage.verify(path)
        with pytest.warns(UserWarning, match="moved to checkpoint.pt.corrupt, training is redone"):
            assert storage.load_or_discard(path, "training") is None
    else:
        torch.testing.assert_close(storage.load_or_discard(path, "training"), OLD if outcome == "old" else NEW)


def test_a_file_without_a_sidecar_is_accepted_if_it_loads(tmp_path) -> None:
    path = saved(tmp_path)
    storage.sidecar(path).unlink()  # as written by an older version
    storage.verify(path)  # nothing to check against
    torch.testing.assert_close(storage.load(path), OLD)
    path.write_bytes(path.read_bytes()[:200])
    storage.verify(path)
    with pytest.raises(CorruptFile, match="checkpoint.pt does not load"):
        storage.load(path)


@pytest.mark.parametrize("damage", ["truncated", "one byte changed", "one byte appended"])
def test_a_damaged_file_is_a_corrupt_file(damage, tmp_path) -> None:
    path = saved(tmp_path)
    data = path.read_bytes()
    middle = len(data) // 2
    changed = {
        "truncated": data[:middle],
        "one byte changed": data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :],
        "one byte appended": data + b"\0",
    }[damage]
    path.write_bytes(changed)
    with pytest.raises(CorruptFile, match=r"checkpoint.pt does not match its checksum \(checkpoint.pt.sha256\)"):
        storage.verify(path)
    with pytest.raises(CorruptFile, match="does not match its checksum"):
        storage.load(path)


def test_a_damaged_text_file_is_a_corrupt_file(tmp_path) -> None:
    path = tmp_path / "config.json"
    storage.write_text(path, '{"epochs": 2}', checksum=True)
    storage.verify(path)
    assert path.read_text() == '{"epochs": 2}'
    path.write_text('{"epochs": 3}')
    with pytest.raises(CorruptFile, match="config.json does not match its checksum"):
        storage.verify(path)


def test_text_files_get_no_sidecar_unless_asked_and_go_through_the_same_temporary_file(tmp_path, monkeypatch) -> None:
    path, renames, replace = tmp_path / "results.json", [], os.replace

    def recorded(src, dst) -> None:
        renames.append((Path(src).name, Path(dst).name))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", recorded)
    storage.write_text(path, "[]")
    assert names(tmp_path) == ["results.json"] and path.read_text() == "[]"
    assert renames == [(f".results.json.tmp{os.getpid()}", "results.json")]


def test_a_failed_block_of_atomic_keeps_the_old_file(tmp_path) -> None:
    path = tmp_path / "table.csv"
    storage.write_text(path, "old\n")
    with pytest.raises(ValueError, match="half-way"):
        with storage.atomic(path) as tmp, tmp.open("w") as f:
            f.write("new, half")
            raise ValueError("half-way")
    assert names(tmp_path) == ["table.csv"] and path.read_text() == "old\n"


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped (not reused this soon)."""
    child = FORK.Process(target=sys.exit)
    child.start()
    child.join(30)
    return child.pid


@pytest.mark.parametrize("checksum", [True, False])
def test_the_next_write_removes_the_temporary_files_of_a_killed_write_only(checksum, tmp_path) -> None:
    path, dead, alive = tmp_path / "checkpoint.pt", dead_pid(), os.getppid()
    left = [f".checkpoint.pt.tmp{dead}", f".checkpoint.pt.sha256.tmp{dead}"]  # as SIGKILL at "checkpoint" leaves them
    live = [f".checkpoint.pt.tmp{alive}", ".checkpoint.pt.tmpfoo", ".other.pt.tmp" + str(dead)]  # not ours to remove
    for name in left + live:
        (tmp_path / name).write_bytes(b"half a file")
    if checksum:
        storage.save(NEW, path)
        assert names(tmp_path) == sorted(["checkpoint.pt", "checkpoint.pt.sha256", *live])
    else:
        storage.write_text(path, "text")
        assert names(tmp_path) == sorted(["checkpoint.pt", left[1], *live])  # no sidecar written: its temp is kept


def test_load_or_discard_moves_a_corrupt_checkpoint_aside_and_asks_for_the_work_again(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert storage.load_or_discard(path, "training") is None  # missing: nothing to say
        storage.save(OLD, path)
        torch.testing.assert_close(storage.load_or_discard(path, "training"), OLD)
    truncated = path.read_bytes()[:300]
    path.write_bytes(truncated)
    discarded = r"checkpoint.pt does not match its checksum .*; moved to checkpoint.pt.corrupt, training is redone"
    with pytest.warns(UserWarning, match=discarded):
        assert storage.load_or_discard(path, "training") is None
    assert names(tmp_path) == ["checkpoint.pt.corrupt"]  # the sidecar of the discarded file is gone with it
    assert (tmp_path / "checkpoint.pt.corrupt").read_bytes() == truncated
    storage.save(NEW, path)  # the redone work
    torch.testing.assert_close(storage.load_or_discard(path, "training"), NEW)


# --- locks and claims, across processes ---


def free(path: Path) -> bool:
    """Whether any flock on ``path``, even a shared one, can be had right now, without waiting."""
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def waiters(path: Path) -> set[int]:
    """Pids the kernel lists as waiting for a flock on ``path``: /proc/locks lines such as
    ``3: -> FLOCK  ADVISORY  WRITE 5042 fe:00:2147738 0 EOF`` (pid, then device:inode)."""
    inode = str(path.stat().st_ino)
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:3] == ["->", "FLOCK"] and fields[6].rsplit(":", 1)[-1] == inode:
            pids.add(int(fields[5]))
    return pids


def wait_until_waiting(pid: int, path: Path) -> None:
    deadline = time.monotonic() + 30
    while pid not in waiters(path):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} never waited for the lock on {path}:\n{Path('/proc/locks').read_text()}")
        time.sleep(0.01)  # polls the kernel's answer; the outcome does not depend on how long this takes


@contextmanager
def holding(kind: str, path: str | Path) -> Iterator[None]:
    """``path`` taken by ``file_lock`` or by ``Claim.try_acquire`` for the block."""
    if kind == "file_lock":
        with storage.file_lock(path):
            yield
        return
    claim = storage.Claim(path)
    assert claim.try_acquire()
    try:
        yield
    finally:
        claim.release()


def hold(kind: str, path: str, held, release) -> None:
    """Child: take ``path``, say so, keep it until ``release`` is set."""
    with holding(kind, path):
        held.set()
        release.wait(60)


def enter(kind: str, path: str, entered) -> None:
    """Child: wait for ``path`` by ``file_lock`` or ``Claim.acquire``; set ``entered`` once inside."""
    if kind == "file_lock":
        with storage.file_lock(path):
            entered.set()
        return
    claim = storage.Claim(path)
    claim.acquire()
    entered.set()
    claim.release()


def try_claim(path: str) -> None:
    sys.exit(0 if storage.Claim(path).try_acquire() else 1)


def claimed_elsewhere(path: Path) -> bool:
    """Claim.try_acquire in another process: True if that process could not get the claim."""
    child = FORK.Process(target=try_claim, args=(str(path),))
    child.start()
    child.join(30)
    assert child.exitcode in (0, 1), child.exitcode
    return child.exitcode == 1


@pytest.mark.parametrize("kind", ["file_lock", "claim"])
def test_a_lock_held_by_another_process_excludes_this_one_until_released(kind, tmp_path) -> None:
    path = tmp_path / "runs" / "unit" / ".lock"  # the parent directory is created by the lock
    held, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=hold, args=(kind, str(path), held, release))
    child.start()
    try:
        assert held.wait(30), f"the child never took the lock (exit code {child.exitcode})"
        assert not free(path)
        assert not storage.Claim(path).try_acquire()
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0
    assert free(path)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks to see a waiting process")
@pytest.mark.parametrize("kind", ["file_lock", "claim"])
def test_waiting_for_a_lock_blocks_until_its_holder_lets_go(kind, tmp_path) -> None:
    path = tmp_path / ".lock"
    with holding(kind, path):
        entered = FORK.Event()
        child = FORK.Process(target=enter, args=(kind, str(path), entered))
        child.start()
        try:
            wait_until_waiting(child.pid, path)
            assert not entered.is_set()  # waiting, not inside
        except BaseException:
            child.kill()
            raise
    assert entered.wait(30), "the waiting process did not get the lock once it was let go"
    child.join(30)
    assert child.exitcode == 0


def test_a_claim_is_refused_to_other_processes_while_held_and_granted_after_release(tmp_path) -> None:
    path = tmp_path / "runs" / "unit" / ".claim"
    claim = storage.Claim(path)
    assert claim.try_acquire()
    assert claimed_elsewhere(path)
    assert not storage.Claim(path).try_acquire()  # a second claim in this very process is refused too
    claim.release()
    assert not claimed_elsewhere(path)
    claim.release()  # releasing twice is harmless
    assert claim.try_acquire()  # and the same Claim can be taken again
    claim.release()


def test_the_claim_of_a_killed_process_is_free_at_once(tmp_path) -> None:
    path = tmp_path / ".claim"
    held, never = FORK.Event(), FORK.Event()
    child = FORK.Process(target=hold, args=("claim", str(path), held, never))
    child.start()
    assert held.wait(30)
    assert claimed_elsewhere(path)
    child.kill()  # SIGKILL: no release, no finally
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert path.exists()  # the claim file stays, but the kernel dropped the lock with the process
    claim = storage.Claim(path)
    assert claim.try_acquire()
    claim.release()
