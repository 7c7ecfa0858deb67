"""When and where a long loop saves itself: one checkpoint file, shared by pretraining and detection fine-tuning.

The loop owns what its state is and how it is restored; the Checkpointer owns the rest, once: the file (written
atomically with a checksum by ``storage.save``, a corrupt one moved aside so the work is redone), whether a save is
due (every ``CheckpointConfig.every_steps`` steps, or ``.minutes`` since the last save), and Ctrl-C / SIGTERM
(saved, then ``Interrupted`` raised with where the loop stopped). Under torchrun every rank runs the loop: rank 0
writes, and a stop request that reaches one rank stops them all at the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ssl_bench import distributed, storage
from ssl_bench.config import CheckpointConfig
from ssl_bench.interrupt import Interrupted, stop_requests

State = Callable[[], dict[str, Any]]  # built only when a save happens (and only by the process that writes it)


class Checkpointer:
    """The checkpoint of the loop called ``name``, at ``path`` (None: the loop keeps none and runs to its end).

    ``ranks``: every rank of a torchrun job runs the loop (pretraining); otherwise one process does.
    """

    def __init__(
        self, path: Path | None, name: str, every: CheckpointConfig | None = None, ranks: bool = False
    ) -> None:
        self.path, self.name, self.every, self.ranks = path, name, every or CheckpointConfig(), ranks
        self._saved_at = time.monotonic()
        self._stop: Any = None  # the stop request of the enclosing ``stop_requests`` block

    def load(self, what: str) -> dict[str, Any] | None:
        """The saved state, or None: nothing saved yet, or a corrupt file (moved aside with a warning that ``what``
        is redone). The clock of ``every.minutes`` starts here, as the loop does."""
        state = storage.load_or_discard(self.path, what) if self.path is not None else None
        self._saved_at = time.monotonic()
        return state

    def save(self, state: State) -> None:
        """Write ``state()`` atomically (with ``ranks`` on rank 0 alone: every rank holds the same state)."""
        if self.path is not None and (not self.ranks or distributed.is_main()):
            storage.save(state(), self.path)
        self._saved_at = time.monotonic()

    def due(self, step: int) -> bool:
        """Whether a periodic save is due after ``step`` steps."""
        every = self.every
        if every.every_steps and step % every.every_steps == 0:
            return True
        return every.minutes > 0 and time.monotonic() - self._saved_at >= every.minutes * 60

    @contextmanager
    def stop_requests(self) -> Iterator[None]:
        """Inside the block, Ctrl-C / SIGTERM become a request that ``after_step`` acts on (ssl_bench.interrupt)."""
        with stop_requests() as stop:
            self._stop = stop
            try:
                yield
            finally:
                self._stop = None

    def after_step(self, step: int, state: State, where: str, periodic: bool = True) -> None:
        """After ``step`` steps: on a stop request save and raise ``Interrupted`` (saying it stopped at ``where``);
        else save if ``periodic`` and due. Collective with ``ranks``: every rank calls it at every step."""
        if self.path is None:
            return
        requested = self._stop.requested if self._stop is not None else ""
        if distributed.any_rank(bool(requested)) if self.ranks else requested:
            self.save(state)
            raise Interrupted(f"{self.name}: stopped by {requested} at {where}; checkpoint saved to {self.path}")
        if periodic and self.due(step):
            self.save(state)
