"""Named points where a test can kill the process, to prove that a crash there loses nothing.

``SSL_BENCH_KILL_AT=<point>:<n>`` makes the n-th arrival at ``point`` send SIGKILL to this very process (no
cleanup, no ``finally``: the same as a power cut or the OOM killer); ``<point>:<n>:INT`` sends SIGINT instead
(Ctrl-C at a known moment). Unset, a point is one dictionary lookup.
The points: ``train-step`` (after an optimiser step), ``checkpoint`` (a checkpoint's temporary file written,
not yet renamed), ``features`` (features extracted, not yet saved), ``probe`` (a linear-probe epoch),
``detection-step`` (after a detection iteration) and ``results`` (results.csv's temporary file written, not yet
renamed).
"""

from __future__ import annotations

import os
import signal

ENV = "SSL_BENCH_KILL_AT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, *rest = spec.split(":")
    count, sig = (rest + ["1", "KILL"][len(rest) :])[:2] if rest else ("1", "KILL")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count):
        os.kill(os.getpid(), signal.Signals[f"SIG{sig}"])
