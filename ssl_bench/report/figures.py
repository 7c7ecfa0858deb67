"""The report's figures, built on the Agg canvas directly, without pyplot, so no display and no global state.

Accuracy against backbone size, in the style of PIRL Fig. 2 (PIRL, 2020, arXiv:1912.01991): one marker per
(method, backbone); x is the parameter count in millions (log scale), counted with a 1000-way linear classifier
for ours and the published points alike (ResNet-50: 25.6 M; ``results.PARAMS_CONVENTION``), y the linear probe
top-1 at the best layer (mean over seeds, error bar = std when there are several seeds). Published points
(optional) are hollow markers with their names in italics, never joined to ours.

Linear-probe accuracy per stage, one line per method, in the style of PIRL Fig. 5: one panel per (dataset,
preset, backbone): x the stages (stem .. layer4), y the top-1 mean over seeds with error bars of one sample std
when there are several seeds. The published curves (ImageNet, ResNet-50, paper layers conv1 .. res5) get a
panel of their own, hollow markers and dashed lines: they are a different protocol and never share axes with
ours.

Histograms of invariance distances, in the style of PIRL Fig. 4: one column per transform (jigsaw, rotation),
one row per method (and backbone): the distribution of L2 distances between unit-normalised features of an
image and of its transformed version, pooled backbone features filled, PIRL's heads f vs. g as a dashed
outline. Further left = more invariant. A histogram drawn from quantiles (no raw file) covers the central 90%
and says so in its panel.
"""

from __future__ import annotations

import math
from itertools import cycle

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation, Text
from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import Bbox

from ssl_bench.report.results import PARAMS_CONVENTION, Distances, layer_table, ordered_layers, ordered_methods
from ssl_bench.report.tables import display_name, paper_layer

POINTS_GID = "ssl-bench-points"  # gid prefix of the data lines: f"{POINTS_GID}:{method}"
PUBLISHED_GID = "ssl-bench-published"  # gid prefix of the published markers: f"{PUBLISHED_GID}:{method}"
PUBLISHED_COLOUR = "#555555"
PUBLISHED_LABEL = "published (hollow):\nPIRL paper, ImageNet"
X_LABEL = f"Number of parameters (millions, {PARAMS_CONVENTION})"
Y_LABEL = "Linear probe top-1 (%)"
STYLE: dict[str, tuple[str, str]] = {  # method -> (marker, colour)
    "random": ("X", "#7f7f7f"),
    "supervised": ("*", "#1a1a1a"),
    "autoencoder": ("s", "#bcbd22"),
    "rotnet": ("^", "#ff7f0e"),
    "jigsaw": ("D", "#2ca02c"),
    "npidpp": ("v", "#1f77b4"),
    "pirl": ("o", "#d62728"),
}
AMBIGUOUS = 2000.0  # cost (px²) of a label nearer to another marker than to its own
ON_LABEL = 8.0  # weight of covering another label (unreadable) relative to covering a marker
EXTRA_MARKERS = ("P", "h", "<", ">", "p", "8", "d", "H")
EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#393b79", "#637939", "#843c39", "#7b4173")
# Label offsets (points) tried in turn, with the text alignment that keeps the label off the marker.
OFFSETS: tuple[tuple[float, float, str, str], ...] = (
    (7, 0, "left", "center"),
    (-7, 0, "right", "center"),
    (0, 7, "center", "bottom"),
    (0, -7, "center", "top"),
    (6, 6, "left", "bottom"),
    (-6, 6, "right", "bottom"),
    (6, -6, "left", "top"),
    (-6, -6, "right", "top"),
    (14, 10, "left", "bottom"),
    (-14, 10, "right", "bottom"),
    (14, -10, "left", "top"),
    (-14, -10, "right", "top"),
    (0, 16, "center", "bottom"),
    (0, -16, "center", "top"),
    (22, 0, "left", "center"),
    (-22, 0, "right", "center"),
)
# Farther offsets for crowded points, each label joined to its marker by a thin leader line.
LEADER_OFFSETS: tuple[tuple[float, float, str, str], ...] = tuple(
    (sx * dx, sy * dy, "left" if sx > 0 else "right", "center")
    for dx in (34, 64)
    for dy in (14, 26, 38, 50, 62)
    for sy in (1, -1)
    for sx in (1, -1)
)
LEADER_COST = 150.0  # a leader line is clear but busier than a label right next to its marker


