"""The evaluation harness shared by every method: named evaluations on a frozen backbone.

An evaluation is a function of (frozen backbone and data: an ``EvalContext``; its own config sections) -> rows
(layer, metric, value, protocol), like MoCo's ``main_lincls.py``. It never sees the pretraining method: what an
evaluation may use of the method's own heads (PIRL's f and g, for invariance) arrives as plain embedding functions,
``ctx.embeddings()``, handed down by the runner. The harness checks that no backbone weight changed during an
evaluation: a probe that trains its backbone is a bug, not a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Subset

from ssl_bench.backbone import Backbone
from ssl_bench.config import CheckpointConfig, unknown
from ssl_bench.data.transforms import EVAL_VIEW_VERSION
from ssl_bench.data.types import Splits, labels_of
from ssl_bench.detection.evaluation import run_detection
from ssl_bench.eval import invariance as inv
from ssl_bench.eval.features import HEAD, POOLED, autocast, cached, embed, extract
from ssl_bench.eval.invariance import InvarianceConfig
from ssl_bench.eval.knn import KNNConfig, knn
from ssl_bench.eval.linear_augmented import augmented_probe
from ssl_bench.eval.linear_probe import LinearConfig, probe, topk_accuracy, train_linear
from ssl_bench.eval.semisup import SemisupConfig, balanced_subset, finetune, labelled_subset, lowshot_linear
from ssl_bench.eval.svm import SVMConfig, run_svm
from ssl_bench.protocol import AUGMENTED, SELECTION_METRIC
from ssl_bench.storage import save

Embeddings = dict[str, Callable[[Tensor], Tensor]]  # input kind ("image", "jigsaw", "rotation") -> embedding function


@dataclass
class EvalContext:
    """What every evaluation may use: the frozen backbone, the data, where to write, and how to compute."""

    backbone: Backbone
    splits: Splits
    run_dir: Path
    device: torch.device
    seed: int
    dtype: torch.dtype | None = None
    shared: Path | None = None  # files shared by every unit (label subsets, generated data); default run_dir/../..
    checkpoint: CheckpointConfig | None = None  # how often long evaluations (detection) save where they are
    workers: int = 0  # DataLoader workers (data.num_workers)
    channels_last: bool = False  # frozen-feature passes take their batches channels_last (train.channels_last)
    embeddings: Callable[[], Embeddings] = field(default=dict)  # the trained method's heads, built on first call

    @property
    def shared_dir(self) -> Path:
        return self.shared or self.run_dir.parent.parent


@dataclass(frozen=True)
class Row:
    layer: str
    metric: str
    value: float
    protocol: str = ""


def features(ctx: EvalContext, split: str, linear: LinearConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """All stages + pooled features of one split (pooled as ``linear.max_dims`` and ``linear.pool`` say), cached in
    the run directory under a name that holds what they depend on."""
    info = ctx.splits.info
    dataset = ctx.splits.train if split == "train" else ctx.splits.test
    layers = [*ctx.backbone.stage_names, POOLED]
    max_dims = linear.max_dims
    pool = "" if linear.pool == "adaptive" else f"-{linear.pool}"
    path = ctx.run_dir / f"features-{split}-d{max_dims}{pool}-view{EVAL_VIEW_VERSION}.pt"
    return cached(
        path,
        lambda: extract(
            ctx.backbone,
            dataset,
            layers,
            info.image_size,
            info.mean,
            info.std,
            ctx.device,
            max_dims=max_dims,
            workers=ctx.workers,
            dtype=ctx.dtype,
            pool=linear.pool,
            channels_last=ctx.channels_last,
        ),
    )


def probe_layers(ctx: EvalContext, cfg: LinearConfig | SVMConfig) -> list[str]:
    if cfg.layers == ["all"]:
        return list(ctx.backbone.stage_names)
    valid = [*ctx.backbone.stage_names, POOLED]
    for layer in cfg.layers:
        if layer not in valid:
            raise unknown("layer", layer, valid)
    return cfg.layers


def held_out(labels: Tensor, fraction: float) -> tuple[Tensor, Tensor | None]:
    """(indices the probe trains on, indices held out to choose its layer): a class-balanced ``fraction`` of the
    training split, drawn with a fixed seed so every method and run seed holds out the same images; (all, None) at 0."""
    if fraction == 0:
        return torch.arange(len(labels)), None
    val = torch.tensor(balanced_subset(labels.tolist(), fraction, seed=0))
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


def linear(ctx: EvalContext, cfg: LinearConfig) -> list[Row]:
    """Top-1 / top-5 on the test split per stage, and ``val_top1`` on the held-out training images
    (``linear.val_fraction``), which the report uses to choose the best layer. ``linear.protocol``: "cached" (rows'
    protocol "") trains on stored test-view features, "augmented" (protocol "augmented") as Goyal et al. do."""
    layers = probe_layers(ctx, cfg)
    if cfg.protocol == "augmented":
        return linear_augmented(ctx, cfg, layers)
    (train_x, train_y), (test_x, test_y) = features(ctx, "train", cfg), features(ctx, "test", cfg)
    fit, val = held_out(train_y, cfg.val_fraction)
    rows = []
    for layer in layers:
        head = train_linear(train_x[layer][fit], train_y[fit], ctx.splits.info.num_classes, cfg, ctx.seed)
        with torch.no_grad():
            scores = topk_accuracy(head(test_x[layer]), test_y)
            if val is not None:
                scores[SELECTION_METRIC] = topk_accuracy(head(train_x[layer][val]), train_y[val], (1,))["top1"]
        rows += [Row(layer, metric, value) for metric, value in scores.items()]
    return rows


def linear_augmented(ctx: EvalContext, cfg: LinearConfig, layers: list[str]) -> list[Row]:
    train = ctx.splits.train
    fit, val = held_out(torch.tensor(labels_of(train)), cfg.val_fraction)
    evals = {"test": ctx.splits.test} | ({} if val is None else {"val": Subset(train, val.tolist())})
    scores = augmented_probe(
        ctx.backbone,
        Subset(train, fit.tolist()),
        evals,
        ctx.splits.info,
        layers,
        cfg,
        ctx.device,
        ctx.seed,
        ctx.dtype,
        ctx.workers,
    )
    rows = []
    for layer in layers:
        rows += [Row(layer, metric, value, AUGMENTED) for metric, value in scores["test"][layer].items()]
        if val is not None:
            rows.append(Row(layer, SELECTION_METRIC, scores["val"][layer]["top1"], AUGMENTED))
    return rows


def knn_eval(ctx: EvalContext, cfg: KNNConfig, linear: LinearConfig) -> list[Row]:
    """On the pooled features of the probes' cache (``linear.max_dims`` names the cache file; pooled is not reduced),
    layer "pooled", for every method; and, where the trained method has its own image embedding (NPID++'s and
    PIRL's 128-d f, what NPID's kNN classifies), on that too, layer "head"."""
    info = ctx.splits.info
    (train_x, train_y) = features(ctx, "train", linear)
    (test_x, test_y) = features(ctx, "test", linear)
    scores = knn(train_x[POOLED], train_y, test_x[POOLED], test_y, info.num_classes, cfg.k, cfg.temperature)
    rows = [Row(POOLED, metric, value) for metric, value in scores.items()]
    heads = ctx.embeddings()
    if "pooled" in heads:  # the head on the pooled features just loaded: no second pass through the backbone
        train_h, test_h = (on_features(ctx, heads["pooled"], x[POOLED]) for x in (train_x, test_x))
    elif "image" in heads:
        (train_h, _), (test_h, _) = (head_features(ctx, heads["image"], split) for split in ("train", "test"))
        train_h, test_h = train_h[HEAD], test_h[HEAD]
    else:
        return rows
    scores = knn(train_h, train_y, test_h, test_y, info.num_classes, cfg.k, cfg.temperature)
    return rows + [Row(HEAD, metric, value) for metric, value in scores.items()]


@torch.no_grad()
def on_features(ctx: EvalContext, fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 4096) -> Tensor:
    """``fn`` (a head) on (N, D) features in batches, on the evaluation's device and precision -> (N, d) float32."""
    out = []
    for chunk in x.split(batch_size):
        with autocast(ctx.device, ctx.dtype):
            out.append(fn(chunk.to(ctx.device)).float().cpu())
    return torch.cat(out)


