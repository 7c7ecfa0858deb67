"""The ``svm`` evaluation (PIRL Table 2, VOC07 column): one linear SVM per class on the frozen features of each
stage, trained on VOC2007 trainval, scored on VOC2007 test by the mean of the per-class average precisions.

Goyal et al., ICCV 2019 (arXiv:1905.01235) as their benchmark runs it; PIRL follows it (arXiv:1912.01991, App. C).
Read from FSSB (facebookresearch/fair_self_supervision_benchmark @ 1e5d165: ``tools/svm/train_svm_kfold.py``,
``test_svm.py``, ``svm_helper.py``, ``GETTING_STARTED.md``) and VISSL (@ 09270ed:
``vissl/utils/svm_utils/svm_trainer.py``, ``evaluate.py``):

* input: the whole image squashed to S x S (``transforms.squash_view``); each stage average-pooled to at most
  ``svm.max_dims`` values (``features.py``, as for the linear probe); each feature vector divided by its L2 norm
  + 1e-5, in float64.
* per class and cost C: scikit-learn's ``LinearSVC(C, class_weight={1: 2, -1: 1}, penalty="l2",
  loss="squared_hinge", dual=True, tol=1e-4, max_iter=2000, intercept_scaling=1)``, scored by 3-fold
  cross-validation (``cross_val_score``, scoring "average_precision": stratified folds, not shuffled); the cost with
  the highest mean fold AP (the first in the list on ties: ``np.argmax``) is trained again on all of trainval.
* labels: the devkit's 1 / 0 (difficult objects only) / -1 per class (``voc.image_labels``). Training counts the
  difficult-only images as negatives, as FSSB's and VISSL's training does; the test AP leaves them out.
* AP: FSSB's ``get_precision_recall``: precision made non-increasing from the right, summed over the ranks where
  recall grows (all points, not VOC2007's 11); mAP = 100 x the mean over the classes.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.svm import LinearSVC
from torch import Tensor
from torch.utils.data import Dataset

from ssl_bench import storage
from ssl_bench.config import ConfigError, config_hash, one_of, positive
from ssl_bench.data.synthetic_voc import write_voc
from ssl_bench.data.transforms import squash_view
from ssl_bench.data.voc import (
    DIFFICULT,
    GET_VOC,
    LAYOUT,
    POSITIVE,
    VOC_CLASSES,
    VOCDetection,
    devkit_root,
    image_labels,
)
from ssl_bench.eval.features import POOLED, cached, extract
from ssl_bench.protocol import VOCProtocol, synthetic_voc_dir

PROTOCOL = "voc07-svm"  # the scoring; rows label it with the data and splits (VOCProtocol)
DATASETS = ("synthetic", "voc", "voc07")
TRAIN_DIFFICULT = ("negative", "ignore")
# FSSB GETTING_STARTED.md's --costs_list, then the powers svm_helper.parse_cost_list appends: 0.5**4 .. 0.5**19
COSTS: tuple[float, ...] = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, *(0.5**k for k in range(4, 20)))
CLASS_WEIGHT = {1: 2, -1: 1}  # FSSB and VISSL: positives count twice

SVM_DATASET_HELP = {
    "synthetic": "built-in VOC-layout scenes of the synthetic objects, generated under <out>/data (the default)",
    "voc": "any VOC-layout root (svm.root=<dir> with Annotations/, ImageSets/Main/, JPEGImages/): trains on "
    "svm.train_split, tests on svm.test_split",
    "voc07": "PIRL Table 2: Pascal VOC2007 trainval -> VOC2007 test (svm.root=<VOCdevkit>)",
}


@dataclass
class SVMConfig:
    """Linear SVMs on frozen features, VOC07 classification (Goyal et al. 2019; PIRL Table 2, VOC07 column).

    The paper's sweep is 26 costs x 20 classes x 4 fits (3 folds + the chosen cost) per stage: small presets
    shorten ``costs`` and ``layers``.
    """

    # synthetic: built-in VOC-layout scenes; voc: one VOC-layout `root`; voc07: `root` is a VOCdevkit with VOC2007/
    dataset: str = "synthetic"
    root: str = ""
    train_split: str = "trainval"
    test_split: str = "test"
    clip_boxes: bool = False  # clip boxes outside the image (with a warning) instead of stopping (e.g. BCCD)
    layers: list[str] = field(default_factory=lambda: ["all"])  # stage names, "pooled", or "all" (every stage)
    max_dims: int = 9216  # each stage average-pooled to at most this many values (Goyal et al.: ~9k)
    costs: list[float] = field(default_factory=lambda: list(COSTS))  # FSSB's 26, in its order (ties: the first)
    folds: int = 3  # cross-validation folds that choose each class's cost
    max_iter: int = 2000  # liblinear's iteration cap
    train_difficult: str = "negative"  # difficult-only images in training: negative (FSSB, VISSL) | ignore
    synthetic_trainval: int = 400  # the built-in scenes: how many, and their size in px (shared with detection's)
    synthetic_test: int = 200
    synthetic_size: int = 128

    def check(self) -> None:
        positive("svm", self, "max_dims", "max_iter", "synthetic_trainval", "synthetic_test", "synthetic_size")
        one_of("svm", self, "dataset", DATASETS)
        one_of("svm", self, "train_difficult", TRAIN_DIFFICULT)
        if self.folds < 2:
            raise ConfigError(f"svm.folds must be at least 2 (the folds of the cross-validation), got {self.folds}")
        if not self.costs or min(self.costs) <= 0:
            raise ConfigError(f"svm.costs must be positive numbers, at least one, got {self.costs}")
        if not self.layers:
            raise ConfigError('svm.layers is empty: name stages, "pooled", or "all"')


# ---- the protocol: features, labels, solver, AP ----------------------------------------------------------------


def normalise(x: Tensor | np.ndarray) -> np.ndarray:
    """(N, D) -> float64 rows divided by their L2 norm + 1e-5 (FSSB ``svm_helper.normalize_features``)."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1) + 1e-5)[:, None]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """One class's AP, 0-1: ``labels`` > 0 are positives; ranked by ``np.argsort(scores)[::-1]`` (FSSB's order, ties
    included); precision made non-increasing from the right and summed over the recall steps (FSSB
    ``svm_helper.get_precision_recall`` and ``calculate_ap``)."""
    hit = labels[np.argsort(scores)[::-1]] > 0  # (N,)
    if not hit.any():
        raise ValueError("average_precision: no positive among the labels; AP is undefined")
    tp, fp = np.cumsum(hit), np.cumsum(~hit)
    recall = np.concatenate([[0.0], tp / tp[-1], [1.0]])
    precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def train_targets(labels: np.ndarray, difficult: str) -> tuple[np.ndarray, np.ndarray]:
    """One class's VOC labels (1 / 0 / -1) -> (which images train, their +1 / -1 targets). ``negative``: the
    difficult-only images are negatives (FSSB ``train_svm_kfold.py``, VISSL ``SVMTrainer.train_cls``: only a present
    class becomes +1); ``ignore``: they are left out (FSSB ``svm_helper.get_cls_feats_labels``, its low-shot path)."""
    keep = labels != DIFFICULT if difficult == "ignore" else np.ones(len(labels), dtype=bool)
    return keep, np.where(labels[keep] == POSITIVE, 1, -1)


def linear_svc(cost: float, max_iter: int, seed: int) -> LinearSVC:
    """FSSB's and VISSL's classifier; ``random_state`` fixes liblinear's coordinate order (theirs is unseeded)."""
    return LinearSVC(
        C=cost,
        class_weight=CLASS_WEIGHT,
        penalty="l2",
        loss="squared_hinge",
        dual=True,
        tol=1e-4,
        max_iter=max_iter,
        intercept_scaling=1.0,
        random_state=seed,
    )


