"""Semi-supervised transfer (PIRL Table 3): 1% and 10% of the training labels, two ways.

* ``finetune``: the whole pretrained network plus a fresh linear head is trained on the labelled subset
  (SGD with Nesterov momentum as VISSL's fine-tuning configs, the head at ``head_lr_mult`` x the backbone's rate,
  cosine schedule, ``light_crop``: VISSL's RandomResizedCrop (0.08-1) + flip above 64 px, pad-and-crop + flip at
  CIFAR sizes, where a crop of 8% of a 32 px image leaves about 9 px of it), then scored on the test split.
* ``linear``: the low-shot linear probe; the encoder stays frozen and the probe of ``linear_probe`` is trained
  on the subset's cached features of every stage.

The subsets are class-balanced (the same fraction of every class, at least one image per class), drawn from
``(subset_seed, fraction)`` only and saved under ``<out>/subsets/`` so every method, seed and later run uses
the very same images. A saved subset whose dataset no longer matches is an error, not silently redrawn.
Or they are read from published lists, ``subset_files`` (SimCLR's ``1percent.txt`` / ``10percent.txt``, VISSL's
image-path ``.npy``; ``ssl_bench.data.subset_list``), one per fraction. The rows' protocol names the subset:
``finetune-1%`` for the drawn one, ``finetune-1%:<file stem>`` (e.g. ``finetune-1%:1percent``) for a listed one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_bench import storage
from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError, each_of, positive
from ssl_bench.data.subset_list import listed_subset
from ssl_bench.data.transforms import eval_view, light_crop
from ssl_bench.data.types import DataInfo, labels_of
from ssl_bench.eval.features import autocast
from ssl_bench.eval.linear_probe import LinearConfig, topk_accuracy

MODES = ("finetune", "linear")


@dataclass
class SemisupConfig:
    """Semi-supervised transfer (PIRL Table 3): 1% / 10% label subsets, class-balanced draws saved as id files or
    published lists (``subset_files``).

    Two modes on the same subsets: ``finetune`` (whole network + fresh linear head) and ``linear`` (frozen
    encoder, low-shot linear probe on the cached pooled features).
    """

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1])
    subset_seed: int = 0  # the subsets depend on this and the dataset only: every method uses the same images
    # One list per fraction, in the order of `fractions`, instead of a draw: SimCLR's imagenet_subsets/1percent.txt,
    # 10percent.txt (file names) or VISSL's image-path .npy. Empty: draw class-balanced subsets.
    subset_files: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: ["finetune", "linear"])
    epochs: int = 30  # fine-tuning epochs over the labelled subset (at least `min_steps` steps)
    min_steps: int = 200
    batch_size: int = 256
    lr: float = 0.01  # backbone rate at batch 256 (scaled with batch size); the fresh head uses `head_lr_mult` x
    head_lr_mult: float = 10.0
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True  # VISSL's semi-supervised fine-tuning (eval_resnet_8gpu_transfer_in1k_semi_sup_fulltune.yaml)

    def check(self) -> None:
        positive("semisup", self, "epochs", "batch_size", "lr")
        each_of("semisup", self, "modes", MODES)
        for value in self.fractions:
            if not 0 < value <= 1:
                raise ConfigError(
                    f"semisup.fractions: {value} is not a fraction in (0, 1]; e.g. 0.01,0.1 for 1% and 10%"
                )
        if self.subset_files and len(self.subset_files) != len(self.fractions):
            raise ConfigError(
                f"semisup.subset_files names {len(self.subset_files)} file(s) for {len(self.fractions)} fraction(s) "
                f"{self.fractions}: give one per fraction, in the same order (e.g. semisup.fractions=0.01,0.1 with "
                "semisup.subset_files=1percent.txt,10percent.txt), or none to draw class-balanced subsets"
            )
        for name in self.subset_files:
            if not Path(name).expanduser().is_file():
                raise ConfigError(
                    f"semisup.subset_files: {name} does not exist; give SimCLR's imagenet_subsets/1percent.txt "
                    "(github.com/google-research/simclr) or another list of image file names, one per line"
                )


def balanced_subset(labels: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Sorted indices of ``round(fraction * n_c)`` (at least 1) images of every class c, drawn with ``seed``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, round(fraction * 1_000_000)])
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=k, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen))


def percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def labels_digest(labels: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def subset_ids(directory: Path, dataset: str, labels: Sequence[int], fraction: float, seed: int) -> list[int]:
    """The saved subset for (dataset, fraction, seed), drawing and saving it (atomically) the first time."""
    path = directory / f"{dataset.replace(':', '-')}-{percent(fraction).rstrip('%')}pct-s{seed}.json"
    digest = labels_digest(labels)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("labels_sha256") != digest:
            raise ConfigError(
                f"{path} was drawn from a different {dataset} training split ({saved.get('num_train')} images, labels "
                f"{saved.get('labels_sha256')}; now {len(labels)} images, {digest}). Delete it to draw a new subset, "
                f"or use the data settings it was drawn with so results stay comparable."
            )
        return [int(i) for i in saved["ids"]]
    ids = balanced_subset(labels, fraction, seed)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "dataset": dataset,
        "fraction": fraction,
        "seed": seed,
        "num_train": len(labels),
        "labels_sha256": digest,
        "ids": ids,
    }
    storage.write_text(path, json.dumps(record))
    return ids


# A listed subset may differ from its fraction by this much (relative) before the pairing is taken for a mistake;
# SimCLR's lists are 1.0000% and 10.000% of ImageNet's 1,281,167 training images.
LISTED_SLACK = 0.2


def labelled_subset(cfg: SemisupConfig, k: int, train: Dataset, dataset: str, directory: Path) -> tuple[list[int], str]:
    """The labelled images of ``cfg.fractions[k]`` and the protocol's subset tag: ``"1%"`` for the class-balanced
    draw (saved under ``directory``), ``"1%:<file stem>"`` for the list ``cfg.subset_files[k]``."""
    fraction = cfg.fractions[k]
    if not cfg.subset_files:
        return subset_ids(directory, dataset, labels_of(train), fraction, cfg.subset_seed), percent(fraction)
    path = Path(cfg.subset_files[k]).expanduser()
    ids = listed_subset(path, train, dataset)
    total = len(train)  # type: ignore[arg-type]
    if abs(len(ids) / total - fraction) > LISTED_SLACK * fraction:
        raise ConfigError(
            f"{path} lists {len(ids):,} images, {100 * len(ids) / total:.3g}% of the {total:,} training images, but "
            f"semisup.subset_files pairs it with the fraction {fraction} ({percent(fraction)}): list the files in "
            "the order of semisup.fractions"
        )
    return ids, f"{percent(fraction)}:{path.stem}"


class _Labelled(Dataset):
    def __init__(self, base: Dataset, ids: Sequence[int], transform: Callable[[Any], Tensor]) -> None:
        self.base, self.ids, self.transform = base, list(ids), transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[self.ids[i]]
        return self.transform(image), int(label)


class Classifier(torch.nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def finetune(
    backbone: Backbone,
    train: Dataset,
    ids: Sequence[int],
    test: Dataset,
    info: DataInfo,
    cfg: SemisupConfig,
    device: torch.device,
    seed: int,
    dtype: torch.dtype | None = None,
    workers: int = 0,
) -> dict[str, float]:
    """Fine-tune a copy of ``backbone`` + a fresh linear head on ``train[ids]``; top-1/top-5 on ``test``."""
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(backbone), info.num_classes).to(device)
    batch = min(cfg.batch_size, len(ids))
    steps_per_epoch = math.ceil(len(ids) / batch)
    total = max(cfg.min_steps, cfg.epochs * steps_per_epoch)
    lr = cfg.lr * batch / 256
    params = [
        {"params": model.backbone.parameters(), "lr": lr},
        {"params": model.head.parameters(), "lr": lr * cfg.head_lr_mult},
    ]
    opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    data = _Labelled(train, ids, light_crop(info.image_size, info.mean, info.std))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        data,
        batch_size=batch,
        shuffle=True,
        drop_last=len(ids) > batch,
        generator=generator,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    step = 0
    model.train()
    while step < total:
        for images, labels in loader:
            with autocast(device, dtype):
                logits = model(images.to(device, non_blocking=True))
            loss = F.cross_entropy(logits.float(), labels.to(device, non_blocking=True))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"semi-supervised fine-tuning: loss {loss.item()} at step {step + 1}; lower semisup.lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == total:
                break
    return evaluate(model, test, info, device, dtype, workers)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    test: Dataset,
    info: DataInfo,
    device: torch.device,
    dtype: torch.dtype | None,
    workers: int = 0,
) -> dict[str, float]:
    model.eval()
    loader = DataLoader(
        _Labelled(test, range(len(test)), eval_view(info.image_size, info.mean, info.std)),  # type: ignore[arg-type]
        batch_size=256,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    logits, labels = [], []
    for images, target in loader:
        with autocast(device, dtype):
            logits.append(model(images.to(device, non_blocking=True)).float().cpu())
        labels.append(target)
    return topk_accuracy(torch.cat(logits), torch.cat(labels))


def lowshot_linear(linear: LinearConfig, num_ids: int) -> LinearConfig:
    """The probe settings for a small subset: the same epochs count as steps would vanish, so keep >= 200 steps."""
    batch = min(linear.batch_size, num_ids)
    epochs = max(linear.epochs, math.ceil(200 / math.ceil(num_ids / batch)))
    return dataclasses.replace(linear, epochs=epochs, batch_size=batch)
