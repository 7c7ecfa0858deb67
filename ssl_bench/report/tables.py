"""The report's tables: how things are named, how a number over seeds is written, and the paper-format tables.

Names: method display names and the paper's layer names are kept here rather than read from
``ssl_bench.methods`` so that the report never imports torch; a test checks that they agree with each
method's ``display_name``. Unknown methods (third-party, or published ones such as "MoCo") are shown as they
are spelled.

Semi-supervised learning in the format of PIRL Table 3 (PIRL, 2020, arXiv:1912.01991). Columns: Method,
Network, then top-5 (the headline: the paper's table reports top-5 only) and top-1 for each label fraction (1%,
10%; ``1% (1percent)`` where the subset came from a published list, protocol ``finetune-1%:1percent``). Two blocks:
the fine-tuned rows (protocol ``finetune-<pct>``: whole network + new linear head; the paper's protocol) and the
low-shot linear probe (``linear-<pct>``: frozen features, per stage), shown at its best stage by top-5, the stage
in parentheses and top-1 taken at that stage. Published rows (top-5 only) follow, marked, with their protocol, under
the fraction they share with ours (whichever subset it was drawn as).

Detection in the format of PIRL Table 1: Method, Network, AP^all, AP50, AP75, ΔAP75. One table per detection
protocol and head (``protocol``, ``layer`` of the results rows): the protocol names the scoring (voc07 | coco), the
data, its train -> test splits and the iterations (``ssl_bench.protocol``), so two datasets or schedules are two
tables. Rows written before the data was recorded (protocol "voc07" alone) get tables of their own, "dataset not
recorded". ΔAP75 is the row's mean AP75 minus that of the supervised row of the same network and pretraining (a
difference of means, in points), as in the paper. Published rows, when shown, follow in their own block with their
protocol and are compared only with the published supervised row; a block is shown only under a table of the same
scoring, data, splits and head (Table 1 under VOC07+12 trainval -> test, the VOC07-only table under VOC07
trainval -> test), with a line saying when the schedule differs or is not known.

Invariance (PIRL Fig. 4): per pretraining and backbone, the mean distance and median [q25, q75].
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssl_bench.protocol import VOCProtocol
from ssl_bench.report import published as refs
from ssl_bench.report.results import (
    HEADLINE_METRIC,
    MODEL,
    Distances,
    best_layers,
    layer_table,
    method_rank,
    ordered_backbones,
)

DISPLAY_NAMES: dict[str, str] = {
    "random": "Random",
    "supervised": "Supervised",
    "autoencoder": "Autoencoder",
    "rotnet": "RotNet",
    "jigsaw": "Jigsaw",
    "npidpp": "NPID++",
    "pirl": "PIRL",
}
# Our timm stage names -> the names of PIRL's ResNet-50 tables (Goyal et al. 2019).
PAPER_LAYERS: dict[str, str] = {"stem": "conv1", "layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}
PERCENT_METRICS: frozenset[str] = frozenset({"top1", "top5"})
FIXED_DECIMALS: dict[str, int] = {"distance": 3}  # metrics shown with a fixed number of decimals
DASH = "–"


def display_name(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def paper_layer(layer: str) -> str:
    return PAPER_LAYERS.get(layer, layer)


def published_name(method: str, note: str = "") -> str:
    """'PIRL (published)' or 'MoCo (published; BN fine-tuned, not frozen)'."""
    return f"{display_name(method)} (published{'; ' + note if note else ''})"


def is_percent(metric: str) -> bool:
    """Accuracies and average precisions are percentages, shown with one decimal."""
    return metric in PERCENT_METRICS or metric.lower().startswith(("ap", "map"))


def cell(
    mean: float,
    std: float,
    n: int,
    metric: str = HEADLINE_METRIC,
    layer: str | None = None,
    ci: tuple[float, float] | None = None,
) -> str:
    """'72.3 ± 0.4 [71.3, 73.3] (layer3)': mean ± std [95% interval]; one seed gives the bare value; no number a dash.

    Percentages get one decimal; other metrics give the std two significant digits and the mean as many decimals.
    The interval is shown when given and there are several seeds.
    """
    if mean is None or pd.isna(mean):
        return DASH
    spread = n > 1 and not pd.isna(std)
    if is_percent(metric) or metric in FIXED_DECIMALS:
        decimals = FIXED_DECIMALS.get(metric, 1)
        text = f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if spread else "")
    elif spread and std > 0:
        decimals = max(0, 1 - math.floor(math.log10(std)))
        text = f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    else:
        decimals = 3
        text = f"{mean:.4g}" + (" ± 0" if spread else "")
    if spread and ci is not None and not (pd.isna(ci[0]) or pd.isna(ci[1])):
        text += f" [{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]"
    return f"{text} ({layer})" if layer else text


def cell_of(row: Mapping[str, object], metric: str = HEADLINE_METRIC, layer: str | None = None) -> str:
    """`cell` of an aggregate row (mean, std, n, ci_low, ci_high)."""
    n = row["n"]
    return cell(
        row["mean"],
        row["std"],
        0 if pd.isna(n) else int(n),
        metric,
        layer,  # type: ignore[arg-type]
        (row.get("ci_low", math.nan), row.get("ci_high", math.nan)),  # type: ignore[arg-type]
    )


ONE_SEED = "one seed: no error bars / intervals."  # said on the page whenever a number has a single seed
SPREAD = "mean ± sample std (ddof=1) [95% t-interval]"


def seeds_note(counts: Iterable[int]) -> str:
    """The line under a table saying over how many seeds its cells are computed."""
    ns = sorted({int(n) for n in counts if not pd.isna(n)})
    if not ns:
        return ""
    if ns == [1]:
        return ONE_SEED[0].upper() + ONE_SEED[1:]
    spread = SPREAD[0].upper() + SPREAD[1:]
    if len(ns) == 1:
        return f"{spread} over {ns[0]} seeds."
    extra = f" Cells without ± have {ONE_SEED}" if 1 in ns else ""
    return f"{spread} over seeds; the number of seeds varies between cells ({ns[0]}–{ns[-1]}).{extra}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# Semi-supervised learning, paper Table 3 format.
FINETUNE = "finetune"
LINEAR = "linear"
SEMISUP_METRICS: tuple[str, ...] = ("top5", "top1")  # the headline first (results.HEADLINE_METRICS: PIRL Table 3)
FINETUNE_TEXT = (
    "Fine-tuned: the whole network and a new linear head, trained on the labelled fraction (the paper's protocol)."
)
LINEAR_TEXT = (
    "Low-shot linear probe (not in the paper): a linear classifier on frozen features of each stage, "
    "trained on the labelled fraction; best stage by top-5 in parentheses, top-1 at that "
    "stage."
)


def semisup_fractions(agg: pd.DataFrame) -> list[str]:
    """The label fractions present ('1%', '10%', ...; '1%:1percent' for a listed subset), smallest first."""
    found = set()
    for protocol in agg.loc[agg["eval"] == "semisup", "protocol"]:
        match = re.fullmatch(r"(?:finetune|linear)-([^:]+%)(:.+)?", protocol)
        if match:
            found.add(match.group(1) + (match.group(2) or ""))

    def size(frac: str) -> tuple[float, str]:
        pct, _, subset = frac.partition(":")
        number = pct.rstrip("%")
        return (float(number) if number.replace(".", "", 1).isdigit() else 1e9, subset)

    return sorted(found, key=size)


def fraction_label(frac: str) -> str:
    """'1%' or, for a listed subset, '1% (1percent)'."""
    pct, _, subset = frac.partition(":")
    return f"{pct} ({subset})" if subset else pct


def semisup_header(fracs: list[str]) -> list[str]:
    titles = {"top1": "Top-1", "top5": "Top-5"}
    return ["Method", "Network", *[f"{titles[m]} {fraction_label(f)}" for m in SEMISUP_METRICS for f in fracs]]


def _semisup_block(
    agg: pd.DataFrame, models: pd.DataFrame, kind: str, fracs: list[str]
) -> tuple[list[list[str]], list[int]]:
    """Rows of one block (fine-tuned or linear) for the given models, and the seed counts of its cells."""
    cells: dict[tuple, dict[str, str]] = {}
    counts: list[int] = []
    head, other = SEMISUP_METRICS
    for frac in fracs:
        protocol = f"{kind}-{frac}"
        best = best_layers(layer_table(agg, "semisup", protocol, head))
        rest = layer_table(agg, "semisup", protocol, other).set_index([*MODEL, "layer"])
        for _, r in best.iterrows():
            key = tuple(r[c] for c in MODEL)
            layer = r["layer"] if kind == LINEAR else None
            cells.setdefault(key, {})[f"{head} {frac}"] = cell_of(r, head, layer)
            counts.append(int(r["n"]))
            if (*key, r["layer"]) in rest.index:
                cells[key][f"{other} {frac}"] = cell_of(rest.loc[(*key, r["layer"])], other)
    body = []
    for _, m in models.iterrows():
        key = tuple(m[c] for c in MODEL)
        if key not in cells:
            continue
        mine = cells[key]
        body.append(
            [
                display_name(m["method"]),
                str(m["backbone"]),
                *[mine.get(f"{metric} {f}", DASH) for metric in SEMISUP_METRICS for f in fracs],
            ]
        )
    return body, counts


def semisup_markdown(
    agg: pd.DataFrame, published: pd.DataFrame | None = None, params: pd.Series | None = None, heading: str = "###"
) -> str:
    """The semi-supervised tables, one per pretraining dataset and preset; empty string without semisup rows."""
    rows = agg[agg["eval"] == "semisup"]
    fracs = semisup_fractions(agg)
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
            body, counts = _semisup_block(agg, part, kind, fracs)
            all_counts += counts
            if body:
                out += [text, "", markdown_table(semisup_header(fracs), body), ""]
        out += [seeds_note(all_counts), ""]
        if published is not None:
            out += _published_semisup(published, fracs)
    return "\n".join(out)


def _published_semisup(published: pd.DataFrame, fracs: list[str]) -> list[str]:
    """The paper's rows, under every column of their fraction (a listed subset of ours: the same fraction)."""
    pcts = dict.fromkeys(f.partition(":")[0] for f in fracs)
    rows = pd.concat([refs.select(published, "semisup", f"{FINETUNE}-{p}") for p in pcts], ignore_index=True)
    if rows.empty:
        return []
    out = []
    for (source, table, text), part in rows.groupby(["source", "table", "protocol"], sort=False):
        body = []
        for (method, backbone), mine in part.groupby(["method", "backbone"], sort=False):
            values = {(r["metric"], r["eval_protocol"]): r["value"] for _, r in mine.iterrows()}
            body.append(
                [
                    published_name(method),
                    str(backbone),
                    *[_semisup_value(values, m, f) for m in SEMISUP_METRICS for f in fracs],
                ]
            )
        out += [f"Published: {source}, {table}. Protocol: {text}.", "", markdown_table(semisup_header(fracs), body), ""]
    return out