def plot_points(summary: pd.DataFrame) -> pd.DataFrame:
    """The points the plot draws: dataset, preset, backbone, method, x (M params), y (top-1), yerr (NaN: 1 seed)."""
    cols = ["dataset", "preset", "backbone", "method", "x", "y", "yerr"]
    if "linear_top1" not in summary.columns or summary.empty:
        return pd.DataFrame(columns=cols)
    ok = summary[summary["linear_top1"].notna() & summary["params"].notna()]
    seeds = ok["linear_seeds"].fillna(0).astype(int)
    return pd.DataFrame(
        {
            "dataset": ok["dataset"],
            "preset": ok["preset"],
            "backbone": ok["backbone"],
            "method": ok["method"],
            "x": ok["params"] / 1e6,
            "y": ok["linear_top1"],
            "yerr": ok["linear_top1_std"].where(seeds > 1),
        }
    )[cols].reset_index(drop=True)


def method_styles(methods: list[str]) -> dict[str, tuple[str, str]]:
    """A distinct (marker, colour) per method: fixed for the paper's methods, then drawn from a cycle."""
    extra = cycle(zip(EXTRA_MARKERS, EXTRA_COLOURS))
    return {m: STYLE[m] if m in STYLE else next(extra) for m in methods}


def published_styles(methods: list[str]) -> dict[str, tuple[str, str]]:
    """Published methods we also run keep our marker and colour; the others are grey, one marker each."""
    extra = cycle(EXTRA_MARKERS)
    return {m: STYLE[m] if m in STYLE else (next(extra), PUBLISHED_COLOUR) for m in dict.fromkeys(methods)}


def accuracy_vs_params(summary: pd.DataFrame, published: pd.DataFrame | None = None) -> Figure:
    """One panel per (dataset, preset); raises ValueError when there is no point to draw.

    ``published`` (see `published.linear_points`: method, x, y) adds hollow markers to every panel.
    """
    points = plot_points(summary)
    published = published if published is not None and not published.empty else None
    if points.empty:
        raise ValueError("nothing to plot: no linear-probe top1 row with a backbone parameter count")
    panels = list(points.groupby(["dataset", "preset"], sort=True))
    presets = points.groupby("dataset")["preset"].nunique()
    methods = ordered_methods(points["method"])
    styles = method_styles(methods)
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    width = 8.4 if published is not None else 6.4  # the published points span three decades more
    fig = Figure(figsize=(width * ncols + 1.6, 4.8 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((dataset, preset), pts) in zip(axes, panels):
        title = f"{dataset} (preset {preset})" if presets[dataset] > 1 and preset else str(dataset)
        _draw_panel(ax, pts, styles, title, published)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], marker=styles[m][0], color=styles[m][1], linestyle="none", markersize=8, label=display_name(m))
        for m in methods
    ]
    if published is not None:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                color=PUBLISHED_COLOUR,
                markerfacecolor="none",
                linestyle="none",
                markersize=8,
                label=PUBLISHED_LABEL,
            )
        )
    fig.legend(handles=handles, title="method", loc="outside right upper", frameon=False)
    fig.canvas.draw()  # run the layout once, then freeze it so that label placement stays valid
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for ax, (_, pts) in zip(axes, panels):
        _place_labels(ax, _labels(pts, published), renderer)
    return fig


def _labels(pts: pd.DataFrame, published: pd.DataFrame | None) -> pd.DataFrame:
    """x, y, text, italic of every point to label: ours, then the published ones. With several sizes each method's
    curve is named once, at its largest size (the top axis names the sizes): a label per point crowds the panel."""
    largest = pts.loc[pts.groupby("method", sort=False)["x"].idxmax()]
    ours = pd.DataFrame(
        {"x": largest["x"], "y": largest["y"], "italic": False, "text": largest["method"].map(display_name)}
    )
    if published is None:
        return ours.reset_index(drop=True)
    theirs = pd.DataFrame(
        {
            "x": published["x"],
            "y": published["y"],
            "text": published["method"].map(display_name),
            "italic": True,
        }
    )
    return pd.concat([ours, theirs], ignore_index=True)


