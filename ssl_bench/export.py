"""Pretrained backbones as files other code loads: ``ssl-bench export`` and ``load_backbone``.

``backbone.pt`` in a run directory is our wrapper's state dict, and the small-stem and width variants cannot be
rebuilt by ``timm.create_model`` from a name. An export writes, per run, one directory in the layout the Hugging Face
Hub takes as is (``hf upload <user>/<repo> <dir>``, ``huggingface-cli upload`` before huggingface_hub 1.0) and timm
reads:

* ``model.safetensors``: the timm model's own state dict (``Backbone.model``), keys as timm names them;
* ``config.json``: timm's hub config (``architecture``, ``num_features``, ``model_args``, ``pretrained_cfg`` with our
  input size and normalisation), plus what ssl-bench knows: the spec and its modifiers, method, data, epochs,
  preset, seed, pretraining hash and the exporting software's versions (runs do not record theirs);
* ``README.md``: a model card with the run's numbers from ``results.csv`` and how to load the weights.

Plain timm architectures load in timm alone (``pretrained_cfg_overlay=dict(file=...)``, ``local-dir:`` or
``hf-hub:``), a width variant too (its ``channels`` are in ``model_args``); a small-stem variant has a stem timm cannot
build, so ``load_backbone`` rebuilds it as ``Backbone`` does. No export replaces another: a directory that already
holds different files is an error; the same files are left as they are.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import safetensors.torch
import torch
from torch import nn

from ssl_bench import storage
from ssl_bench.backbone import SMALL_STEM, Backbone, BackboneSpec
from ssl_bench.config import ConfigError, close_match
from ssl_bench.methods import Method, available_methods
from ssl_bench.report.results import read_results

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
LICENSE = "mit"  # the project's licence; the card says the training data's terms may restrict the weights further
# eval -> the metrics the model card shows (every other number stays in results.csv)
CARD_METRICS: dict[str, tuple[str, ...]] = {
    "linear": ("top1",),
    "knn": ("top1",),
    "semisup": ("top1", "top5"),
    "detection": ("AP", "AP50", "AP75"),
    "svm": ("mAP",),
}
NUMBER_KEY = ["eval", "protocol", "layer", "metric"]


def export(out: Path, to: Path, units: list[Path] | None = None, methods: list[str] | None = None) -> list[Path]:
    """Export pretrained backbones of the run directory ``out`` to ``to/<run_id>/``; returns those directories.

    ``units``: run directories (``<out>/runs/<run_id>``); ``methods``: every finished run of these methods; neither:
    every finished run under ``<out>/runs``. The card's numbers are ``<out>/results.csv``'s rows of the run's id."""
    out, to = Path(out), Path(to)
    table = out / "results.csv"
    if not table.is_file():
        raise ConfigError(
            f"no results table at {table}: point --out at the directory of an `ssl-bench run` (it holds results.csv "
            "and runs/)"
        )
    results = read_results(table)
    exported = []
    for run_dir in select_runs(out, units, methods):
        target = to / run_dir.name
        write_new(target, export_files(run_dir, results))
        exported.append(target)
    return exported


def select_runs(out: Path, units: list[Path] | None, methods: list[str] | None) -> list[Path]:
    """The run directories to export, each with a ``backbone.pt`` (its pretraining finished)."""
    if units and methods:
        raise ConfigError("give either --unit (run directories) or --method (every run of a method), not both")
    if units:
        for unit in units:
            if not (Path(unit) / "backbone.pt").is_file():
                raise ConfigError(
                    f"{unit} has no backbone.pt, so it is not a finished pretraining run: give a directory "
                    f"{out / 'runs'}/<run_id> whose pretraining finished (or finish it with the same `ssl-bench run`)"
                )
        return [Path(u) for u in units]
    runs = sorted(p.parent for p in (out / "runs").glob("*/backbone.pt"))
    if not runs:
        raise ConfigError(
            f"no finished pretraining run (runs/<run_id>/backbone.pt) under {out}: run `ssl-bench run --out {out}` "
            "first, or point --out at the directory it wrote"
        )
    if not methods:
        return runs
    method_of = {run: read_json(run / CONFIG)["unit"]["method"] for run in runs}
    found = sorted(set(method_of.values()))
    for method in methods:
        if method not in found:
            raise ConfigError(
                f"no finished run of method {method!r} under {out / 'runs'}.{close_match(method, found)} "
                f"Methods with finished runs: {', '.join(found)}."
            )
    return [run for method in methods for run in runs if method_of[run] == method]


def export_files(run_dir: Path, results: pd.DataFrame) -> dict[str, bytes]:
    """One run's three files as bytes, so that they are compared with an earlier export before anything is written."""
    record = read_json(run_dir / CONFIG)
    backbone = Backbone(record["unit"]["backbone"])
    backbone.load_state_dict(storage.load(run_dir / "backbone.pt"), strict=True)  # checksum checked, no key missing
    # safetensors refuses tensors that share storage: each gets its own contiguous copy
    tensors = {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in backbone.model.state_dict().items()
    }
    config = export_config(run_dir.name, record, backbone)
    return {
        WEIGHTS: safetensors.torch.save(tensors, metadata={"format": "pt"}),
        CONFIG: (json.dumps(config, indent=2) + "\n").encode(),
        CARD: model_card(config, run_numbers(results, run_dir.name)).encode(),
    }


