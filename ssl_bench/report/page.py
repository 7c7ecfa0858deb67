"""The assembled outputs: summary.md (the one page a person reads), index.html (the same page) and the console.

summary.md: what was run, what is missing, the headline numbers with rankings per pretraining dataset and
backbone, every figure, the paper-format tables (semi-supervised, detection), invariance, and the published
numbers beside ours when they are shown. Pure text assembly: every number comes from `results` and `tables`.
Software versions are those installed when the report is written (runs do not record them), read from
package metadata so that the report never imports torch.

index.html: summary.md as a self-contained page that opens from disk (no network, no script, no CDN). A small
converter for the Markdown subset the report writes: headings, bullet lists, pipe tables, images on their own
line, paragraphs, **bold** and `code`. Images stay relative file names next to index.html.

The rich table printed after a report: the headline numbers, one row per model. Columns: best-layer linear
top-1 and kNN top-1 always; semi-supervised fine-tuning with 1% of the labels (top-1) and detection voc07 AP
when present. Cells are mean ± sample std over seeds; the intervals and rankings are in summary.md.
"""

from __future__ import annotations

import html
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import ssl_bench
from ssl_bench.protocol import VOC_EVALS, VOCProtocol
from ssl_bench.report import published as refs
from ssl_bench.report.results import (
    HEADLINE_METRIC,
    MODEL,
    OWN_SECTION_EVALS,
    PARAMS_CONVENTION,
    backbone_params,
    column_prefix,
    eval_rank,
    headline_evals,
    headline_metric,
    layer_rank,
    layer_table,
    ordered_backbones,
    ordered_layers,
    ordered_methods,
    other_numbers,
)
from ssl_bench.report.stats import Estimate, rank_with_ties
from ssl_bench.report.tables import (
    DASH,
    ONE_SEED,
    SPREAD,
    cell,
    cell_of,
    display_name,
    markdown_table,
    paper_layer,
    published_name,
    seeds_note,
)

