"""Accuracy against backbone size, in the style of PIRL Fig. 2 (PIRL, 2020, arXiv:1912.01991).

One marker per (method, backbone): x is the parameter count in millions (log scale), y the linear
probe top-1 at the best layer (mean over seeds, error bar = std when there are several seeds).
Figures are built on the Agg canvas directly, without pyplot, so no display and no global state.
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
from matplotlib.text import Annotation
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator
from matplotlib.transforms import Bbox

from ssl_bench.report.tables import ordered_methods

POINTS_GID = "ssl-bench-points"  # gid prefix of the data lines: f"{POINTS_GID}:{method}"
X_LABEL = "Number of parameters (millions)"
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
EXTRA_MARKERS = ("P", "h", "<", ">", "p", "8", "d", "H")
EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#393b79", "#637939", "#843c39", "#7b4173")
# Label offsets (points) tried in turn, with the text alignment that keeps the label off the marker.
OFFSETS: tuple[tuple[float, float, str, str], ...] = (
    (7, 0, "left", "center"), (-7, 0, "right", "center"), (0, 7, "center", "bottom"), (0, -7, "center", "top"),
    (6, 6, "left", "bottom"), (-6, 6, "right", "bottom"), (6, -6, "left", "top"), (-6, -6, "right", "top"),
    (14, 10, "left", "bottom"), (-14, 10, "right", "bottom"), (14, -10, "left", "top"), (-14, -10, "right", "top"),
    (0, 16, "center", "bottom"), (0, -16, "center", "top"), (22, 0, "left", "center"), (-22, 0, "right", "center"),
)  # fmt: skip


def plot_points(summary: pd.DataFrame) -> pd.DataFrame:
    """The points the plot draws: dataset, preset, backbone, method, x (M params), y (top-1), yerr (NaN: 1 seed)."""
    cols = ["dataset", "preset", "backbone", "method", "x", "y", "yerr"]
    if "linear_top1" not in summary.columns or summary.empty:
        return pd.DataFrame(columns=cols)
    ok = summary[summary["linear_top1"].notna() & summary["params"].notna()]
    seeds = ok["linear_seeds"].fillna(0).astype(int)
    return pd.DataFrame({
        "dataset": ok["dataset"], "preset": ok["preset"], "backbone": ok["backbone"], "method": ok["method"],
        "x": ok["params"] / 1e6, "y": ok["linear_top1"], "yerr": ok["linear_top1_std"].where(seeds > 1),
    })[cols].reset_index(drop=True)  # fmt: skip


def method_styles(methods: list[str]) -> dict[str, tuple[str, str]]:
    """A distinct (marker, colour) per method: fixed for the paper's methods, then drawn from a cycle."""
    extra = cycle(zip(EXTRA_MARKERS, EXTRA_COLOURS))
    return {m: STYLE[m] if m in STYLE else next(extra) for m in methods}


def accuracy_vs_params(summary: pd.DataFrame) -> Figure:
    """One panel per (dataset, preset); raises ValueError when there is no point to draw."""
    points = plot_points(summary)
    if points.empty:
        raise ValueError("nothing to plot: no linear-probe top1 row with a backbone parameter count")
    panels = list(points.groupby(["dataset", "preset"], sort=True))
    presets = points.groupby("dataset")["preset"].nunique()
    methods = ordered_methods(points["method"])
    styles = method_styles(methods)
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(6.4 * ncols + 1.6, 4.8 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((dataset, preset), pts) in zip(axes, panels):
        title = f"{dataset} (preset {preset})" if presets[dataset] > 1 and preset else str(dataset)
        _draw_panel(ax, pts, styles, title)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], marker=styles[m][0], color=styles[m][1], linestyle="none", markersize=8, label=m) for m in methods
    ]
    fig.legend(handles=handles, title="method", loc="outside right upper", frameon=False)
    fig.canvas.draw()  # run the layout once, then freeze it so that label placement stays valid
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for ax, (_, pts) in zip(axes, panels):
        _place_labels(ax, pts, renderer)
    return fig


