"""Files a run writes and reads back: atomic writes, checksums, file locks.

Every file written whole (not appended to) goes through ``atomic``: a temporary file ``.<name>.tmp<pid>``,
fsynced and renamed into place. Tensor files (checkpoint, backbone, cached features) also get a small sidecar
``<name>.sha256`` holding their digest. Reading checks the digest: a truncated or corrupt file is reported as
``CorruptFile`` and the caller redoes that unit of work, never uses it. A file without a sidecar (written by an
older version) is accepted if it loads. A killed write's temporary files are removed by the next write of the same
file (their pid no longer runs).

Loading always uses ``torch.load(weights_only=True)``: nothing in a results directory is ever executed.

Locks are ``fcntl.flock`` locks on small ``.lock`` files. The kernel drops them when the process dies, so a
process killed with SIGKILL never leaves a stale claim behind.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ssl_bench import faults

SIDECAR = ".sha256"


class CorruptFile(RuntimeError):
    """A file whose bytes do not match its recorded checksum, or that does not load."""


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _remove_stale(path: Path) -> None:
    """Remove ``path``'s temporary files left by dead processes (a kill mid-write runs no cleanup).

    Live writers' files are kept: only ``.<name>.tmp<pid>`` whose pid no longer runs on this machine goes.
    """
    prefix = f".{path.name}.tmp"
    for tmp in path.parent.glob(glob.escape(prefix) + "*"):
        pid = tmp.name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic(path: str | Path, checksum: bool = False, fault: str = "") -> Iterator[Path]:
    """The temporary file (``.<name>.tmp<pid>``) to write ``path``'s new content to; leaving the block fsyncs it
    and renames it into place, so a reader sees the old file or the new one, never part of one.

    ``checksum``: also a sidecar with the digest, renamed after the file. ``fault``: the ``faults`` point hit just
    before the renames. Any failure, Ctrl-C included, removes the temporary files; so does the next write of
    ``path`` for those a killed process left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = [path, sidecar(path)] if checksum else [path]
    temps = [_tmp(t) for t in targets]
    for target in targets:
        _remove_stale(target)
    try:
        yield temps[0]
        with temps[0].open("rb+") as f:
            os.fsync(f.fileno())
        if checksum:
            temps[1].write_text(file_sha256(temps[0]) + "\n")
        if fault:
            faults.point(fault)
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    except BaseException as err:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device while writing {path}; free some space "
                f"(or use --out on another disk) and run the same command again: finished "
                f"work is kept",
            ) from None
        raise


def save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically, with a checksum sidecar (the ``checkpoint`` fault point)."""
    with atomic(path, checksum=True, fault="checkpoint") as tmp:
        torch.save(obj, tmp)


def write_text(path: str | Path, text: str, checksum: bool = False) -> None:
    """A text file, atomically; a sidecar only if asked (json and csv files other tools read have none)."""
    with atomic(path, checksum=checksum) as tmp:
        tmp.write_text(text)


def verify(path: str | Path) -> None:
    """Raise ``CorruptFile`` if ``path``'s bytes differ from its sidecar's digest (no sidecar: nothing to check)."""
    path = Path(path)
    check = sidecar(path)
    if check.exists():
        expected = check.read_text().strip()
        if file_sha256(path) != expected:
            raise CorruptFile(f"{path} does not match its checksum ({check.name}): truncated or corrupt")


def load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` after the checksum check; any failure is ``CorruptFile``."""
    path = Path(path)
    verify(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, wrong pickle, ...
        raise CorruptFile(f"{path} does not load ({type(err).__name__}: {err})") from None


def load_or_discard(path: str | Path, what: str) -> Any | None:
    """The file's content, or None if it is missing; a corrupt file is moved aside with a warning (redo the work)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path)
    except CorruptFile as err:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        sidecar(path).unlink(missing_ok=True)
        warnings.warn(f"{err}; moved to {aside.name}, {what} is redone", stacklevel=2)
        return None


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (created if needed), waiting for it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Claim:
    """A per-unit claim: a non-blocking exclusive lock that says "this process is working on it"."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._file = f
        return True

    def acquire(self) -> None:
        """Wait until the other holder finishes (or dies)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