# (eval, protocol) shown in the headline table and ranked, besides any unknown eval's top-1.
HEADLINE_KEYS: tuple[tuple[str, str], ...] = (
    ("linear", ""),
    ("knn", ""),
    ("semisup", "finetune-1%"),
    ("detection", "voc07"),
)
FIGURE_TEXT: dict[str, tuple[str, str]] = {  # file stem -> (title, caption)
    "accuracy_vs_params": (
        "Linear probe top-1 vs. number of parameters (paper Fig. 2)",
        f"Best-layer linear-probe top-1 against backbone parameters (log scale), counted {PARAMS_CONVENTION} as "
        "torchvision and the paper count them (ResNet-50: 25.6 M); error bars: ± 1 sample std over seeds.",
    ),
    "layerwise": (
        "Linear probe top-1 per stage (paper Fig. 5)",
        "Linear-probe top-1 on the frozen features of each stage; error bars: ± 1 sample std over seeds.",
    ),
    "invariance": (
        "Invariance to the pretext transforms (paper Fig. 4)",
        "Histograms of the L2 distance between unit-normalised features of an image and of its transformed "
        "version, seeds pooled; further left = more invariant. Vertical lines: medians.",
    ),
}
PUBLISHED_CAPTION: dict[str, str] = {
    "accuracy_vs_params": " Hollow markers with italic names: published numbers (PIRL paper, ImageNet), never joined"
    " to ours.",
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


def variant_of(protocol: str, key: str) -> bool:
    """``protocol`` is ``key``'s protocol on a listed label subset ("finetune-1%:1percent" of "finetune-1%") or on
    recorded data ("voc07 on voc07+12 trainval->test 25000 it" of "voc07")."""
    return bool(key) and protocol.startswith((f"{key}:", f"{key} on "))


def headline_keys(agg: pd.DataFrame) -> list[tuple[str, str]]:
    """The headline (eval, protocol) pairs present: HEADLINE_KEYS (each also on a listed label subset, e.g.
    "finetune-1%:1percent", or on recorded data, "voc07 on ...") plus unknown evals."""
    present = headline_evals(agg)
    keys = []
    for e, p in HEADLINE_KEYS:
        keys += [(e, p)] if (e, p) in present or e in ("linear", "knn") else []
        keys += [(pe, pp) for pe, pp in present if pe == e and variant_of(pp, p)]
    return keys + [
        k for k in present if k not in keys and k[0] not in OWN_SECTION_EVALS and k[0] not in ("linear", "knn")
    ]


def column_title(eval_name: str, protocol: str) -> str:
    """The column of a headline number: "knn top1", "semisup finetune-1% top5",
    "detection voc07 AP (voc07+12 trainval->test, 25000 iterations)"."""
    metric = headline_metric(eval_name)
    if eval_name == "linear":
        return "linear top1 (best layer)"
    if eval_name in VOC_EVALS and VOCProtocol.parse(protocol).recorded:
        p = VOCProtocol.parse(protocol)
        return f"{eval_name} {p.scoring} {metric} ({p.setting})"
    return " ".join(x for x in (eval_name, protocol, metric) if x)


CHOSEN_ON = {"val": "layer chosen on held-out training images", "test": "best layer on test"}


def headline_title(rows: pd.DataFrame, eval_name: str, protocol: str) -> str:
    """``column_title``, saying for the linear probe where its layer was chosen: on training images held out from the
    probe (``linear.val_fraction``) or on the test split (Goyal et al.'s, and results that recorded no hold-out)."""
    title = column_title(eval_name, protocol)
    column = f"{column_prefix(eval_name, protocol)}_chosen_on"
    if eval_name != "linear" or column not in rows.columns:
        return title
    chosen = [CHOSEN_ON[c] for c in sorted(set(rows[column].dropna()), reverse=True)]
    return title.replace("(best layer)", f"({'; '.join(chosen)})") if chosen else title


def render_summary(
    df: pd.DataFrame, agg: pd.DataFrame, summary: pd.DataFrame, raw_rows: int, notes: Sequence[str], sections: Sections
) -> str:
    out = [
        "# ssl-bench report",
        "",
        "Generated from `results.csv` only: no model was retrained. `index.html` shows this page with its figures.",
        "",
        "## What was run",
        "",
        *run_overview(df, raw_rows),
    ]
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
            out += [f"### {backbone}" + (f" ({millions(params)} M parameters)" if not pd.isna(params) else ""), ""]
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
    out += _eval_section(
        "invariance", "Invariance (paper Fig. 4)", sections.invariance_md, df, figure="invariance", sections=sections
    )
    out += _published_note(sections)
    return "\n".join(out) + "\n"


def _figure(stem: str, sections: Sections) -> list[str]:
    if stem not in sections.figures:
        return []
    title, caption = FIGURE_TEXT[stem]
    if sections.published is not None:
        caption += PUBLISHED_CAPTION.get(stem, "")
    return ["", f"## {title}", "", f"![{title}]({sections.figures[stem]})", "", caption]


def millions(params: float) -> str:
    """A parameter count in millions, three significant digits (0.0857, 0.839, 25.6), as Fig. 2's axis prints it."""
    return f"{params / 1e6:.3g}"


def _headline_section(rows: pd.DataFrame, keys: list[tuple[str, str]]) -> list[str]:
    shown = [(e, p) for e, p in keys if e == "linear" or _has(rows, e, p)]  # a size probed linearly: no kNN column
    header = ["method", *[headline_title(rows, e, p) for e, p in shown]]
    body, counts = [], []
    for r in rows.to_dict("records"):
        cells = [display_name(r["method"])]
        for e, p in shown:
            prefix, value = column_prefix(e, p), f"{column_prefix(e, p)}_{headline_metric(e)}"
            several_layers = e == "linear" or rows[f"{prefix}_layer"].nunique() > 1
            layer = r[f"{prefix}_layer"] if several_layers and isinstance(r[f"{prefix}_layer"], str) else None
            n = r[f"{prefix}_seeds"]
            n = 0 if pd.isna(n) else int(n)
            cells.append(
                cell(r[value], r[f"{value}_std"], n, headline_metric(e), layer, (r[f"{value}_low"], r[f"{value}_high"]))
            )
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
            r["method"]: Estimate(
                r[value],
                r[f"{value}_std"],
                0 if pd.isna(r[f"{prefix}_seeds"]) else int(r[f"{prefix}_seeds"]),
                r[f"{value}_low"],
                r[f"{value}_high"],
            )
            for r in rows.to_dict("records")
            if not pd.isna(r[value])
        }
        if len(estimates) < 2:
            continue
        ranked = rank_with_ties(estimates)
        single = all(x.estimate.n <= 1 for x in ranked)
        body = [
            [
                x.label,
                display_name(x.name),
                cell(
                    x.estimate.mean,
                    x.estimate.std,
                    x.estimate.n,
                    headline_metric(e),
                    ci=(x.estimate.low, x.estimate.high),
                ),
                ", ".join(display_name(t) for t in x.tied_with) or DASH,
            ]
            for x in ranked
        ]
        rule = (
            "One seed: ranked by value; without intervals only equal values tie."
            if single
            else "'=' marks a tie (95% intervals overlap); a rank counts only the methods clearly above."
        )
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
        _e=mine["eval"].map(eval_rank),
        _l=mine["layer"].map(layer_rank),
        _layer=mine["layer"].where(~mine["at_best"], ""),
    )
    mine = mine.sort_values(["_e", "protocol", "metric", "_l"], kind="stable")
    body = []
    for (eval_name, protocol, metric, layer), group in mine.groupby(
        ["eval", "protocol", "metric", "_layer"], sort=False
    ):
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
        body = [
            [
                published_name(r["method"], r["note"]),
                str(r["backbone"]),
                f"{r['params'] / 1e6:.1f}",
                f"{r['value']:.1f}",
            ]
            for _, r in part.iterrows()
        ]
        out += [
            f"Published: {source}, {table}. Protocol: {text}. Not ranked with ours.",
            "",
            markdown_table(["method", "network", "params (M)", "top1"], body),
            "",
        ]
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
    eval_name: str,
    title: str,
    body: str,
    df: pd.DataFrame,
    extra: str = "",
    figure: str = "",
    sections: Sections | None = None,
) -> list[str]:
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
        text = (
            "Shown beside ours above, marked 'published', with their protocol; they are never ranked or "
            f"fitted with ours. Sources: {'; '.join(sources)}."
        )
        if mismatch:
            text += (
                f" Caution: these runs pretrain on {', '.join(mismatch)}, the published numbers on ImageNet: "
                "the protocols do not match."
            )
        return [*out, text]
    datasets = ", ".join(sections.datasets) or DASH
    return [
        *out,
        f"Not shown: these runs pretrain on {datasets}, the published numbers (PIRL paper) on ImageNet with "
        "ResNet-50, so the protocols do not match. `ssl-bench report --published` shows them "
        "anyway.",
    ]


