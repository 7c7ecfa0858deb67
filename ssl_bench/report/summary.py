"""summary.md: the one page a person reads (index.html is the same page in HTML).

What was run, what is missing, the headline numbers with rankings per pretraining dataset and backbone,
every figure, the paper-format tables (semi-supervised, detection), invariance, and the published numbers
beside ours when they are shown. Pure text assembly: every number comes from `tables`, `detection_table`,
`semisup_table` or `invariance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from ssl_bench.report import published as refs
from ssl_bench.report.labels import display_name, paper_layer, published_name
from ssl_bench.report.overview import EVAL_HINTS, run_overview
from ssl_bench.report.ranking import rank_with_ties
from ssl_bench.report.stats import Estimate
from ssl_bench.report.tables import (
    DASH, MODEL, OWN_SECTION_EVALS, cell, cell_of, column_prefix, eval_rank, headline_evals, headline_metric,
    layer_table, layer_rank, markdown_table, ordered_backbones, ordered_layers, ordered_methods,
    other_numbers, seeds_note,
)  # fmt: skip

# (eval, protocol) shown in the headline table and ranked, besides any unknown eval's top-1.
HEADLINE_KEYS: tuple[tuple[str, str], ...] = (("linear", ""), ("knn", ""), ("semisup", "finetune-1%"), ("detection", "voc07"))
FIGURE_TEXT: dict[str, tuple[str, str]] = {  # file stem -> (title, caption)
    "accuracy_vs_params": ("Linear probe top-1 vs. number of parameters (paper Fig. 2)",
                           "Best-layer linear-probe top-1 against backbone parameters (log scale); error bars: ± 1 sample "
                           "std over seeds."),
    "layerwise": ("Linear probe top-1 per stage (paper Fig. 5)",
                  "Linear-probe top-1 on the frozen features of each stage; error bars: ± 1 sample std over seeds."),
    "invariance": ("Invariance to the pretext transforms (paper Fig. 4)",
                   "Histograms of the L2 distance between unit-normalised features of an image and of its transformed "
                   "version, seeds pooled; further left = more invariant. Vertical lines: medians."),
}  # fmt: skip
PUBLISHED_CAPTION: dict[str, str] = {
    "accuracy_vs_params": " Hollow markers with italic names: published numbers (PIRL paper, ImageNet), never joined to ours.",
    "layerwise": " The published curves (PIRL paper, ImageNet, ResNet-50) have a panel of their own.",
}


@dataclass(frozen=True)
class Sections:
    """The parts of the page assembled elsewhere: figure files written and paper-format tables as Markdown."""

    figures: Mapping[str, str] = field(default_factory=dict)  # stem -> file name (png) of every figure written
    semisup_md: str = ""
    detection_md: str = ""
    invariance_md: str = ""
    published: pd.DataFrame | None = None  # the references, when shown
    datasets: tuple[str, ...] = ()


def headline_keys(agg: pd.DataFrame) -> list[tuple[str, str]]:
    """The headline (eval, protocol) pairs present: HEADLINE_KEYS plus unknown evals."""
    present = headline_evals(agg)
    keys = [k for k in HEADLINE_KEYS if k in present or k[0] in ("linear", "knn")]
    return keys + [k for k in present if k not in keys and k[0] not in OWN_SECTION_EVALS and k[0] not in ("linear", "knn")]


def column_title(eval_name: str, protocol: str) -> str:
    metric = headline_metric(eval_name)
    if eval_name == "linear":
        return "linear top1 (best layer)"
    return " ".join(x for x in (eval_name, protocol, metric) if x)


def render_summary(
    df: pd.DataFrame, agg: pd.DataFrame, summary: pd.DataFrame, raw_rows: int, notes: Sequence[str], sections: Sections
) -> str:
    out = ["# ssl-bench report", "",
           "Generated from `results.csv` only: no model was retrained. `index.html` shows this page with its figures.", "",
           "## What was run", "", *run_overview(df, raw_rows)]  # fmt: skip
    if notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    out += _figure("accuracy_vs_params", sections)
    if df.empty:
        return "\n".join(out) + "\n"
    keys = headline_keys(agg)
    others = other_numbers(agg, summary)
    top1 = agg[agg["metric"] == "top1"]
    multi_layer = {ep for ep, n in top1.groupby(["eval", "protocol"])["layer"].nunique().items() if n > 1}
    for (dataset, preset), part in summary.groupby(["dataset", "preset"], sort=True):
        several_presets = summary.loc[summary["dataset"] == dataset, "preset"].nunique() > 1
        title = f"{dataset} · preset {preset}" if several_presets else dataset
        out += ["", f"## {title}", ""]
        if preset and not several_presets:
            out += [f"preset: `{preset}`", ""]
        for backbone in ordered_backbones(df[(df["dataset"] == dataset) & (df["preset"] == preset)]):
            rows = part[part["backbone"] == backbone]
            if rows.empty:
                continue
            params = rows["params"].iloc[0]
            out += [f"### {backbone}" + (f" ({params / 1e6:.2f} M parameters)" if not pd.isna(params) else ""), ""]
            out += _headline_section(rows, keys)
            out += _ranking_section(rows, keys)
            out += _layer_section(agg, rows)
            out += _other_section(others, rows, multi_layer)
        if sections.published is not None:
            out += _published_linear(sections.published)
    out += _figure("layerwise", sections)
    if sections.published is not None and "layerwise" in sections.figures:
        out += _published_layers(sections.published)
    out += _eval_section("semisup", "Semi-supervised learning (paper Table 3)", sections.semisup_md, df)
    files = "Also written as `detection_ap.csv` (with std and intervals) and `detection_ap.tex` (booktabs)."
    out += _eval_section("detection", "Object detection (paper Table 1)", sections.detection_md, df, files)
    out += _eval_section("invariance", "Invariance (paper Fig. 4)", sections.invariance_md, df, figure="invariance",
                         sections=sections)  # fmt: skip
    out += _published_note(sections)
    return "\n".join(out) + "\n"


def _figure(stem: str, sections: Sections) -> list[str]:
    if stem not in sections.figures:
        return []
    title, caption = FIGURE_TEXT[stem]
    if sections.published is not None:
        caption += PUBLISHED_CAPTION.get(stem, "")
    return ["", f"## {title}", "", f"![{title}]({sections.figures[stem]})", "", caption]


def _headline_section(rows: pd.DataFrame, keys: list[tuple[str, str]]) -> list[str]:
    shown = [(e, p) for e, p in keys if e in ("linear", "knn") or _has(rows, e, p)]
    header = ["method", *[column_title(e, p) for e, p in shown]]
    body, counts = [], []
    for r in rows.to_dict("records"):
        cells = [display_name(r["method"])]
        for e, p in shown:
            prefix, value = column_prefix(e, p), f"{column_prefix(e, p)}_{headline_metric(e)}"
            several_layers = e == "linear" or rows[f"{prefix}_layer"].nunique() > 1
            layer = r[f"{prefix}_layer"] if several_layers and isinstance(r[f"{prefix}_layer"], str) else None
            n = r[f"{prefix}_seeds"]
            n = 0 if pd.isna(n) else int(n)
            cells.append(cell(r[value], r[f"{value}_std"], n, headline_metric(e), layer, (r[f"{value}_low"], r[f"{value}_high"])))
            counts.append(n)
        body.append(cells)
    return [markdown_table(header, body), "", seeds_note(c for c in counts if c), ""]


def _has(rows: pd.DataFrame, eval_name: str, protocol: str) -> bool:
    column = f"{column_prefix(eval_name, protocol)}_{headline_metric(eval_name)}"
    return column in rows.columns and bool(rows[column].notna().any())


def _ranking_section(rows: pd.DataFrame, keys: list[tuple[str, str]]) -> list[str]:
    """One ranking per headline number with at least two methods; overlapping 95% intervals are ties."""
    out = []
    for e, p in keys:
        if not _has(rows, e, p):
            continue
        prefix, value = column_prefix(e, p), f"{column_prefix(e, p)}_{headline_metric(e)}"
        estimates = {
            r["method"]: Estimate(r[value], r[f"{value}_std"], 0 if pd.isna(r[f"{prefix}_seeds"]) else int(r[f"{prefix}_seeds"]),
                                  r[f"{value}_low"], r[f"{value}_high"])
            for r in rows.to_dict("records") if not pd.isna(r[value])
        }  # fmt: skip
        if len(estimates) < 2:
            continue
        ranked = rank_with_ties(estimates)
        single = all(x.estimate.n <= 1 for x in ranked)
        body = [
            [x.label, display_name(x.name), cell(x.estimate.mean, x.estimate.std, x.estimate.n, headline_metric(e),
             ci=(x.estimate.low, x.estimate.high)), ", ".join(display_name(t) for t in x.tied_with) or DASH]
            for x in ranked
        ]  # fmt: skip
        rule = ("One seed: ranked by value; without intervals only equal values tie." if single
                else "'=' marks a tie (95% intervals overlap); a rank counts only the methods clearly above.")  # fmt: skip
        header = ["rank", "method", "value", "tied with"]
        out += [f"Ranking by {column_title(e, p)}. {rule}", "", markdown_table(header, body), ""]
    return out


def _layer_section(agg: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    per_layer = layer_table(agg).merge(rows[MODEL], on=MODEL)
    if per_layer.empty:
        return []
    layers = ordered_layers(per_layer["layer"])
    best = {m: layer for m, layer in zip(rows["method"], rows["linear_layer"])}
    body = []
    for method in ordered_methods(per_layer["method"]):
        mine = per_layer[per_layer["method"] == method].set_index("layer")
        cells = [display_name(method)]
        for layer in layers:
            if layer not in mine.index:
                cells.append(DASH)
                continue
            text = cell_of(mine.loc[layer])
            cells.append(f"**{text}**" if best.get(method) == layer else text)
        body.append(cells)
    title = "Linear probe top-1 per layer (bold: best layer)"
    return [title, "", markdown_table(["method", *layers], body), "", seeds_note(per_layer["n"]), ""]


def _other_section(others: pd.DataFrame, rows: pd.DataFrame, multi_layer: set[tuple[str, str]]) -> list[str]:
    mine = others.merge(rows[MODEL], on=MODEL)
    if mine.empty:
        return []
    methods = ordered_methods(mine["method"])
    mine = mine.assign(
        _e=mine["eval"].map(eval_rank), _l=mine["layer"].map(layer_rank), _layer=mine["layer"].where(~mine["at_best"], "")
    )
    mine = mine.sort_values(["_e", "protocol", "metric", "_l"], kind="stable")
    body = []
    for (eval_name, protocol, metric, layer), group in mine.groupby(["eval", "protocol", "metric", "_layer"], sort=False):
        label = " ".join(x for x in (eval_name, protocol, metric) if x)
        if group["at_best"].all():
            label += " (at best top1 layer)" if (eval_name, protocol) in multi_layer else ""
        elif layer:
            label += f" ({layer})"
        by_method = group.set_index("method")
        body.append([label, *[cell_of(by_method.loc[m], metric) if m in by_method.index else DASH for m in methods]])
    header = ["number", *[display_name(m) for m in methods]]
    return ["Other numbers", "", markdown_table(header, body), "", seeds_note(mine["n"]), ""]


def _published_linear(published: pd.DataFrame) -> list[str]:
    rows = refs.select(published, "linear", "", "best")
    out = []
    for (source, table, text), part in rows.groupby(["source", "table", "protocol"], sort=False):
        part = part.sort_values("params", kind="stable")
        body = [[published_name(r["method"], r["note"]), str(r["backbone"]), f"{r['params'] / 1e6:.1f}", f"{r['value']:.1f}"]
                for _, r in part.iterrows()]  # fmt: skip
        out += [f"Published: {source}, {table}. Protocol: {text}. Not ranked with ours.", "",
                markdown_table(["method", "network", "params (M)", "top1"], body), ""]  # fmt: skip
    return out


def _published_layers(published: pd.DataFrame) -> list[str]:
    rows = refs.select(published, "linear", "")
    rows = rows[rows["layer"] != "best"]
    out = []
    for (source, table, text), part in rows.groupby(["source", "table", "protocol"], sort=False):
        layers = ordered_layers(part["layer"])
        body = []
        for method in ordered_methods(part["method"]):
            mine = part[part["method"] == method].set_index("layer")["value"]
            body.append([published_name(method), *[f"{mine[x]:.1f}" if x in mine.index else DASH for x in layers]])
        header = ["method", *[f"{x} ({paper_layer(x)})" for x in layers]]
        out += ["", f"Published: {source}, {table}. Protocol: {text}.", "", markdown_table(header, body)]
    return out


def _eval_section(
    eval_name: str, title: str, body: str, df: pd.DataFrame, extra: str = "", figure: str = "",
    sections: Sections | None = None,
) -> list[str]:  # fmt: skip
    out = ["", f"## {title}", ""]
    if not (df["eval"] == eval_name).any():
        return [*out, EVAL_HINTS[eval_name] + "."]
    if figure and sections is not None:
        out += [*_figure(figure, sections)[3:], ""]
    out += [body.rstrip()] if body else [f"no {eval_name} numbers to show."]
    return out + (["", extra] if extra else [])


def _published_note(sections: Sections) -> list[str]:
    out = ["", "## Published numbers", ""]
    if sections.published is not None:
        sources = sorted(set(sections.published["source"]))
        mismatch = [d for d in sections.datasets if not refs.is_imagenet(d)]
        text = ("Shown beside ours above, marked 'published', with their protocol; they are never ranked or fitted with "
                f"ours. Sources: {'; '.join(sources)}.")  # fmt: skip
        if mismatch:
            text += (f" Caution: these runs pretrain on {', '.join(mismatch)}, the published numbers on ImageNet: "
                     "the protocols do not match.")  # fmt: skip
        return [*out, text]
    datasets = ", ".join(sections.datasets) or DASH
    return [*out, f"Not shown: these runs pretrain on {datasets}, the published numbers (PIRL paper) on ImageNet with "
                  "ResNet-50, so the protocols do not match. `ssl-bench report --published` shows them anyway."]  # fmt: skip
