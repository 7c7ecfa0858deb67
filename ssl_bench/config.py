"""Typed run configuration: a preset (TOML shipped in ``ssl_bench/presets``) plus command-line overrides.

Every key is checked: an unknown key, a value of the wrong type or out of range is a ``ConfigError`` that
names the valid choices. Method hyper-parameters live in each method's own frozen ``Config`` (the paper's
defaults, next to the code that uses them); a preset or ``--set`` overrides them by method name, e.g.
``--set pirl.lam=0.5`` or a ``[pirl]`` table in a preset.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any


class ConfigError(ValueError):
    """A configuration mistake the user can fix; the message says what and how."""


def close_match(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


def unknown(kind: str, name: str, choices: list[str]) -> ConfigError:
    return ConfigError(f"unknown {kind} {name!r}.{close_match(name, choices)} Valid {kind}s: {', '.join(choices)}.")


@dataclass
class DataConfig:
    name: str = "synthetic"
    root: str = ""  # "" = <out>/data for the built-in dataset and the downloadable ones (cifar10, cifar100, stl10)
    image_size: int = 0  # px the methods see; 0 = the dataset's native size (synthetic, CIFAR 32; STL-10 96; ImageNet 224)
    num_train: int = 5000  # synthetic: images generated; real datasets: 0 = all, else a class-balanced cap
    num_test: int = 1000  # as num_train, for the test split
    num_workers: int = 0
    seed: int = 0  # the dataset's own seed (synthetic generation, subsets): the same for every method and run seed
    classes: str = ""  # imagenet100: a file with one wnid per line, or a comma-separated list; "" = CMC's ImageNet-100
    download: bool = False  # cifar10, cifar100, stl10: download into the root when missing (torchvision's downloaders)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.0  # 0 = the method's paper rate, scaled linearly with batch_size / 256
    weight_decay: float = -1.0  # < 0 = the method's paper value
    warmup_epochs: float = 0.0
    precision: str = "auto"  # auto | fp32 | bf16 (auto = bf16 where the hardware has fast bf16)
    channels_last: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms: with fp32 on CPU, runs repeat bit for bit


@dataclass
class LinearConfig:
    """Linear probe on frozen, cached features (Goyal et al. 2019 protocol, shrunk: see `epochs`)."""

    layers: list[str] = field(default_factory=lambda: ["all"])  # stage names, or "all"
    max_dims: int = 9216  # each stage average-pooled to at most this many dims (Goyal et al.: ~9k)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9


@dataclass
class KNNConfig:
    """Weighted kNN of NPID (Wu et al. 2018): cosine similarity, k neighbours weighted by exp(s / T)."""

    k: int = 200
    temperature: float = 0.07


@dataclass
class SemisupConfig:
    """Semi-supervised transfer (PIRL Table 3): class-balanced 1% / 10% label subsets, saved as id files.

    Two modes on the same subsets: ``finetune`` (whole network + fresh linear head) and ``linear`` (frozen
    encoder, low-shot linear probe on the cached pooled features).
    """

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1])
    subset_seed: int = 0  # the subsets depend on this and the dataset only: every method uses the same images
    modes: list[str] = field(default_factory=lambda: ["finetune", "linear"])
    epochs: int = 30  # fine-tuning epochs over the labelled subset (at least `min_steps` steps)
    min_steps: int = 200
    batch_size: int = 256
    lr: float = 0.01  # backbone rate at batch 256 (scaled with batch size); the fresh head uses `head_lr_mult` x
    head_lr_mult: float = 10.0
    weight_decay: float = 5e-4
    momentum: float = 0.9


@dataclass
class DetectionConfig:
    """Faster R-CNN transfer (PIRL Table 1; Detectron2 VOC07+12 R50-C4 recipe, frozen BN).

    Paper schedule: VOC07+12 trainval, 25k iterations at batch 16, step at 17k, lr 0.02 with 100 warm-up
    iterations for supervised / Jigsaw (and any other method), 0.003 with 1000 for NPID++ / PIRL; shorter side
    480-800 (train) / 800 (test). Small presets shrink iterations, batch and image size.
    """

    # synthetic: built-in VOC-layout scenes under <out>/data; voc: one VOC-layout `root` (train_split / test_split of it);
    # voc07+12: the paper's Table 1 data, VOC2007 + VOC2012 trainval -> VOC2007 test; voc07: VOC2007 trainval -> test.
    dataset: str = "synthetic"
    # voc: the directory holding Annotations/, ImageSets/Main/, JPEGImages/;
    # voc07, voc07+12: the VOCdevkit directory holding VOC2007/ (and VOC2012/)
    root: str = ""
    train_split: str = "trainval"
    test_split: str = "test"
    clip_boxes: bool = False  # clip boxes outside the image (with a warning) instead of stopping
    head: str = "c4"  # c4 (res5 as the RoI head, the paper's) | fpn
    freeze_bn: bool = True
    roi_batch_size: int = 512  # sampled RoIs per training image (Detectron2 BATCH_SIZE_PER_IMAGE); most of a C4 step's cost
    min_size: int = 800  # shorter image side (train and test)
    max_size: int = 1333
    iterations: int = 25000
    batch_size: int = 16
    lr: float = 0.0  # 0 = the paper's per-method rate at batch 16 (see above), scaled with batch_size / 16
    warmup_iters: int = -1  # -1 = the paper's per-method warm-up (100 or 1000)
    steps: list[float] = field(default_factory=lambda: [17000 / 25000])  # lr x0.1 at these fractions of iterations
    weight_decay: float = 1e-4
    momentum: float = 0.9
    protocols: list[str] = field(default_factory=lambda: ["voc07", "coco"])
    synthetic_trainval: int = 400  # the built-in scenes: how many, and their size in px
    synthetic_test: int = 200
    synthetic_size: int = 128


@dataclass
class InvarianceConfig:
    """PIRL Fig. 4: L2 distance between unit-normalised representations of an image and its transformed versions."""

    num_images: int = 500  # a fixed set: the first images of the test split
    transforms: list[str] = field(default_factory=lambda: ["jigsaw", "rotation"])
    repeats: int = 4  # transformed versions per image (different permutations / rotations)
    seed: int = 0


@dataclass
class CheckpointConfig:
    """How often long jobs save where they are (pretraining, detection fine-tuning). Not part of any result's hash:
    a run resumed from any checkpoint ends with the same numbers."""

    minutes: float = 10.0  # also save mid-epoch / mid-schedule after this long (0 = only at epoch ends)
    every_steps: int = 0  # also save every this many steps (0 = off)


@dataclass
class RunConfig:
    preset: str = "default"
    description: str = ""
    methods: list[str] = field(default_factory=lambda: ["random", "supervised", "autoencoder"])
    backbones: list[str] = field(default_factory=lambda: ["resnet18"])
    seeds: list[int] = field(default_factory=lambda: [0])
    evals: list[str] = field(default_factory=lambda: ["linear", "knn"])
    device: str = "auto"
    threads: int = 0  # CPU threads for torch (0 = torch's default, one per core); results depend on it in the last bits
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    semisup: SemisupConfig = field(default_factory=SemisupConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"pirl": {"lam": 0.5}}


POSITIVE = {
    "train.epochs", "train.batch_size", "linear.epochs",
    "linear.batch_size", "linear.max_dims", "knn.k", "semisup.epochs", "semisup.batch_size", "semisup.lr",
    "detection.min_size", "detection.max_size", "detection.iterations", "detection.batch_size", "detection.roi_batch_size",
    "detection.synthetic_trainval", "detection.synthetic_test", "detection.synthetic_size",
    "invariance.num_images", "invariance.repeats",
}  # fmt: skip
NON_NEGATIVE = {"data.image_size", "data.num_train", "data.num_test", "data.num_workers", "train.warmup_epochs", "train.lr", "linear.lr", "linear.weight_decay",
                "checkpoint.minutes", "checkpoint.every_steps", "threads"}
CHOICES = {"train.precision": ["auto", "fp32", "bf16"], "detection.head": ["c4", "fpn"],
           "detection.dataset": ["synthetic", "voc", "voc07", "voc07+12"]}
LIST_CHOICES = {"semisup.modes": ["finetune", "linear"], "detection.protocols": ["voc07", "coco"],
                "invariance.transforms": ["jigsaw", "rotation"]}


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn a TOML value or a command-line string into the annotated type, or explain why not."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(v, item, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            out = tp(value)
            if tp is int and isinstance(value, float) and value != int(value):
                raise ValueError
            return out
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {'an integer' if tp is int else 'a number'}, got {value!r}") from None
    if tp is str:
        return str(value)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value in (None, "none", "None"):
                    return None
                continue
            try:
                return coerce(value, arm, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    return value


def set_field(obj: Any, key: str, value: Any, prefix: str = "") -> None:
    """Set ``obj.<key>`` (a dataclass field) from a raw value, checking name and type."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    full = f"{prefix}{key}"
    if key not in fields:
        names = list(fields)
        raise ConfigError(f"unknown config key {full!r}.{close_match(key, names)} Valid keys here: {', '.join(prefix + n for n in names)}.")
    hints = typing.get_type_hints(type(obj))
    current = getattr(obj, key)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(f"{full}: is a section; set its keys, e.g. {full}.{dataclasses.fields(current)[0].name}=...")
        for k, v in value.items():
            set_field(current, k, v, prefix=f"{full}.")
        return
    setattr(obj, key, coerce(value, hints[key], full))