# What was run and what is missing: the first lines of summary.md.
SOFTWARE: tuple[str, ...] = ("torch", "torchvision", "timm")
# eval -> (what is missing, how to get it); linear and knn first, as in the headline table.
EVAL_HINTS: dict[str, str] = {
    "linear": "no linear-probe rows: run with --evals linear",
    "knn": "no kNN rows: run with --evals knn",
    "semisup": "no semisup rows: run with --evals semisup (paper Table 3: 1% and 10% labels)",
    "detection": "no detection rows: run with --evals detection (paper Table 1: VOC07 AP, AP50, AP75)",
    "invariance": "no invariance rows: run with --evals invariance (paper Fig. 4: distance histograms)",
}


def software_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["ssl_bench"] = ssl_bench.__version__
    return found


def seed_statement(df: pd.DataFrame) -> str:
    """How many seeds each number has, and so whether there are error bars and intervals."""
    per_unit = df.groupby(["dataset", "preset", "backbone", "method", "eval", "protocol", "layer", "metric"])[
        "seed"
    ].nunique()
    ns = sorted(set(int(n) for n in per_unit))
    if not ns:
        return DASH
    if ns == [1]:
        return ONE_SEED
    counts = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return (
        f"{SPREAD} over {counts} seeds (t = t_0.975,n−1; interval = mean ± t·std/√n); "
        "rankings treat overlapping intervals as ties" + (f"; numbers with 1 seed: {ONE_SEED}" if 1 in ns else "")
    )


