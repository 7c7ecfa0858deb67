"""Statistics over seeds: mean, sample standard deviation (ddof=1), a 95% Student-t confidence interval, and
ranking on one number without over-claiming.

With n seeds the interval is mean ± t_{0.975, n-1} · std / sqrt(n). With one seed there is no spread and
no interval (std, low and high are NaN); the report says so rather than drawing zero-width bars.

Ranking: overlapping 95% intervals are ties. A method's rank is 1 + the number of methods that are clearly
better, i.e. whose whole interval lies above its own. Methods whose intervals overlap share a rank or sit next
to each other and are listed as tied. With one seed there are no intervals: ranks follow the values and only
equal values tie. Published numbers are never ranked with ours (the caller passes only our estimates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """One number over seeds; ``std``, ``low`` and ``high`` are NaN with one seed."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def has_interval(self) -> bool:
        return self.n > 1 and not math.isnan(self.low)


def t_half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """t_{(1+c)/2, n-1} · std / sqrt(n); NaN for fewer than two seeds."""
    if n < 2 or std is None or math.isnan(std):
        return math.nan
    return float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))


def estimate(values: Iterable[float]) -> Estimate:
    """Mean, sample std (ddof=1) and t-interval of the finite values given."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    half = t_half_width(std, len(x))
    return Estimate(mean, std, len(x), mean - half, mean + half)


def with_intervals(agg: pd.DataFrame) -> pd.DataFrame:
    """``agg`` (columns mean, std, n) plus ``ci_low`` and ``ci_high`` (NaN where n < 2)."""
    n = agg["n"].to_numpy(dtype=float)
    std = agg["std"].to_numpy(dtype=float)
    several = n > 1
    t = np.full(len(agg), np.nan)
    t[several] = stats.t.ppf((1 + CONFIDENCE) / 2, n[several] - 1)
    half = t * std / np.sqrt(np.where(several, n, 1.0))
    return agg.assign(ci_low=agg["mean"] - half, ci_high=agg["mean"] + half)


def overlap(a: Estimate, b: Estimate) -> bool:
    """True when the closed intervals overlap; without an interval a number is the point [mean, mean]."""
    a_low, a_high = (a.low, a.high) if a.has_interval else (a.mean, a.mean)
    b_low, b_high = (b.low, b.high) if b.has_interval else (b.mean, b.mean)
    return a_low <= b_high and b_low <= a_high


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