def _draw_panel(
    ax: Axes, pts: pd.DataFrame, styles: dict[str, tuple[str, str]], title: str, published: pd.DataFrame | None
) -> None:
    several_sizes = pts["backbone"].nunique() > 1
    for method in ordered_methods(pts["method"]):
        mine = pts[pts["method"] == method].sort_values("x")
        marker, colour = styles[method]
        ax.plot(
            mine["x"],
            mine["y"],
            marker=marker,
            color=colour,
            markersize=10 if marker == "*" else 7,
            linestyle=":" if several_sizes else "none",
            linewidth=1,
            label=method,
            gid=f"{POINTS_GID}:{method}",
        )
        spread = mine[mine["yerr"].notna()]
        if not spread.empty:  # error bars only where there are several seeds
            ax.errorbar(
                spread["x"], spread["y"], yerr=spread["yerr"], fmt="none", ecolor=colour, elinewidth=1, capsize=3
            )
    if published is not None:
        pub_styles = published_styles(list(published["method"]))
        for method, mine in published.groupby("method", sort=False):
            marker, colour = pub_styles[method]
            ax.plot(
                mine["x"],
                mine["y"],
                marker=marker,
                color=colour,
                markerfacecolor="none",
                markeredgewidth=1.3,
                markersize=10 if marker == "*" else 7,
                linestyle="none",
                gid=f"{PUBLISHED_GID}:{method}",
            )
    ax.set_xscale("log")
    sizes = pts.drop_duplicates("backbone").sort_values("x")
    xs = sizes["x"].to_numpy(dtype=float)
    all_x = np.concatenate([xs, published["x"].to_numpy(dtype=float)]) if published is not None else xs
    pad = 2.2 if published is not None else 1.5  # room for the labels of crowded points
    ax.set_xlim(all_x.min() / pad, all_x.max() * 1.5)
    if published is None:
        ax.xaxis.set_major_locator(FixedLocator(xs))
    else:  # decades: our sizes are named on the top axis
        ax.xaxis.set_major_locator(LogLocator(base=10))
    decades = published is not None
    # our sizes by three significant digits, as summary.md prints them (0.0857, 0.247, 0.839, 25.6 M: one decimal
    # would print 0.1, 0.2, 0.8)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}" if decades else f"{x:.3g}" if x < 1000 else f"{x:.0f}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if several_sizes or published is not None:
        top = ax.secondary_xaxis("top")
        top.set_xticks(xs, labels=sizes["backbone"].tolist(), fontsize=8)
        top.xaxis.set_minor_locator(NullLocator())
    low = (pts["y"] - pts["yerr"].fillna(0)).min()
    high = (pts["y"] + pts["yerr"].fillna(0)).max()
    if published is not None:
        low, high = min(low, published["y"].min()), max(high, published["y"].max())
    pad = max(2.0, 0.12 * (high - low))
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad) if high <= 100 else high + pad)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)


def _place_labels(ax: Axes, pts: pd.DataFrame, renderer: RendererBase) -> None:
    """Label each point (columns x, y, text, italic) at the offset that covers the least.

    Costs are overlaps with markers and labels already placed, leaving the axes, and being as near
    another marker as the label's own (the reader must see which point a label names); a crowded
    point gets a farther label with a leader line. The white label box lets a line pass under a label.
    """
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(pts[["x", "y"]].to_numpy(dtype=float))
    radius = 6 * ax.figure.dpi / 72
    markers: list[Bbox] = [Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
    labels: list[Bbox] = []
    for i in np.argsort(-centres[:, 1]):
        row = pts.iloc[i]
        best: tuple[float, Annotation] | None = None
        colour = PUBLISHED_COLOUR if row["italic"] else "black"
        for k, (dx, dy, ha, va) in enumerate((*OFFSETS, *LEADER_OFFSETS)):
            leader = k >= len(OFFSETS)
            label = ax.annotate(
                row["text"],
                (row["x"], row["y"]),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=7.5,
                style="italic" if row["italic"] else "normal",
                color=colour,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
                arrowprops=(
                    {"arrowstyle": "-", "color": colour, "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4}
                    if leader
                    else None
                ),
            )
            box = _text_box(label, renderer)
            cost = sum(_overlap(box, other) for other in markers) + _outside(box, frame)
            cost += ON_LABEL * sum(_overlap(box, other) for other in labels)
            cost += LEADER_COST if leader else AMBIGUOUS * _ambiguous(box, i, centres)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label)
            else:
                label.remove()
            if cost == 0:
                break
        assert best is not None
        labels.append(_text_box(best[1], renderer))


def _text_box(label: Annotation, renderer: RendererBase) -> Bbox:
    """The label's text box in pixels, without its leader line (which Annotation.get_window_extent includes)."""
    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def _ambiguous(box: Bbox, own: int, centres: np.ndarray, margin: float = 4.0) -> bool:
    """True when another marker is (about) as close to the label as its own marker is."""
    gaps = np.hypot(
        np.maximum(0, np.maximum(box.x0 - centres[:, 0], centres[:, 0] - box.x1)),
        np.maximum(0, np.maximum(box.y0 - centres[:, 1], centres[:, 1] - box.y1)),
    )
    others = np.delete(gaps, own)
    return bool(len(others)) and bool(others.min() < gaps[own] + margin)


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Bbox, frame: Bbox) -> float:
    """Area of `box` outside `frame`, weighted so that leaving the axes is worse than touching a label."""
    return 4 * (box.width * box.height - _overlap(box, frame))


