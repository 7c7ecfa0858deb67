"""Expands a run config into units of work (backbone x method x seed, then evaluations) and does what is missing.

The runner is the only place where methods and evaluations meet: it pretrains a method, hands the evaluations its
backbone (and, through ``EvalContext.embeddings``, what the method's heads offer), and gives each unit its config
resolved once (``run_config.resolve``) before anything runs. A unit is identified by the hash of the resolved settings its result depends on. Pretraining is cached in
``<out>/runs/<method>_<backbone>_s<seed>_<hash>/`` (config.json, metrics.jsonl, checkpoint.pt, backbone.pt,
cached features); an evaluation whose hash already has rows in ``results.csv`` is skipped.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ssl_bench import distributed, storage
from ssl_bench.backbone import Backbone, BackboneSpec
from ssl_bench.config import ConfigError, config_hash
from ssl_bench.data.registry import load_dataset
from ssl_bench.data.types import DataInfo, Indexed, Splits
from ssl_bench.engine import Trainer, autocast_dtype, training_views
from ssl_bench.eval.harness import Embeddings, EvalContext, check_evals, eval_settings, evaluate
from ssl_bench.methods import Method, MethodConfig, get_method
from ssl_bench.metrics_log import MetricsLog
from ssl_bench.monitor import Monitor
from ssl_bench.results import ResultsTable, now
from ssl_bench.run_config import RunConfig, hashed, requested_keys, resolve


@dataclass(frozen=True)
class Unit:
    method: str
    backbone: str
    seed: int
    method_cfg: MethodConfig
    pretrain_hash: str
    cfg: RunConfig  # the run's config resolved for this method (run_config.resolve): no field left unset
    evals: tuple[str, ...]  # what runs on this unit: all the run's evals, or a `sizes` backbone's few

    @property
    def run_id(self) -> str:
        return f"{self.method}_{self.backbone}_s{self.seed}_{self.pretrain_hash[:8]}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def data_identity(cfg: RunConfig) -> dict[str, Any]:
    d = hashed("data", cfg.data)
    d.pop("num_workers")
    d.pop("download")  # how the files arrived does not change them
    if not d["classes"]:
        d.pop("classes")  # absent before the field existed: keeps earlier results' hashes
    if cfg.data.name == "synthetic":
        d.pop("root")
    return d


def plan(cfg: RunConfig) -> list[Unit]:
    """Every (backbone, method, seed) combination, with its resolved config, pretraining hash and evaluations (the
    run's backbones, then the ``sizes`` ones: ``RunConfig.unit_evals``).

    Hashes are of the settings as asked (``run_config.hashed``), so that resolving does not move them; a unit on a
    ``sizes`` backbone hashes as the same unit would on ``backbones``."""
    check_evals(cfg.evals)
    check_evals(cfg.sizes.evals)
    methods = {name: resolve(cfg, name) for name in cfg.methods}  # once per method, whatever the backbones
    data = data_identity(cfg)
    units = []
    for backbone in cfg.all_backbones:
        BackboneSpec.parse(backbone)
        evals = tuple(cfg.unit_evals(backbone))
        for name, resolved in methods.items():
            mcfg = resolved.method_cfg
            # the epochs are hashed once, in "train": `jigsaw.epochs=50` and `train.epochs=50` name the same training
            identity = {k: v for k, v in asdict(mcfg).items() if k != "epochs"}
            train = {**hashed("train", cfg.train), "epochs": resolved.run.train.epochs}
            payload = {
                "method": name,
                "method_cfg": identity,
                "backbone": backbone,
                "init": asdict(cfg.backbone),  # zero_init_residual (default False: gamma = 1, the papers' networks)
                "data": data,
                "train": train if resolved.method.trains else None,
            }
            for seed in cfg.seeds:
                unit_hash = config_hash({**payload, "seed": seed})
                units.append(Unit(name, backbone, seed, mcfg, unit_hash, resolved.run, evals))
    return units


def eval_hash(unit: Unit, name: str, cfg: RunConfig) -> str:
    """The hash of one evaluation's result: the unit's pretraining and the evaluation's sections as asked."""
    settings = eval_settings(name, lambda section: hashed(section, getattr(cfg, section)))
    if name == "detection":  # the method's own rate and warm-up fill an unset detection.lr / warmup_iters
        settings = {**settings, "schedule": list(get_method(unit.method).detection_schedule)}
    return config_hash({"pretrain": unit.pretrain_hash, "eval": name, "settings": settings})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def pretrain(
    unit: Unit, cfg: RunConfig, splits: Splits, device: torch.device, run_dir: Path, progress: Progress
) -> Backbone:
    """The unit's trained backbone: loaded from ``backbone.pt`` if it was finished before, else trained now."""
    final = run_dir / "backbone.pt"
    seed_everything(unit.seed)
    backbone = Backbone(unit.backbone, cfg.backbone.zero_init_residual)
    state = storage.load_or_discard(final, f"{unit.run_id}'s backbone")
    if state is not None:
        backbone.load_state_dict(state, strict=True)
        return backbone.to(device)
    cls = get_method(unit.method)
    method: Method = cls(backbone, unit.method_cfg, splits.info)
    if cls.trains:
        views = training_views(method, unit.cfg.train, device)  # colour on the device with train.device_augment
        dataset = Indexed(splits.train if cls.needs_labels else splits.pretraining(), views)
        monitor = None
        if unit.cfg.monitor.enabled and distributed.is_main():
            dtype = autocast_dtype(unit.cfg.train.precision, device)
            monitor = Monitor(splits, unit.cfg.monitor, device, dtype, cfg.data.num_workers, unit.run_id)
        logged = unit.cfg.log if distributed.is_main() else None  # rank 0 writes the metrics
        with MetricsLog(run_dir, logged, unit_record(unit, splits.info)) as log:  # opened before training starts
            trainer = Trainer(
                method, unit.cfg.train, device, run_dir, unit.seed, cfg.data.num_workers, cfg.checkpoint, monitor, log
            )
            trainer.fit(dataset, progress, unit.run_id)
    backbone = method.backbone.to(memory_format=torch.contiguous_format)
    if distributed.is_main():
        storage.save({k: v.cpu().contiguous() for k, v in backbone.state_dict().items()}, final)
    return backbone


def set_determinism(on: bool, device: torch.device) -> None:
    """``train.deterministic``: deterministic kernels (and cuBLAS workspace / no cuDNN autotuning on CUDA)."""
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on, warn_only=True)


