"""Where pretraining's per-epoch metrics go: ``metrics.jsonl`` always, TensorBoard and W&B when asked (``log``).

Every record the engine writes (one per epoch: ``epoch``, ``lr``, ``seconds``, the averaged step outputs such as
``loss``, and whatever else the engine adds, e.g. the collapse monitor's numbers) is one JSON line of
``<run dir>/metrics.jsonl``. With ``log.tensorboard`` each of its numbers but the epoch also goes to TensorBoard event
files in the run directory (``torch.utils.tensorboard.SummaryWriter``: tag = key, step = epoch), so
``tensorboard --logdir <out>/runs`` shows every run by its id; with ``log.wandb`` to a W&B run (project "ssl-bench",
named after the run directory, files under ``<run dir>/wandb``; ``WANDB_MODE=offline`` writes them without an
account, ``wandb sync`` uploads them later). Both are optional extras, imported only when asked for: a missing one
is a ``ConfigError`` naming it, raised when the config is loaded (``LogConfig.check``) and again here.

Logging reads the numbers and changes none of them: ``log`` is in no result's hash. A resumed run appends to
``metrics.jsonl``, adds an event file beside the first (TensorBoard merges them by step) and starts a new W&B run.
"""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path
from types import TracebackType
from typing import Any

from ssl_bench.config import LogConfig, missing_extra

PROJECT = "ssl-bench"  # the W&B project every run logs to


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers as TensorBoard and W&B take them: every real value but the epoch (their step)."""
    return {k: float(v) for k, v in record.items() if k != "epoch" and isinstance(v, Real) and not isinstance(v, bool)}


class MetricsLog:
    """One run's metrics log: ``write`` one record per epoch, ``close`` at the end (or use it as a context manager).

    ``config``: what a W&B run records as its config (the method and training settings)."""

    def __init__(self, run_dir: Path, log: LogConfig | None = None, config: dict[str, Any] | None = None) -> None:
        log = log or LogConfig()
        self.path = run_dir / "metrics.jsonl"
        self.writer = summary_writer(run_dir) if log.tensorboard else None
        self.wandb = wandb_run(run_dir, config or {}) if log.wandb else None

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (it holds ``epoch``, counted from 1) to metrics.jsonl and send its numbers on."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        numbers, step = scalars(record), int(record["epoch"])
        if self.writer is not None:
            for key, value in numbers.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()  # readable at once, e.g. by a TensorBoard watching a long run
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def summary_writer(run_dir: Path) -> Any:
    """A ``SummaryWriter`` whose event files go into ``run_dir``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise missing_extra("tensorboard") from None
    return SummaryWriter(log_dir=str(run_dir))


def wandb_run(run_dir: Path, config: dict[str, Any]) -> Any:
    """A W&B run named after ``run_dir``, its files under ``run_dir/wandb``; the mode (online, offline, disabled)
    comes from W&B's own settings, e.g. ``WANDB_MODE=offline``."""
    try:
        import wandb
    except ImportError:
        raise missing_extra("wandb") from None
    return wandb.init(dir=str(run_dir), project=PROJECT, name=run_dir.name, config=config)
