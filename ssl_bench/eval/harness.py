"""The evaluation harness shared by every method: named evaluations on a frozen backbone.

Each evaluation takes an ``EvalContext`` and returns rows (layer, metric, value). The harness checks that
no backbone weight changed during an evaluation: a probe that trains its backbone is a bug, not a result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import CheckpointConfig, RunConfig, config_hash, unknown
from ssl_bench.data.dataset import Splits, labels_of
from ssl_bench.engine import load_checkpoint, save_atomic
from ssl_bench.eval import invariance as inv
from ssl_bench.eval.detection import run_detection
from ssl_bench.eval.features import POOLED, cached, extract
from ssl_bench.eval.knn import knn
from ssl_bench.eval.linear_probe import probe
from ssl_bench.eval.semisup import finetune, lowshot_linear, percent, subset_ids
from ssl_bench.methods import get_method


@dataclass
class EvalContext:
    backbone: Backbone
    splits: Splits
    cfg: RunConfig
    run_dir: Path
    device: torch.device
    seed: int
    dtype: torch.dtype | None = None
    method: str = ""  # the pretraining method's name and config (evaluations that need its heads rebuild it)
    method_cfg: Any = None
    out_dir: Path | None = None  # the run's output directory (shared files such as the label subsets), else run_dir/../..
    checkpoint: CheckpointConfig | None = None  # how often long evaluations (detection) save where they are

    @property
    def shared_dir(self) -> Path:
        return self.out_dir or self.run_dir.parent.parent


@dataclass(frozen=True)
class Row:
    layer: str
    metric: str
    value: float
    protocol: str = ""


def features(ctx: EvalContext, split: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """All stages + pooled features of one split, cached in the run directory."""
    info, dims = ctx.splits.info, ctx.cfg.linear.max_dims
    dataset = ctx.splits.train if split == "train" else ctx.splits.test
    layers = [*ctx.backbone.stage_names, POOLED]
    path = ctx.run_dir / f"features-{split}-d{dims}.pt"
    return cached(path, lambda: extract(ctx.backbone, dataset, layers, info.image_size, info.mean, info.std, ctx.device,
                                        max_dims=dims, workers=ctx.cfg.data.num_workers, dtype=ctx.dtype))  # fmt: skip


def probe_layers(ctx: EvalContext) -> list[str]:
    layers = ctx.cfg.linear.layers
    if layers == ["all"]:
        return list(ctx.backbone.stage_names)
    valid = [*ctx.backbone.stage_names, POOLED]
    for layer in layers:
        if layer not in valid:
            raise unknown("layer", layer, valid)
    return layers


def linear(ctx: EvalContext) -> list[Row]:
    (train_x, train_y), (test_x, test_y) = features(ctx, "train"), features(ctx, "test")
    rows = []
    for layer in probe_layers(ctx):
        scores = probe(train_x[layer], train_y, test_x[layer], test_y, ctx.splits.info.num_classes, ctx.cfg.linear, ctx.seed)
        rows += [Row(layer, metric, value) for metric, value in scores.items()]
    return rows


def knn_eval(ctx: EvalContext) -> list[Row]:
    (train_x, train_y), (test_x, test_y) = features(ctx, "train"), features(ctx, "test")
    scores = knn(train_x[POOLED], train_y, test_x[POOLED], test_y, ctx.splits.info.num_classes, ctx.cfg.knn.k, ctx.cfg.knn.temperature)
    return [Row(POOLED, metric, value) for metric, value in scores.items()]


def semisup(ctx: EvalContext) -> list[Row]:
    """1% / 10% labels: fine-tuned network (layer "all") and low-shot linear probe per stage; protocol e.g. "finetune-1%"."""
    cfg, info = ctx.cfg.semisup, ctx.splits.info
    labels = labels_of(ctx.splits.train)
    rows = []
    for fraction in cfg.fractions:
        ids = subset_ids(ctx.shared_dir / "subsets", info.name, labels, fraction, cfg.subset_seed)
        tag = percent(fraction)
        if "finetune" in cfg.modes:
            scores = finetune(ctx.backbone, ctx.splits.train, ids, ctx.splits.test, info, cfg, ctx.device, ctx.seed,
                              ctx.dtype, ctx.cfg.data.num_workers)  # fmt: skip
            rows += [Row("all", metric, value, f"finetune-{tag}") for metric, value in scores.items()]
        if "linear" in cfg.modes:
            (train_x, train_y), (test_x, test_y) = features(ctx, "train"), features(ctx, "test")
            idx = torch.tensor(ids)
            lcfg = lowshot_linear(ctx.cfg.linear, len(ids))
            for layer in probe_layers(ctx):
                scores = probe(train_x[layer][idx], train_y[idx], test_x[layer], test_y, info.num_classes, lcfg, ctx.seed)
                rows += [Row(layer, metric, value, f"linear-{tag}") for metric, value in scores.items()]
    return rows


def trained_method(ctx: EvalContext):
    """The pretraining method with its heads, rebuilt from the run's last checkpoint (None if it has none)."""
    path = ctx.run_dir / "checkpoint.pt"
    if not ctx.method or not path.exists():
        return None
    method = get_method(ctx.method)(copy.deepcopy(ctx.backbone), ctx.method_cfg, ctx.splits.info)
    method.load_state_dict(load_checkpoint(path)["method"], strict=True)
    return method.to(ctx.device)


