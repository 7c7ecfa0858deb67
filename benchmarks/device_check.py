"""Everything once on the visible device, in minutes: what a first GPU session runs before anything long (issue 19).

    python benchmarks/device_check.py                                  # cuda if torch sees one, else cpu
    python benchmarks/device_check.py --data-root ~/data/cifar10       # real CIFAR-10 instead of the built-in data
    OMP_NUM_THREADS=1 python benchmarks/device_check.py --small --device cpu   # CPU sizes, seconds (a test runs it)

The configuration is the ``cifar10`` preset's, resolved by the project's own config code (``run_config.load`` and
``resolve``), so the check follows the preset: backbone, batch, precision, channels_last, workers, method settings.
Without ``--data-root`` the data is the built-in synthetic set at 32 px, as many images as CIFAR-10 (generated once
under ``--out``); the table's header says which data ran.

* Per method: ``--steps`` timed training steps (after a few untimed) through the engine's ``Trainer.step`` (batch to
  the device, autocast forward, non-finite check, backward, SGD) on one batch of the engine's loader, synchronised
  on CUDA: step images/s. The engine's ``make_loader`` alone (the method's transform, collate, the preset's workers,
  pinned memory on CUDA), its first batch (worker start-up) untimed: loader images/s. "loader limits" = the loader
  makes fewer images a second than the step consumes. With ``train.device_augment`` on (the default on CUDA;
  ``--device-augment on|off|auto``) the loader makes uint8 crops and colour parameters and the step includes the
  colour on the device (``ssl_bench.data.device_augment``), for the methods that offer it (all but Jigsaw). Peak memory: ``torch.cuda.max_memory_allocated`` over the
  method's setup and steps on CUDA; on CPU the process's peak RSS so far (it never goes down: later rows include
  earlier ones). ``random`` has no steps: its row says so. "seconds": the row's whole time (setup, steps, loader).
* Every evaluation of the harness once, tiny settings (``TINY``), on a class-balanced subset of the data, on the
  backbone of the last method whose steps ran (in the preset's order PIRL: kNN and invariance also use its heads),
  or a random-init one if none ran. "seconds": the evaluation's time.

Each row catches its own error: the table is printed whole, each error's traceback goes to stderr, and the exit code
is 1 if any row failed (2 for a configuration mistake, before anything runs). ``--small``: a 0.25-width network,
batch 16, no workers, a handful of steps and smaller evaluations, for a CPU.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import DEVICE_AUGMENT, ConfigError
from ssl_bench.data import device_augment
from ssl_bench.data.folder import balanced_subset
from ssl_bench.data.registry import load_dataset
from ssl_bench.data.types import Indexed, Splits
from ssl_bench.engine import Trainer, autocast_dtype, make_loader, steps_per_epoch, training_views
from ssl_bench.eval.harness import EVALS, EvalContext, check_evals, evaluate
from ssl_bench.methods import Method
from ssl_bench.run_config import RunConfig, load, merge, parse_set, requested_keys, resolve
from ssl_bench.runner import resolve_device, seed_everything, set_determinism

PRESET = "cifar10"
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    steps: int = 200  # timed training steps per method
    loader_batches: int = 50  # timed loader batches, after the untimed first one
    num_train: int = 50_000  # synthetic images generated when there is no --data-root (CIFAR-10's sizes)
    num_test: int = 10_000
    eval_train: int = 5_000  # the class-balanced subset the evaluations see
    eval_test: int = 1_000

    @property
    def warmup(self) -> int:
        """Untimed steps first (CUDA: kernel selection, the allocator's first blocks): 1 in 20, at least one."""
        return max(1, self.steps // 20)


FULL = Sizes()
SMALL = Sizes(steps=3, loader_batches=4, num_train=256, num_test=64, eval_train=256, eval_test=64)

# --small: what changes in the preset so that a CPU runs it in seconds
SMALL_RUN: dict[str, Any] = {
    "backbones": ["resnet18-smallstem-w0.25"],
    "train": {"batch_size": 16},
    "data": {"num_workers": 0},
}
# One pass of every evaluation, tiny: the path runs, the numbers mean nothing. Detection and SVM on the ci preset's
# small synthetic scenes, with fewer iterations and one cost.
TINY: dict[str, Any] = {
    "linear": {"epochs": 1, "max_dims": 2048},
    "semisup": {"epochs": 1, "min_steps": 10},
    "detection": {
        "synthetic_trainval": 32,
        "synthetic_test": 16,
        "synthetic_size": 64,
        "min_size": 128,
        "max_size": 128,
        "multiscale": False,
        "iterations": 10,
        "batch_size": 4,
        "roi_batch_size": 64,
    },
    "svm": {"synthetic_trainval": 64, "synthetic_test": 32, "synthetic_size": 64, "max_dims": 2048, "costs": [1.0]},
    "invariance": {"num_images": 256, "repeats": 1},
}
SMALL_TINY: dict[str, Any] = {
    "linear": {"max_dims": 256},
    "semisup": {"min_steps": 2, "batch_size": 16},
    "detection": {
        "synthetic_trainval": 6,
        "synthetic_test": 3,
        "min_size": 64,
        "max_size": 64,
        "iterations": 2,
        "batch_size": 2,
        "roi_batch_size": 16,
    },
    "svm": {"synthetic_trainval": 30, "synthetic_test": 15, "synthetic_size": 32, "max_dims": 256},
    "invariance": {"num_images": 16},
}


@dataclass
class Row:
    """One line of the table: a method's steps or one evaluation."""

    check: str  # "step: pirl", "eval: knn"
    step: float | None = None  # images/s
    loader: float | None = None  # images/s
    memory: int | None = None  # bytes
    seconds: float | None = None
    result: str = ""
    error: str = ""

    def cells(self) -> list[str]:
        ratio = self.loader / self.step if self.loader and self.step else None
        return [
            self.check,
            "" if self.step is None else f"{self.step:,.0f}",
            "" if self.loader is None else f"{self.loader:,.0f}",
            "" if ratio is None else f"{ratio:.2f}",
            "" if ratio is None else ("**yes**" if ratio < 1 else "no"),
            "" if self.memory is None else f"{self.memory / 2**20:,.0f} MiB",
            "" if self.seconds is None else f"{self.seconds:.2f}",
            f"**ERROR** {self.error}" if self.error else self.result,
        ]


def failed(row: Row, e: BaseException) -> None:
    """The error's first line into the row, the traceback to stderr."""
    print(f"\ndevice_check: {row.check} failed:", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)
    lines = str(e).strip().splitlines()
    row.error = f"{type(e).__name__}: {lines[0] if lines else ''}".replace("|", "/")[:160]


def timed(row: Row, check: Callable[[], T]) -> T | None:
    """``check()`` (it fills ``row``), its whole time into ``row.seconds``; an error goes into the row (None)."""
    t0 = time.perf_counter()
    try:
        return check()
    except Exception as e:
        failed(row, e)
        return None
    finally:
        row.seconds = time.perf_counter() - t0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Bytes: the CUDA allocator's peak since the last reset, or the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # macOS counts bytes, Linux KiB


def memory_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated over each method's setup and steps"
    return "peak RSS of this process so far (ru_maxrss; never goes down, so each row includes the ones above)"


def loader_rate(dataset: Indexed, batch_size: int, workers: int, device: torch.device, batches: int) -> float:
    """Images/s of the engine's loader alone over ``batches`` batches, after its first (worker start-up)."""
    loader = make_loader(dataset, batch_size, workers, seed=0, epoch=1, device=device)
    batches = min(batches, len(loader) - 1)
    if batches < 1:
        raise ConfigError(f"the loader check needs 2 batches of {batch_size}, the data has {len(dataset)} images")
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - t0
    del it, loader  # its workers stop
    return batches * batch_size / seconds


def check_steps(
    name: str, cfg: RunConfig, splits: Splits, device: torch.device, sizes: Sizes, work: Path, row: Row
) -> Method:
    """``sizes.steps`` training steps of ``name`` as ``Trainer.fit`` takes them, then its loader alone; fills ``row``.
    Returns the method after its steps, in eval mode, on the CPU (the evaluations may use it)."""
    resolved = resolve(cfg, name)
    cls, train = resolved.method, resolved.run.train
    resolved.method_cfg.check_data(splits.info, requested_keys(cfg, name))  # as the runner does: NCE caps K at N - 1
    reset_peak_memory(device)
    seed_everything(0)
    backbone = Backbone(cfg.backbones[0], cfg.backbone.zero_init_residual)
    method = cls(backbone, resolved.method_cfg, splits.info).to(device).train()
    if train.channels_last:
        method.to(memory_format=torch.channels_last)
    trainer = Trainer(method, train, device, work / name, seed=0, workers=cfg.data.num_workers)
    trainer.model = method  # what fit() sets outside torchrun
    views = training_views(method, train, device)  # train.device_augment: colour on the device where it applies
    dataset = Indexed(splits.train if cls.needs_labels else splits.pretraining(), views)
    optimizer, scheduler = trainer.optimizer(steps_per_epoch(len(dataset), train.batch_size))
    batch = next(iter(make_loader(dataset, train.batch_size, 0, seed=0, epoch=0, device=device)))  # pinned on CUDA
    for i in range(sizes.warmup):
        trainer.step(batch, optimizer, 0, i)
        scheduler.step()
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(sizes.steps):
        out = trainer.step(batch, optimizer, 0, sizes.warmup + i)
        scheduler.step()
    synchronize(device)
    row.step = sizes.steps * len(batch) / (time.perf_counter() - t0)
    row.memory = peak_memory(device)
    row.result = f"ok, loss {out['loss']:.3f}"
    row.loader = loader_rate(dataset, train.batch_size, cfg.data.num_workers, device, sizes.loader_batches)
    method.backbone.to(memory_format=torch.contiguous_format)  # as the runner hands a backbone to the evaluations
    return method.eval().cpu()


def eval_context(
    trained: Method | None, cfg: RunConfig, splits: Splits, device: torch.device, sizes: Sizes, work: Path
) -> tuple[str, EvalContext, RunConfig]:
    """What the evaluations run on: ``trained``'s backbone and heads (a random-init backbone if None), a
    class-balanced subset of the data, and the run's config resolved for that method (detection: its own schedule)."""
    if trained is None:
        seed_everything(0)
        source, backbone, heads = "random-init", Backbone(cfg.backbones[0], cfg.backbone.zero_init_residual), {}
        run = resolve(cfg, "random").run
    else:
        trained.to(device)
        source, backbone, heads = f"{trained.name} after its steps", trained.backbone, trained.embeddings()
        run = resolve(cfg, trained.name).run
    subset = Splits(
        balanced_subset(splits.train, sizes.eval_train, seed=0),
        balanced_subset(splits.test, sizes.eval_test, seed=0),
        splits.info,
    )
    ctx = EvalContext(
        backbone.to(device),
        subset,
        work / "eval",
        device,
        seed=0,
        dtype=autocast_dtype(run.train.precision, device),
        shared=work,
        checkpoint=cfg.checkpoint,
        workers=cfg.data.num_workers,
        embeddings=lambda: heads,
    )
    return f"{source}; {len(subset.train):,} train / {len(subset.test):,} test images (class-balanced)", ctx, run


def check_evaluation(name: str, ctx: EvalContext, run: RunConfig, row: Row) -> None:
    """One pass of evaluation ``name``; fills ``row``."""
    numbers = evaluate(name, ctx, run)
    synchronize(ctx.device)
    row.result = f"ok, {len(numbers)} numbers"


def colour_where(mode: str, device: torch.device) -> str:
    if device_augment.enabled(mode, device):
        return f"on the device (train.device_augment={mode}; Jigsaw's tiles per sample in the loader)"
    return f"per sample in the loader (train.device_augment={mode})"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{device} ({p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def render(header: list[str], rows: list[Row]) -> str:
    cols = ["check", "step img/s", "loader img/s", "loader / step", "loader limits", "peak memory", "seconds", "result"]
    lines = [*header, "", "| " + " | ".join(cols) + " |", "|---|--:|--:|--:|---|--:|--:|---|"]
    return "\n".join(lines + ["| " + " | ".join(r.cells()) + " |" for r in rows])


def configure(args: argparse.Namespace) -> tuple[RunConfig, Sizes]:
    """The preset with what the check changes: the data (built-in unless --data-root), --small, tiny evaluations,
    then the user's --set. Checked by the project's config code like any run's."""
    sizes = SMALL if args.small else FULL
    if args.data_root:
        data: dict[str, Any] = {"root": str(args.data_root)}
        if args.small:
            data |= {"num_train": sizes.num_train, "num_test": sizes.num_test}
    else:
        data = {"name": "synthetic", "image_size": 32, "num_train": sizes.num_train, "num_test": sizes.num_test}
    overrides = merge({"data": data, "device": args.device}, TINY)
    if args.small:
        overrides = merge(merge(overrides, SMALL_RUN), SMALL_TINY)
    if args.workers is not None:
        overrides = merge(overrides, {"data": {"num_workers": args.workers}})
    if args.device_augment is not None:
        overrides = merge(overrides, {"train": {"device_augment": args.device_augment}})
    cfg = load(PRESET, merge(overrides, parse_set(args.set)))
    sizes = replace(
        sizes, **{k: v for k, v in vars(args).items() if k in ("steps", "loader_batches") and v is not None}
    )
    if min(sizes.steps, sizes.loader_batches) < 1:
        raise ConfigError(f"--steps and --loader-batches must be at least 1, got {sizes.steps}, {sizes.loader_batches}")
    return cfg, sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda if seen")
    p.add_argument(
        "--data-root",
        type=Path,
        help="CIFAR-10 (cifar-10-batches-py/ or an ImageFolder tree); default: the built-in synthetic data at 32 px",
    )
    p.add_argument("--small", action="store_true", help="CPU sizes: 0.25-width network, batch 16, a few steps")
    p.add_argument("--steps", type=int, help=f"timed steps per method (default {FULL.steps}; --small {SMALL.steps})")
    p.add_argument("--loader-batches", type=int, help=f"timed loader batches (default {FULL.loader_batches})")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: the preset's; --small 0)")
    p.add_argument(
        "--device-augment",
        choices=DEVICE_AUGMENT,
        help="train.device_augment: colour augmentation on the device (default: the preset's, auto = on CUDA only)",
    )
    p.add_argument("--methods", help="comma-separated subset of the preset's methods (default: all)")
    p.add_argument("--evals", help=f"comma-separated subset of the evaluations (default: all, {', '.join(EVALS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, as ssl-bench run")
    p.add_argument("--out", type=Path, help="where the generated data is kept (default: the ssl-bench cache)")
    return p.parse_args(argv)


def cache_dir() -> Path:
    """``$SSL_BENCH_CACHE/device_check`` or ``~/.cache/ssl_bench/device_check``."""
    root = os.environ.get("SSL_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "ssl_bench") / "device_check"


def listed(text: str | None, default: list[str]) -> list[str]:
    return default if text is None else [n.strip() for n in text.split(",") if n.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    try:
        cfg, sizes = configure(args)
        methods = listed(args.methods, cfg.methods)
        evals = listed(args.evals, list(EVALS))
        if not methods and not evals:
            raise ConfigError("--methods and --evals are both empty: nothing to check")
        check_evals(evals)
        for name in methods:
            resolve(cfg, name)  # an unknown method: the error listing the valid ones
        device = resolve_device(cfg.device)
        set_determinism(cfg.train.deterministic, device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        out = args.out or cache_dir()
        splits = load_dataset(cfg.data, out)
    except ConfigError as e:
        print(f"device_check: {e}", file=sys.stderr)
        return 2
    train, info = cfg.train, splits.info
    dtype = autocast_dtype(train.precision, device)
    where = f"{cfg.data.name} from {cfg.data.root}" if args.data_root else f"synthetic (built-in; under {out}/data)"
    header = [
        f"device_check: preset {PRESET} on {describe_device(device)}; torch {torch.__version__}",
        "",
        f"- data: {where}, {info.image_size} px, {len(splits.train):,} train / {len(splits.test):,} test images",
        f"- steps: `{cfg.backbones[0]}`, batch {train.batch_size}, {'fp32' if dtype is None else f'{dtype} autocast'}, "
        f"{'channels_last' if train.channels_last else 'contiguous'}, {cfg.data.num_workers} loader workers; "
        f"{sizes.steps} timed steps after {sizes.warmup} untimed; loader: {sizes.loader_batches} batches after the first",
        f"- colour augmentation: {colour_where(train.device_augment, device)}",
        f"- peak memory: {memory_kind(device)}",
    ]
    rows: list[Row] = []
    trained: Method | None = None
    with tempfile.TemporaryDirectory(prefix="ssl-bench-device-check-") as tmp:
        work = Path(tmp)  # run directories and feature caches: nothing is reused from an earlier check
        for name in methods:
            row = Row(f"step: {name}")
            rows.append(row)
            if not resolve(cfg, name).method.trains:
                row.result = "no steps (not trained)"
                continue
            print(f"device_check: {name} ...", file=sys.stderr, flush=True)
            method = timed(row, lambda: check_steps(name, cfg, splits, device, sizes, work, row))
            if method is not None:
                trained = method
        eval_rows = [Row(f"eval: {name}") for name in evals]
        rows += eval_rows
        source = "none asked for"
        if evals:
            print("device_check: evaluations ...", file=sys.stderr, flush=True)
            try:
                source, ctx, run = eval_context(trained, cfg, splits, device, sizes, work)
            except Exception as e:
                source = "none: their setup failed"
                for row in eval_rows:
                    failed(row, e)
            else:
                for name, row in zip(evals, eval_rows):
                    timed(row, lambda: check_evaluation(name, ctx, run, row))
    errors = sum(1 for r in rows if r.error)
    header.append(f"- evaluations: tiny settings, on the backbone of {source}")
    print(render(header, rows))
    print(f"\n{errors} errors; {time.perf_counter() - t_start:.0f} s in all")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
