"""The training loop every method shares: SGD with momentum, warm-up + cosine schedule, checkpoints, seeds.

The method only computes a loss (``training_step``); the engine owns the optimiser, the schedule, mixed
precision, the data order and the checkpoints. A run resumes from its last completed epoch: the data order and
the augmentation RNG of every epoch are derived from (seed, epoch), so an interrupted run continues exactly as
an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from ssl_bench.config import TrainConfig
from ssl_bench.data.batch import Batch, collate
from ssl_bench.data.dataset import Indexed
from ssl_bench.methods.base import Method

FINAL_LR_RATIO = 1e-3  # PIRL: cosine from 0.12 down to 1.2e-4


class NonFiniteLoss(RuntimeError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Optimisation:
    lr: float  # peak rate at the actual batch size
    weight_decay: float
    momentum: float


def optimisation(method: Method, train: TrainConfig) -> Optimisation:
    """The method's paper rate (given at batch 256) scaled linearly to the batch size, unless the run sets one."""
    lr = train.lr if train.lr > 0 else method.cfg.lr * train.batch_size / 256
    wd = train.weight_decay if train.weight_decay >= 0 else method.cfg.weight_decay
    return Optimisation(lr, wd, method.cfg.momentum)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation parameters (1-d tensors) are excluded."""
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
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


def make_loader(dataset: Indexed, batch_size: int, workers: int, seed: int, epoch: int, device: torch.device) -> DataLoader:
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= 2 * batch_size, collate_fn=collate,
        num_workers=workers, generator=g, pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


class Trainer:
    """Pretrains one method in ``run_dir``: ``checkpoint.pt`` after every epoch, ``metrics.jsonl`` per epoch."""

    def __init__(self, method: Method, train: TrainConfig, device: torch.device, run_dir: Path, seed: int, workers: int = 0) -> None:
        self.method, self.cfg, self.device, self.run_dir, self.seed, self.workers = method, train, device, run_dir, seed, workers
        self.opt_cfg = optimisation(method, train)
        self.dtype = autocast_dtype(train.precision, device)
        self.checkpoint = run_dir / "checkpoint.pt"
        self.metrics = run_dir / "metrics.jsonl"

    def fit(self, dataset: Indexed, progress: Progress | None = None, label: str = "") -> dict[str, float]:
        method, cfg = self.method, self.cfg
        method.to(self.device)
        if cfg.channels_last:
            method.to(memory_format=torch.channels_last)
        steps_per_epoch = len(make_loader(dataset, cfg.batch_size, 0, self.seed, 0, self.device))
        total = steps_per_epoch * cfg.epochs
        optimizer = torch.optim.SGD(param_groups(method, self.opt_cfg.weight_decay), lr=self.opt_cfg.lr, momentum=self.opt_cfg.momentum)
        warmup = round(cfg.warmup_epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
        start = self._resume(optimizer, scheduler)
        task = progress.add_task(label or method.name, total=total, completed=start * steps_per_epoch) if progress else None
        last: dict[str, float] = {}
        for epoch in range(start, cfg.epochs):
            torch.manual_seed(epoch_seed(self.seed, epoch) + 1)
            method.train()
            sums: dict[str, float] = {}
            n = 0
            t0 = time.perf_counter()
            for step, batch in enumerate(make_loader(dataset, cfg.batch_size, self.workers, self.seed, epoch, self.device)):
                out = self._step(batch, optimizer, epoch, step)
                scheduler.step()
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n += 1
                if progress is not None and task is not None:
                    progress.update(task, advance=1, description=f"{label} ep {epoch + 1}/{cfg.epochs} loss {out['loss']:.3f}")
            last = {k: v / max(n, 1) for k, v in sums.items()}
            record = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0, **last}
            save_atomic({"method": method.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "epoch": epoch + 1}, self.checkpoint)  # fmt: skip
            with self.metrics.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if progress is not None and task is not None:
            progress.remove_task(task)
        return last

    def _step(self, batch: Batch, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> dict[str, float]:
        batch = batch.to(self.device, channels_last=self.cfg.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            out = self.method.training_step(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            kept = f"the last good checkpoint ({self.checkpoint}) is kept" if self.checkpoint.exists() else "no checkpoint was written yet"
            raise NonFiniteLoss(
                f"{self.method.name}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; {kept}. "
                f"Lower the learning rate (--set train.lr=...), use --set train.precision=fp32, or check the data."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {k: float(v.detach()) for k, v in out.items()}

    def _resume(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
        if not self.checkpoint.exists():
            return 0
        state = load_checkpoint(self.checkpoint)
        self.method.load_state_dict(state["method"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return int(state["epoch"])