def head_features(ctx: EvalContext, f: Callable[[Tensor], Tensor], split: str) -> tuple[dict[str, Tensor], Tensor]:
    """The method's own embedding of one split, cached in the run directory."""
    info = ctx.splits.info
    dataset = ctx.splits.train if split == "train" else ctx.splits.test
    path = ctx.run_dir / f"features-{split}-{HEAD}-view{EVAL_VIEW_VERSION}.pt"
    return cached(
        path,
        lambda: embed(
            f, dataset, info.image_size, info.mean, info.std, ctx.device, workers=ctx.workers, dtype=ctx.dtype
        ),
    )


def semisup(ctx: EvalContext, cfg: SemisupConfig, linear: LinearConfig) -> list[Row]:
    """1% / 10% labels: fine-tuned network (layer "all") and low-shot linear probe per stage; protocol e.g.
    "finetune-1%" (a class-balanced draw) or "finetune-1%:1percent" (SimCLR's list, ``semisup.subset_files``)."""
    info = ctx.splits.info
    rows = []
    for k in range(len(cfg.fractions)):
        ids, tag = labelled_subset(cfg, k, ctx.splits.train, info.name, ctx.shared_dir / "subsets")
        if "finetune" in cfg.modes:
            scores = finetune(
                ctx.backbone,
                ctx.splits.train,
                ids,
                ctx.splits.test,
                info,
                cfg,
                ctx.device,
                ctx.seed,
                ctx.dtype,
                ctx.workers,
            )
            rows += [Row("all", metric, value, f"finetune-{tag}") for metric, value in scores.items()]
        if "linear" in cfg.modes:
            (train_x, train_y) = features(ctx, "train", linear)
            (test_x, test_y) = features(ctx, "test", linear)
            idx = torch.tensor(ids)
            lcfg = lowshot_linear(linear, len(ids))
            for layer in probe_layers(ctx, linear):
                scores = probe(
                    train_x[layer][idx], train_y[idx], test_x[layer], test_y, info.num_classes, lcfg, ctx.seed
                )
                rows += [Row(layer, metric, value, f"linear-{tag}") for metric, value in scores.items()]
    return rows


