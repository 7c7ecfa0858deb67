"""The training loop every method shares: SGD with momentum, warm-up + cosine schedule, checkpoints, seeds.

One schedule for every method, PIRL's cosine, so that the methods differ only in their pretext task; the references
of Jigsaw, RotNet and supervised training use step schedules (FIDELITY.md).

The method only computes a loss (``training_step``); the engine owns the optimiser, the schedule, mixed
precision, the data order and the checkpoints.

Resume is exact. Everything random is a function of (seed, epoch, step or sample index): the data order of an
epoch is a permutation drawn from (seed, epoch); each sample's augmentation is drawn from its own generator
seeded by (seed, epoch, index), so it does not depend on the number of workers or on where a run was
interrupted; the global generator used inside ``training_step`` (negatives, random rotations) is saved in
the checkpoint. A checkpoint (model, optimiser, scheduler, memory bank and other method buffers, RNG state,
position in the epoch, running loss sums) is written at the end of every epoch, every ``checkpoint.minutes``
(and every ``checkpoint.every_steps`` steps if set), and on Ctrl-C / SIGTERM, by ``ssl_bench.checkpointer``.
A run killed at any point and started again continues from its last checkpoint and ends with the same weights
as an uninterrupted run (bit for bit on CPU in fp32 with ``train.deterministic``).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ssl_bench import distributed, faults
from ssl_bench.checkpointer import Checkpointer
from ssl_bench.config import CheckpointConfig, ConfigError, TrainConfig
from ssl_bench.data import device_augment
from ssl_bench.data.batch import Batch, collate
from ssl_bench.data.types import Indexed
from ssl_bench.methods.base import Method
from ssl_bench.metrics_log import MetricsLog

if TYPE_CHECKING:
    from ssl_bench.monitor import Monitor

FINAL_LR_RATIO = 1e-3  # PIRL: cosine from 0.12 down to 1.2e-4


class NonFiniteLoss(RuntimeError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Optimisation:
    lr: float  # peak rate at the actual batch size
    weight_decay: float
    momentum: float
    nesterov: bool = False


def optimisation(method: Method, train: TrainConfig) -> Optimisation:
    """Rate, weight decay and momentum: ``train``'s as resolved for the method (``TrainConfig.resolved``: the paper
    rate, given at batch 256, scaled linearly to the batch, unless the run sets one). A run's units arrive resolved;
    this fills them in only for a Trainer built by hand (tests, benchmarks)."""
    train = train.resolved(method.cfg)
    return Optimisation(train.lr, train.weight_decay, method.cfg.momentum, method.cfg.nesterov)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation parameters (1-d tensors) are excluded.

    VISSL does not decay BN either (``regularize_bn: False``) but decays biases in most of its configs; a ResNet's convs
    have no bias, so only the heads' few biases differ (FIDELITY.md)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then half-cosine from 1 to FINAL_LR_RATIO."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return FINAL_LR_RATIO + (1 - FINAL_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware runs it fast (CPUs with AVX-512 BF16/AMX, CUDA with bf16), else fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        # native bf16 on *this* device (Ampere, compute capability 8, and later; ROCm): torch.cuda.is_bf16_supported()
        # asks the current device, not the run's, and by default also counts bf16 emulated in fp32, which is slower
        native = torch.version.hip is not None or torch.cuda.get_device_capability(device)[0] >= 8
        return torch.bfloat16 if native else None
    return (
        torch.bfloat16
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        else None
    )


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


class EpochOrder(Sampler[tuple[int, int]]):
    """The sample order of one epoch, a permutation drawn from (seed, epoch), starting after ``skip`` batches.

    Yields (epoch seed, index) pairs: the epoch's seed travels with each index to whichever worker makes the sample
    (``Indexed``), so workers kept alive across epochs (persistent_workers) make the same views as fresh ones.
    ``set_epoch`` moves it to another epoch.

    With ``world`` > 1 processes (DistributedSampler's job, done so that resume and world size do not change the
    data): global batch b is perm[b·B : (b+1)·B]; rank r takes its r-th slice of B / world samples, so the ranks
    together see exactly the batches one process would; an incomplete last global batch is dropped.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, epoch: int, skip: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.set_epoch(epoch, skip)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch_seed = epoch_seed(self.seed, epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch_seed))
        if self.world > 1:
            local, steps = self.batch_size // self.world, self.n // self.batch_size
            perm = perm[: steps * self.batch_size].view(steps, self.world, local)[:, self.rank].reshape(-1)
            self.order = perm[skip * local :].tolist()
        else:
            self.order = perm[skip * self.batch_size :].tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch_seed, i) for i in self.order)


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return n // batch_size if drop_last(n, batch_size, world) else math.ceil(n / batch_size)


def drop_last(n: int, batch_size: int, world: int = 1) -> bool:
    return world > 1 or n >= 2 * batch_size


