"""Fine-tune and run a Faster R-CNN: Detectron2's solver as an SGD loop, and batched inference.

PIRL, 2020, arXiv:1912.01991 (Table 1 and appendix) fine-tunes with Detectron2's solver: SGD with momentum, linear
warm-up from 0.001 x lr, lr x0.1 at the steps. The rate and warm-up depend on the pretraining (VISSL's configs: 0.02
with 100 iterations for supervised and Jigsaw, 0.002 with 1000 for NPID++ and PIRL): each method offers its own as
``Method.detection_schedule`` and ``DetectionConfig.resolved`` puts it in the config before anything runs.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.models.detection import FasterRCNN
from torchvision.transforms.v2 import functional as F

from ssl_bench import faults
from ssl_bench.checkpointer import Checkpointer
from ssl_bench.config import CheckpointConfig
from ssl_bench.detection.config import DetectionConfig

WARMUP_FACTOR = 0.001  # Detectron2 SOLVER.WARMUP_FACTOR
GAMMA = 0.1
SCORE_THRESH = 0.05  # Detectron2 MODEL.ROI_HEADS.SCORE_THRESH_TEST, unchanged by its VOC configs
DETECTIONS_PER_IMAGE = 100  # Detectron2 TEST.DETECTIONS_PER_IMAGE


def lr_factor(iteration: int, warmup_iters: int, milestones: list[int]) -> float:
    """Detectron2's WarmupMultiStepLR: linear warm-up from 0.001, then x0.1 at every milestone passed."""
    warm = 1.0
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        warm = WARMUP_FACTOR * (1 - alpha) + alpha
    return warm * GAMMA ** bisect.bisect_right(milestones, iteration)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters; normalisation layers get no weight decay (Detectron2 WEIGHT_DECAY_NORM = 0)."""
    norm, rest = [], []
    for module in model.modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (norm if is_norm else rest).append(p)
    return [{"params": rest, "weight_decay": weight_decay}, {"params": norm, "weight_decay": 0.0}]


def _sample(dataset: Dataset, index: int, flip: bool, device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
    """One training image as float [0, 1] (the model normalises) with its boxes and labels, flipped if asked."""
    image, target = dataset[index]
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    if flip:
        image, boxes = F.horizontal_flip(image), F.horizontal_flip(boxes)
    image = F.to_dtype(image, torch.float32, scale=True)  # (3, H, W)
    # difficult objects are trained on, as in Detectron2's VOC loader
    return image.to(device), {"boxes": boxes.as_subclass(Tensor).to(device), "labels": target["labels"].to(device)}


def train_detector(
    model: FasterRCNN,
    dataset: Dataset,
    cfg: DetectionConfig,
    lr: float,
    warmup_iters: int,
    device: torch.device,
    seed: int,
    progress: Progress | None = None,
    task_name: str = "detection",
    checkpoint: Path | None = None,
    every: CheckpointConfig | None = None,
) -> list[dict[str, float]]:
    """Fine-tune ``model`` in place for cfg.iterations SGD steps of cfg.batch_size images; one log row per step.

    Batches walk seeded random permutations of ``dataset`` (Detectron2's TrainingSampler); each image is flipped
    horizontally with probability 0.5. Rows: {"iteration", "lr", "loss", and each of torchvision's losses}.
    With ``checkpoint``, the state (model, optimiser, sampler and RNG states, logs) is saved there every
    ``every.minutes`` / ``every.every_steps`` and on Ctrl-C, and training resumes from it: the result is the same
    as an uninterrupted run.
    """
    if len(dataset) == 0:
        raise ValueError(f"{task_name}: the training set is empty")
    model.to(device).train()
    torch.manual_seed(seed)  # torchvision's RPN / RoI samplers draw from the global generator
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=lr, momentum=cfg.momentum)
    milestones = sorted(round(f * cfg.iterations) for f in cfg.steps)
    order: list[int] = []
    logs: list[dict[str, float]] = []
    start = 0
    saver = Checkpointer(checkpoint, task_name, every)
    state = saver.load(f"{task_name} fine-tuning")
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["sampler_rng"])
        torch.set_rng_state(state["rng"])
        start, order, logs = int(state["iteration"]), list(state["order"]), list(state["logs"])

    def snapshot(iteration: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "sampler_rng": g.get_state(),
            "rng": torch.get_rng_state(),
            "iteration": iteration,
            "order": order,
            "logs": logs,
        }

    task = progress.add_task(task_name, total=cfg.iterations, completed=start) if progress is not None else None
    with saver.stop_requests():
        for it in range(start, cfg.iterations):
            while len(order) < cfg.batch_size:
                order += torch.randperm(len(dataset), generator=g).tolist()
            batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
            flips = (torch.rand(len(batch), generator=g) < 0.5).tolist()
            images, targets = zip(*(_sample(dataset, i, f, device) for i, f in zip(batch, flips)))
            step_lr = lr * lr_factor(it, warmup_iters, milestones)
            for group in opt.param_groups:
                group["lr"] = step_lr
            losses = model(list(images), list(targets))
            loss = sum(losses.values())
            row = {"iteration": it, "lr": step_lr, "loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(
                    f"{task_name}: non-finite detection loss at iteration {it} (lr {step_lr:.2e}): {row}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            logs.append(row)
            faults.point("detection-step")
            if progress is not None and task is not None:
                progress.update(
                    task, advance=1, description=f"{task_name} it {it + 1}/{cfg.iterations} loss {row['loss']:.3f}"
                )
            if it + 1 < cfg.iterations:  # after the last one the loop ends: nothing to save
                saver.after_step(it + 1, lambda: snapshot(it + 1), f"iteration {it + 1} of {cfg.iterations}")
    if progress is not None and task is not None:
        progress.remove_task(task)
    return logs


@torch.inference_mode()
def predict(
    model: FasterRCNN, dataset: Dataset, device: torch.device, batch_size: int = 4, score_thresh: float = SCORE_THRESH
) -> list[dict[str, np.ndarray]]:
    """Detections for every image of ``dataset``: {"boxes" (N, 4) xyxy 0-based original pixels, "scores", "labels"}.

    Uses Detectron2's test settings, the ones the published AP numbers were computed with: score threshold 0.05
    (lower ones only add low-score detections at the tail of the precision-recall curve), NMS 0.5, at most 100
    detections per image. Sets them on ``model.roi_heads``.
    """
    model.to(device).eval()
    model.roi_heads.score_thresh = score_thresh
    model.roi_heads.detections_per_img = DETECTIONS_PER_IMAGE
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(dataset), batch_size):
        images = [
            F.to_dtype(dataset[i][0], torch.float32, scale=True).to(device)
            for i in range(start, min(start + batch_size, len(dataset)))
        ]
        for det in model(images):  # boxes already mapped back to the original image size
            out.append(
                {
                    "boxes": det["boxes"].float().cpu().numpy(),
                    "scores": det["scores"].float().cpu().numpy(),
                    "labels": det["labels"].cpu().numpy(),
                }
            )
    return out
