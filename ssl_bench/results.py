"""The results table: ``<out>/results.csv``, long format, one row per number.

Rows are appended under a file lock and the file is rewritten atomically (``storage.atomic``: temp file + rename),
so a crash while writing never leaves a half-written table, and two runs on the same directory never lose rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ssl_bench.storage import atomic, file_lock

COLUMNS = [
    "method",
    "backbone",
    "params",
    "dataset",
    "preset",
    "eval",
    "protocol",
    "layer",
    "metric",
    "value",
    "seed",
    "config_hash",
    "run_id",
    "created",
]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultsTable:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def locked(self) -> AbstractContextManager[None]:
        return file_lock(self.lock_path)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def done(self) -> set[str]:
        """config_hash of every unit of work that already has rows."""
        return {r["config_hash"] for r in self.rows()}

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        new = [{c: r.get(c, "") for c in COLUMNS} for r in rows]
        if not new:
            return 0
        with self.locked():
            existing = self.rows()
            hashes = {r["config_hash"] for r in existing}
            new = [r for r in new if r["config_hash"] not in hashes]  # another process may have finished it
            if new:
                with atomic(self.path, fault="results") as tmp, tmp.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(existing + new)
        return len(new)