@dataclass
class ClassFit:
    """One class's SVM: the chosen cost, the mean fold AP of every cost, and how many fits hit ``max_iter``."""

    model: LinearSVC
    cost: float
    cv_ap: list[float]
    not_converged: int


def fit_class(x: np.ndarray, y: np.ndarray, costs: list[float], folds: int, max_iter: int, seed: int) -> ClassFit:
    """Cross-validate every cost on (x (N, D), y (N,) +1 / -1), then train the best one on all of it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)  # counted, not printed: frequent at large C
        cv = [
            float(cross_val_score(linear_svc(c, max_iter, seed), x, y, cv=folds, scoring="average_precision").mean())
            for c in costs
        ]
        cost = costs[int(np.argmax(cv))]
        model = linear_svc(cost, max_iter, seed).fit(x, y)
    late = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ClassFit(model, cost, cv, late)


def unusable(train: np.ndarray, test: np.ndarray, folds: int) -> str:
    """Why one class cannot be scored ("" if it can): ``train`` its +1 / -1 targets, ``test`` its VOC labels."""
    pos, neg = int((train > 0).sum()), int((train < 0).sum())
    if min(pos, neg) < folds:
        return f"{pos} positive and {neg} negative training images; svm.folds={folds} needs {folds} of each"
    if not (test == POSITIVE).any():
        return "no positive test image"
    return ""


def class_scores(
    train_x: np.ndarray,
    train_labels: np.ndarray,
    test_x: np.ndarray,
    test_labels: np.ndarray,
    classes: list[str],
    cfg: SVMConfig,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Per class: {ap (0-1), cost, cv_ap, not_converged}, or {skipped: why}. Features normalised (N, D); labels
    (N, C) in the VOC convention."""
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(classes):
        keep, y = train_targets(train_labels[:, k], cfg.train_difficult)
        why = unusable(y, test_labels[:, k], cfg.folds)
        if why:
            out[name] = {"skipped": why}
            continue
        fit = fit_class(train_x[keep], y, cfg.costs, cfg.folds, cfg.max_iter, seed)
        scored = test_labels[:, k] != DIFFICULT  # the difficult-only test images count neither way
        ap = average_precision(test_labels[scored, k], fit.model.decision_function(test_x[scored]))
        out[name] = {"ap": ap, "cost": fit.cost, "cv_ap": fit.cv_ap, "not_converged": fit.not_converged}
    return out