def build_frozen(cls: type, overrides: dict[str, Any], prefix: str = "") -> Any:
    """``cls(**defaults | overrides)`` for a (frozen) dataclass, each override checked by name and coerced by type."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            names = sorted(fields)
            raise ConfigError(f"unknown config key {(prefix + key)!r}.{close_match(key, names)} Valid keys: {', '.join(prefix + n for n in names)}.")
        values[key] = coerce(value, hints[key], prefix + key)
    out = cls(**values)
    check = getattr(out, "check", None)
    if callable(check):
        check()  # a method config's own range checks (e.g. 0 <= lam <= 1)
    return out


def _get(cfg: RunConfig, key: str) -> Any:
    """The value of a dotted key ("train.epochs") or a top-level one ("threads")."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig) -> None:
    for key in POSITIVE | NON_NEGATIVE:
        value = _get(cfg, key)
        if key in POSITIVE and value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
        if key in NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} must be zero or positive, got {value}")
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(choices)}")
    for key, choices in LIST_CHOICES.items():
        section, name = key.split(".")
        for value in getattr(getattr(cfg, section), name):
            if value not in choices:
                raise ConfigError(f"{key}: {value!r} is not valid; choose from {', '.join(choices)}")
    for value in cfg.semisup.fractions:
        if not 0 < value <= 1:
            raise ConfigError(f"semisup.fractions: {value} is not a fraction in (0, 1]; e.g. 0.01,0.1 for 1% and 10%")
    for value in cfg.detection.steps:
        if not 0 < value < 1:
            raise ConfigError(f"detection.steps: {value} is not a fraction of the iterations in (0, 1)")
    for name in ("methods", "backbones", "seeds", "evals"):
        if not getattr(cfg, name):
            raise ConfigError(f"{name} is empty: name at least one")


