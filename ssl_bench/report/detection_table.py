"""Detection in the format of PIRL Table 1 (PIRL, 2020, arXiv:1912.01991): Method, Network, AP^all, AP50, AP75, ΔAP75.

One table per detection protocol and head (``protocol``, ``layer`` of the results rows; the detection dataset
is not in results.csv, so the pair is the key). ΔAP75 is the row's mean AP75 minus that of the supervised row
of the same network and pretraining (a difference of means, in points), as in the paper. Published rows, when
shown, follow in their own block with their protocol and are compared only with the published supervised row.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import pandas as pd

from ssl_bench.report import published as refs
from ssl_bench.report.labels import display_name, published_name
from ssl_bench.report.tables import (
    DASH, MODEL, cell, markdown_table, method_rank, ordered_backbones, seeds_note,
)  # fmt: skip

METRICS: tuple[str, ...] = ("AP", "AP50", "AP75")
HEADER: tuple[str, ...] = ("Method", "Network", "AP^all", "AP50", "AP75", "ΔAP75")
HEAD_ORDER: tuple[str, ...] = ("c4", "fpn")
PROTOCOL_ORDER: tuple[str, ...] = ("voc07", "coco")  # the paper's first
REFERENCE = "supervised"
DELTA_NOTE = "ΔAP75: AP75 minus the supervised row's AP75 (same network and pretraining; difference of means, points)."


@dataclass(frozen=True)
class DetectionTable:
    protocol: str
    head: str
    ours: pd.DataFrame  # one row per model: MODEL, n, <metric>_mean/_std/_low/_high, dAP75
    published: list[tuple[str, str, pd.DataFrame]]  # (source and table, protocol text, rows: method, backbone, AP.., dAP75)

    @property
    def title(self) -> str:
        return f"{self.protocol} · {self.head} head"


def detection_tables(
    agg: pd.DataFrame, published: pd.DataFrame | None = None, params: pd.Series | None = None
) -> list[DetectionTable]:
    """One table per (protocol, head) present in ``agg``; ``published`` adds the matching paper rows.

    ``params`` (backbone -> parameter count) orders the networks from small to large.
    """
    rows = agg[(agg["eval"] == "detection") & agg["metric"].isin(METRICS)]
    keys = sorted({(p, h) for p, h in zip(rows["protocol"], rows["layer"])}, key=_key_rank)
    out = []
    for protocol, head in keys:
        part = rows[(rows["protocol"] == protocol) & (rows["layer"] == head)]
        ours = _wide(part, params)
        blocks = _published_blocks(published, protocol, head) if published is not None else []
        out.append(DetectionTable(protocol, head, ours, blocks))
    return out


def _key_rank(key: tuple[str, str]) -> tuple[int, str, int, str]:
    protocol, head = key
    p = PROTOCOL_ORDER.index(protocol) if protocol in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
    return (p, protocol, HEAD_ORDER.index(head) if head in HEAD_ORDER else len(HEAD_ORDER), head)


def _wide(part: pd.DataFrame, params: pd.Series | None) -> pd.DataFrame:
    """Long aggregate rows -> one row per model with mean/std/low/high per metric and ΔAP75."""
    models = part[MODEL].drop_duplicates().reset_index(drop=True)
    out = models.copy()
    n = part.groupby(MODEL, sort=False)["n"].max().rename("n").reset_index()
    out = out.merge(n, on=MODEL, how="left")
    for metric in METRICS:
        m = part[part["metric"] == metric][[*MODEL, "mean", "std", "ci_low", "ci_high"]]
        names = {"mean": "mean", "std": "std", "ci_low": "low", "ci_high": "high"}
        m = m.rename(columns={k: f"{metric}_{v}" for k, v in names.items()})
        out = out.merge(m, on=MODEL, how="left")
    ref = out.loc[out["method"] == REFERENCE, ["dataset", "preset", "backbone", "AP75_mean"]].rename(columns={"AP75_mean": "_ref"})
    out = out.merge(ref, on=["dataset", "preset", "backbone"], how="left")
    out["dAP75"] = (out["AP75_mean"] - out["_ref"]).where(out["method"] != REFERENCE)
    sizes = part["backbone"].map(params) if params is not None else math.nan
    order = {b: i for i, b in enumerate(ordered_backbones(part.assign(params=sizes)))}
    out = out.assign(_b=out["backbone"].map(order), _m=out["method"].map(method_rank))
    out = out.sort_values(["dataset", "preset", "_b", "_m"], kind="stable")
    return out.drop(columns=["_ref", "_b", "_m"]).reset_index(drop=True)


def _published_blocks(published: pd.DataFrame, protocol: str, head: str) -> list[tuple[str, str, pd.DataFrame]]:
    rows = refs.select(published, "detection", protocol, head)
    blocks = []
    for (source, table, text), part in rows.groupby(["source", "table", "protocol"], sort=False):
        wide = part.pivot_table(index=["method", "backbone", "note"], columns="metric", values="value", sort=False)
        wide = wide.reset_index()
        for metric in METRICS:
            if metric not in wide.columns:
                wide[metric] = math.nan
        ref = wide.loc[wide["method"] == REFERENCE, "AP75"]
        wide["dAP75"] = (wide["AP75"] - (ref.iloc[0] if len(ref) else math.nan)).where(wide["method"] != REFERENCE)
        blocks.append((f"{source}, {table}", str(text), wide))
    return blocks


def _no_negative_zero(value: float) -> float:
    """-0.04 prints as "-0.0"; round first so a difference that rounds to zero reads "+0.0"."""
    return round(value, 1) + 0.0


def _delta(value: float) -> str:
    return DASH if pd.isna(value) else f"{_no_negative_zero(value):+.1f}"


def _several_pretrainings(ours: pd.DataFrame) -> bool:
    return len(ours[["dataset", "preset"]].drop_duplicates()) > 1


def _network(row: pd.Series, several: bool) -> str:
    return f"{row['backbone']} ({row['dataset']}, {row['preset']})" if several else str(row["backbone"])


def to_markdown(tables: list[DetectionTable], heading: str = "###") -> str:
    """All tables as Markdown, each with its seed note and, when shown, the published block(s)."""
    if not tables:
        return ""
    out: list[str] = []
    for t in tables:
        several = _several_pretrainings(t.ours)
        body = [
            [display_name(r["method"]), _network(r, several),
             *[cell(r[f"{m}_mean"], r[f"{m}_std"], int(r["n"]), m, ci=(r[f"{m}_low"], r[f"{m}_high"])) for m in METRICS],
             _delta(r["dAP75"])]
            for _, r in t.ours.iterrows()
        ]  # fmt: skip
        out += [f"{heading} Detection {t.title}", "", markdown_table(HEADER, body), "", seeds_note(t.ours["n"]) + " " + DELTA_NOTE]
        if REFERENCE not in set(t.ours["method"]):
            out += ["", "No supervised row: ΔAP75 not computed (run with --methods supervised)."]
        for source, text, rows in t.published:
            pub = [
                [published_name(r["method"], r["note"]), str(r["backbone"]),
                 *[DASH if pd.isna(r[m]) else f"{r[m]:.1f}" for m in METRICS], _delta(r["dAP75"])]
                for _, r in rows.iterrows()
            ]  # fmt: skip
            out += ["", f"Published: {source}. Protocol: {text}.", "", markdown_table(HEADER, pub)]
        out.append("")
    return "\n".join(out)


def to_frame(tables: list[DetectionTable]) -> pd.DataFrame:
    """The CSV's rows: ours (source 'ours', with std and interval per metric) then published (value only)."""
    records = []
    for t in tables:
        key = {"protocol": t.protocol, "head": t.head}
        for _, r in t.ours.iterrows():
            rec = key | {"source": "ours", "dataset": r["dataset"], "preset": r["preset"], "method": r["method"],
                         "method_name": display_name(r["method"]), "network": r["backbone"], "seeds": int(r["n"])}  # fmt: skip
            for m in METRICS:
                rec |= {m: r[f"{m}_mean"], f"{m}_std": r[f"{m}_std"], f"{m}_ci95_low": r[f"{m}_low"],
                        f"{m}_ci95_high": r[f"{m}_high"]}  # fmt: skip
            records.append(rec | {"dAP75": r["dAP75"], "published_protocol": "", "note": ""})
        for source, text, rows in t.published:
            for _, r in rows.iterrows():
                rec = key | {"source": source, "dataset": "imagenet", "preset": "", "method": r["method"],
                             "method_name": display_name(r["method"]), "network": r["backbone"], "seeds": math.nan}  # fmt: skip
                rec |= {m: r[m] for m in METRICS}
                records.append(rec | {"dAP75": r["dAP75"], "published_protocol": text, "note": r["note"]})
    columns = ["protocol", "head", "source", "dataset", "preset", "method", "method_name", "network", "seeds"]
    for m in METRICS:
        columns += [m, f"{m}_std", f"{m}_ci95_low", f"{m}_ci95_high"]
    return pd.DataFrame.from_records(records, columns=[*columns, "dAP75", "published_protocol", "note"])