def invariance(ctx: EvalContext, cfg: InvarianceConfig) -> list[Row]:
    """Distances between an image's representation and its transformed versions: summary rows, raw in the run dir.

    Pooled backbone features for every transform; and, where the trained method offers an embedding of the image
    and one of a transform's input (PIRL: f and g), f(v_I) vs g(v_I^t), the quantity of the paper's Fig. 4."""
    views = inv.test_views(ctx.splits.test, ctx.splits.info, cfg.num_images)
    raw = {f"{t}/{POOLED}": inv.backbone_distances(ctx.backbone, views, t, cfg, ctx.device) for t in cfg.transforms}
    heads = ctx.embeddings()
    for transform in inv.TRANSFORMS:
        if "image" in heads and transform in heads:
            raw[f"{transform}/head"] = inv.head_distances(
                heads["image"], heads[transform], transform, views, cfg, ctx.device
            )
    save(raw, ctx.run_dir / "invariance.pt")
    rows = []
    for key, distances in raw.items():
        transform, layer = key.split("/")
        rows += [Row(layer, metric, value, transform) for metric, value in inv.summary(distances).items()]
    return rows


def detection(ctx: EvalContext, cfg: Any) -> list[Row]:
    """Faster R-CNN fine-tuned from the backbone (a copy): AP, AP50, AP75 per scoring protocol; layer = the head (c4 |
    fpn), protocol e.g. "voc07 on voc07+12 trainval->test 25000 it" (``ssl_bench.protocol``: scoring, data, splits,
    iterations).

    ``cfg``: the resolved DetectionConfig (lr and warm-up set: the pretraining method's schedule)."""
    return [Row(*row) for row in run_detection(ctx, cfg)]


