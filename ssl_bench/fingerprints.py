"""Fingerprints: the tight, portable layer of the regression gate (``ssl-bench check --fingerprints``).

End-to-end numbers of a short training run are chaotic: the last bits that differ between two CPUs (or a GPU),
two BLAS builds or two thread counts grow, over a few epochs, into points of accuracy. A fingerprint avoids the
amplification: it runs every method for a few steps, and every evaluation once, on inputs that are fixed here
(a seeded tiny backbone, integer images, seeded features and detections; no files, no data loader), mostly in
float64, and records what comes out: per step the loss and the method's other outputs, the learning rate, the
gradient norm, how far the parameters moved, the buffers (memory bank, Z, batch-norm statistics) and summaries of
the augmented views; per evaluation its scores and the weights it fitted. Across machines these differ only by
rounding (measured: README, "Regression check"), so they are compared at ``RTOL``; they move when a loss, a
head, an augmentation, a default, a schedule or an evaluator changes. The method and evaluation configs'
defaults are recorded too and compared exactly, so a changed default is named in the failure.

Committed as ``results/baselines/fingerprints.json``; ``--update`` rewrites it on purpose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssl_bench import storage
from ssl_bench.backbone import Backbone
from ssl_bench.config import CheckpointConfig, TrainConfig, without_added
from ssl_bench.data.batch import collate
from ssl_bench.data.transforms import eval_view
from ssl_bench.data.types import DataInfo, Indexed
from ssl_bench.detection.coco import coco_eval
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.detection.records import Detections, GroundTruth, ImageRecord
from ssl_bench.detection.voc07 import voc07_eval
from ssl_bench.engine import EpochOrder, Trainer, epoch_seed, steps_per_epoch
from ssl_bench.eval.invariance import InvarianceConfig, backbone_distances, summary
from ssl_bench.eval.knn import KNNConfig, knn_scores
from ssl_bench.eval.linear_probe import LinearConfig, topk_accuracy, train_linear
from ssl_bench.eval.semisup import SemisupConfig, balanced_subset, lowshot_linear
from ssl_bench.methods import METHODS, Method
from ssl_bench.modules.memory_bank import MemoryBank

SCHEMA = 1
# |now - baseline| <= ATOL + RTOL * |baseline|. Measured on one AMD EPYC (AVX2): 1 vs 2 threads moved numbers by
# 2e-16 relative; the other CPUs' kernels (ATEN_CPU_CAPABILITY=default, MKL_ENABLE_INSTRUCTIONS=SSE4_2,
# DNNL_MAX_CPU_ISA=SSE41) by at most 5e-6 relative and 5e-8 absolute (float32 similarities near zero). The tolerances
# are 20x those; a one-line change to a method, a default or an evaluator moves its numbers by 1e-3 or more.
RTOL = 1e-4
ATOL = 1e-6

BACKBONE = (
    "resnet18-smallstem-w0.125"  # stages of 8, 16, 32, 64 channels: every block type, a fraction of a second a step
)
IMAGE_SIZE = 24  # divisible into 3x3 jigsaw cells of 8 px (6 px tiles) and rotatable
NUM_IMAGES = 16
NUM_CLASSES = 4
BATCH = 8
EPOCHS = 2  # 2 steps each: the epoch-level seeding, the data order and the schedule all take part
SEED = 0

# name -> (method, non-default options). Every method with its paper defaults, plus the variants whose code paths
# the defaults leave unused (denoising, label smoothing, PIRL's rotation transform, InfoNCE, NCE's EMA of Z, RotNet's
# one rotation, per-tile normalisation).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "supervised": ("supervised", {}),
    "supervised+label_smoothing": ("supervised", {"label_smoothing": 0.1}),
    "autoencoder": ("autoencoder", {}),
    "autoencoder+denoising": ("autoencoder", {"noise_std": 0.1}),
    "rotnet": ("rotnet", {}),
    "rotnet+one_rotation": ("rotnet", {"all_rotations": False}),
    "jigsaw": ("jigsaw", {}),
    "jigsaw+per_tile_norm": ("jigsaw", {"per_tile_norm": True}),
    "npidpp": ("npidpp", {}),
    "npidpp+z_ema": ("npidpp", {"z_momentum": 0.99}),
    "npidpp+infonce": ("npidpp", {"loss": "infonce"}),
    "pirl": ("pirl", {}),
    "pirl+z_ema": ("pirl", {"z_momentum": 0.99}),
    "pirl+rotation": ("pirl", {"transform": "rotation"}),
    "pirl+infonce": ("pirl", {"loss": "infonce"}),
}


@contextlib.contextmanager
def fixed_torch(dtype: torch.dtype = torch.float64) -> Iterator[None]:
    """Deterministic kernels, ``dtype`` as the default, the global RNG seeded; everything restored afterwards."""
    was_dtype, was_det = torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(SEED)
        try:
            yield
        finally:
            torch.set_default_dtype(was_dtype)
            torch.use_deterministic_algorithms(was_det)


def images(n: int = NUM_IMAGES, size: int = IMAGE_SIZE, seed: int = SEED) -> list[tuple[Tensor, int]]:
    """n (3, size, size) images with labels i % NUM_CLASSES, from integer operations only (exact anywhere): a coarse
    6x6 colour grid upsampled by repetition, plus per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    cells = size // 6
    coarse = torch.randint(0, 256, (n, 3, 6, 6), generator=g)
    noise = torch.randint(-24, 25, (n, 3, size, size), generator=g)
    full = coarse.repeat_interleave(cells, 2).repeat_interleave(cells, 3) + noise
    # Handed to the transforms as float32 in [0, 1], not uint8: torch's uint8 antialiased resize has an AVX2-only
    # fixed-point kernel that differs from the other CPUs' by whole grey levels, its float kernels only by rounding.
    return [(full[i].clamp(0, 255).float() / 255, i % NUM_CLASSES) for i in range(n)]