def run_overview(df: pd.DataFrame, raw_rows: int) -> list[str]:
    """Bullet lines saying what was run: methods, backbones, datasets, presets, evals, seeds, rows, dates, software."""

    def listing(values: Iterable[object]) -> str:
        items = [str(v) for v in values if str(v) != ""]
        return ", ".join(items) if items else DASH

    software = ", ".join(f"{k} {v}" for k, v in software_versions().items())
    if df.empty:
        return [f"- rows: 0 used of {raw_rows} in results.csv", f"- software (installed now): {software}"]
    params = backbone_params(df)
    backbones = [
        f"{b} ({millions(params[b])} M params)" if not pd.isna(params[b]) else b for b in ordered_backbones(df)
    ]
    created = df["created"].dropna()
    dates = f"{created.min():%Y-%m-%d %H:%M} to {created.max():%Y-%m-%d %H:%M} UTC" if len(created) else DASH
    seeds = sorted(int(s) for s in df["seed"].dropna().unique())
    methods = [f"{display_name(m)} (`{m}`)" if display_name(m) != m else m for m in ordered_methods(df["method"])]
    return [
        f"- methods: {listing(methods)}",
        f"- backbones (parameters counted {PARAMS_CONVENTION}): {listing(backbones)}",
        f"- datasets: {listing(sorted(df['dataset'].unique()))}",
        f"- presets: {listing(sorted(df['preset'].unique()))}",
        f"- evaluations: {listing(sorted(df['eval'].unique(), key=eval_rank))}",
        f"- seeds: {listing(seeds)}; {seed_statement(df)}",
        f"- rows: {len(df)} used of {raw_rows} in results.csv, from {df['run_id'].nunique()} run(s); when one method, "
        "backbone and seed has several runs, each evaluation uses the latest run",
        f"- run dates: {dates}",
        f"- software (installed when this report was written; runs do not record versions): {software}",
    ]


def missing_messages(df: pd.DataFrame) -> list[str]:
    """What the table lacks for a full report, each with the command that fills it in."""
    if df.empty:
        return [
            "results.csv has no rows yet: no evaluation has finished. "
            "Run `ssl-bench run`, which appends one row per number."
        ]
    messages = []
    for eval_name, hint in EVAL_HINTS.items():
        rows = df[df["eval"] == eval_name]
        if rows.empty:
            messages.append(hint)
        elif eval_name in ("linear", "knn") and not (rows["metric"] == HEADLINE_METRIC).any():
            messages.append(f"no {eval_name} top1 rows (metrics present: {', '.join(sorted(rows['metric'].unique()))})")
    no_params = [b for b, p in backbone_params(df).items() if pd.isna(p)]
    if no_params:
        messages.append(f"no parameter count for backbone(s) {', '.join(no_params)}: left out of the plot")
    return messages


# index.html
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em;
       color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .15em; margin-top: 1.8em; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