def to_csv(tables: list[DetectionTable]) -> str:
    buffer = io.StringIO()
    to_frame(tables).to_csv(buffer, index=False, float_format="%.4g")
    return buffer.getvalue()


TEX_ESCAPES: tuple[tuple[str, str], ...] = (
    ("\\", r"\textbackslash "), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"), ("$", r"\$"),
    ("{", r"\{"), ("}", r"\}"), ("^", r"\^{}"), ("->", r"$\rightarrow$"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"),
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


def to_latex(tables: list[DetectionTable]) -> str:
    """One booktabs ``table`` per protocol and head (needs \\usepackage{booktabs}); mean ± std over seeds."""
    out = ["% Generated by `ssl-bench report` from results.csv; needs \\usepackage{booktabs}."]
    for t in tables:
        several = _several_pretrainings(t.ours)
        n_seeds = seeds_note(t.ours["n"]).replace(" [95% t-interval]", "")
        out += [
            "\\begin{table}[t]", "\\centering", "\\begin{tabular}{llcccc}", "\\toprule",
            "Method & Network & AP$^{\\mathrm{all}}$ & AP$_{50}$ & AP$_{75}$ & $\\Delta$AP$_{75}$ \\\\", "\\midrule",
        ]  # fmt: skip
        for _, r in t.ours.iterrows():
            cells = [_tex_cell(r[f"{m}_mean"], r[f"{m}_std"], int(r["n"])) for m in METRICS]
            delta = _tex_delta(r["dAP75"])
            out.append(" & ".join([_tex(display_name(r["method"])), _tex(_network(r, several)), *cells, delta]) + " \\\\")
        for source, text, rows in t.published:
            heading = f"\\emph{{Published: {_tex(source)}; {_tex(text)}}}"
            out += ["\\midrule", f"\\multicolumn{{6}}{{p{{0.9\\linewidth}}}}{{{heading}}} \\\\"]
            for _, r in rows.iterrows():
                cells = ["--" if pd.isna(r[m]) else f"{r[m]:.1f}" for m in METRICS]
                delta = _tex_delta(r["dAP75"])
                name = display_name(r["method"]) + (f" ({r['note']})" if r["note"] else "")
                out.append(" & ".join([_tex(name), _tex(str(r["backbone"])), *cells, delta]) + " \\\\")
        out += [
            "\\bottomrule", "\\end{tabular}",
            f"\\caption{{Detection, protocol {_tex(t.protocol)}, {_tex(t.head)} head. {_tex(n_seeds)} {_tex(DELTA_NOTE)}}}",
            "\\end{table}", "",
        ]  # fmt: skip
    return "\n".join(out)