def _semisup_value(values: dict[tuple[str, str], float], metric: str, frac: str) -> str:
    v = values.get((metric, f"{FINETUNE}-{frac.partition(':')[0]}"))
    return DASH if v is None or pd.isna(v) else f"{v:.1f}"


# Detection, paper Table 1 format.
DETECTION_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75")
DETECTION_HEADER: tuple[str, ...] = ("Method", "Network", "AP^all", "AP50", "AP75", "ΔAP75")
HEAD_ORDER: tuple[str, ...] = ("c4", "fpn")
PROTOCOL_ORDER: tuple[str, ...] = ("voc07", "coco")  # the paper's first
REFERENCE = "supervised"
DELTA_NOTE = "ΔAP75: AP75 minus the supervised row's AP75 (same network and pretraining; difference of means, points)."


UNRECORDED_TEXT = (
    "These rows were written before ssl-bench recorded the detection data (their protocol names only the scoring): "
    "their dataset, splits and schedule are unknown, and no published rows are matched with them."
)


@dataclass(frozen=True)
class PublishedBlock:
    """The paper's rows under one of our tables: source and table, their protocol in words, the rows (method,
    backbone, note, AP.., dAP75) and what we know differs from our run ("" when nothing)."""

    source: str
    protocol: str
    rows: pd.DataFrame
    caveat: str = ""