class EpochLoader:
    """One DataLoader for a whole training run: ``epoch(e, skip)`` gives this process's batches of epoch ``e`` from
    (global) batch ``skip`` on; ``batch_size`` is the global batch. Its workers stay alive between epochs
    (persistent_workers), and pinned memory is used on CUDA.

    Each sample's augmentation is seeded by (seed, epoch, index), whatever process or worker makes it.
    """

    def __init__(self, dataset: Indexed, batch_size: int, workers: int, seed: int, device: torch.device) -> None:
        rank, world = distributed.rank(), distributed.world()
        if batch_size % world:
            raise ConfigError(
                f"train.batch_size={batch_size} is the global batch and must divide among the {world} "
                f"processes; use a multiple of {world}"
            )
        self.order = EpochOrder(len(dataset), batch_size, seed, 0, 0, rank, world)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size // world,
            sampler=self.order,
            drop_last=drop_last(len(dataset), batch_size, world),
            collate_fn=collate,
            num_workers=workers,
            generator=torch.Generator().manual_seed(epoch_seed(seed, 0)),  # worker seeds; views are seeded per sample
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def epoch(self, epoch: int, skip: int = 0) -> DataLoader:
        self.order.set_epoch(epoch, skip)
        return self.loader


def training_views(method: Method, train: TrainConfig, device: torch.device) -> Callable[[Any], dict[str, Any]]:
    """The method's per-sample view maker for training: with ``train.device_augment`` on for ``device``, the one that
    leaves its colour to the device (``transform(device_colour=True)``; ``data.device_augment``) where the method
    offers it, else its plain one."""
    offered = "device_colour" in inspect.signature(method.transform).parameters
    if offered and device_augment.enabled(train.device_augment, device):
        return method.transform(device_colour=True)
    return method.transform()


def make_loader(
    dataset: Indexed, batch_size: int, workers: int, seed: int, epoch: int, device: torch.device, skip: int = 0
) -> DataLoader:
    """The batches of one epoch, as ``Trainer.fit`` draws them (an ``EpochLoader`` used once)."""
    return EpochLoader(dataset, batch_size, workers, seed, device).epoch(epoch, skip)