# ---- the data ---------------------------------------------------------------------------------------------------


def svm_sets(cfg: SVMConfig, shared_dir: Path) -> tuple[VOCDetection, VOCDetection]:
    """(train, test) of ``cfg.dataset``; voc07 uses the 20 Pascal classes, the others the classes their annotations
    name."""
    if cfg.dataset == "voc07":
        root = devkit_root("voc07", cfg.root, cfg.train_split, cfg.test_split, section="svm") / "VOC2007"
        train = VOCDetection(root, cfg.train_split, classes=VOC_CLASSES, clip_boxes=cfg.clip_boxes)
    elif cfg.dataset == "synthetic":
        name = synthetic_voc_dir(cfg.synthetic_trainval, cfg.synthetic_test, cfg.synthetic_size)
        root = write_voc(shared_dir / "data" / name, cfg.synthetic_trainval, cfg.synthetic_test, cfg.synthetic_size)
        train = VOCDetection(root, cfg.train_split, clip_boxes=cfg.clip_boxes)
    else:
        if not cfg.root:
            raise ConfigError(f"svm.dataset=voc needs svm.root=<dir> with {LAYOUT}. {GET_VOC}")
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"svm.root {root} does not exist; set svm.root to a directory with {LAYOUT}. {GET_VOC}")
        train = VOCDetection(root, cfg.train_split, clip_boxes=cfg.clip_boxes)
    return train, VOCDetection(train.root, cfg.test_split, classes=train.classes, clip_boxes=cfg.clip_boxes)


class _Images(Dataset):
    """A VOC split's images, each with its index as the label (the labels are ``voc.image_labels``)."""

    def __init__(self, voc: VOCDetection) -> None:
        self.voc = voc

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.voc[i][0], i


def split_features(ctx: Any, voc: VOCDetection, tag: str, max_dims: int) -> dict[str, Tensor]:
    """Every stage's + pooled features of one split, {layer: (N, D)}, cached in the run directory."""
    info = ctx.splits.info
    layers = [*ctx.backbone.stage_names, POOLED]
    path = ctx.run_dir / f"svm-features-{tag}-{voc.split}.pt"
    feats, _ = cached(
        path,
        lambda: extract(
            ctx.backbone,
            _Images(voc),
            layers,
            info.image_size,
            info.mean,
            info.std,
            ctx.device,
            max_dims=max_dims,
            workers=ctx.workers,
            dtype=ctx.dtype,
            view=squash_view,
            channels_last=ctx.channels_last,
        ),
    )
    return feats


DATA_KEYS = ("dataset", "root", "clip_boxes", "synthetic_trainval", "synthetic_test", "synthetic_size", "max_dims")


def run_svm(ctx: Any, cfg: SVMConfig, layers: list[str]) -> list[tuple[str, str, float, str]]:
    """Train and score on ``ctx`` (an EvalContext: backbone, data info, run directory) for each of ``layers``:
    (layer, "mAP", 0-100, protocol), the protocol "voc07-svm on <data> <train>-><test>" (``VOCProtocol``). Per class AP, cost and fold APs go to ``svm-<hash>.json`` in the run
    directory; a class too rare to cross-validate or without a positive test image is left out, with a warning."""
    train, test = svm_sets(cfg, ctx.shared_dir)
    settings = asdict(cfg)
    tag = config_hash({k: settings[k] for k in DATA_KEYS})[:8]
    train_x, test_x = (split_features(ctx, voc, tag, cfg.max_dims) for voc in (train, test))
    train_labels, test_labels = image_labels(train).numpy(), image_labels(test).numpy()
    rows, record = [], {}
    label = VOCProtocol.of(PROTOCOL, cfg).label
    for layer in layers:
        scores = class_scores(
            normalise(train_x[layer]),
            train_labels,
            normalise(test_x[layer]),
            test_labels,
            list(train.classes),
            cfg,
            ctx.seed,
        )
        aps = [s["ap"] for s in scores.values() if "ap" in s]
        if not aps:
            raise ValueError(
                f"svm: no class of {train.root} can be scored ({scores}); use larger splits or a smaller svm.folds"
            )
        rows.append((layer, "mAP", 100.0 * float(np.mean(aps)), label))
        record[layer] = scores
    skipped = {name: s["skipped"] for name, s in record[layers[0]].items() if "skipped" in s}
    if skipped:
        warnings.warn(f"svm: classes left out of the mAP: {skipped}", stacklevel=2)
    storage.write_text(ctx.run_dir / f"svm-{config_hash(settings)[:8]}.json", json.dumps(record, indent=1))
    return rows