@dataclass(frozen=True)
class DetectionTable:
    protocol: str  # the results rows' protocol: a VOCProtocol label
    head: str
    ours: pd.DataFrame  # one row per model: MODEL, n, <metric>_mean/_std/_low/_high, dAP75
    published: list[PublishedBlock]

    @property
    def parsed(self) -> VOCProtocol:
        return VOCProtocol.parse(self.protocol)

    @property
    def title(self) -> str:
        """E.g. "voc07 · voc07+12 trainval->test, 25000 iterations · c4 head"."""
        return f"{self.parsed.scoring} · {self.parsed.setting} · {self.head} head"

    @property
    def caption(self) -> str:
        return f"{self.parsed.scoring} scoring, {self.parsed.setting}, {self.head} head"


def detection_tables(
    agg: pd.DataFrame, published: pd.DataFrame | None = None, params: pd.Series | None = None
) -> list[DetectionTable]:
    """One table per (protocol, head) present in ``agg``, i.e. per scoring, data, splits, schedule and head;
    ``published`` adds the paper's rows of the same scoring, data, splits and head.

    ``params`` (backbone -> parameter count) orders the networks from small to large.
    """
    rows = agg[(agg["eval"] == "detection") & agg["metric"].isin(DETECTION_METRICS)]
    keys = sorted({(p, h) for p, h in zip(rows["protocol"], rows["layer"])}, key=_key_rank)
    out = []
    for protocol, head in keys:
        part = rows[(rows["protocol"] == protocol) & (rows["layer"] == head)]
        ours = _wide(part, params)
        blocks = _published_detection(published, VOCProtocol.parse(protocol), head) if published is not None else []
        out.append(DetectionTable(protocol, head, ours, blocks))
    return out