li { margin: .15em 0; }
"""
IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def inline(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags."""
    out, last = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        bold, code = m.group(1), m.group(2)
        out.append(f"<strong>{inline(bold)}</strong>" if bold is not None else f"<code>{html.escape(code)}</code>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def markdown_to_html(text: str, title: str = "ssl-bench report") -> str:
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
            continue
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        image = IMAGE.match(line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
        elif image:
            alt, src = image.group("alt"), image.group("src")
            body.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">')
            i += 1
            if i + 1 < len(lines) and not lines[i].strip() and lines[i + 1].strip() and not _is_block(lines[i + 1]):
                body.append(f"<figcaption>{inline(lines[i + 1].strip())}</figcaption>")  # the caption paragraph
                i += 2
            body.append("</figure>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            head, rest = _cells(rows[0]), [r for r in rows[1:] if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", r.strip())]
            header = "".join(f"<th>{inline(c)}</th>" for c in head)
            body.append(f'<div class="wide"><table><thead><tr>{header}</tr></thead><tbody>')
            body += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in rest]
            body.append("</tbody></table></div>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:].strip())}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not _is_block(lines[i]):
                para.append(lines[i].strip())
                i += 1
            body.append(f"<p>{inline(' '.join(para))}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _is_block(line: str) -> bool:
    return line.startswith(("#", "|", "- ")) or bool(IMAGE.match(line.rstrip()))


# The console table
CONSOLE_COLUMNS: tuple[tuple[str, str, str], ...] = (  # (eval, protocol, column title)
    ("linear", "", "linear top1 (best layer)"),
    ("knn", "", "knn top1"),
    ("semisup", "finetune-1%", "semisup 1% top5 (finetune)"),
    ("detection", "voc07", "detection voc07 AP"),
)


def print_headline(console: Console, summary: pd.DataFrame, notes: tuple[str, ...]) -> None:
    """The headline numbers, one table per dataset and backbone (a backbone's name is a title, not a column a narrow
    terminal cuts: model sizes differ only at its end), each with the columns that have a number in it."""
    if not summary.empty:
        columns = [(e, p, t) for e, key, title in CONSOLE_COLUMNS for p, t in _variants(summary, e, key, title)]
        every = [(e, p, t) for e, p, t in columns if e == "linear" or _has(summary, e, p)]
        counts = [n for e, p, _ in every for n in summary[f"{column_prefix(e, p)}_seeds"] if not pd.isna(n)]
        presets = summary.groupby("dataset")["preset"].nunique()
        groups = list(summary.groupby(["dataset", "preset", "backbone"], sort=False))
        for i, ((dataset, preset, backbone), rows) in enumerate(groups):
            shown = [(e, p, t) for e, p, t in every if e == "linear" or _has(rows, e, p)]
            name = f"{dataset} ({preset})" if presets[dataset] > 1 else dataset
            title = f"ssl-bench headline numbers: {name} · {backbone}"
            table = Table(title=title, min_width=len(title))  # as wide as its title: the backbone on one line
            if i == len(groups) - 1:  # the seeds of every table, once, under the last
                table.caption = (
                    seeds_note(counts).replace(" [95% t-interval]", "") + " Intervals and rankings: summary.md."
                ).strip()
            table.add_column("method")
            for _, _, title in shown:
                table.add_column(title, justify="right")
            for r in rows.to_dict("records"):
                cells = [_cell(r, rows, e, p) for e, p, _ in shown]
                table.add_row(*(escape(str(v)) for v in (display_name(r["method"]), *cells)))
            console.print(table)
    for note in notes:  # the caller prints the paths written (ReportFiles.written)
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


def _variants(summary: pd.DataFrame, eval_name: str, key: str, title: str) -> list[tuple[str, str]]:
    """(protocol, column title) of a console column: the protocol itself and, for detection, each recorded data
    ("detection voc07 AP (voc07+12 trainval->test, 25000 iterations)")."""
    if eval_name not in VOC_EVALS:
        return [(key, title)]
    start, end = f"{eval_name}_", f"_{headline_metric(eval_name)}"
    found = [c[len(start) : -len(end)] for c in summary.columns if c.startswith(start) and c.endswith(end)]
    return [(key, title)] + [(p, column_title(eval_name, p)) for p in found if variant_of(p, key)]


def _cell(r: dict, summary: pd.DataFrame, eval_name: str, protocol: str) -> str:
    prefix = column_prefix(eval_name, protocol)
    metric = headline_metric(eval_name)
    value = f"{prefix}_{metric}"
    if value not in r:
        return cell(float("nan"), float("nan"), 0)
    n = r[f"{prefix}_seeds"]
    several_layers = eval_name == "linear" or summary[f"{prefix}_layer"].dropna().nunique() > 1
    layer = r[f"{prefix}_layer"] if several_layers and isinstance(r[f"{prefix}_layer"], str) else None
    return cell(r[value], r[f"{value}_std"], 0 if pd.isna(n) else int(n), metric, layer)
