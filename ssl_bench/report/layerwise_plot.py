"""Linear-probe accuracy per stage, one line per method, in the style of PIRL Fig. 5 (PIRL, 2020, arXiv:1912.01991).

One panel per (dataset, preset, backbone): x the stages (stem .. layer4), y the top-1 mean over seeds with
error bars of one sample std when there are several seeds. The published curves (ImageNet, ResNet-50, paper
layers conv1 .. res5) get a panel of their own, hollow markers and dashed lines: they are a different
protocol and never share axes with ours.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ssl_bench.report.labels import display_name, paper_layer
from ssl_bench.report.plots import PUBLISHED_GID, POINTS_GID, method_styles
from ssl_bench.report.tables import layer_table, ordered_layers, ordered_methods

Y_LABEL = "Linear probe top-1 (%)"
PANEL_SIZE = (4.6, 3.6)


def layer_points(agg: pd.DataFrame) -> pd.DataFrame:
    """The linear-probe top-1 per stage (MODEL, layer, mean, std, n), without the 'pooled' pseudo-layer."""
    rows = layer_table(agg, "linear")
    return rows[rows["layer"] != "pooled"].reset_index(drop=True)


def layerwise(agg: pd.DataFrame, published: pd.DataFrame | None = None) -> Figure:
    """The figure; ``published`` holds the paper's per-layer rows (method, layer, value). Raises ValueError when empty."""
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
            ax.plot(xs, mine["mean"], marker=marker, color=colour, markersize=8 if marker == "*" else 5.5, linewidth=1.4,
                    label=display_name(method), gid=f"{POINTS_GID}:{method}")  # fmt: skip
            spread = mine["n"].fillna(0).gt(1) & mine["std"].notna()
            if spread.any():
                x = [i for i, ok in enumerate(spread) if ok]
                ax.errorbar(x, mine["mean"][spread], yerr=mine["std"][spread], fmt="none", ecolor=colour, elinewidth=1, capsize=3)
        ax.set_xticks(range(len(layers)), layers)
        title = f"{dataset} · {backbone}" + (f" · {preset}" if several_presets else "")
        ax.set_title(title, fontsize=10)
        _style(ax)
    if extra:
        ax = axes[len(panels)]
        layers = ordered_layers(published["layer"])
        for method in ordered_methods(published["method"]):
            mine = published[published["method"] == method].set_index("layer").reindex(layers)
            marker, colour = styles[method]
            ax.plot(range(len(layers)), mine["value"], marker=marker, color=colour, markerfacecolor="none", linestyle="--",
                    markersize=8 if marker == "*" else 5.5, linewidth=1.2, gid=f"{PUBLISHED_GID}:{method}")  # fmt: skip
        ax.set_xticks(range(len(layers)), [paper_layer(layer) for layer in layers])
        ax.set_title("published: PIRL paper, ImageNet, ResNet-50", fontsize=10)
        _style(ax)
    for ax in axes[count:]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], marker=styles[m][0], color=styles[m][1], markersize=7, linewidth=1.4, label=display_name(m))
        for m in methods
    ]  # fmt: skip
    if extra:
        handles.append(Line2D([], [], marker="o", color="#555555", markerfacecolor="none", linestyle="--", label="published"))
    fig.legend(handles=handles, title="method", loc="outside right upper", frameon=False)
    return fig


def _style(ax: Axes) -> None:
    ax.set_xlabel("stage")
    ax.set_ylabel(Y_LABEL)
    ax.grid(True, axis="y", alpha=0.3)