def _key_rank(key: tuple[str, str]) -> tuple:
    """Recorded data first, grouped by data, splits and schedule; then the scoring (voc07 first) and the head."""
    label, head = key
    p = VOCProtocol.parse(label)
    scoring = PROTOCOL_ORDER.index(p.scoring) if p.scoring in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
    data = (not p.recorded, p.data, p.train_split, p.test_split, p.iterations or 0)
    return (*data, scoring, p.scoring, HEAD_ORDER.index(head) if head in HEAD_ORDER else len(HEAD_ORDER), head)


def _wide(part: pd.DataFrame, params: pd.Series | None) -> pd.DataFrame:
    """Long aggregate rows -> one row per model with mean/std/low/high per metric and ΔAP75."""
    models = part[MODEL].drop_duplicates().reset_index(drop=True)
    out = models.copy()
    n = part.groupby(MODEL, sort=False)["n"].max().rename("n").reset_index()
    out = out.merge(n, on=MODEL, how="left")
    for metric in DETECTION_METRICS:
        m = part[part["metric"] == metric][[*MODEL, "mean", "std", "ci_low", "ci_high"]]
        names = {"mean": "mean", "std": "std", "ci_low": "low", "ci_high": "high"}
        m = m.rename(columns={k: f"{metric}_{v}" for k, v in names.items()})
        out = out.merge(m, on=MODEL, how="left")
    ref = out.loc[out["method"] == REFERENCE, ["dataset", "preset", "backbone", "AP75_mean"]].rename(
        columns={"AP75_mean": "_ref"}
    )
    out = out.merge(ref, on=["dataset", "preset", "backbone"], how="left")
    out["dAP75"] = (out["AP75_mean"] - out["_ref"]).where(out["method"] != REFERENCE)
    sizes = part["backbone"].map(params) if params is not None else math.nan
    order = {b: i for i, b in enumerate(ordered_backbones(part.assign(params=sizes)))}
    out = out.assign(_b=out["backbone"].map(order), _m=out["method"].map(method_rank))
    out = out.sort_values(["dataset", "preset", "_b", "_m"], kind="stable")
    return out.drop(columns=["_ref", "_b", "_m"]).reset_index(drop=True)