def export_config(run_id: str, record: dict[str, Any], backbone: Backbone) -> dict[str, Any]:
    """``config.json``: timm's hub config first (timm reads these keys and ignores the others), then ssl-bench's."""
    unit, info = record["unit"], record["info"]
    spec = BackboneSpec.parse(unit["backbone"])
    trains = method_class(unit["method"]).trains
    size = info["image_size"]
    timm_default = backbone.model.pretrained_cfg  # timm's for the architecture: names its first conv and classifier
    return {
        "architecture": spec.model,
        "num_classes": 0,
        "num_features": backbone.num_features,
        "global_pool": "avg",
        "model_args": model_args(backbone, spec),
        "pretrained_cfg": {
            "tag": f"{unit['method']}_{info['name']}",
            "custom_load": False,
            "input_size": [3, size, size],
            "fixed_input_size": False,
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "squash",  # the evaluations resize the whole image to size x size (data.transforms)
            "mean": list(info["mean"]),
            "std": list(info["std"]),
            "num_classes": 0,
            "pool_size": None,
            "first_conv": timm_default.get("first_conv"),
            "classifier": timm_default.get("classifier"),
            "license": LICENSE,
        },
        "spec": unit["backbone"],
        "modifiers": {"small_stem": spec.small_stem, "width": spec.width},
        "timm_loadable": not spec.small_stem,
        "method": unit["method"],
        "method_config": unit["method_cfg"],
        "pretrained": trains,
        "dataset": info["name"],
        "image_size": size,
        "epochs": unit["method_cfg"]["epochs"] if trains else 0,
        "preset": record["run"]["preset"],
        "seed": unit["seed"],
        "pretrain_hash": unit["pretrain_hash"],
        "run_id": run_id,
        "num_params": backbone.num_params,
        "versions": versions(),
    }


