"""The Python API: ``ssl-bench run``, ``report`` and ``list`` as functions, for notebooks and scripts.

    import ssl_bench

    df = ssl_bench.run(preset="ci", methods=["pirl", "jigsaw"], out="results", linear__epochs=2)
    print(df[df.metric == "top1"].groupby(["method", "eval", "layer"]).value.mean())
    files = ssl_bench.report("results")  # results/report/, e.g. again after another run into "results"
    model = ssl_bench.load_backbone("exported/pirl_resnet18_s0_1a2b3c4d")  # a directory `ssl-bench export` wrote

The command line is a thin layer over these functions (``ssl-bench run`` calls ``run``, ``ssl-bench report`` calls
``report``): a run from Python and the same run from the shell share the output directory, its cache and its table.
``ssl_bench`` exports them lazily: ``import ssl_bench`` imports neither torch nor pandas.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

from ssl_bench.config import ConfigError, unknown
from ssl_bench.report import ReportFiles, make_report
from ssl_bench.report.results import REQUIRED_COLUMNS, clean, read_results

if TYPE_CHECKING:
    from ssl_bench.run_config import RunConfig

# run's named arguments -> the config key each sets (as the command line's flags do)
NAMED_KEYS: dict[str, str] = {
    "methods": "methods",
    "evals": "evals",
    "backbones": "backbones",
    "seeds": "seeds",
    "epochs": "train.epochs",
    "dataset": "data.name",
    "data_root": "data.root",
    "download": "data.download",
    "device": "device",
    "threads": "threads",
}
LOG_TARGETS = ("tensorboard", "wandb")  # run(log=...) / --log: each sets log.<target> = true


def run(
    preset: str = "default",
    out: str | Path = "results",
    *,
    methods: str | Sequence[str] | None = None,
    evals: str | Sequence[str] | None = None,
    backbones: str | Sequence[str] | None = None,
    seeds: str | Sequence[int] | None = None,
    epochs: int | None = None,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    download: bool | None = None,
    device: str | None = None,
    threads: int | None = None,
    log: str | Sequence[str] | None = None,
    report: bool = True,
    console: Console | None = None,
    set: Mapping[str, Any] | None = None,  # named after --set (it hides the builtin inside run only)
    **overrides: Any,
) -> pd.DataFrame:
    """Pretrain and evaluate what ``preset`` plus the overrides ask for, exactly as ``ssl-bench run``; return its rows.

    Every unit already in ``out/results.csv`` is skipped and interrupted training resumes, as on the command line.
    The named arguments are the command line's flags (``methods`` = ``--methods``, a list or a comma-separated
    string; ``epochs`` = ``--epochs``, i.e. ``train.epochs``; ``log=["tensorboard"]`` = ``--log tensorboard``);
    ``None`` leaves the preset's value. Any other config key goes either

    * in ``set``, as ``--set`` takes it: ``set={"linear.epochs": 2, "pirl.lam": 0.5}`` (a value may be a table:
      ``{"pirl": {"lam": 0.5}}``), or
    * as a keyword with ``__`` for each dot: ``linear__epochs=2, pirl__lam=0.5``.

    Values are Python values or strings, checked like ``--set``'s; an unknown key is a ``ConfigError`` naming it. A
    key given both in ``set`` and as a keyword is an error; a named argument wins over the same key in either, as
    ``--epochs`` wins over ``--set train.epochs``.

    ``report``: write ``out/report`` afterwards (``report(out)``). ``console``: where progress and the report's table
    go (default: a new rich Console on stdout; ``Console(quiet=True)`` silences it).

    Returns the rows of this configuration's evaluations (computed now or found cached), typed as ``load_results``
    types them; on a fresh ``out`` they are the whole table. Under torchrun only rank 0 returns rows (the others an
    empty frame). Raises ``ConfigError`` on a bad configuration (before anything runs), ``KeyboardInterrupt`` when
    interrupted (finished work is kept; the same call resumes)."""
    from ssl_bench.run_config import load, resolve
    from ssl_bench.runner import run as run_units

    named = {
        "methods": methods,
        "evals": evals,
        "backbones": backbones,
        "seeds": seeds,
        "epochs": epochs,
        "dataset": dataset,
        "data_root": data_root,
        "download": download,
        "device": device,
        "threads": threads,
    }
    cfg = load(preset, config_overrides(named, log, set or {}, overrides))
    out = Path(out)
    main = int(os.environ.get("RANK", "0")) == 0
    if not main:
        console = Console(quiet=True)  # under torchrun only rank 0 talks
    elif console is None:
        console = Console()
    own = {m: e for m in cfg.methods if (e := resolve(cfg, m).method_cfg.epochs) is not None}  # `<method>.epochs`
    epochs_text = f"{cfg.train.epochs}" + (f" ({', '.join(f'{m} {e}' for m, e in own.items())})" if own else "")
    sizes = cfg.all_backbones[len(cfg.backbones) :]
    sizes_text = f" (+ {', '.join(sizes)}: {', '.join(cfg.unit_evals(sizes[0]))} only)" if sizes else ""
    console.print(
        f"[bold]ssl-bench run[/] preset [cyan]{cfg.preset}[/]: methods {', '.join(cfg.methods)}; "
        f"backbones {', '.join(cfg.backbones)}{sizes_text}; seeds {', '.join(map(str, cfg.seeds))}; epochs {epochs_text}; "
        f"evals {', '.join(cfg.evals)}; out {out}"
    )
    t0 = time.perf_counter()
    counts = run_units(cfg, out, console)
    console.print(
        f"{counts['evaluations']} evaluations done, {counts['cached']} of {counts['units']} units cached, "
        f"in {time.perf_counter() - t0:.1f} s; results in {out / 'results.csv'}"
    )
    if not main:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in REQUIRED_COLUMNS})
    if report:
        write_report(out, console=console)
    return rows_of(cfg, out)


def config_overrides(
    named: Mapping[str, Any], log: str | Sequence[str] | None, settings: Mapping[str, Any], keywords: Mapping[str, Any]
) -> dict[str, Any]:
    """``run``'s arguments as the nested overrides ``run_config.load`` takes (``{"train": {"epochs": 3}}``).

    ``named``: run's named arguments (None = not given); ``settings``: dotted keys (``set``); ``keywords``: keys with
    ``__`` for dots. Named arguments win; a key in both ``settings`` and ``keywords`` is an error."""
    from ssl_bench.run_config import dotted_keys, merge

    given = nested(settings)
    words = nested({key.replace("__", "."): value for key, value in keywords.items()})
    both = sorted(set(dotted_keys(given)) & set(dotted_keys(words)))
    if both:
        raise ConfigError(f"{', '.join(both)} given twice, in set= and as a keyword argument; give each key once")
    flags = {NAMED_KEYS[name]: listed(value) for name, value in named.items() if value is not None}
    asked = merge(given, words)
    if "backbones" in flags and "sizes.backbones" not in dotted_keys(asked):
        flags["sizes.backbones"] = []  # --backbone X runs X, not X plus the preset's other sizes
    if log is not None:
        targets = [t.strip() for t in log.split(",") if t.strip()] if isinstance(log, str) else list(log)
        for target in targets:
            if target not in LOG_TARGETS:
                raise unknown("log target", target, list(LOG_TARGETS))
        flags.update({f"log.{target}": True for target in targets})
    return merge(asked, nested(flags))


def listed(value: Any) -> Any:
    """A tuple as a list (config lists are lists), a path as a string; anything else as it is."""
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path) else value


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"linear.epochs": 2, "pirl": {"lam": 0.5}}`` -> ``{"linear": {"epochs": 2}, "pirl": {"lam": 0.5}}``."""
    from ssl_bench.run_config import merge

    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = listed(value)
        for part in reversed(key.split(".")):
            node = {part: node}
        out = merge(out, node)
    return out


