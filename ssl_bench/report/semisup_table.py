"""Semi-supervised learning in the format of PIRL Table 3 (PIRL, 2020, arXiv:1912.01991).

Columns: Method, Network, then top-1 and top-5 for each label fraction (1%, 10%). Two blocks: the
fine-tuned rows (protocol ``finetune-<pct>``: whole network + new linear head; the paper's protocol) and
the low-shot linear probe (``linear-<pct>``: frozen features, per stage), shown at its best stage by
top-1, the stage in parentheses and top-5 taken at that stage. Published rows (top-5 only) follow,
marked, with their protocol.
"""

from __future__ import annotations

import re

import pandas as pd

from ssl_bench.report import published as refs
from ssl_bench.report.labels import display_name, published_name
from ssl_bench.report.tables import (
    DASH, MODEL, best_layers, cell_of, layer_table, markdown_table, method_rank, seeds_note,
)  # fmt: skip

FINETUNE = "finetune"
LINEAR = "linear"
METRICS: tuple[str, ...] = ("top1", "top5")
FINETUNE_TEXT = "Fine-tuned: the whole network and a new linear head, trained on the labelled fraction (the paper's protocol)."
LINEAR_TEXT = ("Low-shot linear probe (not in the paper): a linear classifier on frozen features of each stage, trained on "
               "the labelled fraction; best stage by top-1 in parentheses, top-5 at that stage.")  # fmt: skip


def fractions(agg: pd.DataFrame) -> list[str]:
    """The label fractions present ('1%', '10%', ...), smallest first."""
    found = set()
    for protocol in agg.loc[agg["eval"] == "semisup", "protocol"]:
        match = re.fullmatch(r"(?:finetune|linear)-(.+%)", protocol)
        if match:
            found.add(match.group(1))
    return sorted(found, key=lambda f: float(f.rstrip("%")) if f.rstrip("%").replace(".", "", 1).isdigit() else 1e9)


def header(fracs: list[str]) -> list[str]:
    return ["Method", "Network", *[f"Top-1 {f}" for f in fracs], *[f"Top-5 {f}" for f in fracs]]


def _block(agg: pd.DataFrame, models: pd.DataFrame, kind: str, fracs: list[str]) -> tuple[list[list[str]], list[int]]:
    """Rows of one block (fine-tuned or linear) for the given models, and the seed counts of its cells."""
    cells: dict[tuple, dict[str, str]] = {}
    counts: list[int] = []
    for frac in fracs:
        protocol = f"{kind}-{frac}"
        best = best_layers(layer_table(agg, "semisup", protocol, "top1"))
        top5 = layer_table(agg, "semisup", protocol, "top5").set_index([*MODEL, "layer"])
        for _, r in best.iterrows():
            key = tuple(r[c] for c in MODEL)
            layer = r["layer"] if kind == LINEAR else None
            cells.setdefault(key, {})[f"top1 {frac}"] = cell_of(r, "top1", layer)
            counts.append(int(r["n"]))
            if (*key, r["layer"]) in top5.index:
                r5 = top5.loc[(*key, r["layer"])]
                cells[key][f"top5 {frac}"] = cell_of(r5, "top5")
    body = []
    for _, m in models.iterrows():
        key = tuple(m[c] for c in MODEL)
        if key not in cells:
            continue
        mine = cells[key]
        body.append([
            display_name(m["method"]), str(m["backbone"]),
            *[mine.get(f"top1 {f}", DASH) for f in fracs], *[mine.get(f"top5 {f}", DASH) for f in fracs],
        ])  # fmt: skip
    return body, counts


def to_markdown(
    agg: pd.DataFrame, published: pd.DataFrame | None = None, params: pd.Series | None = None, heading: str = "###"
) -> str:
    """The semi-supervised tables, one per pretraining dataset and preset; empty string without semisup rows."""
    rows = agg[agg["eval"] == "semisup"]
    fracs = fractions(agg)
    if rows.empty or not fracs:
        return ""
    models = rows[MODEL].drop_duplicates()
    sizes = models["backbone"].map(params) if params is not None else pd.Series(0, index=models.index)
    models = models.assign(_n=sizes.fillna(float("inf")), _m=models["method"].map(method_rank))
    models = models.sort_values(["dataset", "preset", "_n", "backbone", "_m"], kind="stable")
    out: list[str] = []
    for (dataset, preset), part in models.groupby(["dataset", "preset"], sort=False):
        title = f"{dataset} (preset {preset})" if preset else str(dataset)
        out += [f"{heading} Semi-supervised: {title}", ""]
        all_counts: list[int] = []
        for kind, text in ((FINETUNE, FINETUNE_TEXT), (LINEAR, LINEAR_TEXT)):
            body, counts = _block(agg, part, kind, fracs)
            all_counts += counts
            if body:
                out += [text, "", markdown_table(header(fracs), body), ""]
        out += [seeds_note(all_counts), ""]
        if published is not None:
            out += _published_block(published, fracs)
    return "\n".join(out)


def _published_block(published: pd.DataFrame, fracs: list[str]) -> list[str]:
    rows = pd.concat([refs.select(published, "semisup", f"{FINETUNE}-{f}") for f in fracs], ignore_index=True)
    if rows.empty:
        return []
    out = []
    for (source, table, text), part in rows.groupby(["source", "table", "protocol"], sort=False):
        body = []
        for (method, backbone), mine in part.groupby(["method", "backbone"], sort=False):
            values = {(r["metric"], r["eval_protocol"]): r["value"] for _, r in mine.iterrows()}
            body.append([
                published_name(method), str(backbone),
                *[_value(values, m, f) for m in METRICS for f in fracs],
            ])  # fmt: skip
        out += [f"Published: {source}, {table}. Protocol: {text}.", "", markdown_table(header(fracs), body), ""]
    return out


def _value(values: dict[tuple[str, str], float], metric: str, frac: str) -> str:
    v = values.get((metric, f"{FINETUNE}-{frac}"))
    return DASH if v is None or pd.isna(v) else f"{v:.1f}"
