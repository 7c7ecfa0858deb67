"""A run's configuration: a preset (TOML shipped in ``ssl_bench/presets``) plus command-line overrides, resolved once.

``load`` parses and checks: every key, type and range, each section by its own ``check``; the dotted keys the command
line set are recorded in ``RunConfig.overrides`` as they are parsed. Method hyper-parameters are each method's own
frozen ``Config`` (paper defaults), overridden by method name: ``--set pirl.lam=0.5`` or a ``[pirl]`` table.

``resolve`` is the one place where a field left ``None`` ("someone else's value") gets its value, for one method:
the pretraining rate and weight decay (the method's paper values, the rate scaled with the batch), its own epochs,
the detection rate and warm-up (the method's ``detection_schedule``) and the dataset's native image size. The
runner resolves every unit before anything runs, and saves what it resolved (``config.json``): no ``None`` is left.

Hashes are taken from the configuration as asked, not as resolved: an unset field hashes as the sentinel it had
before ``None`` existed (``config.UNSET``), so results cached by earlier versions keep their hashes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from ssl_bench.backbone import BackboneConfig
from ssl_bench.config import (
    UNSET,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    LogConfig,
    TrainConfig,
    build_frozen,
    non_negative,
    set_field,
    unknown,
    without_added,
)
from ssl_bench.data.registry import native_size
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.eval.invariance import InvarianceConfig
from ssl_bench.eval.knn import KNNConfig
from ssl_bench.eval.linear_probe import LinearConfig
from ssl_bench.eval.semisup import SemisupConfig
from ssl_bench.eval.svm import SVMConfig
from ssl_bench.methods import Method, MethodConfig, available_methods, get_method
from ssl_bench.monitor import MonitorConfig
from ssl_bench.storage import file_sha256


@dataclass
class SizesConfig:
    """Fig. 2's other model sizes: every method is also pretrained on each of ``backbones`` and evaluated there with
    ``evals`` only (those of them the run's ``evals`` name), so accuracy against parameters is a curve without every
    evaluation (detection above all) running on every size. Empty ``backbones``: the run's ``backbones`` only."""

    backbones: list[str] = field(default_factory=list)
    evals: list[str] = field(default_factory=lambda: ["linear"])

    def check(self) -> None:
        """The names are checked where the run's backbones are, by ``runner.plan``; ``RunConfig.check`` refuses a size
        that ``backbones`` already runs."""


@dataclass
class RunConfig:
    preset: str = "default"
    description: str = ""
    methods: list[str] = field(default_factory=lambda: ["random", "supervised", "autoencoder"])
    backbones: list[str] = field(default_factory=lambda: ["resnet18"])  # every evaluation runs on each
    sizes: SizesConfig = field(default_factory=SizesConfig)  # more backbones, a few evaluations each (Fig. 2)
    seeds: list[int] = field(default_factory=lambda: [0])
    evals: list[str] = field(default_factory=lambda: ["linear", "knn"])
    device: str = "auto"
    threads: int = 0  # CPU threads for torch (0 = torch's default, one per core); results depend on it in the last bits
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # how every backbone is initialised
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    semisup: SemisupConfig = field(default_factory=SemisupConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    svm: SVMConfig = field(default_factory=SVMConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)  # per-epoch collapse numbers; in no hash
    log: LogConfig = field(default_factory=LogConfig)  # metrics also to TensorBoard / W&B; in no hash
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"pirl": {"lam": 0.5}}
    overrides: list[str] = field(default_factory=list)  # the dotted keys the command line set, e.g. "pirl.lam"

    SECTIONS = (
        "sizes",
        "backbone",
        "data",
        "train",
        "linear",
        "knn",
        "semisup",
        "detection",
        "invariance",
        "svm",
        "checkpoint",
        "monitor",
        "log",
    )

    def check(self) -> None:
        non_negative("", self, "threads")
        for name in self.SECTIONS:
            getattr(self, name).check()
        for name in ("methods", "backbones", "seeds", "evals"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is empty: name at least one")
        for name in self.sizes.backbones:
            if name in self.backbones:
                raise ConfigError(
                    f"sizes.backbones names {name!r}, which backbones runs already with every evaluation; "
                    "leave it out of one of the two"
                )

    def unit_evals(self, backbone: str) -> list[str]:
        """The evaluations a unit on ``backbone`` runs: all of ``evals`` on the run's backbones; on a ``sizes``
        backbone, those of ``sizes.evals`` that ``evals`` names too (none: the size is not run)."""
        if backbone in self.backbones:
            return list(self.evals)
        return [e for e in self.evals if e in self.sizes.evals]

    @property
    def all_backbones(self) -> list[str]:
        """The run's backbones, then the ``sizes`` backbones that have an evaluation to run."""
        return self.backbones + [b for b in self.sizes.backbones if self.unit_evals(b)]


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


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """{"train": {"epochs": 3}, "seeds": "0,1"} -> ["train.epochs", "seeds"]."""
    out = []
    for key, value in tree.items():
        out += dotted_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
    return out


def load(preset: str = "default", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Preset + command-line overrides -> a checked RunConfig. Tables named after a method go to ``method_params``."""
    overrides = overrides or {}
    raw = merge(load_preset(preset), overrides)
    asked = sorted(dotted_keys(overrides))
    data = raw.get("data")
    if isinstance(data, dict) and data.get("name", "synthetic") != "synthetic" and "data.framing" not in asked:
        # the preset frames its built-in scenes (default: "bare"); another dataset has no framing to take
        raw["data"] = {key: value for key, value in data.items() if key != "framing"}
    method_names = list(available_methods())
    cfg = RunConfig(preset=preset, overrides=asked)
    for key, value in raw.items():
        if key in method_names:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: method parameters go as {key}.<name>=value")
            cfg.method_params[key] = merge(cfg.method_params.get(key, {}), value)
        elif key in ("method_params", "overrides"):
            raise ConfigError("set method parameters by method name, e.g. --set pirl.lam=0.5")
        else:
            set_field(cfg, key, value)
    cfg.check()
    for name in cfg.method_params:
        get_method(name)  # an unknown name -> the error listing the valid ones
    return cfg


def requested_keys(cfg: RunConfig, method: str) -> set[str]:
    """The method parameters the command line set (``--set pirl.num_negatives=...``), as opposed to the preset's.

    A run must honour these exactly or stop; a paper or preset default may be adapted to a small dataset.
    """
    return {key.split(".", 1)[1] for key in cfg.overrides if key.startswith(f"{method}.")}


def method_config(name: str, overrides: dict[str, Any]) -> MethodConfig:
    """The method's paper defaults with the run's overrides, type-checked field by field."""
    cfg = build_frozen(get_method(name).Config, overrides, prefix=f"{name}.")
    if cfg.epochs is not None and cfg.epochs <= 0:
        raise ConfigError(f"{name}.epochs must be positive (leave it unset for train.epochs), got {cfg.epochs}")
    return cfg


@dataclass(frozen=True)
class Resolved:
    """One method's settings, every ``None`` filled in: the method's config and the run's config as it applies."""

    method: type[Method]
    method_cfg: MethodConfig
    run: RunConfig


def resolve(cfg: RunConfig, name: str) -> Resolved:
    """Everything ``name`` runs with: the one function where unset values (``None``) become values."""
    method = get_method(name)
    mcfg = method_config(name, cfg.method_params.get(name, {}))
    data = cfg.data
    if data.image_size is None:
        data = dataclasses.replace(data, image_size=native_size(data.name))
    run = dataclasses.replace(
        cfg, data=data, train=cfg.train.resolved(mcfg), detection=cfg.detection.resolved(method.detection_schedule)
    )
    return Resolved(method, mcfg, run)


def hashed(name: str, section: Any) -> dict[str, Any]:
    """``asdict(section)`` of the section as asked (unresolved), each unset field as its old sentinel (``UNSET``) and
    each field newer than the hashes (``ADDED``) left out while at its default; a label-subset list counts by its
    contents, not only its path."""
    out = asdict(section)
    for key, (_, sentinel) in UNSET.items():
        section_name, field_name = key.split(".")
        if section_name == name and out[field_name] is None:
            out[field_name] = sentinel
    out = without_added(name, out)
    if name == "semisup" and out.get("subset_files"):  # a list edited in place is another subset: hash its contents
        out["subset_files"] = [f"{path}#sha256={file_sha256(Path(path).expanduser())}" for path in out["subset_files"]]
    return out