def _published_detection(published: pd.DataFrame, ours: VOCProtocol, head: str) -> list[PublishedBlock]:
    """The paper's blocks of the same scoring, data, splits and head as ``ours`` (none for unrecorded data)."""
    rows = published[(published["eval"] == "detection") & (published["layer"] == head)]
    blocks = []
    for (source, table, text, label), part in rows.groupby(
        ["source", "table", "protocol", "eval_protocol"], sort=False
    ):
        theirs = VOCProtocol.parse(label)
        if not ours.same_data(theirs):
            continue
        wide = part.pivot_table(index=["method", "backbone", "note"], columns="metric", values="value", sort=False)
        wide = wide.reset_index()
        for metric in DETECTION_METRICS:
            if metric not in wide.columns:
                wide[metric] = math.nan
        ref = wide.loc[wide["method"] == REFERENCE, "AP75"]
        wide["dAP75"] = (wide["AP75"] - (ref.iloc[0] if len(ref) else math.nan)).where(wide["method"] != REFERENCE)
        blocks.append(PublishedBlock(f"{source}, {table}", str(text), wide, schedule_caveat(ours, theirs)))
    return blocks


def schedule_caveat(ours: VOCProtocol, theirs: VOCProtocol) -> str:
    """What differs between our schedule and the paper's for the same data ("" when they agree)."""
    if theirs.iterations is None:
        return f"The paper's schedule for this table is not recorded here; ours: {ours.iterations} iterations."
    if ours.iterations != theirs.iterations:
        return f"Not the paper's schedule: ours {ours.iterations} iterations, the paper's {theirs.iterations}."
    return ""


def _no_negative_zero(value: float) -> float:
    """-0.04 prints as "-0.0"; round first so a difference that rounds to zero reads "+0.0"."""
    return round(value, 1) + 0.0


def _delta(value: float) -> str:
    return DASH if pd.isna(value) else f"{_no_negative_zero(value):+.1f}"


def _several_pretrainings(ours: pd.DataFrame) -> bool:
    return len(ours[["dataset", "preset"]].drop_duplicates()) > 1


def _network(row: pd.Series, several: bool) -> str:
    return f"{row['backbone']} ({row['dataset']}, {row['preset']})" if several else str(row["backbone"])


def detection_markdown(tables: list[DetectionTable], heading: str = "###") -> str:
    """All tables as Markdown, each with its seed note and, when shown, the published block(s)."""
    if not tables:
        return ""
    out: list[str] = []
    for t in tables:
        several = _several_pretrainings(t.ours)
        body = [
            [
                display_name(r["method"]),
                _network(r, several),
                *[
                    cell(r[f"{m}_mean"], r[f"{m}_std"], int(r["n"]), m, ci=(r[f"{m}_low"], r[f"{m}_high"]))
                    for m in DETECTION_METRICS
                ],
                _delta(r["dAP75"]),
            ]
            for _, r in t.ours.iterrows()
        ]
        out += [
            f"{heading} Detection {t.title}",
            "",
            markdown_table(DETECTION_HEADER, body),
            "",
            seeds_note(t.ours["n"]) + " " + DELTA_NOTE,
        ]
        if REFERENCE not in set(t.ours["method"]):
            out += ["", "No supervised row: ΔAP75 not computed (run with --methods supervised)."]
        if not t.parsed.recorded:
            out += ["", UNRECORDED_TEXT]
        for block in t.published:
            pub = [
                [
                    published_name(r["method"], r["note"]),
                    str(r["backbone"]),
                    *[DASH if pd.isna(r[m]) else f"{r[m]:.1f}" for m in DETECTION_METRICS],
                    _delta(r["dAP75"]),
                ]
                for _, r in block.rows.iterrows()
            ]
            about = " ".join(x for x in (f"Published: {block.source}. Protocol: {block.protocol}.", block.caveat) if x)
            out += ["", about, "", markdown_table(DETECTION_HEADER, pub)]
        out.append("")
    return "\n".join(out)


