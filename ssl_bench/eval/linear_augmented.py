"""Linear probe on an augmented stream (Goyal et al., ICCV 2019, arXiv:1905.01235, as VISSL's ``eval_mlp`` runs it).

The trunk stays frozen (eval mode: BatchNorm uses its running statistics; no gradient), and every training step
sends a fresh ``light_crop`` view of a batch (RandomResizedCrop 0.08-1 + flip at ImageNet scale) through it once.
Each requested stage is pooled (``features.pool_stage``; FSSB's fixed windows with ``linear.pool=fixed``), passed
through a BatchNorm without affine parameters and a linear layer initialised as FSSB's (normal, std 0.01, bias 0).
The heads of all stages learn from the same forward pass with the sum of their cross-entropies (VISSL: one loss per
head), by SGD with Nesterov momentum, weight decay and the stepped schedule of ``linear_probe``. Each head is then
scored on the test view of every evaluation split.

How it differs from the cached protocol (``linear_probe``): there the test view of every training image goes
through the trunk once and the heads are trained on those fixed features, standardised with their statistics;
here each epoch sees new crops, and the BatchNorm learns its statistics from them as it goes. The price is a trunk
pass per step, so it suits the paper-scale presets. One difference from FSSB and VISSL remains: their BatchNorm is
per channel of the pooled map, this one per feature (each channel at each grid cell), as the cached probe
standardises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_bench import faults
from ssl_bench.backbone import Backbone
from ssl_bench.data.transforms import light_crop
from ssl_bench.data.types import DataInfo
from ssl_bench.eval.features import POOLED, _Viewed, autocast, eval_loader, pool_maps
from ssl_bench.eval.linear_probe import MILESTONES, LinearConfig, topk_accuracy

INIT_STD = 0.01  # FSSB's FC_INIT_STD: the heads' weights ~ N(0, 0.01^2), biases 0


class _Trunk:
    """The frozen backbone as the heads see it: {layer: (B, D) float32} of a batch, under ``no_grad``."""

    def __init__(self, backbone: Backbone, layers: list[str], cfg: LinearConfig, dtype: torch.dtype | None) -> None:
        self.backbone, self.layers, self.cfg, self.dtype = backbone, layers, cfg, dtype
        self.last = backbone.stage_names[-1]
        wanted = {l for l in layers if l != POOLED} | ({self.last} if POOLED in layers else set())
        unknown = sorted(wanted - set(backbone.stage_names))
        if unknown:
            raise ValueError(
                f"backbone {backbone.spec}: unknown layer(s) {unknown}; valid: {backbone.stage_names} and {POOLED!r}"
            )
        # each map once, in network order: the order ``Backbone.stages`` returns the maps in, whatever it is asked
        self.stages = [s for s in backbone.stage_names if s in wanted]

    @torch.no_grad()
    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        with autocast(images.device, self.dtype):
            maps = self.backbone.stages(images, self.stages)
        return pool_maps(maps, self.layers, self.last, self.cfg.max_dims, self.cfg.pool)


def _head(dims: int, num_classes: int) -> nn.Sequential:
    linear = nn.Linear(dims, num_classes)
    nn.init.normal_(linear.weight, std=INIT_STD)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(dims, affine=False), linear)


def augmented_probe(
    backbone: Backbone,
    train: Dataset,
    evals: dict[str, Dataset],
    info: DataInfo,
    layers: list[str],
    cfg: LinearConfig,
    device: torch.device,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    workers: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Train one head per layer of ``layers`` on augmented views of ``train``; -> {eval split: {layer: {"top1",
    "top5"}}} on the test view of each dataset of ``evals``. The backbone is put in eval mode; its weights are not
    touched. Everything runs inside a fork of torch's global generator seeded by ``seed`` (the crops draw from it),
    so the numbers depend on ``seed`` alone and the caller's generator is left as it was."""
    backbone.eval().to(device)
    trunk = _Trunk(backbone, layers, cfg, dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = torch.zeros(1, 3, info.image_size, info.image_size, device=device)
        dims = {l: f.shape[1] for l, f in trunk(probe).items()}  # also stops a wrong size for pool=fixed here
        heads = {l: _head(dims[l], info.num_classes).to(device) for l in layers}  # a dict: timm names hold dots
        _train(heads, trunk, train, info, cfg, device, seed, workers)
        return {name: _score(heads, trunk, data, info, cfg, device, workers) for name, data in evals.items()}


def _train(
    heads: dict[str, nn.Module],
    trunk: _Trunk,
    train: Dataset,
    info: DataInfo,
    cfg: LinearConfig,
    device: torch.device,
    seed: int,
    workers: int,
) -> None:
    params = [p for head in heads.values() for p in head.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    n = len(train)  # type: ignore[arg-type]
    batch = min(cfg.batch_size, n)
    loader = DataLoader(
        _Viewed(train, light_crop(info.image_size, info.mean, info.std)),
        batch_size=batch,
        shuffle=True,
        drop_last=n > batch,  # BatchNorm cannot train on a last batch of one image
        generator=torch.Generator().manual_seed(seed),
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    milestones = [round(m * cfg.epochs * len(loader)) for m in MILESTONES]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    for head in heads.values():
        head.train()
    for epoch in range(cfg.epochs):
        faults.point("probe")
        for images, labels in loader:
            feats = trunk(images.to(device, non_blocking=True))  # one trunk pass for every head
            labels = labels.to(device, non_blocking=True)
            loss = sum(F.cross_entropy(heads[l](f), labels) for l, f in feats.items())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"augmented linear probe: loss {loss.item()} in epoch {epoch + 1}; lower linear.lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


@torch.no_grad()
def _score(
    heads: dict[str, nn.Module],
    trunk: _Trunk,
    data: Dataset,
    info: DataInfo,
    cfg: LinearConfig,
    device: torch.device,
    workers: int,
) -> dict[str, dict[str, float]]:
    for head in heads.values():
        head.eval()
    logits: dict[str, list[Tensor]] = {l: [] for l in heads}
    labels = []
    for images, target in eval_loader(
        data, info.image_size, info.mean, info.std, cfg.batch_size, workers, device=device
    ):
        for l, f in trunk(images.to(device, non_blocking=True)).items():
            logits[l].append(heads[l](f).cpu())
        labels.append(target)
    target = torch.cat(labels)
    return {l: topk_accuracy(torch.cat(chunks), target) for l, chunks in logits.items()}
