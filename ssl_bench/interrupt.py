"""Stopping long loops cleanly: Ctrl-C or SIGTERM (a cluster's pre-emption) becomes a flag checked between steps.

The loop saves a checkpoint and raises ``Interrupted``, whose message says where it stopped; the command line
turns it into "run the same command again to resume".
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training: a checkpoint was saved first; the message says where."""


class _StopRequest:
    requested: str = ""


@contextmanager
def stop_requests() -> Iterator[_StopRequest]:
    """Turn the first Ctrl-C / SIGTERM into a flag the loop checks between steps (a second Ctrl-C stops at once).

    Stopping between steps, never inside one, keeps the checkpoint consistent: the optimiser never took a step
    the checkpoint does not count. Outside the main thread (no signal handlers there) nothing is installed.
    """
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
