"""Speed ratios of the training steps against the machine's limits, measured in one run, as a markdown table.

    python benchmarks/ratios.py [--small] [--precision auto|bf16|fp32] [--channels-last/--no-channels-last] [--write]

(a) each method's training step / the bare backbone passes it needs (target <= 1.15);
(b) achieved GFLOP/s of the step and of the bare backbone, as a fraction of the convolution ceiling measured in the
    same run (a large 3x3 convolution, forward + backward, at the steps' precision and memory format; target >= 65%
    for the full-image methods; Jigsaw and PIRL are reported, not judged);
(c) the NCE step with shared negatives / one (B x 128) @ (128 x K) matmul at ImageNet scale (target <= 2),
    per-sample negatives for reference;
(d) data-loader images/s / training-step images/s (target >= 1: the loader is never the bottleneck).

Every time is the median of ``--repeats`` runs after ``--warmup`` runs; the runs being compared are interleaved,
so a change of load hits them alike (the ceiling's runs are interleaved with every method's). The precision is the
engine's: bf16 autocast where ``train.precision=auto`` would use it (AVX-512 BF16 / AMX), fp32 elsewhere, even when
``--precision bf16`` asks otherwise; the header says which ran, and which ISA flags the CPU has. The table goes to stdout (progress to stderr); ``--write`` also puts it
into benchmarks/README.md between ``<!-- table KIND -->`` and ``<!-- /table KIND -->``, KIND being the CPU's vector ISA
as torch names it (avx512, avx2): one table per kind of machine. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import workloads
from workloads import FULL_IMAGE, METHOD_NAMES, Sizes

from ssl_bench.data.types import Splits

README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- table -->", "<!-- /table -->"  # --write, as markers(BEGIN, END) of this machine's kind
STEP_TARGET = 1.15  # (a) step / backbone passes, at most
CEILING_TARGET = 0.65  # (b) fraction of the ceiling, at least
NCE_TARGET = 2.0  # (c) shared-negatives NCE step / one matmul, at most
LOADER_TARGET = 1.0  # (d) loader images/s / step images/s, at least
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what bf16 and fp32 convolutions run on


@dataclass
class MethodResult:
    name: str
    passes: str  # what the bare backbone sees
    images: int  # dataset images per step
    step_s: float
    backbone_s: float
    step_flops: int
    backbone_flops: int
    loader_images_s: float

    @property
    def step_images_s(self) -> float:
        return self.images / self.step_s


@dataclass
class NCEResult:
    batch: int
    bank: int
    k: int
    matmul_s: float
    shared_s: float
    per_sample_s: float | None  # None: skipped (see note)
    note: str = ""


@dataclass
class Ceiling:
    """The convolution ceiling the steps are judged against: measured in the run, or given."""

    gflops: float
    how: str  # where the figure comes from, for the header
    flops: int | None = None  # FLOPs of one call of the measured workload; None when given


@dataclass
class Settings:
    machine: str
    sizes: Sizes
    threads: int
    ceiling: Ceiling
    repeats: int
    warmup: int
    num_train: int
    image_size: int
    when: str


def median_times(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, run in turn (interleaved) ``repeats`` times after ``warmup`` turns."""
    return {k: statistics.median(v) for k, v in timings(fns, warmup, repeats).items()}


