"""The regression check (``ssl-bench check``): two layers, one portable and tight, one loose and statistical.

1. Fingerprints (``ssl_bench.fingerprints``): a few float64 training steps of every method and every evaluation on
   fixed inputs, compared at ~1e-4 relative with ``results/baselines/fingerprints.json``. They hold on any CPU or
   GPU and move when a loss, a head, an augmentation, a default, a schedule or an evaluator changes.
2. Accuracy: the ``ci`` preset's end-to-end numbers against ``results/baselines/ci.csv``. Each number has a band
   measured from its spread over seeds (and machines): a number fails only when it leaves ``mean ± band``, with
   band = max(BAND_SDS x its standard deviation (at least its peers'), a floor per metric). Short training turns last-bit differences
   between machines into points, so this layer cannot see a changed default; it sees a method that stopped
   learning, a broken evaluation or a missing number. Numbers only in the results are "new" and never fail.

Both baselines change only on purpose, with ``--update``. Everything here is a pure function of the tables, except
reading and writing them.
"""

from __future__ import annotations

import json
import math
import platform
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ssl_bench.config import ConfigError, unknown
from ssl_bench.report.page import software_versions

KEY: list[str] = ["method", "backbone", "dataset", "eval", "protocol", "layer", "metric"]  # one compared number
BASELINE_COLUMNS: list[str] = [*KEY[:3], "preset", *KEY[3:], "value", "seeds", "sd", "band"]
RESULTS_COLUMNS: list[str] = [*KEY, "preset", "value", "seed", "created"]  # the ones used from results.csv
DECIMALS = 4  # the baseline's rounding; new means are rounded the same way before comparing

# A number's band is max(BAND_SDS x sd, its metric's floor), sd the standard deviation of its samples (seeds x
# machines), raised to its peers' pooled sd (``with_bands``). BAND_SDS = 6: held out one at a time, the 5 samples the
# committed baseline was measured from (AMD EPYC seeds 0-2 and --threads 1, Intel Xeon seed 0) put 0, 1, 0, 0, 0 of
# their numbers outside the band made from the others (1, 1, 0, 0, 1 at 5 sd; README "Regression check"). Accuracies
# and AP are percentages (0..100) in results.csv, so a floor of 1.0 is one point; invariance metrics are L2 distances
# between unit vectors (0..2): 0.03 is about 1.5% of their range.
BAND_SDS = 6.0
BAND_FLOORS: dict[str, float] = {
    "top1": 1.0,
    "top5": 1.0,  # linear, knn, semisup: points of accuracy
    "val_top1": 1.0,  # linear: top-1 on the held-out training images that choose the layer
    "mAP": 1.0,  # svm: points of mAP
    "AP": 1.0,
    "AP50": 1.0,
    "AP75": 1.0,  # detection: points of AP
    **{m: 0.03 for m in ("mean", "std", "q05", "q25", "q50", "q75", "q95")},  # invariance: distance
}

OK, REGRESSION, MISSING, NEW = "ok", "REGRESSION", "missing", "new"
FAILING = frozenset({REGRESSION, MISSING})
STATUS_STYLE = {OK: "green", REGRESSION: "bold red", MISSING: "red", NEW: "cyan"}


@dataclass(frozen=True)
class Comparison:
    """One key of the baseline or the results: its two numbers (None where absent) and the verdict."""

    method: str
    backbone: str
    dataset: str
    eval: str
    protocol: str
    layer: str
    metric: str
    baseline: float | None
    now: float | None
    tolerance: float | None
    status: str  # ok | REGRESSION | missing | new

    @property
    def delta(self) -> float | None:
        """now - baseline, rounded like the baseline; None unless both exist."""
        if self.baseline is None or self.now is None:
            return None
        return round(self.now - self.baseline, DECIMALS)

    @property
    def failed(self) -> bool:
        return self.status in FAILING


def update_command(baseline: str | Path, results: str | Path) -> str:
    """The command line that rewrites ``baseline`` from ``results``, for messages."""
    return f"ssl-bench check --no-fingerprints --baseline {shlex.quote(str(baseline))} --update --results {shlex.quote(str(results))}"


