"""The workloads that the speed benchmarks time. ``test_speed.py`` (pytest-benchmark) and ``ratios.py`` (one run,
one table) both use them, so the two measure the same code.

* A method's training step, exactly as training runs it: ``Trainer.step`` (the batch moved and converted to
  channels_last, bf16 autocast or fp32, forward, backward, SGD step) on one batch of the real loader.
* The bare backbone passes that step needs, on the same tensors: forward + backward of the backbone alone on
  B images (supervised, autoencoder, NPID++), 4B rotated images (RotNet, all_rotations=True, the paper's
  default), 9B tiles (Jigsaw), B images + 9B tiles (PIRL).
* The NCE part of an NPID++ step at ImageNet scale (N = 1,281,167 slots of 128-d, B = 256, K = 32,000):
  shared or per-sample negatives, and one (B x 128) @ (128 x K) matmul as the floor.
* The data loader alone: the method's transform + collate through the engine's DataLoader.
* The convolution ceiling: one large 3x3 convolution, forward + backward, at the steps' precision and memory format,
  measured in the same run as the steps it judges (``conv_ceiling``).

Methods use their papers' defaults on the ``ci`` preset's synthetic data (2,000 images of 32 px, so NPID++ and
PIRL cap K at N - 1 = 1,999 in the step; the ImageNet-scale NCE is measured on its own).
Sizes come from ``Sizes``; environment variables (``SSL_BENCH_BENCH_*``, see ``ENV``) shrink them for smoke runs.
The precision is the engine's: bf16 autocast only where ``train.precision=auto`` would use it (``resolve_precision``),
fp32 elsewhere. ``configured_workload`` builds a method's step from a run's config instead (``unit_time.py``).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError, TrainConfig
from ssl_bench.data.batch import Batch
from ssl_bench.data.device_augment import to_device
from ssl_bench.data.registry import load_dataset
from ssl_bench.data.types import Indexed, Splits
from ssl_bench.engine import Trainer, autocast_dtype, make_loader, steps_per_epoch, training_views
from ssl_bench.methods import Method, MethodConfig, get_method
from ssl_bench.modules.memory_bank import MemoryBank
from ssl_bench.modules.nce import NCELoss
from ssl_bench.run_config import load

METHOD_NAMES = ("supervised", "autoencoder", "rotnet", "jigsaw", "npidpp", "pirl")
FULL_IMAGE = ("supervised", "autoencoder", "rotnet", "npidpp")  # judged against the convolution ceiling
IMAGENET_TRAIN = 1_281_167
EMBEDDING_DIM = 128
TEMPERATURE = 0.07


@dataclass(frozen=True)
class Sizes:
    backbone: str = "resnet18-smallstem"
    batch: int = 128  # images per training step (the ci data is 32 px)
    bank: int = IMAGENET_TRAIN  # NCE: memory-bank slots
    nce_batch: int = 256  # NCE: samples per step
    negatives: int = 32_000  # NCE: K
    precision: str = "auto"  # auto | bf16 | fp32, as train.precision; sizes() resolves it to what runs: bf16 | fp32
    precision_note: str = ""  # how sizes() resolved it (resolve_precision)
    channels_last: bool = True
    workers: int = 0  # DataLoader workers (the ci preset's data.num_workers)
    loader_batches: int = 8  # batches per timed loader round
    ceiling_channels: int = 256  # the convolution ceiling: a 3x3 convolution, this many channels in and out,
    ceiling_map: int = 28  # on maps of this many px square,
    ceiling_call_s: float = 0.1  # with the batch whose forward + backward takes about this long (conv_ceiling)
    small: bool = False  # the smoke-run sizes: numbers say nothing about the targets


SMALL = Sizes(
    "resnet18-smallstem-w0.25",
    batch=16,
    bank=10_000,
    nce_batch=16,
    negatives=1000,
    ceiling_channels=64,
    ceiling_map=14,
    ceiling_call_s=0.005,
    small=True,
)

ENV = {  # variable -> Sizes field; SSL_BENCH_BENCH_SMALL=1 starts from SMALL instead of the full sizes
    "SSL_BENCH_BENCH_BACKBONE": "backbone",
    "SSL_BENCH_BENCH_BATCH": "batch",
    "SSL_BENCH_BENCH_BANK": "bank",
    "SSL_BENCH_BENCH_NCE_BATCH": "nce_batch",
    "SSL_BENCH_BENCH_K": "negatives",
    "SSL_BENCH_BENCH_PRECISION": "precision",
    "SSL_BENCH_BENCH_CHANNELS_LAST": "channels_last",
    "SSL_BENCH_BENCH_WORKERS": "workers",
    "SSL_BENCH_BENCH_LOADER_BATCHES": "loader_batches",
}


def _flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: expected 1 or 0")


def sizes(small: bool | None = None, **overrides: Any) -> Sizes:
    """SMALL or the full sizes, then the ``SSL_BENCH_BENCH_*`` variables, then ``overrides`` (None = not given)."""
    small = _flag(os.environ.get("SSL_BENCH_BENCH_SMALL", ""), "SSL_BENCH_BENCH_SMALL") if small is None else small
    types = {f.name: f.type for f in fields(Sizes)}
    values: dict[str, Any] = {}
    for var, name in ENV.items():
        if var in os.environ:
            raw = os.environ[var]
            kind = types[name]
            try:
                values[name] = _flag(raw, var) if kind == "bool" else int(raw) if kind == "int" else raw
            except ValueError:
                raise ConfigError(f"{var}={raw!r}: expected an integer") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    out = replace(SMALL if small else Sizes(), **values)
    if out.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"precision {out.precision!r}: choose auto, bf16 or fp32")
    used, note = resolve_precision(out.precision)
    out = replace(out, precision=used, precision_note=note)
    if not 1 <= out.negatives <= out.bank - 1:
        raise ConfigError(f"K = {out.negatives} negatives need a bank of more than K slots, got {out.bank}")
    if min(out.batch, out.nce_batch, out.loader_batches) < 1 or out.nce_batch > out.bank:
        raise ConfigError(f"batch sizes must be >= 1 and nce_batch <= bank: {out}")
    return out


def bf16_supported() -> bool:
    """Whether the engine's ``train.precision=auto`` runs bf16 on this CPU (oneDNN with AVX-512 BF16 or AMX)."""
    return autocast_dtype("auto", torch.device("cpu")) is not None