def rows_of(cfg: RunConfig, out: Path) -> pd.DataFrame:
    """The rows of ``cfg``'s evaluations in ``out/results.csv`` (by their config hashes), typed."""
    from ssl_bench.runner import eval_hash, plan

    hashes = {eval_hash(unit, name, cfg) for unit in plan(cfg) for name in unit.evals}
    raw = read_results(out / "results.csv")
    return typed(raw[raw["config_hash"].isin(hashes)])


def typed(raw: pd.DataFrame) -> pd.DataFrame:
    df, notes = clean(raw)
    df.attrs["notes"] = notes
    return df


def report(out: str | Path = "results", published: bool | None = None, console: Console | None = None) -> ReportFiles:
    """Write ``out/report/`` from ``out/results.csv``, exactly as ``ssl-bench report`` (it never retrains).

    ``published``: show the PIRL paper's numbers beside ours (None: only when a pretraining dataset is ImageNet).
    ``console``: where the headline table and the written files' names go (None: nowhere). Returns what was written
    (``ReportFiles``: paths, the summary frame, notes on what was missing)."""
    files = make_report(Path(out), console=console, published=published)
    if console is not None:
        for path in files.written:
            console.print(f"wrote {path}")
    return files


write_report = report  # inside ``run`` its argument ``report`` hides the function


def load_results(out: str | Path = "results") -> pd.DataFrame:
    """``out/results.csv`` (or the CSV file ``out``) as the report reads it: one row per number, typed (numeric
    value, params and seed, parsed ``created``), the latest run per model, seed and evaluation, one row per number
    and seed. ``.attrs["notes"]`` says what was dropped (rows without a value, superseded runs)."""
    path = Path(out)
    return typed(read_results(path if path.suffix == ".csv" else path / "results.csv"))


def list_methods() -> dict[str, str]:
    """Method name -> its paper, as ``ssl-bench list`` shows them (built-in methods, then any installed ones)."""
    from ssl_bench.methods import available_methods

    return {name: cls.paper for name, cls in available_methods().items()}