def read_csv(path: Path, required: Sequence[str], what: str, fix: str) -> pd.DataFrame:
    """``path`` as strings (empty cells stay "") with ``required`` columns; key cells stripped, value numeric."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:  # zero-byte file, e.g. a run killed before its first row
        df = pd.DataFrame({c: pd.Series(dtype=str) for c in required})
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not a readable CSV table: {err}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} {path} lacks column(s): {', '.join(missing)}. Expected: {', '.join(required)}. {fix}")
    df = df[list(required)].copy()
    for col in KEY:
        df[col] = df[col].str.strip()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Long results rows -> one row per KEY in BASELINE_COLUMNS: the mean over samples (rounded), their count
    (``seeds``) and standard deviation (``sd``, NaN for one sample); ``band`` is left NaN (see ``with_bands``).

    A sample is a (results file, seed): rows may come from several results tables (``source`` column, e.g. one
    per machine). When one key, source and seed has rows from several runs (e.g. after a config change), only the
    row with the latest ``created`` counts, as in the report: a re-run replaces a number, it is not another sample.
    Rows without a numeric value are ignored.
    """
    df = rows[rows["value"].notna()].copy()
    if "source" not in df.columns:
        df["source"] = 0
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=str if c in KEY or c == "preset" else float) for c in BASELINE_COLUMNS})
    df["created"] = pd.to_datetime(df["created"], errors="coerce", utc=True, format="ISO8601")
    df = df.sort_values("created", kind="stable", na_position="first")  # ties keep file order (appended = later)
    df = df.drop_duplicates([*KEY, "source", "seed"], keep="last")
    out = df.groupby(KEY, sort=True).agg(
        preset=("preset", "last"), value=("value", "mean"), seeds=("seed", "size"), sd=("value", "std")
    )
    out["value"] = out["value"].round(DECIMALS)
    out["band"] = math.nan
    return out.reset_index()[BASELINE_COLUMNS]