def available_presets() -> dict[str, str]:
    """Preset name -> its one-line description."""
    out = {}
    for entry in sorted(resources.files("ssl_bench.presets").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = tomllib.loads(entry.read_text()).get("description", "")
    return out


def load_preset(name: str) -> dict[str, Any]:
    presets = available_presets()
    if name not in presets:
        raise unknown("preset", name, list(presets))
    return tomllib.loads(resources.files("ssl_bench.presets").joinpath(f"{name}.toml").read_text())


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["train.epochs=3", "pirl.lam=0.2"]`` -> nested dict; values stay strings and are coerced later."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value.strip()
    return out


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve(preset: str = "default", overrides: dict[str, Any] | None = None, method_names: list[str] | None = None) -> RunConfig:
    """Preset + overrides -> a checked RunConfig. Tables named after a method go to ``method_params``."""
    raw = merge(load_preset(preset), overrides or {})
    method_names = method_names or []
    cfg = RunConfig(preset=preset)
    for key, value in raw.items():
        if key in method_names:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: method parameters go as {key}.<name>=value")
            cfg.method_params[key] = merge(cfg.method_params.get(key, {}), value)
        elif key == "method_params":
            raise ConfigError("set method parameters by method name, e.g. --set pirl.lam=0.5")
        else:
            set_field(cfg, key, value)
    validate(cfg)
    return cfg


def requested_keys(cfg: RunConfig, method: str) -> set[str]:
    """The method parameters the overrides set (``--set pirl.num_negatives=...``), as opposed to the preset's values.

    A run must honour these exactly or stop; a paper or preset default may be adapted to a small dataset.
    """
    preset = load_preset(cfg.preset).get(method, {}) if cfg.preset in available_presets() else {}
    return {k for k, v in cfg.method_params.get(method, {}).items() if k not in preset or preset[k] != v}


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def config_hash(payload: Any) -> str:
    """A stable 16-hex-digit hash of any JSON-able structure (dataclasses included)."""
    text = json.dumps(payload, sort_keys=True, default=to_dict, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