def _draw_panel(ax: Axes, pts: pd.DataFrame, styles: dict[str, tuple[str, str]], title: str) -> None:
    several_sizes = pts["backbone"].nunique() > 1
    for method in ordered_methods(pts["method"]):
        mine = pts[pts["method"] == method].sort_values("x")
        marker, colour = styles[method]
        ax.plot(
            mine["x"], mine["y"], marker=marker, color=colour, markersize=10 if marker == "*" else 7,
            linestyle=":" if several_sizes else "none", linewidth=1, label=method, gid=f"{POINTS_GID}:{method}",
        )  # fmt: skip
        spread = mine[mine["yerr"].notna()]
        if not spread.empty:  # error bars only where there are several seeds
            ax.errorbar(spread["x"], spread["y"], yerr=spread["yerr"], fmt="none", ecolor=colour, elinewidth=1, capsize=3)
    ax.set_xscale("log")
    sizes = pts.drop_duplicates("backbone").sort_values("x")
    xs = sizes["x"].to_numpy(dtype=float)
    ax.set_xlim(xs.min() / 1.5, xs.max() * 1.5)
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.1f}" if x < 100 else f"{x:.0f}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if several_sizes:
        top = ax.secondary_xaxis("top")
        top.set_xticks(xs, labels=sizes["backbone"].tolist(), fontsize=8)
        top.xaxis.set_minor_locator(NullLocator())
    low = (pts["y"] - pts["yerr"].fillna(0)).min()
    high = (pts["y"] + pts["yerr"].fillna(0)).max()
    pad = max(2.0, 0.12 * (high - low))
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad) if high <= 100 else high + pad)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)


def _place_labels(ax: Axes, pts: pd.DataFrame, renderer: RendererBase) -> None:
    """Label each point (method, and backbone if several) at the offset that covers the least.

    Costs are overlaps with markers and labels already placed, leaving the axes, and being as near
    another marker as the label's own (the reader must see which point a label names). The white
    label box lets a dotted line pass under a label.
    """
    several_sizes = pts["backbone"].nunique() > 1
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(pts[["x", "y"]].to_numpy(dtype=float))
    radius = 6 * ax.figure.dpi / 72
    taken: list[Bbox] = [Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
    for i in np.argsort(-centres[:, 1]):
        row = pts.iloc[i]
        text = f"{row['method']} ({row['backbone']})" if several_sizes else str(row["method"])
        best: tuple[float, Annotation] | None = None
        for dx, dy, ha, va in OFFSETS:
            label = ax.annotate(
                text, (row["x"], row["y"]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7.5,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
            )  # fmt: skip
            box = label.get_window_extent(renderer)
            cost = sum(_overlap(box, other) for other in taken) + _outside(box, frame)
            cost += AMBIGUOUS * _ambiguous(box, i, centres)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label)
            else:
                label.remove()
            if cost == 0:
                break
        assert best is not None
        taken.append(best[1].get_window_extent(renderer))


def _ambiguous(box: Bbox, own: int, centres: np.ndarray, margin: float = 4.0) -> bool:
    """True when another marker is (about) as close to the label as its own marker is."""
    gaps = np.hypot(np.maximum(0, np.maximum(box.x0 - centres[:, 0], centres[:, 0] - box.x1)),
                    np.maximum(0, np.maximum(box.y0 - centres[:, 1], centres[:, 1] - box.y1)))  # fmt: skip
    others = np.delete(gaps, own)
    return bool(len(others)) and bool(others.min() < gaps[own] + margin)


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Bbox, frame: Bbox) -> float:
    """Area of `box` outside `frame`, weighted so that leaving the axes is worse than touching a label."""
    return 4 * (box.width * box.height - _overlap(box, frame))
