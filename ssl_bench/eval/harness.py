"""The evaluation harness shared by every method: named evaluations on a frozen backbone.

Each evaluation takes an ``EvalContext`` and returns rows (layer, metric, value). The harness checks that
no backbone weight changed during an evaluation: a probe that trains its backbone is a bug, not a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import RunConfig, unknown
from ssl_bench.data.dataset import Splits
from ssl_bench.eval.features import POOLED, cached, extract
from ssl_bench.eval.knn import knn
from ssl_bench.eval.linear_probe import probe


@dataclass
class EvalContext:
    backbone: Backbone
    splits: Splits
    cfg: RunConfig
    run_dir: Path
    device: torch.device
    seed: int
    dtype: torch.dtype | None = None


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


EVALS: dict[str, Callable[[EvalContext], list[Row]]] = {"linear": linear, "knn": knn_eval}
EVAL_HELP = {
    "linear": "linear probe on frozen features of every stage (Goyal et al. 2019 protocol): top-1/top-5",
    "knn": "weighted kNN on pooled features (NPID: cosine, k=200, exp(s/0.07)): top-1/top-5",
}


def eval_settings(name: str, cfg: RunConfig) -> dict[str, Any]:
    """The part of the run config an evaluation's result depends on (goes into its hash)."""
    return {"linear": asdict(cfg.linear), "knn": asdict(cfg.knn)}.get(name, {})


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
