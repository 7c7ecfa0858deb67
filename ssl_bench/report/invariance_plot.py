"""Histograms of invariance distances, in the style of PIRL Fig. 4 (PIRL, 2020, arXiv:1912.01991).

One column per transform (jigsaw, rotation), one row per method (and backbone): the distribution of L2
distances between unit-normalised features of an image and of its transformed version, pooled backbone
features filled, PIRL's heads f vs. g as a dashed outline. Further left = more invariant. A histogram
drawn from quantiles (no raw file) covers the central 90% and says so in its panel.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ssl_bench.report.invariance import MAX_DISTANCE, PROTOCOL_TEXT, Distances, density, median
from ssl_bench.report.labels import display_name
from ssl_bench.report.plots import method_styles
from ssl_bench.report.tables import ordered_methods

BINS = np.linspace(0.0, MAX_DISTANCE, 41)  # width 0.05
X_LABEL = "L2 distance between unit-normalised features (0 = invariant)"
ROW_HEIGHT = 1.05


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
            mine = [d for d in distances if (d.dataset, d.preset, d.backbone, d.method) == row and d.protocol == protocol]
            approx = False
            for d in sorted(mine, key=lambda d: d.layer != "pooled"):
                heights, edges, raw = density(d, BINS)
                if not len(heights):
                    continue
                approx |= not raw
                head = d.layer == "head"
                ax.stairs(heights, edges, fill=not head, color=colour, alpha=0.9 if head else 0.35,
                          linestyle="--" if head else "-", linewidth=1.4 if head else 1.0)  # fmt: skip
                ax.axvline(median(d), color=colour, linestyle="--" if head else "-", linewidth=0.9)
            if not mine:
                ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", color="#777777", fontsize=8)
            if approx:
                ax.text(0.99, 0.9, "from quantiles", transform=ax.transAxes, ha="right", va="top", fontsize=7, color="#555555")
            ax.set_xlim(0.0, MAX_DISTANCE)
            ax.set_yticks([])
            ax.spines[["top", "right", "left"]].set_visible(False)
            if r == 0:
                ax.set_title(f"{protocol}: {PROTOCOL_TEXT.get(protocol, protocol)}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(X_LABEL, fontsize=8)
    handles = [
        Patch(facecolor="#999999", alpha=0.35, edgecolor="#999999", label="pooled backbone features"),
        Line2D([], [], color="#333333", linestyle="--", label="PIRL heads f vs. g"),
        Line2D([], [], color="#333333", linewidth=0.9, label="median"),
    ]
    if not any(d.layer == "head" for d in distances):
        handles.pop(1)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8)
    return fig