def detection_frame(tables: list[DetectionTable]) -> pd.DataFrame:
    """The CSV's rows: ours (source 'ours', with std and interval per metric) then published (value only)."""
    records = []
    for t in tables:
        p = t.parsed
        key = {
            "protocol": t.protocol,
            "scoring": p.scoring,
            "detection_data": p.data,
            "train_split": p.train_split,
            "test_split": p.test_split,
            "iterations": p.iterations,
            "head": t.head,
        }
        for _, r in t.ours.iterrows():
            rec = key | {
                "source": "ours",
                "dataset": r["dataset"],
                "preset": r["preset"],
                "method": r["method"],
                "method_name": display_name(r["method"]),
                "network": r["backbone"],
                "seeds": int(r["n"]),
            }
            for m in DETECTION_METRICS:
                rec |= {
                    m: r[f"{m}_mean"],
                    f"{m}_std": r[f"{m}_std"],
                    f"{m}_ci95_low": r[f"{m}_low"],
                    f"{m}_ci95_high": r[f"{m}_high"],
                }
            records.append(rec | {"dAP75": r["dAP75"], "published_protocol": "", "note": "", "caveat": ""})
        for block in t.published:
            for _, r in block.rows.iterrows():
                rec = key | {
                    "source": block.source,
                    "dataset": "imagenet",
                    "preset": "",
                    "method": r["method"],
                    "method_name": display_name(r["method"]),
                    "network": r["backbone"],
                    "seeds": math.nan,
                }
                rec |= {m: r[m] for m in DETECTION_METRICS}
                extra = {"dAP75": r["dAP75"], "published_protocol": block.protocol, "note": r["note"]}
                records.append(rec | extra | {"caveat": block.caveat})
    columns = [
        "protocol",
        "scoring",
        "detection_data",
        "train_split",
        "test_split",
        "iterations",
        "head",
        "source",
        "dataset",
        "preset",
        "method",
        "method_name",
        "network",
        "seeds",
    ]
    for m in DETECTION_METRICS:
        columns += [m, f"{m}_std", f"{m}_ci95_low", f"{m}_ci95_high"]
    return pd.DataFrame.from_records(records, columns=[*columns, "dAP75", "published_protocol", "note", "caveat"])


def detection_csv(tables: list[DetectionTable]) -> str:
    buffer = io.StringIO()
    detection_frame(tables).to_csv(buffer, index=False, float_format="%.4g")
    return buffer.getvalue()


TEX_ESCAPES: tuple[tuple[str, str], ...] = (
    ("\\", r"\textbackslash "),
    ("&", r"\&"),
    ("%", r"\%"),
    ("#", r"\#"),
    ("_", r"\_"),
    ("$", r"\$"),
    ("{", r"\{"),
    ("}", r"\}"),
    ("^", r"\^{}"),
    ("->", r"$\rightarrow$"),
    ("±", r"$\pm$"),
    ("Δ", r"$\Delta$"),
)  # in this order: later replacements add characters the earlier ones escape


def _tex(text: str) -> str:
    for char, escaped in TEX_ESCAPES:
        text = text.replace(char, escaped)
    return text