def resolve_precision(asked: str) -> tuple[str, str]:
    """What the steps run (bf16 | fp32) and why: bf16 only where the engine's ``auto`` would use it; elsewhere fp32,
    even when bf16 is asked for (it would be emulated: slow, and no measure of the machine)."""
    if asked == "fp32":
        return "fp32", "fp32 as asked"
    if bf16_supported():
        return "bf16", f"{asked}: bf16, which oneDNN runs natively on this CPU"
    lacks = "this CPU has no native bf16 (no AVX-512 BF16 or AMX for oneDNN)"
    if asked == "auto":
        return "fp32", f"auto: fp32, since {lacks}"
    return "fp32", f"bf16 asked for, but {lacks}: fp32 instead"


def cache_root() -> Path:
    """Where the benchmark data is generated once: ``$SSL_BENCH_CACHE/benchmarks`` or ``~/.cache/ssl_bench/benchmarks``."""
    root = os.environ.get("SSL_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "ssl_bench") / "benchmarks"


def ci_splits() -> Splits:
    """The ci preset's dataset (synthetic, 2,000 train images of 32 px), as ``ssl-bench run --preset ci`` loads it."""
    cfg = load("ci", None)
    return load_dataset(cfg.data, cache_root())


def _backbone_inputs(name: str, views: dict[str, Tensor]) -> list[Tensor]:
    """The tensors the method's step sends through the backbone, in the step's order."""
    if name == "rotnet":
        return [views["rotations"].flatten(0, 1)]  # (B*R, C, H, W)
    if name == "jigsaw":
        return [views["tiles"].flatten(0, 1)]  # (B*9, C, t, t)
    if name == "pirl":
        return [views["image"], views["tiles"].flatten(0, 1)]
    return [views["image"]]


@dataclass
class MethodWorkload:
    """One method, its engine (trainer + SGD) and one loader batch; ``step`` and ``backbone_passes`` time it."""

    name: str
    method: Method
    trainer: Trainer
    optimizer: torch.optim.Optimizer
    batch: Batch  # as the DataLoader hands it to the engine (CPU, contiguous)
    inputs: list[Tensor]  # the backbone's inputs inside the step: on the device, in the step's memory format
    dataset: Indexed  # the training set with this method's transform

    @property
    def images(self) -> int:
        return len(self.batch)

    @property
    def passes(self) -> str:
        """What the bare backbone sees, e.g. "512 x 32px (4 rotations)" or "128 x 32px + 1152 x 8px"."""
        text = " + ".join(f"{x.shape[0]} x {x.shape[-1]}px" for x in self.inputs)
        if self.name == "rotnet":
            text += f" (all_rotations={self.method.cfg.all_rotations})"
        return text

    def step(self) -> None:
        """The engine's training step: batch to device (+ channels_last), autocast forward, backward, SGD step."""
        self.trainer.step(self.batch, self.optimizer, 0, 0)

    def backbone_passes(self) -> None:
        """Forward + backward of the bare backbone on the step's backbone inputs, under the step's autocast."""
        self.method.zero_grad(set_to_none=True)  # as the step does: fresh gradient tensors
        backbone = self.method.backbone
        features = backbone.forward_map if self.name == "autoencoder" else backbone  # the autoencoder decodes the map
        dtype = self.trainer.dtype
        with torch.autocast(self.trainer.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = sum(features(x).float().sum() for x in self.inputs)
        loss.backward()


def method_workload(name: str, size: Sizes, splits: Splits, device: torch.device | str = "cpu") -> MethodWorkload:
    """``name`` with its paper defaults and ``size``'s backbone, batch, precision and memory format (``ratios.py``)."""
    train = TrainConfig(batch_size=size.batch, precision=size.precision, channels_last=size.channels_last)
    return configured_workload(name, get_method(name).Config(), size.backbone, train, splits, device)


def configured_workload(
    name: str,
    method_cfg: MethodConfig,
    backbone: str,
    train: TrainConfig,
    splits: Splits,
    device: torch.device | str = "cpu",
) -> MethodWorkload:
    """``name`` with ``method_cfg`` on a fresh ``backbone`` (a spec such as "resnet18-smallstem-w0.25"), trained as
    ``train`` says (batch, precision, memory format, rate), set up as ``Trainer.fit`` sets it up, and one batch of the
    engine's loader from the images the runner pretrains it on (the labelled train split for supervised methods, else
    the pretraining split). A run's resolved config gives the same step as that run's (``unit_time.py``)."""
    device = torch.device(device)
    torch.manual_seed(0)
    cls = get_method(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NPID++/PIRL: K = 32,000 capped at N - 1 on the ci data
        method = cls(Backbone(backbone), method_cfg, splits.info)
    method.to(device).train()
    if train.channels_last:
        method.to(memory_format=torch.channels_last)
    trainer = Trainer(method, train, device, Path(tempfile.gettempdir()) / "ssl-bench-speed", seed=0)
    trainer.model = method  # what fit() sets (no DistributedDataParallel here)
    dataset = Indexed(splits.train if cls.needs_labels else splits.pretraining(), training_views(method, train, device))
    optimizer, _ = trainer.optimizer(steps_per_epoch(len(dataset), train.batch_size))  # the schedule is not stepped
    batch = next(iter(make_loader(dataset, train.batch_size, 0, seed=0, epoch=0, device=device)))
    inputs = _backbone_inputs(name, to_device(batch, device, channels_last=train.channels_last).views)
    return MethodWorkload(name, method, trainer, optimizer, batch, inputs, dataset)


@dataclass
class ConvCeiling:
    """The convolution ceiling: one large 3x3 convolution, forward + backward (gradients of input and weight), at the
    steps' precision and memory format. Compute bound, so its GFLOP/s is about the best the machine's convolutions
    reach with these threads; the steps' GFLOP/s are judged against it."""

    conv: nn.Conv2d  # C -> C channels, 3x3, padding 1, no bias
    x: Tensor  # (N, C, H, W) leaf, already in the compute dtype: no cast is timed
    grad: Tensor  # (N, C, H, W) the output's gradient, same dtype and memory format
    dtype: torch.dtype | None  # autocast dtype; None = fp32

    @property
    def describe(self) -> str:
        n, c, h, w = self.x.shape
        return f"3x3 conv {c} -> {c} channels on {h} x {w} maps, batch {n}"

    @property
    def flops(self) -> int:
        """2·N·C_out·H·W·C_in·k² for the forward pass, twice that for the backward (input and weight gradients)."""
        n, c, h, w = self.x.shape
        k = self.conv.kernel_size[0]
        return 3 * 2 * n * self.conv.out_channels * h * w * c * k * k

    def step(self) -> None:
        self.conv.weight.grad = None
        self.x.grad = None
        with torch.autocast(self.x.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            y = self.conv(self.x)  # (N, C, H, W)
        y.backward(self.grad)


def conv_ceiling(
    size: Sizes, batch: int | None = None, device: torch.device | str = "cpu", max_batch: int = 512
) -> ConvCeiling:
    """The ceiling workload at ``size``'s precision and memory format. ``batch`` None: the power of two (at most
    ``max_batch``) whose call takes about ``size.ceiling_call_s`` here, from the faster of two timed calls at batch 4
    after one untimed (oneDNN builds its kernels on the first)."""
    if batch is None:
        probe = _ceiling(size, 4, torch.device(device))
        probe.step()
        seconds = min(_seconds(probe.step) for _ in range(2))
        batch = min(max_batch, 2 ** max(0, round(math.log2(4 * size.ceiling_call_s / seconds))))
    return _ceiling(size, batch, torch.device(device))


def _ceiling(size: Sizes, batch: int, device: torch.device) -> ConvCeiling:
    g = torch.Generator().manual_seed(0)
    c, hw = size.ceiling_channels, size.ceiling_map
    dtype = autocast_dtype(size.precision, device)
    memory = torch.channels_last if size.channels_last else torch.contiguous_format
    conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(device, memory_format=memory)

    def tensor() -> Tensor:
        t = torch.randn(batch, c, hw, hw, generator=g).to(device, dtype or torch.float32)
        return t.contiguous(memory_format=memory)

    return ConvCeiling(conv, tensor().requires_grad_(), tensor(), dtype)


def _seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def loader_batches(dataset: Indexed, size: Sizes) -> int:
    """Batches per timed round: ``size.loader_batches``, at most one epoch less the untimed first batch."""
    n = min(size.loader_batches, len(dataset) // size.batch - 1)
    if n < 1:
        raise ConfigError(f"the loader benchmark needs at least 2 batches of {size.batch} in {len(dataset)} images")
    return n


def start_loader(dataset: Indexed, size: Sizes, epoch: int) -> Iterator[Batch]:
    """The engine's DataLoader for ``epoch``, its first batch already taken (worker start-up is not timed)."""
    it = iter(make_loader(dataset, size.batch, size.workers, seed=0, epoch=epoch, device=torch.device("cpu")))
    next(it)
    return it


def take(it: Iterator[Batch], n: int) -> None:
    """Pull ``n`` batches: what the timed loader round does."""
    for _ in range(n):
        next(it)


@dataclass
class NCEWorkload:
    """The NCE part of an NPID++ step (NPIDpp.training_step after the head) on a bank of ``size.bank`` slots."""

    bank: MemoryBank
    criterion: NCELoss
    x: Tensor  # (B, 128) leaf, the head's output before normalisation
    index: Tensor  # (B,) distinct slots
    k: int
    w: Tensor  # (128, K) contiguous: the floor's right operand
    out: Tensor  # (B, K)

    @property
    def per_sample_bytes(self) -> int:
        return self.index.numel() * self.k * EMBEDDING_DIM * 4  # the (B*K, 128) float32 gather buffer

    def step(self, shared: bool) -> None:
        """Draw + gather negatives, positive and negative scores, NCE forward + backward, bank update."""
        self.x.grad = None
        f = F.normalize(self.x, dim=1)  # (B, 128)
        negatives = self.bank.negatives(self.index, self.k, shared=shared)
        pos = self.bank.positive_scores(f, self.index)  # (B,)
        neg = negatives.scores(f)  # (B, K)
        self.criterion.update_z(pos, neg)  # as the methods do: Z from the first batch, then fixed (or EMA)
        loss = self.criterion(pos, neg)
        loss.backward()
        self.bank.update(self.index, f.detach())

    def matmul(self) -> None:
        """One (B x 128) @ (128 x K) float32 matmul into a preallocated output: the floor of any NCE step."""
        torch.mm(self.x.detach(), self.w, out=self.out)


def nce_workload(size: Sizes) -> NCEWorkload:
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(size.bank, EMBEDDING_DIM, momentum=0.5, generator=g)  # 0.66 GB at ImageNet scale
    index = torch.randperm(size.bank, generator=g)[: size.nce_batch]
    x = torch.randn(size.nce_batch, EMBEDDING_DIM, generator=g).requires_grad_()
    w = bank.memory[: size.negatives].T.contiguous()
    out = torch.empty(size.nce_batch, size.negatives)
    return NCEWorkload(bank, NCELoss(size.bank, TEMPERATURE), x, index, size.negatives, w, out)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def per_sample_fits(work: NCEWorkload) -> tuple[bool, str]:
    """Whether the per-sample gather buffer fits in 80% of the available memory, and a note if it does not."""
    free = available_bytes()
    need = work.per_sample_bytes
    if free is None or need <= 0.8 * free:
        return True, ""
    return False, f"skipped: the per-sample gather needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB available (lower K)"


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (forward and backward matmuls/convolutions, as torch.utils.flop_counter counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