def svm(ctx: EvalContext, cfg: SVMConfig) -> list[Row]:
    """One linear SVM per class on the frozen features of each stage, VOC-layout trainval -> test (Goyal et al.'s
    VOC07 protocol, ``eval/svm.py``): mAP per layer, protocol "voc07-svm on <data> <train>-><test>"."""
    return [Row(*row) for row in run_svm(ctx, cfg, probe_layers(ctx, cfg))]


@dataclass(frozen=True)
class Evaluation:
    """An evaluation: its function, the config sections it reads (in its argument order) and a line of help."""

    run: Callable[..., list[Row]]
    sections: tuple[str, ...]
    help: str


EVALS: dict[str, Evaluation] = {
    "linear": Evaluation(
        linear, ("linear",), "linear probe on frozen features of every stage (Goyal et al. 2019 protocol): top-1/top-5"
    ),
    "knn": Evaluation(
        knn_eval,
        ("knn", "linear"),
        "weighted kNN (NPID: cosine, k=200, exp(s/0.07)) on pooled features, and on the method's own 128-d embedding "
        "where it has one (layer 'head'): top-1/top-5",
    ),
    "semisup": Evaluation(
        semisup,
        ("semisup", "linear"),
        "1%/10% of the labels (class-balanced, saved ids; or published lists, semisup.subset_files): fine-tuned "
        "network and low-shot linear probe: top-1/top-5",
    ),
    "detection": Evaluation(
        detection,
        ("detection",),
        "Faster R-CNN (C4 or FPN, frozen BN) fine-tuned on VOC-layout trainval: AP, AP50, AP75 (voc07, coco)",
    ),
    "svm": Evaluation(
        svm,
        ("svm",),
        "one linear SVM per class on frozen features of every stage, VOC07 trainval -> test (Goyal et al. 2019 "
        "protocol; PIRL Table 2, VOC07 column): mAP",
    ),
    "invariance": Evaluation(
        invariance,
        ("invariance",),
        "L2 distance of unit representations of an image and its jigsaw/rotation versions (PIRL Fig. 4)",
    ),
}
EVAL_HELP = {name: e.help for name, e in EVALS.items()}
# The sections each result's hash covers, in the shape the hashes were first written in (kNN's is its own section
# alone, although it reads the probes' feature cache; the pooled features it uses do not depend on linear.max_dims).
HASH_SECTIONS = {
    "linear": None,
    "knn": None,
    "semisup": ("semisup", "linear"),
    "detection": ("detection",),
    "invariance": ("invariance",),
    "svm": ("svm",),
}


# The evaluations that see images through ``eval_view``: a change of the view changes their numbers, so its version is
# in their hashes (a result of the old view is never served for the new one).
VIEWED = frozenset({"linear", "knn", "semisup", "invariance"})


def eval_settings(name: str, sections: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The part of the run config an evaluation's result depends on (goes into its hash); ``sections(name)`` gives
    a section as a dict (as asked, not resolved)."""
    if name not in HASH_SECTIONS:
        return {}
    nested = HASH_SECTIONS[name]
    settings = sections(name) if nested is None else {s: sections(s) for s in nested}
    return settings | ({"eval_view": EVAL_VIEW_VERSION} if name in VIEWED else {})


def check_evals(names: list[str]) -> None:
    for name in names:
        if name not in EVALS:
            raise unknown("evaluation", name, list(EVALS))


def evaluate(name: str, ctx: EvalContext, cfg: Any) -> list[Row]:
    """Run one evaluation with its sections of ``cfg`` (a resolved RunConfig) and check that the backbone came out
    unchanged."""
    check_evals([name])
    evaluation = EVALS[name]
    before = {k: v.detach().clone() for k, v in ctx.backbone.state_dict().items()}
    rows = evaluation.run(ctx, *(getattr(cfg, section) for section in evaluation.sections))
    after = ctx.backbone.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise RuntimeError(
            f"evaluation {name!r} changed backbone weights ({changed[:3]}...): evaluations must leave the backbone frozen"
        )
    return rows