def model_args(backbone: Backbone, spec: BackboneSpec) -> dict[str, Any]:
    """What ``timm.create_model`` needs beyond the name: a width variant's stage widths (``channels``), read from
    the built model (each stage outputs ``channels * expansion``)."""
    if spec.width == 1.0:
        return {}
    model = backbone.model
    expansion = getattr(model.layer1[0], "expansion", 1)
    return {"channels": [info["num_chs"] // expansion for info in model.feature_info[1:]]}


def method_class(name: str) -> type[Method]:
    """The method's class; a method no longer installed counts as a trained one without a paper line."""
    return available_methods().get(name, Method)


def versions() -> dict[str, str]:
    found = {}
    for package in ("ssl-bench", "torch", "timm", "safetensors"):
        try:
            found[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            found[package.replace("-", "_")] = "unknown"
    return found


def run_numbers(results: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """The run's numbers the card shows, as results.csv holds them (strings); a re-evaluation replaces older rows."""
    shown = {(e, m) for e, metrics in CARD_METRICS.items() for m in metrics}
    rows = results[results["run_id"] == run_id]
    rows = rows[pd.Series([(e, m) in shown for e, m in zip(rows["eval"], rows["metric"])], rows.index, bool)]
    rows = rows.sort_values("created", kind="stable").drop_duplicates(NUMBER_KEY, keep="last").sort_index()
    order = {e: i for i, e in enumerate(CARD_METRICS)}
    return rows.sort_values("eval", key=lambda s: s.map(order), kind="stable")[[*NUMBER_KEY, "value"]]


def model_card(config: dict[str, Any], numbers: pd.DataFrame) -> str:
    """``README.md``: Hub front matter, what the weights are, the run's numbers, how to load them."""
    cls = method_class(config["method"])
    tags = ["image-feature-extraction", "timm", "ssl-bench", config["method"]]
    if cls.trains and not cls.needs_labels:
        tags.insert(3, "self-supervised")
    name = config["run_id"]
    if config["pretrained"]:
        epochs = f"{config['epochs']} epoch{'s' * (config['epochs'] != 1)}"
        paper = f" ({cls.paper})" if cls.paper else ""
        trained = (
            f"pretrained with {cls.display_name or config['method']}{paper} on {config['dataset']} at "
            f"{config['image_size']} px for {epochs}"
        )
    else:
        trained = f"at random initialisation, not pretrained: ssl-bench's {config['method']!r} baseline"
    lines = [
        "---",
        "library_name: timm",
        f"license: {LICENSE}",
        "pipeline_tag: image-feature-extraction",
        "tags:",
        *(f"- {t}" for t in tags),
        "---",
        f"# {name}",
        "",
        f"A {architecture_text(config)}, {trained}, by ssl-bench (preset `{config['preset']}`, seed "
        f"{config['seed']}, pretraining hash `{config['pretrain_hash']}`). It is a feature extractor without "
        f"classifier: `model(x)` maps a (B, 3, {config['image_size']}, {config['image_size']}) batch to "
        f"(B, {config['num_features']}) pooled features. "
        f"Inputs are normalised with mean {rounded(config['pretrained_cfg']['mean'])} and std "
        f"{rounded(config['pretrained_cfg']['std'])} (the training data's).",
        "",
        "## Results",
        "",
        *numbers_table(numbers),
        "",
        "## How to load",
        "",
        *load_text(config),
        "",
        "## Files",
        "",
        f"- `{WEIGHTS}`: the timm model's state dict, keys as timm names them.",
        f"- `{CONFIG}`: timm's config (architecture, `model_args`, `pretrained_cfg`) and ssl-bench's: spec "
        f"`{config['spec']}`, method and its settings, dataset, epochs, preset, seed, pretraining hash, versions.",
        "",
        "The directory is a Hub model repository as is: `hf upload <user>/<repo> .` from inside it, or "
        "`huggingface_hub.upload_folder(repo_id=..., folder_path=...)`.",
        "",
        f"Licence: {LICENSE.upper()}, the code's; the terms of the training data ({config['dataset']}) may restrict "
        "the use of weights trained on it.",
        "",
    ]
    return "\n".join(lines)


def architecture_text(config: dict[str, Any]) -> str:
    mods = []
    if config["modifiers"]["small_stem"]:
        mods.append("small-image stem: 3x3 stride-1 conv, no max-pool")
    if config["modifiers"]["width"] != 1.0:
        mods.append(f"stage widths x{config['modifiers']['width']:g}")
    return f"timm `{config['architecture']}`" + (f" ({'; '.join(mods)})" if mods else "")


def numbers_table(numbers: pd.DataFrame) -> list[str]:
    if numbers.empty:
        return ["No evaluation of this run is in results.csv yet."]
    rows = ["| evaluation | protocol | layer | metric | value |", "|---|---|---|---|---|"]
    rows += [f"| {r.eval} | {r.protocol or '-'} | {r.layer} | {r.metric} | {r.value} |" for r in numbers.itertuples()]
    return ["From ssl-bench's results.csv (top-1 and top-5 in %, AP in points):", "", *rows]


def load_text(config: dict[str, Any]) -> list[str]:
    """Load snippets: timm alone where timm can build the network, ssl-bench's ``load_backbone`` always."""
    name, arch = config["run_id"], config["architecture"]
    ours = [
        "With ssl-bench installed (`load_backbone` rebuilds the network as ssl-bench built it, loads the weights "
        "strictly and returns the plain timm module in eval mode):",
        "",
        "```python",
        "import ssl_bench",
        "",
        f'model = ssl_bench.load_backbone("{name}")  # this directory (a Hub repo: huggingface_hub.snapshot_download)',
        "```",
    ]
    if not config["timm_loadable"]:
        return [
            f"timm alone cannot rebuild this network: `timm.create_model({arch!r})` builds the ImageNet stem, and "
            f"the weights of the `-{SMALL_STEM}` stem do not fit it.",
            "",
            *ours,
        ]
    channels = config["model_args"].get("channels")
    extra = f", channels={tuple(channels)}" if channels else ""
    return [
        "With timm alone, from this directory or from the Hub once pushed (the normalisation comes from config.json):",
        "",
        "```python",
        "import timm",
        "",
        f'model = timm.create_model("local-dir:{name}", pretrained=True)  # or "hf-hub:<user>/<repo>"',
        "data_config = timm.data.resolve_data_config({}, model=model)",
        "```",
        "",
        "or from the weights file alone (timm then assumes ImageNet's normalisation: use the mean and std above):",
        "",
        "```python",
        f'model = timm.create_model("{arch}", pretrained=True, num_classes=0{extra},',
        f'                          pretrained_cfg_overlay=dict(file="{name}/{WEIGHTS}"))',
        "```",
        "",
        *ours,
    ]


def rounded(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def write_new(target: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``target``; an existing file must hold the same bytes (then it is left as it is)."""
    differ = [name for name, data in files.items() if (target / name).exists() and (target / name).read_bytes() != data]
    if differ:
        raise ConfigError(
            f"{target} already holds a different export ({', '.join(differ)} differ{'s' * (len(differ) == 1)}): "
            f"no export replaces another; remove {target} to replace it, or export --to another directory"
        )
    for name, data in files.items():
        if not (target / name).exists():
            with storage.atomic(target / name) as tmp:
                tmp.write_bytes(data)


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {path.parent} is not a complete run or export directory")
    return json.loads(path.read_text())


def load_backbone(directory: str | Path) -> nn.Module:
    """The exported network as a plain timm ``nn.Module`` in eval mode, built from ``config.json``'s spec exactly as
    ``Backbone`` builds it (timm model, then the small stem and width modifiers), weights loaded strictly."""
    directory = Path(directory)
    config = read_json(directory / CONFIG)
    if "spec" not in config:
        raise ValueError(
            f"{directory / CONFIG} has no 'spec': not an ssl-bench export; load a timm export with "
            f'timm.create_model("local-dir:{directory}", pretrained=True)'
        )
    model = Backbone(config["spec"]).model
    model.load_state_dict(safetensors.torch.load_file(directory / WEIGHTS), strict=True)
    return model.eval()
