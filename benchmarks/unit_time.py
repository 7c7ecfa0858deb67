"""Whole pretraining units against their steps alone: what the loader, start-up, checkpoints and logging cost.

    python benchmarks/unit_time.py [--preset quick] [--data-root DIR] [--set KEY=VALUE ...] [--epochs 2] [--write]
    python benchmarks/unit_time.py --small        # smoke run: the ci preset, tiny

For every method of the preset (those that train):

(1) one real pretraining unit, run by ``ssl_bench.run`` (what ``ssl-bench run`` runs) with ``--epochs`` epochs in a
    temporary results directory; its wall time is the runner's ``pretrain`` call (Trainer, every epoch's loader,
    steps, checkpoints, metrics, monitor, backbone.pt), timed around the call. Against it: epochs x steps per epoch x
    the method's median step time (``workloads.configured_workload``: the engine's ``Trainer.step`` with the run's
    resolved config on one batch of the same data, as ``ratios.py`` times it). Target: unit <= 1.2 x steps alone.
(2) the unit's evaluations (each ``evaluate`` call of the runner, timed) against its pretraining at the preset's own
    epochs, estimated as unit time / ``--epochs`` x the preset's epochs. Target: <= 5%.

The time between them is all outside the step. The table goes to stdout (the run's progress to stderr); ``--write``
puts it into benchmarks/README.md between ``<!-- unit-time KIND -->`` and ``<!-- /unit-time KIND -->`` (KIND: avx512,
avx2). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ratios
import torch
import workloads
from rich.console import Console

from ssl_bench import api, runner
from ssl_bench.config import ConfigError
from ssl_bench.data.registry import load_dataset
from ssl_bench.data.types import Splits
from ssl_bench.engine import autocast_dtype, steps_per_epoch
from ssl_bench.methods import get_method
from ssl_bench.run_config import RunConfig, load, merge, parse_set, resolve

BEGIN, END = "<!-- unit-time -->", "<!-- /unit-time -->"
UNIT_TARGET = 1.2  # (1) unit wall time / steps alone, at most
EVAL_TARGET = 0.05  # (2) evaluations / pretraining at the preset's epochs, at most
NO_SIZES: dict[str, Any] = {"sizes": {"backbones": []}}  # one unit a method: without the preset's Fig. 2 sizes
SMALL = {  # --small: the ci preset, shrunk to a smoke run (the numbers say nothing about the targets)
    "evals": ["linear", "knn"],
    "threads": 0,  # torch's default (OMP_NUM_THREADS), not the ci preset's pinned 2
    "data": {"num_train": 256, "num_test": 128},
    "linear": {"epochs": 2},
}


@dataclass
class UnitResult:
    method: str
    epochs: int  # trained here
    preset_epochs: int  # the preset's, for (2)
    steps: int  # per epoch
    step_s: float  # median
    unit_s: float  # the runner's pretrain call
    loops_s: float  # the epochs' `seconds` in metrics.jsonl: loader + steps + mid-epoch checkpoints
    evals_s: dict[str, float] = field(default_factory=dict)  # evaluation -> seconds

    @property
    def steps_alone_s(self) -> float:
        return self.epochs * self.steps * self.step_s

    @property
    def pretraining_s(self) -> float:
        """The unit at the preset's epochs, estimated from this one's time per epoch."""
        return self.unit_s / self.epochs * self.preset_epochs


@contextlib.contextmanager
def stopwatch(module: Any, name: str) -> Iterator[list[tuple[tuple, float]]]:
    """``module.<name>`` timed while inside: each call's (positional arguments, wall seconds) is appended to the list
    yielded. The function called is the same; only the clock around it is added."""
    original = getattr(module, name)
    calls: list[tuple[tuple, float]] = []

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            calls.append((args, time.perf_counter() - t))

    setattr(module, name, timed)
    try:
        yield calls
    finally:
        setattr(module, name, original)


def run_unit(
    name: str, preset: str, overrides: dict[str, Any], out: Path, console: Console
) -> tuple[float, float, dict[str, float]]:
    """Pretrain and evaluate ``name`` as ``ssl_bench.run`` does: (unit seconds, epoch-loop seconds, eval seconds)."""
    with stopwatch(runner, "pretrain") as trained, stopwatch(runner, "evaluate") as evaluated:
        # one unit: the preset's backbone, without its extra sizes (Fig. 2's `sizes`)
        api.run(preset, out, methods=[name], report=False, console=console, set=merge(NO_SIZES, overrides))
    if len(trained) != 1:
        raise RuntimeError(f"{name}: expected one pretraining unit in {out}, the runner did {len(trained)}")
    arguments, seconds = trained[0]
    run_dir = arguments[4]  # pretrain(unit, cfg, splits, device, run_dir, progress)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals: dict[str, float] = {}
    for arguments, s in evaluated:  # evaluate(name, ctx, cfg)
        evals[arguments[0]] = evals.get(arguments[0], 0.0) + s
    return seconds, sum(r["seconds"] for r in records), evals


def step_seconds(name: str, cfg: RunConfig, splits: Splits, warmup: int, repeats: int) -> tuple[float, int]:
    """Median seconds of ``name``'s training step under ``cfg`` (resolved as the runner resolves it), on one batch of
    the data it pretrains on; and its steps per epoch."""
    resolved = resolve(cfg, name)
    work = workloads.configured_workload(
        name, resolved.method_cfg, cfg.backbones[0], resolved.run.train, splits, runner.resolve_device(cfg.device)
    )
    seconds = ratios.median_times({"step": work.step}, warmup, repeats)["step"]
    return seconds, steps_per_epoch(len(work.dataset), resolved.run.train.batch_size)


def secs(seconds: float) -> str:
    """Seconds to 3 significant digits (whole seconds from 100 on)."""
    return f"{seconds:,.0f}" if seconds >= 100 else f"{seconds:.3g}"


def render(rows: list[UnitResult], header: list[str], evals: list[str], small: bool) -> str:
    """The markdown report: the header lines, then tables (1) and (2), each row with its target and pass/fail."""
    verdict = ratios.Verdicts()
    out = [f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.", ""] + [f"- {h}" for h in header]
    if small:
        out += ["", "**Smoke sizes (`--small`): these numbers say nothing about the targets.**"]
    cells = []
    for r in rows:
        ratio = r.unit_s / r.steps_alone_s
        cells.append(
            [
                r.method,
                str(r.epochs),
                str(r.steps),
                ratios.ms(r.step_s),
                secs(r.steps_alone_s),
                secs(r.loops_s),
                secs(r.unit_s),
                f"{ratio:.2f}",
                f"<= {UNIT_TARGET}",
                verdict(ratio <= UNIT_TARGET),
            ]
        )
    out += ratios.table(
        "(1) Pretraining unit (the runner's `pretrain`) / epochs x steps per epoch x median step (`Trainer.step`)",
        [
            "method",
            "epochs",
            "steps / epoch",
            "step ms",
            "steps alone s",
            "epoch loops s",
            "unit s",
            "unit / steps",
            "target",
            "",
        ],
        "lrrrrrrrll",
        cells,
    )
    cells = []
    for r in rows:
        total = sum(r.evals_s.values())
        ratio = total / r.pretraining_s
        cells.append(
            [
                r.method,
                *(secs(r.evals_s.get(e, 0.0)) for e in evals),
                secs(total),
                str(r.preset_epochs),
                secs(r.pretraining_s),
                f"{ratio:.1%}",
                f"<= {EVAL_TARGET:.0%}",
                verdict(ratio <= EVAL_TARGET),
            ]
        )
    out += ratios.table(
        "(2) Evaluations / pretraining at the preset's epochs (estimated: unit s / epochs x preset epochs)",
        [
            "method",
            *(f"{e} s" for e in evals),
            "evaluations s",
            "preset epochs",
            "pretraining s",
            "share",
            "target",
            "",
        ],
        "l" + "r" * (len(evals) + 4) + "ll",
        cells,
    )
    return "\n".join(out + ["", verdict.summary()])


def describe(
    cfg: RunConfig, preset: str, given: dict[str, Any], epochs: int, splits: Splits, repeats: int, warmup: int
) -> list[str]:
    """The header lines: machine, the run's settings as resolved, how the step was timed."""
    train, device = cfg.train, runner.resolve_device(cfg.device)
    dtype = autocast_dtype(train.precision, device)
    precision = f"{'bf16 autocast' if dtype is not None else 'fp32'} (train.precision={train.precision})"
    memory = "channels_last" if train.channels_last else "contiguous (NCHW)"
    settings = ", ".join(
        f"`{key}={','.join(map(str, value)) if isinstance(value, list) else value}`"
        for key, value in flat(given).items()
    )
    return [
        f"Machine: {ratios.machine()}.",
        f"Run: preset `{preset}`" + (f" with {settings}" if settings else "") + "; "
        f"`{cfg.backbones[0]}`, {splits.info.image_size} px, batch {train.batch_size}, {precision}, {memory}, "
        f"{cfg.data.num_workers} loader worker{'' if cfg.data.num_workers == 1 else 's'}, monitor {'on' if cfg.monitor.enabled else 'off'}; dataset "
        f"{splits.info.name}, {len(splits.pretraining()):,} pretraining / {len(splits.train):,} train / {len(splits.test):,} test "
        f"images; {epochs} epoch{'' if epochs == 1 else 's'} per unit; evaluations {', '.join(cfg.evals)}.",
        f"Step: the engine's `Trainer.step` with the unit's resolved config on one batch of the same data; median of "
        f"{repeats} after {warmup} warm-up, timed right after the unit.",
    ]


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"data": {"num_train": 256}} -> {"data.num_train": 256}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", help="the preset to time (default quick; --small: ci)")
    p.add_argument("--data-root", help="as ssl-bench run --data-root (quick needs the CIFAR-10 folder tree)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as ssl-bench run --set")
    p.add_argument("--methods", help="comma-separated subset of the preset's methods (default: every one that trains)")
    p.add_argument("--epochs", type=int, help="pretraining epochs of each unit (default 2; --small 1)")
    p.add_argument("--repeats", type=int, help="timed steps, median taken (default 10; --small 3)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 2; --small 1)")
    p.add_argument("--small", action="store_true", help="smoke run: the ci preset on 256 images, linear, knn")
    p.add_argument("--keep", type=Path, help="results directory to keep (default: a temporary one, removed after)")
    p.add_argument("--write", action="store_true", help="also write the table into README.md between the markers")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = args.preset or ("ci" if args.small else "quick")
    epochs = args.epochs or (1 if args.small else 2)
    repeats = args.repeats or (3 if args.small else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.small else 2)
    if epochs < 1:
        raise SystemExit("--epochs must be at least 1")

    given = merge(SMALL if args.small else {}, api.config_overrides({"data_root": args.data_root}, None, {}, {}))
    given = merge(given, parse_set(args.set))
    cfg = load(preset, given)  # as the user runs it: the preset's own epochs for (2)
    trains = [m for m in cfg.methods if get_method(m).trains]
    names = [n.strip() for n in args.methods.split(",") if n.strip()] if args.methods else trains
    wrong = sorted(set(names) - set(trains))
    if wrong or not names:
        raise SystemExit(f"--methods: {wrong or 'none named'}; the preset's methods that train: {', '.join(trains)}")
    preset_epochs = {m: resolve(cfg, m).run.train.epochs for m in names}
    timed = {"seeds": [0], "backbones": cfg.backbones[:1], "train": {"epochs": epochs}}
    timed |= {m: {"epochs": epochs} for m in names if resolve(cfg, m).method_cfg.epochs is not None}  # jigsaw.epochs
    overrides = merge(given, timed)
    cfg = load(preset, overrides)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    console = Console(stderr=True)
    results, splits = [], None
    with contextlib.ExitStack() as stack:
        out = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ssl-bench-unit-time-")))
        for name in names:
            log(f"{name}: one unit of {epochs} epoch{'' if epochs == 1 else 's'}, then its step ...")
            unit_s, loops_s, evals_s = run_unit(name, preset, overrides, out, console)
            if cfg.threads:  # the runner set them for the unit; the step runs with the same
                torch.set_num_threads(cfg.threads)
            splits = splits or load_dataset(cfg.data, out)  # the unit's data, generated or checked by its run
            step_s, steps = step_seconds(name, cfg, splits, warmup, repeats)
            results.append(UnitResult(name, epochs, preset_epochs[name], steps, step_s, unit_s, loops_s, evals_s))
            gc.collect()
    header = describe(cfg, preset, given, epochs, splits, repeats, warmup)
    text = render(results, header, cfg.evals, args.small)
    print(text)
    if args.write:
        log(f"written into {ratios.README} ({ratios.write_for_this_cpu(ratios.README, text, BEGIN, END)} table)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ConfigError, FileNotFoundError) as e:  # a bad setting, or data not where --data-root says
        sys.exit(f"unit_time.py: {e}")