def invariance(ctx: EvalContext) -> list[Row]:
    """Distances between an image's representation and its transformed versions: summary rows, raw in the run dir."""
    cfg = ctx.cfg.invariance
    views = inv.test_views(ctx.splits.test, ctx.splits.info, cfg.num_images)
    raw = {f"{t}/{POOLED}": inv.backbone_distances(ctx.backbone, views, t, cfg, ctx.device) for t in cfg.transforms}
    method = trained_method(ctx) if ctx.method == "pirl" else None
    if method is not None:  # PIRL: its own f(v_I) vs g(v_I^t), the quantity of the paper's Fig. 4
        raw[f"{method.cfg.transform}/head"] = inv.pirl_distances(method, views, cfg, ctx.device)
    save_atomic(raw, ctx.run_dir / "invariance.pt")
    rows = []
    for key, distances in raw.items():
        transform, layer = key.split("/")
        rows += [Row(layer, metric, value, transform) for metric, value in inv.summary(distances).items()]
    return rows


def detection(ctx: EvalContext) -> list[Row]:
    """Faster R-CNN fine-tuned from the backbone (a copy): AP, AP50, AP75 per protocol; layer = the head (c4 | fpn)."""
    tag = config_hash(asdict(ctx.cfg.detection))[:8]
    return [Row(*row) for row in run_detection(ctx, tag)]


EVALS: dict[str, Callable[[EvalContext], list[Row]]] = {
    "linear": linear, "knn": knn_eval, "semisup": semisup, "detection": detection, "invariance": invariance,
}  # fmt: skip
EVAL_HELP = {
    "linear": "linear probe on frozen features of every stage (Goyal et al. 2019 protocol): top-1/top-5",
    "knn": "weighted kNN on pooled features (NPID: cosine, k=200, exp(s/0.07)): top-1/top-5",
    "semisup": "1%/10% of the labels (class-balanced, saved ids): fine-tuned network and low-shot linear probe: top-1/top-5",
    "detection": "Faster R-CNN (C4 or FPN, frozen BN) fine-tuned on VOC-layout trainval: AP, AP50, AP75 (voc07, coco)",
    "invariance": "L2 distance of unit representations of an image and its jigsaw/rotation versions (PIRL Fig. 4)",
}


def eval_settings(name: str, cfg: RunConfig) -> dict[str, Any]:
    """The part of the run config an evaluation's result depends on (goes into its hash)."""
    settings = {
        "linear": asdict(cfg.linear),
        "knn": asdict(cfg.knn),
        "semisup": {"semisup": asdict(cfg.semisup), "linear": asdict(cfg.linear)},
        "detection": {"detection": asdict(cfg.detection)},
        "invariance": {"invariance": asdict(cfg.invariance)},
    }
    return settings.get(name, {})


def check_evals(names: list[str]) -> None:
    for name in names:
        if name not in EVALS:
            raise unknown("evaluation", name, list(EVALS))


def evaluate(name: str, ctx: EvalContext) -> list[Row]:
    """Run one evaluation and check that the backbone came out unchanged."""
    check_evals([name])
    before = {k: v.detach().clone() for k, v in ctx.backbone.state_dict().items()}
    rows = EVALS[name](ctx)
    after = ctx.backbone.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise RuntimeError(f"evaluation {name!r} changed backbone weights ({changed[:3]}...): evaluations must leave the backbone frozen")
    return rows