class Trainer:
    """Pretrains one method in ``run_dir``: ``checkpoint.pt`` (see the module docstring), ``metrics.jsonl`` per epoch
    (``log``: a ``MetricsLog``, which may also send them to TensorBoard or W&B)."""

    def __init__(
        self,
        method: Method,
        train: TrainConfig,
        device: torch.device,
        run_dir: Path,
        seed: int,
        workers: int = 0,
        checkpoint: CheckpointConfig | None = None,
        monitor: Monitor | None = None,
        log: MetricsLog | None = None,
    ) -> None:
        self.monitor = monitor  # per-epoch collapse numbers (ssl_bench.monitor); None = off
        self.method, self.cfg, self.device, self.run_dir, self.seed, self.workers = (
            method,
            train,
            device,
            run_dir,
            seed,
            workers,
        )
        self.opt_cfg = optimisation(method, train)
        self.dtype = autocast_dtype(train.precision, device)
        self.checkpoint = run_dir / "checkpoint.pt"
        self.checkpointer = Checkpointer(self.checkpoint, method.name, checkpoint, ranks=True)
        self.log = log or MetricsLog(run_dir)  # metrics.jsonl (and TensorBoard / W&B: its owner opens and closes it)

    def optimizer(self, per_epoch: int) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
        """SGD and its per-step schedule (warm-up, then cosine) for ``cfg.epochs`` epochs of ``per_epoch`` steps."""
        optimizer = torch.optim.SGD(
            param_groups(self.method, self.opt_cfg.weight_decay),
            lr=self.opt_cfg.lr,
            momentum=self.opt_cfg.momentum,
            nesterov=self.opt_cfg.nesterov,
        )
        total, warmup = per_epoch * self.cfg.epochs, round(self.cfg.warmup_epochs * per_epoch)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))

    def fit(self, dataset: Indexed, progress: Progress | None = None, label: str = "") -> dict[str, float]:
        method, cfg = self.method, self.cfg
        method.to(self.device)
        if cfg.channels_last:
            method.to(memory_format=torch.channels_last)
        per_epoch = steps_per_epoch(len(dataset), cfg.batch_size, distributed.world())
        total = per_epoch * cfg.epochs
        optimizer, scheduler = self.optimizer(per_epoch)
        pos = self._resume(optimizer, scheduler)
        self.model = self._parallel(method)
        task = (
            progress.add_task(label or method.name, total=total, completed=pos["epoch"] * per_epoch + pos["step"])
            if progress
            else None
        )
        loader = EpochLoader(dataset, cfg.batch_size, self.workers, self.seed, self.device)
        last: dict[str, float] = {}
        shown = ""  # the monitor's last numbers, kept in the progress description
        for epoch in range(pos["epoch"], cfg.epochs):
            skip = pos["step"] if epoch == pos["epoch"] else 0
            sums: dict[str, float] = pos["sums"] if skip else {}
            n = pos["n"] if skip else 0
            seconds = pos["seconds"] if skip else 0.0
            torch.manual_seed(epoch_seed(self.seed, epoch) + 1)
            if skip:
                self._set_rng(pos["rng"])
            method.train()
            t0 = time.perf_counter()
            with self.checkpointer.stop_requests():
                for step, batch in enumerate(loader.epoch(epoch, skip), start=skip):
                    out = self.step(batch, optimizer, epoch, step)
                    scheduler.step()
                    for k, v in out.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    n += 1  # == steps of this epoch done
                    faults.point("train-step")
                    if progress is not None and task is not None:
                        progress.update(
                            task,
                            advance=1,
                            description=f"{label} ep {epoch + 1}/{cfg.epochs} loss {out['loss']:.3f}{shown}",
                        )
                    # every rank stops at the same step; the epoch's end is saved below anyway
                    self.checkpointer.after_step(
                        n,
                        lambda: self._state(optimizer, scheduler, epoch, n, sums, seconds + time.perf_counter() - t0),
                        f"epoch {epoch + 1}, step {n} of {per_epoch}",
                        periodic=n < per_epoch,
                    )
            last = {k: v / max(n, 1) for k, v in sums.items()}
            record = {
                "epoch": epoch + 1,
                "lr": scheduler.get_last_lr()[0],
                "seconds": seconds + time.perf_counter() - t0,
                **last,
            }
            if self.monitor is not None and distributed.is_main():  # eval mode, RNG forked: training is unchanged
                watched = self.monitor(method, epoch + 1)
                record.update(watched)
                shown = f" | {self.monitor.describe(watched)}"
                if progress is not None and task is not None:
                    progress.update(
                        task, description=f"{label} ep {epoch + 1}/{cfg.epochs} loss {last['loss']:.3f}{shown}"
                    )
            self.checkpointer.save(lambda: self._state(optimizer, scheduler, epoch + 1, 0, {}, 0.0))
            if distributed.is_main():
                self.log.write(record)
        if progress is not None and task is not None:
            progress.remove_task(task)
        return last

    def _state(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        epoch: int,
        step: int,
        sums: dict[str, float],
        seconds: float,
    ) -> dict[str, Any]:
        """Where training is: after ``epoch`` full epochs and ``step`` batches of the next one (rank 0 writes it;
        every rank holds the same model, optimiser, bank and RNG state, up to batch-norm running statistics)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "method": self.method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "step": step,
            "sums": sums,
            "n": step,
            "seconds": seconds,
            "rng": rng,
        }

    def _set_rng(self, rng: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def step(self, batch: Batch, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> dict[str, float]:
        """One training step as ``fit`` takes it (benchmarks and fingerprints time and check this very step)."""
        batch = device_augment.to_device(batch, self.device, channels_last=self.cfg.channels_last)  # + colour there
        with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            out = self.model(batch)  # the method's training_step, through DistributedDataParallel under torchrun
        loss = out["loss"]
        if not torch.isfinite(loss):
            kept = (
                f"the last good checkpoint ({self.checkpoint}) is kept"
                if self.checkpoint.exists()
                else "no checkpoint was written yet"
            )
            raise NonFiniteLoss(
                f"{self.method.name}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; {kept}. "
                f"Lower the learning rate (--set train.lr=...), use --set train.precision=fp32, or check the data."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {k: float(v.detach()) for k, v in out.items()}

    def _parallel(self, method: Method) -> nn.Module:
        """DistributedDataParallel under torchrun (gradients averaged over ranks), else the method itself.

        Buffers are not broadcast: the memory bank is kept identical by its own gathered update, and batch-norm
        running statistics stay per rank (rank 0's are saved), as in MoCo's and VISSL's DDP training.
        """
        if not distributed.active():
            return method
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        if (
            "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        ):  # newer torch: broadcast_buffers is deprecated
            return ddp(method, device_ids=ids, forward_sync_buffers=False)
        return ddp(method, device_ids=ids, broadcast_buffers=False)

    def _resume(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Position to start from: {"epoch", "step", "sums", "n", "seconds", "rng"}; a corrupt checkpoint restarts."""
        state = self.checkpointer.load(f"training of {self.method.name}")
        if state is None:
            return {"epoch": 0, "step": 0, "sums": {}, "n": 0, "seconds": 0.0, "rng": None}
        self.method.load_state_dict(state["method"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return {
            "epoch": int(state["epoch"]),
            "step": int(state.get("step", 0)),
            "sums": dict(state.get("sums", {})),
            "n": int(state.get("n", 0)),
            "seconds": float(state.get("seconds", 0.0)),
            "rng": state.get("rng"),
        }