def timings(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each call of each function, run in turn (interleaved) ``repeats`` times after ``warmup`` turns."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for k, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    finally:
        if enabled:
            gc.enable()
    return times


def loader_images_s(work: workloads.MethodWorkload, size: Sizes, warmup: int, repeats: int) -> float:
    """Median images/s of the engine's DataLoader alone (the method's transform + collate), first batch untimed."""
    n = workloads.loader_batches(work.dataset, size)
    rates = []
    for epoch in range(1, warmup + repeats + 1):
        it = workloads.start_loader(work.dataset, size, epoch)
        t = time.perf_counter()
        workloads.take(it, n)
        rates.append(n * size.batch / (time.perf_counter() - t))
        del it
    return statistics.median(rates[warmup:])


def measure_method(
    name: str, size: Sizes, splits: Splits, warmup: int, repeats: int, ceiling: workloads.ConvCeiling | None
) -> tuple[MethodResult, list[float]]:
    """The method's result, and the seconds of the ceiling's calls interleaved with its step and backbone passes."""
    work = workloads.method_workload(name, size, splits)
    fns: dict[str, Callable[[], object]] = {"step": work.step, "backbone": work.backbone_passes}
    if ceiling is not None:
        fns["ceiling"] = ceiling.step
    times = timings(fns, warmup, repeats)
    step_flops = workloads.count_flops(work.step)
    backbone_flops = workloads.count_flops(work.backbone_passes)
    loader = loader_images_s(work, size, min(warmup, 1), repeats)
    step_s, backbone_s = statistics.median(times["step"]), statistics.median(times["backbone"])
    result = MethodResult(name, work.passes, work.images, step_s, backbone_s, step_flops, backbone_flops, loader)
    return result, times.get("ceiling", [])


def measured_ceiling(work: workloads.ConvCeiling, seconds: list[float], size: Sizes) -> Ceiling:
    """GFLOP/s of the ceiling workload: FLOPs of one call (FlopCounterMode) / the median of its interleaved calls."""
    flops, median = workloads.count_flops(work.step), statistics.median(seconds)
    how = (
        f"measured in this run: {work.describe}, forward + backward, {precision_label(size)}, {memory_label(size)}; "
        f"{flops / 1e9:,.1f} GFLOP per call (FlopCounterMode), median {ms(median)} ms of {len(seconds)} calls "
        "interleaved with the steps"
    )
    return Ceiling(flops / median / 1e9, how, flops)


def measure_nce(size: Sizes, warmup: int, repeats: int) -> NCEResult:
    work = workloads.nce_workload(size)
    fits, note = workloads.per_sample_fits(work)
    fns: dict[str, Callable[[], object]] = {"matmul": work.matmul, "shared": lambda: work.step(shared=True)}
    if fits:
        fns["per_sample"] = lambda: work.step(shared=False)
    times = median_times(fns, warmup, repeats)
    return NCEResult(
        size.nce_batch, size.bank, size.negatives, times["matmul"], times["shared"], times.get("per_sample"), note
    )


@functools.cache
def cpuinfo() -> tuple[str, frozenset[tuple[str, str]], frozenset[str]]:
    """/proc/cpuinfo read once: (model name, {(physical id, core id)}, the first CPU's flags); what is missing stays
    empty (the model: platform.processor())."""
    model, cores, flags, physical_id = platform.processor() or "unknown CPU", set(), frozenset(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "model name":
                model = value
            elif key == "physical id":
                physical_id = value
            elif key == "core id":
                cores.add((physical_id, value))
            elif key == "flags" and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    return model, frozenset(cores), flags


def cpu_flags() -> set[str]:
    """The first CPU's flags in /proc/cpuinfo (empty where there is none)."""
    return set(cpuinfo()[2])


def machine() -> str:
    """CPU model, cores, the ISA flags convolutions run on (present and missing), torch's vector ISA, threads."""
    model, cores, flags = cpuinfo()
    logical = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return (
        f"{model}; {len(cores) or logical} physical cores, {logical} logical CPUs ({usable} usable); "
        f"{isa_flags(flags)}; ATen CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"torch {torch.__version__}, {_threads(torch.get_num_threads())}"
    )


def isa_flags(flags: set[str]) -> str:
    """Which of ISA_FLAGS /proc/cpuinfo lists, e.g. "ISA avx2, avx512f (no avx512_bf16, amx_tile, amx_bf16)"."""
    if not flags:
        return "ISA flags unknown (no /proc/cpuinfo)"
    have = [f for f in ISA_FLAGS if f in flags]
    lack = [f for f in ISA_FLAGS if f not in flags]
    return f"ISA {', '.join(have) or 'none of ' + ', '.join(ISA_FLAGS)}" + (f" (no {', '.join(lack)})" if lack else "")


def precision_label(size: Sizes) -> str:
    return "bf16 autocast" if size.precision == "bf16" else "fp32"


def memory_label(size: Sizes) -> str:
    return "channels_last" if size.channels_last else "contiguous (NCHW)"


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def ms(seconds: float) -> str:
    v = seconds * 1e3
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


class Verdicts:
    """The pass/fail cells of the report, counted for its last line."""

    def __init__(self) -> None:
        self.results: list[bool] = []

    def __call__(self, ok: bool) -> str:
        self.results.append(ok)
        return "PASS" if ok else "**FAIL**"

    def summary(self) -> str:
        return f"{sum(self.results)} of {len(self.results)} targets met."


def table(title: str, header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """Markdown lines: a blank line, the title, a blank line, the table (``align``: one l or r per column)."""
    rule = "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|"
    return ["", title, "", "| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows]


def render(settings: Settings, methods: list[MethodResult], nce: NCEResult | None) -> str:
    """The markdown report: a header, then tables (a)-(d), each row with its target and pass/fail."""
    s, ceiling, verdict = settings.sizes, settings.ceiling.gflops, Verdicts()
    out = [
        f"Measured {settings.when}.",
        "",
        f"- Machine: {settings.machine}.",
        f"- Steps: `{s.backbone}`, {settings.image_size} px, batch {s.batch}, {precision_label(s)}, {memory_label(s)}; "
        f"each method with its paper defaults on the ci preset's synthetic data (N = {settings.num_train:,}; "
        f"NPID++/PIRL cap K at N - 1). Median of {settings.repeats} runs after {settings.warmup} warm-up, interleaved.",
    ]
    if s.precision_note:
        out.append(f"- Precision: {s.precision_note}.")
    out.append(f"- Convolution ceiling: {ceiling:,.0f} GFLOP/s, {settings.ceiling.how}.")
    if s.small:
        out += ["", "**Smoke sizes (`--small`): these numbers say nothing about the targets.**"]

    rows = []
    for m in methods:
        ratio = m.step_s / m.backbone_s
        rows.append(
            [
                m.name,
                m.passes,
                ms(m.step_s),
                ms(m.backbone_s),
                f"{ratio:.2f}",
                f"<= {STEP_TARGET}",
                verdict(ratio <= STEP_TARGET),
            ]
        )
    out += table(
        "(a) Training step (engine `Trainer.step`: forward, backward, SGD) / bare backbone forward + backward on the "
        "same tensors",
        ["method", "backbone passes", "step ms", "backbone ms", "step / backbone", "target", ""],
        "llrrrll",
        rows,
    )

    rows = []
    if settings.ceiling.flops is not None:
        rows.append(
            ["3x3 conv (ceiling)", f"{settings.ceiling.flops / 1e9:,.1f}", f"{ceiling:,.0f}", "100%", "", "", "", ""]
        )
    for m in methods:
        step, bare = m.step_flops / m.step_s / 1e9, m.backbone_flops / m.backbone_s / 1e9  # GFLOP/s
        judged = (
            [f">= {CEILING_TARGET:.0%}", verdict(step / ceiling >= CEILING_TARGET)]
            if m.name in FULL_IMAGE
            else ["reported¹", ""]
        )
        rows.append(
            [
                m.name,
                f"{m.step_flops / 1e9:,.1f}",
                f"{step:,.0f}",
                f"{step / ceiling:.0%}",
                f"{bare:,.0f}",
                f"{bare / ceiling:.0%}",
                *judged,
            ]
        )
    out += table(
        f"(b) Achieved GFLOP/s (FlopCounterMode on one step) / the convolution ceiling, {ceiling:,.0f} GFLOP/s "
        f"({'measured' if settings.ceiling.flops is not None else 'given'}, {precision_label(s)}, "
        f"{_threads(settings.threads)})",
        ["method", "GFLOP / step", "step GFLOP/s", "of ceiling", "backbone GFLOP/s", "of ceiling", "target", ""],
        "lrrrrrll",
        rows,
    )
    out += [
        "",
        "¹ Jigsaw and PIRL put 9 small tiles per image through the backbone (8-9 px at 32 px images): small "
        "convolutions that cannot fill the machine; the figure is reported, not judged.",
    ]

    if nce is not None:
        shared = nce.shared_s / nce.matmul_s
        per_sample = (
            [ms(nce.per_sample_s), f"{nce.per_sample_s / nce.matmul_s:.0f}"]
            if nce.per_sample_s is not None
            else [nce.note, ""]
        )
        rows = [
            [f"one ({nce.batch} x 128) @ (128 x {nce.k:,}) matmul", ms(nce.matmul_s), "1.00", "floor", ""],
            [
                "shared negatives (default)",
                ms(nce.shared_s),
                f"{shared:.1f}",
                f"<= {NCE_TARGET:g}",
                verdict(shared <= NCE_TARGET),
            ],
            ["per-sample negatives (paper)", *per_sample, "reference", ""],
        ]
        out += table(
            f"(c) NCE part of an NPID++ step: N = {nce.bank:,} x 128, B = {nce.batch}, K = {nce.k:,}, float32 (draw, "
            "gather, scores, NCE forward + backward, bank update)",
            ["", "ms", "/ matmul", "target", ""],
            "lrrll",
            rows,
        )

    rows = []
    for m in methods:
        ratio = m.loader_images_s / m.step_images_s
        rows.append(
            [
                m.name,
                f"{m.loader_images_s:,.0f}",
                f"{m.step_images_s:,.0f}",
                f"{ratio:.2f}",
                f">= {LOADER_TARGET:g}",
                verdict(ratio >= LOADER_TARGET),
            ]
        )
    out += table(
        f"(d) Data loader alone (method transform + collate, engine DataLoader, {s.workers} workers) / training step",
        ["method", "loader images/s", "step images/s", "loader / step", "target", ""],
        "lrrrll",
        rows,
    )
    return "\n".join(out + ["", verdict.summary()])


def cpu_kind(flags: set[str] | None = None) -> str:
    """The key of this machine's tables: the vector ISA torch's CPU kernels run on ("avx512", "avx2"), with "-amx"
    where the CPU has AMX tiles, which make bf16 convolutions several times faster (the Intel Xeons met so far; the
    AMD EPYCs with AVX-512 BF16 have none)."""
    flags = cpu_flags() if flags is None else flags
    return torch.backends.cpu.get_cpu_capability().lower() + ("-amx" if "amx_tile" in flags else "")


def markers(begin: str, end: str, kind: str | None = None) -> tuple[str, str]:
    """``begin``/``end`` keyed by CPU kind ("<!-- table -->" -> "<!-- table avx2 -->"): each kind of machine writes
    its own table and leaves the others' (machines differ from session to session; issue 19 point 3)."""
    kind = kind or cpu_kind()
    return begin.replace(" -->", f" {kind} -->"), end.replace(" -->", f" {kind} -->")


def write_between_markers(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what stands between ``begin`` and ``end`` in ``path`` by ``text``."""
    doc = path.read_text()
    start, stop = doc.find(begin), doc.find(end)
    if start < 0 or stop < start:
        raise SystemExit(
            f"{path}: no {begin} ... {end} markers to write the table between; add the two lines where this "
            "machine's table should go (beside the other kinds' tables) and run again"
        )
    path.write_text(doc[: start + len(begin)] + "\n" + text.strip() + "\n" + doc[stop:])


def write_for_this_cpu(path: Path, text: str, begin: str = BEGIN, end: str = END) -> str:
    """``write_between_markers`` into this machine's kind's markers (``markers``); returns the kind."""
    kind = cpu_kind()
    write_between_markers(path, text, *markers(begin, end, kind))
    return kind


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--small", action="store_true", default=None, help="smoke sizes (as SSL_BENCH_BENCH_SMALL=1)")
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="as train.precision (default auto: bf16 autocast where the CPU runs bf16 natively, else fp32; bf16 "
        "falls back to fp32 on a CPU without native bf16)",
    )
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on")
    p.add_argument("--batch", type=int, help="images per training step (default 128; --small 16)")
    p.add_argument("--k", type=int, help="NCE negatives (default 32,000; --small 1,000)")
    p.add_argument("--bank", type=int, help="NCE memory-bank slots (default 1,281,167; --small 10,000)")
    p.add_argument("--nce-batch", type=int, help="NCE samples per step (default 256; --small 16)")
    p.add_argument("--workers", type=int, help="DataLoader workers for (d) (default 0, the ci preset's)")
    p.add_argument(
        "--ceiling-gflops",
        type=float,
        help="convolution ceiling to judge (b) against, instead of measuring it (a 3x3 convolution in this run)",
    )
    p.add_argument("--repeats", type=int, help="timed runs per measurement, median taken (default 10; --small 3)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default 2; --small 1)")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's, i.e. OMP_NUM_THREADS or cores)"
    )
    p.add_argument("--methods", default=",".join(METHOD_NAMES), help="comma-separated subset of the methods")
    p.add_argument("--no-nce", action="store_true", help="skip (c)")
    p.add_argument("--write", action="store_true", help=f"also write the table into {README.name} between the markers")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = workloads.sizes(
        small=args.small,
        precision=args.precision,
        channels_last=args.channels_last,
        batch=args.batch,
        negatives=args.k,
        bank=args.bank,
        nce_batch=args.nce_batch,
        workers=args.workers,
    )
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = sorted(set(names) - set(METHOD_NAMES))
    if unknown or not names:
        raise SystemExit(f"--methods: unknown {unknown or 'none named'}; valid: {', '.join(METHOD_NAMES)}")
    repeats = args.repeats or (3 if size.small else 10)
    warmup = args.warmup if args.warmup is not None else (1 if size.small else 2)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"sizes: {size}")
    log(f"precision: {size.precision_note}")
    splits = workloads.ci_splits()
    ceiling_work = None if args.ceiling_gflops else workloads.conv_ceiling(size)
    if ceiling_work is not None:
        log(f"convolution ceiling: {ceiling_work.describe}, interleaved with each method's runs")
    results, ceiling_s = [], []
    for name in names:
        log(f"{name}: step, backbone passes, FLOPs, loader ...")
        result, seconds = measure_method(name, size, splits, warmup, repeats, ceiling_work)
        results.append(result)
        ceiling_s += seconds
        gc.collect()
    ceiling = (
        Ceiling(args.ceiling_gflops, "given (--ceiling-gflops)")
        if ceiling_work is None
        else measured_ceiling(ceiling_work, ceiling_s, size)
    )
    nce = None
    if not args.no_nce:
        log(f"NCE: bank {size.bank:,} x 128, B = {size.nce_batch}, K = {size.negatives:,} ...")
        nce = measure_nce(size, warmup, repeats)
    settings = Settings(
        machine(),
        size,
        torch.get_num_threads(),
        ceiling,
        repeats,
        warmup,
        splits.info.num_train,
        splits.info.image_size,
        datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    text = render(settings, results, nce)
    print(text)
    if args.write:
        log(f"written into {README} ({write_for_this_cpu(README, text)} table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