def with_bands(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with band = max(BAND_SDS x max(sd, pooled sd), floor of the metric).

    A few samples give a poor standard deviation (three seeds that happen to agree would give a band of nothing), so
    each number's sd is raised to its peers' pooled sd: the root mean square of the sds of the same number (eval,
    protocol, layer, metric) of every method and backbone that has one. A number with neither gets the floor alone.
    """
    out = table.copy()
    unknown_metric = sorted(set(out["metric"]) - set(BAND_FLOORS))
    if unknown_metric:
        raise ValueError(
            f"no band floor for metric(s) {', '.join(unknown_metric)}; known: {', '.join(sorted(BAND_FLOORS))}"
        )
    peers = ["dataset", "eval", "protocol", "layer", "metric"]
    pooled = out.groupby(peers)["sd"].transform(
        lambda sd: math.sqrt((sd.dropna() ** 2).mean()) if sd.notna().any() else math.nan
    )
    spread = BAND_SDS * pd.concat([out["sd"], pooled], axis=1).max(axis=1).fillna(0.0)
    out["band"] = pd.concat([out["metric"].map(BAND_FLOORS), spread], axis=1).max(axis=1).round(DECIMALS)
    return out


def load_results(paths: Path | Sequence[Path]) -> pd.DataFrame:
    """The aggregated results of one or more results tables (see ``aggregate``; each table is its own source)."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    frames = []
    for i, path in enumerate(paths):
        if not path.is_file():
            raise FileNotFoundError(
                f"no results table at {path}: run `ssl-bench run --preset ci --out {shlex.quote(str(path.parent))}` first "
                f"(it writes {path.parent / 'results.csv'}), then check it"
            )
        df = read_csv(path, RESULTS_COLUMNS, "results table", "It should be a results.csv written by `ssl-bench run`.")
        frames.append(df.assign(source=i))
    return aggregate(pd.concat(frames, ignore_index=True))


def load_baseline(path: Path, results: Path) -> pd.DataFrame:
    """The baseline at ``path``; ``results`` only names the file to rebuild it from in error messages."""
    fix = f"Rewrite it on purpose with `{update_command(path, results)}`."
    if not path.is_file():
        raise FileNotFoundError(
            f"no baseline at {path}. Create it from results you trust with `{update_command(path, results)}`, "
            "then commit it"
        )
    df = read_csv(
        path, BASELINE_COLUMNS, "baseline", fix + " A measured band needs several seeds (e.g. `--seeds 0,1,2`)."
    )
    for col in ("value", "band"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
        if df[col].isna().any():
            lines = ", ".join(str(i + 2) for i in df.index[df[col].isna()][:5])
            raise ValueError(f"baseline {path} has a non-numeric {col} on line(s) {lines}. {fix}")
    dups = df[df.duplicated(KEY, keep=False)]
    if not dups.empty:
        raise ValueError(f"baseline {path} lists {' / '.join(dups.iloc[0][KEY])} more than once. {fix}")
    return df


def write_baseline(table: pd.DataFrame, path: Path) -> int:
    """Write an aggregated table with its bands as the baseline (sorted by KEY) and the environment beside it
    (``environment_path``); returns the number of rows written."""
    if table.empty:
        raise ValueError(f"no numeric results to write to {path}: the results table is empty")
    path.parent.mkdir(parents=True, exist_ok=True)
    banded = with_bands(table).assign(sd=lambda t: t["sd"].round(DECIMALS))
    banded.sort_values(KEY)[BASELINE_COLUMNS].to_csv(path, index=False)
    environment_path(path).write_text(json.dumps(environment(), indent=2) + "\n")
    return len(table)


# The CI preset repeats bit for bit only on the same software and CPU: a different torch (or BLAS, or CPU)
# changes the last bits, and a few epochs of training turn them into points of accuracy, which the bands must
# absorb. The baseline records where it was written, and a failing check says when the environment differs.
def environment() -> dict[str, str]:
    """Software versions (package metadata, no imports) and the CPU of this machine."""
    return {**software_versions(), "machine": platform.machine(), "cpu": cpu_model()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_path(baseline: Path) -> Path:
    """Where a baseline's environment is recorded: ``ci.csv`` -> ``ci.env.json``."""
    return baseline.with_suffix(".env.json")


def environment_differences(baseline: Path) -> list[str] | None:
    """What differs between the baseline's recorded environment and this one ("torch 2.13.0 -> 2.14.1");
    None when the baseline has no readable record."""
    try:
        recorded = json.loads(environment_path(baseline).read_text())
    except (OSError, ValueError):
        return None
    now = environment()
    return [f"{k} {recorded.get(k, '?')} -> {now[k]}" for k in now if recorded.get(k) != now[k] and k != "ssl_bench"]


def environment_note(baseline: Path, results: Path) -> str | None:
    """Why an accuracy failure may not be the code's: the baseline was written elsewhere (or we cannot tell)."""
    diffs = environment_differences(baseline)
    if diffs == []:
        return None
    where = (
        f"{baseline} has no environment record ({environment_path(baseline).name})"
        if diffs is None
        else f"this environment differs from the one that wrote the baseline ({'; '.join(diffs)})"
    )
    return (
        f"note: {where}. The bands were measured over seeds and the machines named in the README; a number out of its "
        f"band here may be this machine's spread, not the code's: the fingerprint layer tells whether the code changed. "
        f"If it passed, measure this machine's spread (`ssl-bench run --preset ci --seeds 0,1,2`) and widen the bands on "
        f"purpose with `{update_command(baseline, results)} <the other machines' results.csv>`."
    )


def tolerance_number(item: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"--tolerance {item!r}: the tolerance must be a number >= 0, in the metric's own unit")
    return value


def parse_tolerances(specs: Sequence[str], metrics: Iterable[str]) -> dict[str, float]:
    """Per-metric overrides of the baseline's bands from ``--tolerance`` items (empty: use the bands).

    Each spec holds comma-separated items, ``metric=value`` or a bare number for every metric (named metrics win
    over a bare number, whatever the order). ``metrics`` are the baseline's; only they or a known metric may be named.
    """
    metrics = set(metrics)
    known = sorted(set(BAND_FLOORS) | metrics)
    everything: float | None = None
    named: dict[str, float] = {}
    for item in (part.strip() for spec in specs for part in spec.split(",")):
        if not item:
            continue
        name, sep, text = (s.strip() for s in item.partition("="))
        if not sep:
            everything = tolerance_number(item, item)
        elif name not in known:
            raise ConfigError(f"--tolerance: {unknown('metric', name, known)}")
        else:
            named[name] = tolerance_number(item, text)
    out = {m: everything for m in known} if everything is not None else {}
    out.update(named)
    return out


def compare(baseline: pd.DataFrame, now: pd.DataFrame, overrides: dict[str, float] | None = None) -> list[Comparison]:
    """One Comparison per key of either table, in key order: ok or REGRESSION (|Δ| > the key's band, or the
    ``overrides`` of its metric; either direction: a jump up also means the benchmark changed), missing (baseline
    only) or new (results only)."""
    overrides = overrides or {}
    merged = baseline[[*KEY, "value", "band"]].merge(
        now[[*KEY, "value"]], on=KEY, how="outer", suffixes=("_base", "_now"), indicator="side"
    )
    out = []
    for row in merged.sort_values(KEY).itertuples(index=False):
        fields = {k: getattr(row, k) for k in KEY}
        base = None if row.side == "right_only" else float(row.value_base)
        new = None if row.side == "left_only" else float(row.value_now)
        tol = overrides.get(row.metric, None if base is None else float(row.band))
        if base is None:
            status = NEW
        elif new is None:
            status = MISSING
        else:
            status = OK if abs(round(new - base, DECIMALS)) <= tol + 1e-9 else REGRESSION  # type: ignore[operator]
        out.append(Comparison(**fields, baseline=base, now=new, tolerance=tol, status=status))
    return out


def summary(rows: Sequence[Comparison]) -> str:
    """'N of M numbers within their band; K out of their band; J missing' (M = the baseline's numbers)."""
    count = {s: sum(r.status == s for r in rows) for s in (OK, REGRESSION, MISSING, NEW)}
    total = count[OK] + count[REGRESSION] + count[MISSING]
    text = f"{count[OK]} of {total} numbers within their band; {count[REGRESSION]} out of their band; {count[MISSING]} missing"
    return text + (f"; {count[NEW]} new (not in the baseline, not checked)" if count[NEW] else "")


def as_json(rows: Sequence[Comparison]) -> dict[str, Any]:
    """The accuracy layer as ``check --json`` shows it: passed, checked (the baseline's numbers), ok, and the
    compared numbers out of their band (failures), missing or new, each with its key, baseline, now, delta (as
    compared: rounded like the baseline), band (or the --tolerance override) and status, floats unformatted."""

    def entry(r: Comparison) -> dict[str, Any]:
        fields = {k: getattr(r, k) for k in KEY}
        return {
            **fields,
            "baseline": r.baseline,
            "now": r.now,
            "delta": r.delta,
            "band": r.tolerance,
            "status": r.status,
        }

    return {
        "passed": not any(r.failed for r in rows),
        "checked": sum(r.status != NEW for r in rows),
        "ok": sum(r.status == OK for r in rows),
        "failures": [entry(r) for r in rows if r.status == REGRESSION],
        "missing": [entry(r) for r in rows if r.status == MISSING],
        "new": [entry(r) for r in rows if r.status == NEW],
    }


def number(value: float | None, sign: bool = False) -> str:
    """At most DECIMALS decimals, trailing zeros dropped: 24.8, 0.1714, +1.2; "–" when absent."""
    if value is None:
        return "–"
    text = f"{value:{'+' if sign else ''}.{DECIMALS}f}".rstrip("0").rstrip(".")
    return ("+0" if sign else "0") if text in ("-0", "+0") else text  # no "-0" for a tiny negative


def render(rows: Sequence[Comparison], show_all: bool = False) -> Table | None:
    """The diff table: failing rows (all rows with ``show_all``); None when there is nothing to show.
    Backbone and dataset get a column only when they vary."""
    shown = [r for r in rows if show_all or r.failed]
    if not shown:
        return None
    varying = [c for c in ("backbone", "dataset") if len({getattr(r, c) for r in rows}) > 1]
    columns = ["method", *varying, "eval", "protocol", "layer", "metric"]
    table = Table(title="accuracy layer: results vs. baseline", title_justify="left", box=box.SIMPLE_HEAD)
    for name in columns:
        table.add_column(name, overflow="fold")  # a narrow terminal folds cells, never cuts them
    for name in ("baseline", "now", "Δ", "band"):
        table.add_column(name, justify="right", overflow="fold")
    table.add_column("status", no_wrap=True)
    for r in shown:
        tol = "–" if r.tolerance is None else f"±{r.tolerance:g}"
        cells = [escape(getattr(r, c)) for c in columns]
        table.add_row(
            *cells,
            number(r.baseline),
            number(r.now),
            number(r.delta, sign=True),
            tol,
            f"[{STATUS_STYLE[r.status]}]{r.status}",
        )
    return table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` at its full width when the output is not a terminal (a CI log, a pipe): rich would
    otherwise squeeze it into 80 columns."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    Console(file=console.file, width=max(console.width, natural)).print(table)  # print() cannot exceed console.width