# Linear probe top-1 per stage, paper Fig. 5 (its y label is Y_LABEL above).
PANEL_SIZE = (4.6, 3.6)


def layer_points(agg: pd.DataFrame) -> pd.DataFrame:
    """The linear-probe top-1 per stage (MODEL, layer, mean, std, n), without the 'pooled' pseudo-layer."""
    rows = layer_table(agg, "linear")
    return rows[rows["layer"] != "pooled"].reset_index(drop=True)


def layerwise(agg: pd.DataFrame, published: pd.DataFrame | None = None) -> Figure:
    """The figure; ``published`` holds the paper's per-layer rows (method, layer, value).

    Raises ValueError when empty.
    """
    points = layer_points(agg)
    if points.empty:
        raise ValueError("nothing to plot: no linear-probe top1 rows")
    panels = list(points.groupby(["dataset", "preset", "backbone"], sort=False))
    several_presets = points.groupby("dataset")["preset"].nunique().gt(1).any()
    extra = published is not None and not published.empty
    count = len(panels) + int(extra)
    ncols = min(count, 3)
    nrows = math.ceil(count / ncols)
    methods = ordered_methods([*points["method"], *(published["method"] if extra else [])])
    styles = method_styles(methods)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols + 1.8, PANEL_SIZE[1] * nrows + 0.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((dataset, preset, backbone), pts) in zip(axes, panels):
        layers = ordered_layers(pts["layer"])
        for method in ordered_methods(pts["method"]):
            mine = pts[pts["method"] == method].set_index("layer").reindex(layers)
            marker, colour = styles[method]
            xs = range(len(layers))
            ax.plot(
                xs,
                mine["mean"],
                marker=marker,
                color=colour,
                markersize=8 if marker == "*" else 5.5,
                linewidth=1.4,
                label=display_name(method),
                gid=f"{POINTS_GID}:{method}",
            )
            spread = mine["n"].fillna(0).gt(1) & mine["std"].notna()
            if spread.any():
                x = [i for i, ok in enumerate(spread) if ok]
                ax.errorbar(
                    x,
                    mine["mean"][spread],
                    yerr=mine["std"][spread],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1,
                    capsize=3,
                )
        ax.set_xticks(range(len(layers)), layers)
        title = f"{dataset} · {backbone}" + (f" · {preset}" if several_presets else "")
        ax.set_title(title, fontsize=10)
        _layer_axes(ax)
    if extra:
        ax = axes[len(panels)]
        layers = ordered_layers(published["layer"])
        for method in ordered_methods(published["method"]):
            mine = published[published["method"] == method].set_index("layer").reindex(layers)
            marker, colour = styles[method]
            ax.plot(
                range(len(layers)),
                mine["value"],
                marker=marker,
                color=colour,
                markerfacecolor="none",
                linestyle="--",
                markersize=8 if marker == "*" else 5.5,
                linewidth=1.2,
                gid=f"{PUBLISHED_GID}:{method}",
            )
        ax.set_xticks(range(len(layers)), [paper_layer(layer) for layer in layers])
        ax.set_title("published: PIRL paper, ImageNet, ResNet-50", fontsize=10)
        _layer_axes(ax)
    for ax in axes[count:]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], marker=styles[m][0], color=styles[m][1], markersize=7, linewidth=1.4, label=display_name(m))
        for m in methods
    ]
    if extra:
        handles.append(
            Line2D([], [], marker="o", color="#555555", markerfacecolor="none", linestyle="--", label="published")
        )
    fig.legend(handles=handles, title="method", loc="outside right upper", frameon=False)
    return fig