def _tex_cell(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "--"
    return f"{mean:.1f} $\\pm$ {std:.1f}" if n > 1 and not pd.isna(std) else f"{mean:.1f}"


def _tex_delta(value: float) -> str:
    return "" if pd.isna(value) else f"{_no_negative_zero(value):+.1f}".replace("-", "$-$")


def detection_latex(tables: list[DetectionTable]) -> str:
    """One booktabs ``table`` per protocol and head (needs \\usepackage{booktabs}); mean ± std over seeds."""
    out = ["% Generated by `ssl-bench report` from results.csv; needs \\usepackage{booktabs}."]
    for t in tables:
        several = _several_pretrainings(t.ours)
        n_seeds = seeds_note(t.ours["n"]).replace(" [95% t-interval]", "")
        out += [
            "\\begin{table}[t]",
            "\\centering",
            "\\begin{tabular}{llcccc}",
            "\\toprule",
            "Method & Network & AP$^{\\mathrm{all}}$ & AP$_{50}$ & AP$_{75}$ & $\\Delta$AP$_{75}$ \\\\",
            "\\midrule",
        ]
        for _, r in t.ours.iterrows():
            cells = [_tex_cell(r[f"{m}_mean"], r[f"{m}_std"], int(r["n"])) for m in DETECTION_METRICS]
            delta = _tex_delta(r["dAP75"])
            out.append(
                " & ".join([_tex(display_name(r["method"])), _tex(_network(r, several)), *cells, delta]) + " \\\\"
            )
        for block in t.published:
            text = _tex(block.protocol) + (f". {_tex(block.caveat)}" if block.caveat else "")
            heading = f"\\emph{{Published: {_tex(block.source)}; {text}}}"
            out += ["\\midrule", f"\\multicolumn{{6}}{{p{{0.9\\linewidth}}}}{{{heading}}} \\\\"]
            for _, r in block.rows.iterrows():
                cells = ["--" if pd.isna(r[m]) else f"{r[m]:.1f}" for m in DETECTION_METRICS]
                delta = _tex_delta(r["dAP75"])
                name = display_name(r["method"]) + (f" ({r['note']})" if r["note"] else "")
                out.append(" & ".join([_tex(name), _tex(str(r["backbone"])), *cells, delta]) + " \\\\")
        out += [
            "\\bottomrule",
            "\\end{tabular}",
            f"\\caption{{Detection, {_tex(t.caption)}. {_tex(n_seeds)} {_tex(DELTA_NOTE)}}}",
            "\\end{table}",
            "",
        ]
    return "\n".join(out)


# Invariance, paper Fig. 4.
LAYER_TEXT: dict[str, str] = {"pooled": "pooled backbone features", "head": "heads f(v_I) vs. g(v_I^t)"}


def invariance_markdown(agg: pd.DataFrame, distances: list[Distances]) -> str:
    """Per pretraining and backbone: mean distance (over seeds) and median [q25, q75] per protocol, lower = more
    invariant."""
    rows = agg[(agg["eval"] == "invariance") & (agg["metric"] == "mean")]
    if rows.empty:
        return ""
    out = []
    protocols = sorted(rows["protocol"].unique())
    for (dataset, preset, backbone), part in rows.groupby(["dataset", "preset", "backbone"], sort=False):
        header = [
            "Method",
            "Features",
            *[f"{p}: mean" for p in protocols],
            *[f"{p}: median [q25, q75]" for p in protocols],
        ]
        body = []
        keys = part[["method", "layer"]].drop_duplicates()
        keys = keys.assign(_m=keys["method"].map(method_rank), _l=keys["layer"] != "pooled").sort_values(["_m", "_l"])
        for method, layer in zip(keys["method"], keys["layer"]):
            mine = part[(part["method"] == method) & (part["layer"] == layer)].set_index("protocol")
            means = [cell_of(mine.loc[p], "distance") if p in mine.index else DASH for p in protocols]
            spreads = [_quartiles(distances, (dataset, preset, backbone, method, p, layer)) for p in protocols]
            body.append([display_name(method), LAYER_TEXT.get(layer, layer), *means, *spreads])
        out += [
            f"{backbone} ({dataset}, preset {preset}):" if preset else f"{backbone} ({dataset}):",
            "",
            markdown_table(header, body),
            "",
            seeds_note(part["n"]),
            "",
        ]
    return "\n".join(out)


def _quartiles(distances: list[Distances], key: tuple[str, ...]) -> str:
    for d in distances:
        if (d.dataset, d.preset, d.backbone, d.method, d.protocol, d.layer) == key:
            if d.raw is not None and len(d.raw):
                q25, q50, q75 = np.quantile(d.raw, [0.25, 0.5, 0.75])
            else:
                q25, q50, q75 = (d.quantiles.get(p, math.nan) for p in (0.25, 0.5, 0.75))
            return f"{q50:.3f} [{q25:.3f}, {q75:.3f}]"
    return DASH
