"""Files a run writes and reads back: atomic writes, checksums, file locks.

Every tensor file (checkpoint, backbone, cached features) is written to a temporary file, fsynced and renamed
into place, with a small sidecar ``<name>.sha256`` holding its digest. Reading checks the digest: a truncated or
corrupt file is reported as ``CorruptFile`` and the caller redoes that unit of work, never uses it. A file
without a sidecar (written by an older version) is accepted if it loads.

Loading always uses ``torch.load(weights_only=True)``: nothing in a results directory is ever executed.

Locks are ``fcntl.flock`` locks on small ``.lock`` files. The kernel drops them when the process dies, so a
process killed with SIGKILL never leaves a stale claim behind.
"""

from __future__ import annotations

import errno
import fcntl
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


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _write_then_rename(path: Path, write) -> None:
    """``write(tmp_path)``, fsync, sidecar with the digest, then rename into place (the file, then its sidecar)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, tmp_sum = _tmp(path), _tmp(sidecar(path))
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp_sum.write_text(_digest(tmp) + "\n")
        faults.point("checkpoint")
        os.replace(tmp, path)
        os.replace(tmp_sum, sidecar(path))
    except BaseException as err:  # any failure, Ctrl-C included, leaves no temporary file behind
        for t in (tmp, tmp_sum):
            t.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}; free some space (or use "
                                        f"--out on another disk) and run the same command again: finished work is kept") from None  # fmt: skip
        raise


def save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically, with a checksum sidecar."""
    _write_then_rename(Path(path), lambda tmp: torch.save(obj, tmp))


def write_text(path: str | Path, text: str) -> None:
    """A text file, atomically, with a checksum sidecar."""
    _write_then_rename(Path(path), lambda tmp: tmp.write_text(text))


def verify(path: str | Path) -> None:
    """Raise ``CorruptFile`` if ``path``'s bytes differ from its sidecar's digest (no sidecar: nothing to check)."""
    path = Path(path)
    check = sidecar(path)
    if check.exists():
        expected = check.read_text().strip()
        if _digest(path) != expected:
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