def _layer_axes(ax: Axes) -> None:
    ax.set_xlabel("stage")
    ax.set_ylabel(Y_LABEL)
    ax.grid(True, axis="y", alpha=0.3)


# Invariance histograms, paper Fig. 4.
PROTOCOL_TEXT: dict[str, str] = {"jigsaw": "image vs. its jigsaw-shuffled tiles", "rotation": "image vs. its rotation"}
MAX_DISTANCE = 2.0
BINS = np.linspace(0.0, MAX_DISTANCE, 41)  # width 0.05
INVARIANCE_X_LABEL = "L2 distance between unit-normalised features (0 = invariant)"
ROW_HEIGHT = 1.05


def density(d: Distances, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(heights, edges, from_raw): a normalised histogram of the raw samples, else piecewise uniform between quantiles.

    Without raw samples the mass between consecutive quantiles (0.20, 0.25, 0.25, 0.20) is spread evenly over
    their interval; the 5% tails beyond q05 and q95 are not drawn.
    """
    if d.raw is not None and len(d.raw):
        heights, _ = np.histogram(np.clip(d.raw, edges[0], edges[-1]), bins=edges, density=True)
        return heights, edges, True
    ps = sorted(d.quantiles)
    qs = np.array([d.quantiles[p] for p in ps])
    if np.isnan(qs).any():
        return np.array([]), np.array([]), False
    qs = np.maximum.accumulate(qs)
    widths = np.maximum(np.diff(qs), 1e-3)
    return np.diff(ps) / widths, np.concatenate([[qs[0]], qs[0] + np.cumsum(widths)]), False


def median(d: Distances) -> float:
    return float(np.median(d.raw)) if d.raw is not None and len(d.raw) else d.quantiles.get(0.5, math.nan)


def invariance_histograms(distances: list[Distances]) -> Figure:
    """The figure; raises ValueError when there is nothing to draw."""
    if not distances:
        raise ValueError("nothing to plot: no invariance rows")
    protocols = sorted({d.protocol for d in distances})
    several = len({(d.dataset, d.preset, d.backbone) for d in distances}) > 1
    rows = list(dict.fromkeys((d.dataset, d.preset, d.backbone, d.method) for d in distances))
    styles = method_styles(ordered_methods(d.method for d in distances))
    fig = Figure(figsize=(3.6 * len(protocols) + 1.4, ROW_HEIGHT * len(rows) + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(protocols), squeeze=False, sharex=True)
    for r, row in enumerate(rows):
        colour = styles[row[3]][1]
        name = display_name(row[3]) + (f"\n{row[2]}" if several else "")
        for c, protocol in enumerate(protocols):
            ax = axes[r, c]
            mine = [
                d for d in distances if (d.dataset, d.preset, d.backbone, d.method) == row and d.protocol == protocol
            ]
            approx = False
            for d in sorted(mine, key=lambda d: d.layer != "pooled"):
                heights, edges, raw = density(d, BINS)
                if not len(heights):
                    continue
                approx |= not raw
                head = d.layer == "head"
                ax.stairs(
                    heights,
                    edges,
                    fill=not head,
                    color=colour,
                    alpha=0.9 if head else 0.35,
                    linestyle="--" if head else "-",
                    linewidth=1.4 if head else 1.0,
                )
                ax.axvline(median(d), color=colour, linestyle="--" if head else "-", linewidth=0.9)
            if not mine:
                ax.text(
                    0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", color="#777777", fontsize=8
                )
            if approx:
                ax.text(
                    0.99,
                    0.9,
                    "from quantiles",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize=7,
                    color="#555555",
                )
            ax.set_xlim(0.0, MAX_DISTANCE)
            ax.set_yticks([])
            ax.spines[["top", "right", "left"]].set_visible(False)
            if r == 0:
                ax.set_title(f"{protocol}: {PROTOCOL_TEXT.get(protocol, protocol)}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(INVARIANCE_X_LABEL, fontsize=8)
    handles = [
        Patch(facecolor="#999999", alpha=0.35, edgecolor="#999999", label="pooled backbone features"),
        Line2D([], [], color="#333333", linestyle="--", label="PIRL heads f vs. g"),
        Line2D([], [], color="#333333", linewidth=0.9, label="median"),
    ]
    if not any(d.layer == "head" for d in distances):
        handles.pop(1)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8)
    return fig
