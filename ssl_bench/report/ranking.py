"""Ranking methods on one number without over-claiming: overlapping 95% intervals are ties.

A method's rank is 1 + the number of methods that are clearly better, i.e. whose whole interval lies
above its own. Methods whose intervals overlap share a rank or sit next to each other and are listed as
tied. With one seed there are no intervals: ranks follow the values and only equal values tie.
Published numbers are never ranked with ours (the caller passes only our estimates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ssl_bench.report.stats import Estimate, overlap


@dataclass(frozen=True)
class Ranked:
    name: str
    estimate: Estimate
    rank: int
    tied_with: tuple[str, ...]  # names whose intervals overlap this one's, best first

    @property
    def label(self) -> str:
        """'2' or '2=' when tied with another method."""
        return f"{self.rank}=" if self.tied_with else str(self.rank)


def rank_with_ties(estimates: Mapping[str, Estimate]) -> list[Ranked]:
    """Rank by mean, higher is better; NaN means are left out. Ordered best first (ties keep input order)."""
    valid = {k: e for k, e in estimates.items() if not math.isnan(e.mean)}
    order = sorted(valid, key=lambda k: -valid[k].mean)
    out = []
    for name in order:
        mine = valid[name]
        better = sum(1 for other in order if other != name and _clearly_above(valid[other], mine))
        tied = tuple(o for o in order if o != name and overlap(valid[o], mine))
        out.append(Ranked(name, mine, 1 + better, tied))
    return out


def _clearly_above(a: Estimate, b: Estimate) -> bool:
    return a.mean > b.mean and not overlap(a, b)