def run(cfg: RunConfig, out: Path, console: Console | None = None) -> dict[str, int]:
    """Do every missing unit of ``cfg`` under ``out``; returns counts of units trained, evaluated and skipped.

    Several processes may work on one ``out`` at once: a unit is claimed (a lock in its run directory) before it
    is worked on; a unit claimed by another process is left for later, then waited for, and only what is still
    missing is done.
    """
    console = console or Console()
    units = plan(cfg)
    device = distributed.local_device(resolve_device(cfg.device))
    set_determinism(cfg.train.deterministic, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    distributed.init(device)
    if not distributed.is_main():
        console = Console(quiet=True)
    out.mkdir(parents=True, exist_ok=True)
    table = ResultsTable(out / "results.csv")
    todo = distributed.broadcast(missing(units, cfg, table) if distributed.is_main() else None)
    counts = {"units": len(units), "cached": len(units) - len(todo), "evaluations": 0}
    if not todo:
        distributed.finish()
        console.print(f"[green]All {len(units)} units are already in {table.path}: nothing to do.")
        return counts
    if distributed.is_main():
        with storage.file_lock(out / ".data.lock"):  # two processes never write the built-in dataset at once
            splits = load_dataset(cfg.data, out)
    distributed.barrier()  # under torchrun: rank 0 has generated / checked the data, the others load it
    if not distributed.is_main():
        splits = load_dataset(cfg.data, out)
    check_labels(splits, cfg, [u for u, _ in todo])
    for unit, _ in todo:  # checks that need the data (its size, image size): before any unit trains
        unit.method_cfg.check_data(splits.info, requested_keys(cfg, unit.method))
    if distributed.active():
        main = distributed.is_main()
        pretrain_together(todo, cfg, splits, device, out, console)
        distributed.finish()  # from here on rank 0 works alone
        if not main:
            return counts
    extra = "" if splits.pretrain is None else f"{len(splits.pretrain)} pretraining / "
    console.print(
        f"dataset [bold]{splits.info.name}[/]: {extra}{len(splits.train)} train / {len(splits.test)} test images, "
        f"{splits.info.num_classes} classes, {splits.info.image_size} px; device {device}"
    )
    with progress_bar(console) as progress:
        overall = progress.add_task("all units", total=sum(len(evs) for _, evs in todo))
        deferred = []
        for unit, _ in todo:
            claim = storage.Claim(out / "runs" / unit.run_id / ".claim")
            if not claim.try_acquire():
                deferred.append((unit, claim))
                continue
            counts["evaluations"] += do_unit(unit, cfg, splits, device, out, table, progress, overall, claim, console)
        for unit, claim in deferred:  # another process had them: wait for it, then do what it left
            console.print(f"{unit.run_id}: another ssl-bench process is working on it; waiting")
            claim.acquire()
            counts["evaluations"] += do_unit(unit, cfg, splits, device, out, table, progress, overall, claim, console)
    return counts


LABELLED_EVALS = ("linear", "knn", "semisup", "invariance")


def check_labels(splits: Splits, cfg: RunConfig, units: list[Unit]) -> None:
    """An unlabelled dataset (a folder of images without classes) can pretrain self-supervised methods, nothing else."""
    if splits.info.num_classes:
        return
    needs = [e for e in cfg.evals if e in LABELLED_EVALS] + [
        u.method for u in units if get_method(u.method).needs_labels
    ]
    if needs:
        raise ConfigError(
            f"dataset {splits.info.name!r} has no labels (images directly under train/, no class folders), "
            f"but {', '.join(sorted(set(needs)))} need them; pretrain with self-supervised methods and "
            f"--evals detection, or point --data-root at a labelled tree <root>/train/<class>/..."
        )


def pretrain_together(
    todo: list[tuple[Unit, list[str]]],
    cfg: RunConfig,
    splits: Splits,
    device: torch.device,
    out: Path,
    console: Console,
) -> None:
    """Under torchrun: every process pretrains every missing unit with DistributedDataParallel (rank 0 writes the
    checkpoints and backbone.pt); the evaluations then run on rank 0 alone, from backbone.pt."""
    console.print(f"torch.distributed: {distributed.world()} processes pretrain together; rank 0 then evaluates")
    with progress_bar(console) as progress:
        for unit, _ in todo:
            run_dir = out / "runs" / unit.run_id
            if distributed.is_main():
                write_json(run_dir / "config.json", unit_record(unit, splits.info))
            distributed.barrier()
            pretrain(unit, cfg, splits, device, run_dir, progress)
            distributed.barrier()  # backbone.pt is written before anyone moves on


def missing(units: list[Unit], cfg: RunConfig, table: ResultsTable) -> list[tuple[Unit, list[str]]]:
    done = table.done()
    todo = [(u, [e for e in u.evals if eval_hash(u, e, cfg) not in done]) for u in units]
    return [(u, evs) for u, evs in todo if evs]


def do_unit(
    unit: Unit,
    cfg: RunConfig,
    splits: Splits,
    device: torch.device,
    out: Path,
    table: ResultsTable,
    progress: Progress,
    overall: Any,
    claim: storage.Claim,
    console: Console,
) -> int:
    """Pretrain (or load) one unit and run its missing evaluations; the claim is held throughout and released."""
    try:
        done = table.done()  # re-read: another process may have finished some while we waited
        evals = [e for e in unit.evals if eval_hash(unit, e, cfg) not in done]
        if not evals:
            return 0
        run_dir = out / "runs" / unit.run_id
        write_json(run_dir / "config.json", unit_record(unit, splits.info))
        t0 = time.perf_counter()
        backbone = pretrain(unit, cfg, splits, device, run_dir, progress)
        timings = [f"pretrain {time.perf_counter() - t0:.0f} s"]
        ctx = EvalContext(
            backbone,
            splits,
            run_dir,
            device,
            unit.seed,
            autocast_dtype(cfg.train.precision, device),
            shared=out,
            checkpoint=cfg.checkpoint,
            workers=cfg.data.num_workers,
            channels_last=cfg.train.channels_last,
            # built on first use and kept: kNN and invariance both ask (it loads the whole checkpoint)
            embeddings=functools.cache(lambda: trained_embeddings(unit, backbone, splits.info, run_dir, device)),
        )
        for name in evals:
            progress.update(overall, description=f"{unit.run_id}: {name}")
            t0 = time.perf_counter()
            rows = evaluate(name, ctx, unit.cfg)
            table.append(result_rows(unit, name, eval_hash(unit, name, cfg), rows, backbone, splits.info, cfg))
            timings.append(f"{name} {time.perf_counter() - t0:.0f} s")
            progress.advance(overall)
        console.print(f"{unit.run_id}: {', '.join(timings)}", highlight=False)
        return len(evals)
    finally:
        claim.release()


def unit_record(unit: Unit, info: DataInfo) -> dict[str, Any]:
    """What ``config.json`` holds: the unit, the run's config as resolved for it (nothing unset) and the data."""
    method_cfg = {**asdict(unit.method_cfg), "epochs": unit.cfg.train.epochs}  # unset = train.epochs: as trained
    return {
        "unit": {
            "method": unit.method,
            "backbone": unit.backbone,
            "seed": unit.seed,
            "pretrain_hash": unit.pretrain_hash,
            "method_cfg": method_cfg,
        },
        "run": asdict(unit.cfg),
        "info": asdict(info),
    }


def trained_embeddings(
    unit: Unit, backbone: Backbone, info: DataInfo, run_dir: Path, device: torch.device
) -> Embeddings:
    """What the trained method's own heads offer the evaluations (``Method.embeddings``), rebuilt from the unit's last
    checkpoint on a copy of the backbone; nothing for a method that offers none or has no checkpoint."""
    cls = get_method(unit.method)
    path = run_dir / "checkpoint.pt"
    if cls.embeddings is Method.embeddings or not path.exists():
        return {}
    with torch.random.fork_rng(devices=[]):  # building the heads draws initial weights: leave the run's RNG as it was
        method = cls(copy.deepcopy(backbone), unit.method_cfg, info)
    method.load_state_dict(storage.load(path)["method"], strict=True)
    return method.to(device).eval().embeddings()


def result_rows(
    unit: Unit, name: str, ehash: str, rows: list, backbone: Backbone, info: DataInfo, cfg: RunConfig
) -> list[dict]:
    created = now()
    return [
        {
            "method": unit.method,
            "backbone": unit.backbone,
            "params": backbone.num_params_with_classifier,  # as published (backbone.py)
            "dataset": info.name,
            "preset": cfg.preset,
            "eval": name,
            "protocol": r.protocol,
            "layer": r.layer,
            "metric": r.metric,
            "value": round(r.value, 4),
            "seed": unit.seed,
            "config_hash": ehash,
            "run_id": unit.run_id,
            "created": created,
        }
        for r in rows
    ]


def write_json(path: Path, obj: Any) -> None:
    storage.write_text(path, json.dumps(obj, indent=2, default=str))
