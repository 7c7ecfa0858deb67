"""Config machinery shared by every layer, and the sections the low layers read (data, train, checkpoint, log).

Every key is checked: an unknown key, a value of the wrong type or out of range is a ``ConfigError`` that names the
valid choices. Each section is a dataclass that checks itself (``check``) next to its fields; the evaluation
sections live beside their evaluations (``eval/*.py``, ``detection/config.py``) and method hyper-parameters in each
method's own frozen ``Config``. A field left ``None`` means "someone else's value" (the method's paper rate, the
dataset's native size): ``run_config.resolve`` fills every one of them in, once, before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration mistake the user can fix; the message says what and how."""


def close_match(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


def unknown(kind: str, name: str, choices: list[str]) -> ConfigError:
    return ConfigError(f"unknown {kind} {name!r}.{close_match(name, choices)} Valid {kind}s: {', '.join(choices)}.")


def _key(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


# The fields that may be left unset (None): what they resolve to (said when a value that once meant it is refused),
# and the sentinel they were before None existed, which they still hash as (run_config.hashed: cached results keep
# their hashes).
UNSET: dict[str, tuple[str, float]] = {
    "train.lr": ("the method's paper rate", 0.0),
    "train.weight_decay": ("the method's paper value", -1.0),
    "detection.lr": ("the method's paper rate", 0.0),
    "detection.warmup_iters": ("the method's paper warm-up", -1),
    "data.image_size": ("the dataset's native size", 0),
}
# Fields added after the results and fingerprints they affect were first recorded, with the value that behaves as
# before they existed: left out of the hash (run_config.hashed) and of the fingerprinted defaults while at that
# value, so earlier results keep their hashes and results/baselines/fingerprints.json stays valid; otherwise they
# count. The detection fields (issue 17) have new defaults (Detectron2's), so they count unless a preset sets the
# old value (ci does).
ADDED: dict[str, Any] = {
    "semisup.subset_files": [],
    "semisup.nesterov": False,
    "linear.protocol": "cached",
    "linear.pool": "adaptive",
    "linear.val_fraction": 0.0,
    "detection.freeze_at": 2,
    "detection.multiscale": False,
    "detection.roi_aligned": False,
    "detection.box_loss": "smooth_l1",
    "detection.coco_backend": "pycocotools",  # who computes COCOeval; faster-coco-eval gives the same numbers
    "train.device_augment": "auto",  # CPU runs as before; CUDA: the same draws, the colour's pixels up to rounding
    "data.framing": "wide",  # the synthetic scenes before framings
}


def without_added(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (one section as a dict) without its ``ADDED`` fields that hold their old-behaviour value: what the
    result hashes and the fingerprinted defaults see."""
    added = {key.split(".")[1]: value for key, value in ADDED.items() if key.split(".")[0] == section}
    return {k: v for k, v in values.items() if not (k in added and v == added[k])}


def _unset_hint(key: str) -> str:
    return f" (leave it unset for {UNSET[key][0]})" if key in UNSET else ""


def positive(section: str, obj: Any, *names: str) -> None:
    """Each named field is > 0 (a ``None`` field is unset and left to ``resolve``)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{_key(section, name)} must be positive, got {value}{_unset_hint(_key(section, name))}")


def non_negative(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < 0:
            raise ConfigError(
                f"{_key(section, name)} must be zero or positive, got {value}{_unset_hint(_key(section, name))}"
            )


def one_of(section: str, obj: Any, name: str, choices: Sequence[str]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ConfigError(f"{_key(section, name)}={value!r} is not valid; choose one of {', '.join(choices)}")


def each_of(section: str, obj: Any, name: str, choices: Sequence[str]) -> None:
    for value in getattr(obj, name):
        if value not in choices:
            raise ConfigError(f"{_key(section, name)}: {value!r} is not valid; choose from {', '.join(choices)}")


FRAMINGS = ("wide", "close", "bare")  # data.framing; their geometry is ssl_bench.data.render.FRAMINGS


@dataclass
class DataConfig:
    name: str = "synthetic"
    root: str = ""  # "" = <out>/data for the built-in dataset and the downloadable ones (cifar10, cifar100, stl10)
    image_size: int | None = (
        None  # px the methods see; None = the dataset's native size (CIFAR 32, STL-10 96, ImageNet 224)
    )
    num_train: int = 5000  # synthetic: images generated; real datasets: 0 = all, else a class-balanced cap
    num_test: int = 1000  # as num_train, for the test split
    num_workers: int = 0
    seed: int = 0  # the dataset's own seed (synthetic generation, subsets): the same for every method and run seed
    classes: str = ""  # imagenet100: a file with one wnid per line, or a comma-separated list; "" = CMC's ImageNet-100
    download: bool = False  # cifar10, cifar100, stl10: download into the root when missing (torchvision's downloaders)
    # synthetic: "wide" (a small object in a large outdoor scene) | "close" (the object fills it) | "bare" (the wide
    # object on a flat background, no other cue of which way is up)
    framing: str = "wide"

    def check(self) -> None:
        positive("data", self, "image_size")
        non_negative("data", self, "num_train", "num_test", "num_workers")
        one_of("data", self, "framing", FRAMINGS)
        if self.framing != "wide" and self.name != "synthetic":
            raise ConfigError(
                f"data.framing={self.framing!r} applies to the built-in synthetic scenes only, not to data.name="
                f"{self.name!r}; leave it at 'wide' (the default) for other datasets"
            )


PRECISIONS = ("auto", "fp32", "bf16")
DEVICE_AUGMENT = ("auto", "on", "off")  # data.device_augment.enabled


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = (
        None  # None = the method's paper rate (given at 256 inputs), scaled linearly with the inputs per step / 256
    )
    weight_decay: float | None = None  # None = the method's paper value
    warmup_epochs: float = 0.0
    precision: str = "auto"  # auto | fp32 | bf16 (auto = bf16 where the hardware has fast bf16)
    channels_last: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms: with fp32 on CPU, runs repeat bit for bit
    # colour augmentation for the whole batch on the device (data.device_augment): auto = on CUDA, off on CPU
    device_augment: str = "auto"

    def check(self) -> None:
        positive("train", self, "epochs", "batch_size", "lr")
        non_negative("train", self, "warmup_epochs", "weight_decay")
        one_of("train", self, "precision", PRECISIONS)
        one_of("train", self, "device_augment", DEVICE_AUGMENT)

    def resolved(self, method: Any) -> TrainConfig:
        """The settings ``method`` (a method's Config: lr at 256 inputs, weight_decay, epochs) trains with."""
        inputs = self.batch_size * method.inputs_per_image  # network inputs per step (RotNet: x4 with all rotations)
        return dataclasses.replace(
            self,
            epochs=method.epochs if method.epochs is not None else self.epochs,
            lr=self.lr if self.lr is not None else method.lr * inputs / 256,
            weight_decay=self.weight_decay if self.weight_decay is not None else method.weight_decay,
        )


@dataclass
class CheckpointConfig:
    """How often long jobs save where they are (pretraining, detection fine-tuning). Not part of any result's hash:
    a run resumed from any checkpoint ends with the same numbers."""

    minutes: float = 10.0  # also save mid-epoch / mid-schedule after this long (0 = only at epoch ends)
    every_steps: int = 0  # also save every this many steps (0 = off)

    def check(self) -> None:
        non_negative("checkpoint", self, "minutes", "every_steps")


@dataclass
class LogConfig:
    """Where pretraining's per-epoch metrics go besides ``metrics.jsonl`` (``ssl_bench.metrics_log``). Not part of any
    result's hash: logging changes no number."""

    tensorboard: bool = False  # TensorBoard event files in the run directory (the tensorboard extra)
    wandb: bool = False  # a W&B run under <run dir>/wandb (the wandb extra; WANDB_MODE=offline needs no account)

    def check(self) -> None:
        """A missing extra fails here, when the config is loaded, before anything trains."""
        for extra in ("tensorboard", "wandb"):  # each key is named after its extra and the module it needs
            if getattr(self, extra) and importlib.util.find_spec(extra) is None:
                raise missing_extra(extra)


def missing_extra(extra: str) -> ConfigError:
    """``log.<extra>`` asked for an optional extra that is not installed."""
    return ConfigError(f'log.{extra}=true needs the {extra} extra: pip install -e ".[{extra}]"')


def unresolved(obj: Any, prefix: str = "") -> list[str]:
    """The dotted names of every field still ``None`` in a (nested) config: empty once ``resolve`` has run."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            out.append(prefix + f.name)
        elif dataclasses.is_dataclass(value):
            out += unresolved(value, f"{prefix}{f.name}.")
    return out


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
        arms = [arm for arm in typing.get_args(tp) if arm is not type(None)]
        if len(arms) == 1:  # "X | None": None (or "none") unsets it, anything else must be an X
            return None if value in (None, "none", "None") else coerce(value, arms[0], key)
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
        raise ConfigError(
            f"unknown config key {full!r}.{close_match(key, names)} Valid keys here: {', '.join(prefix + n for n in names)}."
        )
    hints = typing.get_type_hints(type(obj))
    current = getattr(obj, key)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{full}: is a section; set its keys, e.g. {full}.{dataclasses.fields(current)[0].name}=..."
            )
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
            raise ConfigError(
                f"unknown config key {(prefix + key)!r}.{close_match(key, names)} Valid keys: {', '.join(prefix + n for n in names)}."
            )
        values[key] = coerce(value, hints[key], prefix + key)
    out = cls(**values)
    check = getattr(out, "check", None)
    if callable(check):
        check()  # a method config's own range checks (e.g. 0 <= lam <= 1)
    return out


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def config_hash(payload: Any) -> str:
    """A stable 16-hex-digit hash of any JSON-able structure (dataclasses included)."""
    text = json.dumps(payload, sort_keys=True, default=to_dict, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