class ImageList(torch.utils.data.Dataset):
    def __init__(self, items: list[tuple[Tensor, int]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.items[i]


def data_info(n: int = NUM_IMAGES) -> DataInfo:
    return DataInfo("fingerprint", NUM_CLASSES, n, IMAGE_SIZE, (0.5, 0.45, 0.4), (0.25, 0.25, 0.25))


def norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def view_summary(views: dict[str, Tensor]) -> dict[str, float]:
    """Sum of absolute values and of squares of each image view (labels: their sum), so an augmentation change shows
    (not the plain sum: per-tile normalised jigsaw tiles sum to zero up to rounding)."""
    out = {}
    for name, v in sorted(views.items()):
        if not v.is_floating_point():
            out[f"view.{name}.sum"] = int(v.sum())
            continue
        v = v.detach().double()
        out[f"view.{name}.abs_sum"] = float(v.abs().sum())
        out[f"view.{name}.sumsq"] = float(v.pow(2).sum())
    return out


def build(variant: str) -> Method:
    name, options = VARIANTS[variant]
    cls = METHODS[name]
    cfg = cls.Config(**options)
    if hasattr(cfg, "check"):
        cfg.check()
    info = data_info()
    cfg.check_data(info)
    method = cls(Backbone(BACKBONE), cfg, info).double()  # float64 weights: rounding stays far below any real change
    for module in method.modules():
        if isinstance(module, MemoryBank):
            module.float()  # the bank is float32 by design (its scores are computed in float32)
    return method


def method_fingerprint(variant: str) -> dict[str, Any]:
    """EPOCHS x 2 training steps of one method variant through the engine's own step, optimiser and schedule:
    {"init": {...}, "steps": [{...}, ...]} (see the module docstring)."""
    with fixed_torch(torch.float32):  # built as in a run (same initial draws), then moved to float64
        method = build(variant)
        params = [p for p in method.parameters() if p.requires_grad]
        start = [p.detach().clone() for p in params]
        init = {
            "param_norm": norm(params),
            "buffer_norm": norm(floating_buffers(method)),
            "num_params": sum(p.numel() for p in params),
        }
        if not method.trains:
            return {"init": init, "steps": []}
        train = TrainConfig(epochs=EPOCHS, batch_size=BATCH, precision="fp32", channels_last=False, deterministic=True)
        dataset = Indexed(ImageList(images()), method.transform())
        with tempfile.TemporaryDirectory(prefix="ssl-bench-fingerprint-") as run_dir:  # the Trainer's; nothing is saved
            trainer = Trainer(
                method, train, torch.device("cpu"), Path(run_dir), SEED, checkpoint=CheckpointConfig(minutes=0)
            )
            trainer.model = method  # what fit() sets up (no DistributedDataParallel here); step is the run's own step
            optimizer, scheduler = trainer.optimizer(steps_per_epoch(len(dataset), BATCH))
            steps = []
            for epoch in range(EPOCHS):
                torch.manual_seed(epoch_seed(SEED, epoch) + 1)  # as Trainer.fit
                method.train()
                dataset.epoch_seed = epoch_seed(SEED, epoch)
                order = EpochOrder(len(dataset), BATCH, SEED, epoch).order
                for step in range(len(order) // BATCH):
                    batch = collate([dataset[i] for i in order[step * BATCH : (step + 1) * BATCH]])
                    batch.views = {k: v.double() if v.is_floating_point() else v for k, v in batch.views.items()}
                    record = {"lr": scheduler.get_last_lr()[0], **view_summary(batch.views)}
                    out = trainer.step(batch, optimizer, epoch, step)
                    scheduler.step()
                    record.update(out)
                    record["grad_norm"] = norm([p.grad for p in params if p.grad is not None])
                    record["update_norm"] = norm([p - s for p, s in zip(params, start)])
                    record["param_norm"] = norm(params)
                    record["buffer_norm"] = norm(floating_buffers(method))
                    steps.append(record)
        return {"init": init, "steps": steps}


def floating_buffers(module: torch.nn.Module) -> list[Tensor]:
    return [b for b in module.buffers() if b.is_floating_point()]


# ---- evaluations on fixed inputs ----------------------------------------------------------------------------------


def clustered_features(n: int, dim: int = 16, classes: int = NUM_CLASSES, seed: int = 1) -> tuple[Tensor, Tensor]:
    """(n, dim) float32 features around seeded class centres (overlapping: accuracies well inside (0, 100)), labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g, dtype=torch.float64) * 1.2
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x.float(), y


def linear_fingerprint() -> dict[str, float]:
    """The linear probe (LinearConfig defaults) on fixed features: accuracy, fitted weights, test logits."""
    with fixed_torch(torch.float32):
        train_x, train_y = clustered_features(160, seed=1)
        test_x, test_y = clustered_features(80, seed=2)
        head = train_linear(train_x, train_y, NUM_CLASSES, LinearConfig(), seed=SEED)
        with torch.no_grad():
            logits = head(test_x)
        linear = head[1]
        return {
            **topk_accuracy(logits, test_y, (1, 2)),
            "weight_norm": norm([linear.weight]),
            "bias_norm": norm([linear.bias]),
            "logits_sumsq": float(logits.double().pow(2).sum()),
            "logits_sum_abs": float(logits.double().abs().sum()),
        }


def knn_fingerprint() -> dict[str, float]:
    """Weighted kNN (KNNConfig defaults) on fixed features: accuracy and the summed votes."""
    cfg = KNNConfig()
    with fixed_torch(torch.float32):
        train_x, train_y = clustered_features(240, seed=3)
        test_x, test_y = clustered_features(80, seed=4)
        scores = knn_scores(train_x, train_y, test_x, NUM_CLASSES, cfg.k, cfg.temperature)
        return {
            **topk_accuracy(scores, test_y, (1, 2)),
            "votes_log_sum": float(scores.double().clamp_min(1e-30).log().sum()),
        }


def semisup_fingerprint() -> dict[str, Any]:
    """The class-balanced label subsets (SemisupConfig defaults) of a fixed label list, and the low-shot probe config."""
    cfg = SemisupConfig()
    labels = [i % 10 for i in range(1000)]
    out: dict[str, Any] = {}
    for fraction in cfg.fractions:
        ids = balanced_subset(labels, fraction, cfg.subset_seed)
        out[f"subset_{fraction:g}"] = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]
        out[f"lowshot_linear_{fraction:g}"] = dataclasses.asdict(lowshot_linear(LinearConfig(), len(ids)))
    return out


def view_fingerprint() -> dict[str, float]:
    """The evaluation view (features, kNN, invariance, semi-supervised test) of fixed images."""
    info = data_info()
    view = eval_view(info.image_size, info.mean, info.std)
    with fixed_torch(torch.float32):
        x = torch.stack([view(image) for image, _ in images(4)]).double()
    return {"sum": float(x.sum()), "sumsq": float(x.pow(2).sum()), "shape": list(x.shape)}


def invariance_fingerprint() -> dict[str, dict[str, float]]:
    """Invariance distances (InvarianceConfig defaults) of the fresh tiny backbone on fixed views, per transform."""
    cfg = InvarianceConfig()
    info = data_info()
    view = eval_view(info.image_size, info.mean, info.std)
    out = {}
    with fixed_torch(torch.float64):
        backbone = Backbone(BACKBONE)
        views = torch.stack([view(image) for image, _ in images(8)]).double()
        for transform in cfg.transforms:
            out[transform] = summary(backbone_distances(backbone, views, transform, cfg, torch.device("cpu")))
    return out


def detection_set() -> tuple[GroundTruth, Detections]:
    """Seeded ground truth (3 classes, difficult boxes) and scored detections around it: shifted copies, duplicates,
    misses, background boxes, and boxes at exactly IoU 0.5 and 0.75 (integer corners, widths divisible by 4), where an
    evaluator's ``>`` and ``>=`` part."""
    rng = np.random.default_rng(7)
    records, rows = [], []
    for i in range(12):
        n = int(rng.integers(1, 5))
        xy = rng.integers(0, 60, size=(n, 2))
        wh = rng.integers(10, 40, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(
            np.float64
        )  # 0-based: width xmax - xmin, in VOC's convention too
        labels = rng.integers(1, 4, size=n)
        difficult = rng.random(n) < 0.15
        records.append(ImageRecord(i, 100, 100, boxes, labels, difficult))
        for b, c in zip(boxes, labels):
            w = b[2] - b[0]
            kind = rng.random()
            if kind < 0.5:  # a shifted copy
                rows.append((i, c, np.clip(b + rng.normal(0, 0.08 * w, 4), 0, 99), rng.random()))
            elif kind < 0.8 and w % 4 == 0:  # the only detection of this box: IoU exactly 0.5 or 0.75
                part = 0.5 if kind < 0.65 else 0.75
                rows.append((i, c, np.array([b[0], b[1], b[0] + part * w, b[3]]), rng.random()))
            elif kind < 0.8 and w % 2 == 0:
                rows.append((i, c, np.array([b[0], b[1], b[0] + w / 2, b[3]]), rng.random()))
            if rng.random() < 0.3:  # a duplicate, lower score
                rows.append((i, c, b + rng.normal(0, 2, 4), rng.random() * 0.5))
        for _ in range(int(rng.integers(0, 3))):  # background
            x, y = rng.integers(0, 80, 2)
            rows.append((i, int(rng.integers(1, 4)), np.array([x, y, x + 15, y + 15], float), rng.random() * 0.7))
    gt = GroundTruth(["cat", "dog", "bus"], records)
    dets = Detections(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.stack([np.sort(r[2].reshape(2, 2), 0).reshape(4) for r in rows]),
        np.array([r[3] for r in rows]),
    )
    return gt, dets


def detection_fingerprint() -> dict[str, dict[str, Any]]:
    gt, dets = detection_set()
    return {"voc07": voc07_eval(gt, dets), "coco": coco_eval(gt, dets)}


def config_defaults() -> dict[str, dict[str, Any]]:
    """Every method's paper defaults and every evaluation's defaults, compared exactly."""
    out = {f"method.{name}": dataclasses.asdict(cls.Config()) for name, cls in sorted(METHODS.items())}
    for name, cls in [
        ("train", TrainConfig),
        ("linear", LinearConfig),
        ("knn", KNNConfig),
        ("semisup", SemisupConfig),
        ("detection", DetectionConfig),
        ("invariance", InvarianceConfig),
    ]:
        defaults = without_added(name, dataclasses.asdict(cls()))  # newer fields: recorded once they change behaviour
        out[f"eval.{name}" if name != "train" else "train"] = defaults
    return out


EVALUATIONS: dict[str, Callable[[], Any]] = {
    "linear": linear_fingerprint,
    "knn": knn_fingerprint,
    "semisup": semisup_fingerprint,
    "eval_view": view_fingerprint,
    "invariance": invariance_fingerprint,
    "detection": detection_fingerprint,
}


def selected(key: str, select: Sequence[str]) -> bool:
    """Whether the fingerprint ``key`` ("methods.npidpp", "evaluations.linear.top1") is one of the ``select`` prefixes
    or lies under one (no selection: all)."""
    return not select or any(key == p or key.startswith(p + ".") or p.startswith(key + ".") for p in select)


def compute(select: Sequence[str] = (), progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The fingerprints (those under the ``select`` prefixes, e.g. "methods.pirl"; all without): {"schema", "rtol",
    "atol", "backbone", "configs", "methods": {variant: ...}, "evaluations": {name: ...}}."""
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "rtol": RTOL,
        "atol": ATOL,
        "backbone": BACKBONE,
        "methods": {},
        "evaluations": {},
    }
    if selected("configs", select):
        out["configs"] = config_defaults()
    jobs = [(f"methods.{v}", lambda v=v: method_fingerprint(v)) for v in VARIANTS]
    jobs += [(f"evaluations.{name}", fn) for name, fn in EVALUATIONS.items()]
    for key, fn in jobs:
        if not selected(key, select):
            continue
        t0 = time.perf_counter()
        section, name = key.split(".")
        out[section][name] = fn()
        if progress:
            progress(f"{key}: {time.perf_counter() - t0:.1f} s")
    return out


# ---- comparison ---------------------------------------------------------------------------------------------------


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists of records -> {"methods.npidpp.steps.2.loss": value}; a list of plain values is a leaf."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        out = {}
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: tree}


@dataclasses.dataclass(frozen=True)
class Difference:
    key: str
    baseline: Any
    now: Any

    @property
    def relative(self) -> float | None:
        if _is_number(self.baseline) and _is_number(self.now):
            return abs(self.now - self.baseline) / max(abs(self.baseline), 1e-300)
        return None

    def describe(self) -> str:
        if self.baseline is _ABSENT:
            return f"{self.key}: new (not in the baseline) = {self.now!r}"
        if self.now is _ABSENT:
            return f"{self.key}: missing (baseline {self.baseline!r})"
        rel = self.relative
        extra = f" (relative {rel:.2g})" if rel is not None else ""
        return f"{self.key}: {_short(self.baseline)} -> {_short(self.now)}{extra}"


_ABSENT = object()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _short(v: Any) -> str:
    return f"{v:.9g}" if isinstance(v, float) else repr(v)


def compare(baseline: dict[str, Any], now: dict[str, Any], select: Sequence[str] = ()) -> tuple[list[Difference], int]:
    """(every key whose value differs, the number of keys compared). Numbers differ beyond the baseline's rtol/atol,
    anything else when not equal; keys on one side only count as differences. ``select``: only keys under these
    prefixes (as ``compute``)."""
    rtol, atol = float(baseline.get("rtol", RTOL)), float(baseline.get("atol", ATOL))
    skip = {"schema", "rtol", "atol", "environment"}
    a, b = (
        flatten({k: v for k, v in baseline.items() if k not in skip}),
        flatten({k: v for k, v in now.items() if k not in skip}),
    )
    keys = sorted(k for k in set(a) | set(b) if selected(k, select))
    out = []
    for key in keys:
        x, y = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if x is _ABSENT or y is _ABSENT:
            out.append(Difference(key, x, y))
        elif _is_number(x) and _is_number(y):
            if not (math.isfinite(x) and math.isfinite(y)):
                if not (x == y or (math.isnan(x) and math.isnan(y))):
                    out.append(Difference(key, x, y))
            elif abs(y - x) > atol + rtol * abs(x):
                out.append(Difference(key, x, y))
        elif x != y:
            out.append(Difference(key, x, y))
    return out, len(keys)


def load(path: Path) -> dict[str, Any]:
    """The committed fingerprints; FileNotFoundError / ValueError (schema) with the fix."""
    fix = f"Write them on purpose with `ssl-bench check --fingerprints --fingerprints-file {path} --update` and commit the file."
    if not path.is_file():
        raise FileNotFoundError(f"no fingerprints at {path}. {fix}")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"fingerprints {path} is not valid JSON ({err}). {fix}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"fingerprints {path} have schema {got!r}, this ssl-bench writes schema {SCHEMA}. {fix}")
    return data


def write(data: dict[str, Any], path: Path) -> None:
    from ssl_bench.check import environment

    storage.write_text(path, json.dumps({**data, "environment": environment()}, indent=1, sort_keys=False) + "\n")
