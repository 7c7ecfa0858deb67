"""Statistics over seeds (mean, sample std, 95% t-interval) and rankings with ties, against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ssl_bench.report import results
from ssl_bench.report.stats import Estimate, estimate, overlap, rank_with_ties, t_half_width, with_intervals

# Student-t 0.975 quantiles from a printed table: 1, 2 and 4 degrees of freedom.
T1, T2, T4 = 12.7062047, 4.3026527, 2.7764451


def test_estimate_of_three_seeds() -> None:
    e = estimate([70.0, 72.0, 74.0])  # mean 72, deviations -2, 0, 2: std sqrt(8 / 2) = 2
    assert e.mean == pytest.approx(72.0) and e.std == pytest.approx(2.0) and e.n == 3
    half = T2 * 2.0 / math.sqrt(3)  # 4.9683
    assert e.low == pytest.approx(72.0 - half, abs=1e-6) and e.high == pytest.approx(72.0 + half, abs=1e-6)
    assert e.low == pytest.approx(67.0317, abs=1e-4)


def test_estimate_of_two_and_five_seeds() -> None:
    two = estimate([10.0, 12.0])  # std sqrt(2), half-width t1 * sqrt(2) / sqrt(2) = t1
    assert two.std == pytest.approx(math.sqrt(2)) and two.high - two.mean == pytest.approx(T1, abs=1e-6)
    five = estimate([1.0, 2.0, 3.0, 4.0, 5.0])  # std sqrt(2.5)
    assert five.std == pytest.approx(math.sqrt(2.5))
    assert five.high - five.mean == pytest.approx(T4 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_one_seed_has_no_spread_and_nan_is_ignored() -> None:
    one = estimate([55.0, float("nan")])
    assert one.mean == 55.0 and one.n == 1 and math.isnan(one.std) and math.isnan(one.low) and not one.has_interval
    assert math.isnan(t_half_width(1.0, 1)) and estimate([]).n == 0


def test_intervals_on_the_aggregate_table() -> None:
    df = pd.DataFrame(
        {
            "dataset": "d",
            "preset": "p",
            "backbone": "b",
            "method": ["m", "m", "m", "k"],
            "eval": "linear",
            "protocol": "",
            "layer": "layer4",
            "metric": "top1",
            "value": [70.0, 72.0, 74.0, 50.0],
            "seed": [0, 1, 2, 0],
        }
    )
    agg = results.aggregate(df).set_index("method")
    assert agg.at["m", "ci_low"] == pytest.approx(72.0 - T2 * 2.0 / math.sqrt(3), abs=1e-6)
    assert agg.at["m", "ci_high"] == pytest.approx(72.0 + T2 * 2.0 / math.sqrt(3), abs=1e-6)
    assert math.isnan(agg.at["k", "ci_low"]) and agg.at["k", "n"] == 1
    direct = with_intervals(pd.DataFrame({"mean": [11.0], "std": [math.sqrt(2)], "n": [2]}))
    assert direct.at[0, "ci_low"] == pytest.approx(11.0 - T1, abs=1e-6)


def est(mean: float, low: float, high: float, n: int = 3) -> Estimate:
    return Estimate(mean, (high - low) / 4, n, low, high)


def test_overlapping_intervals_are_ties() -> None:
    ranked = rank_with_ties({"c": est(45, 40, 50), "a": est(65, 60, 70), "b": est(61, 58, 64)})
    assert [(r.name, r.label, r.tied_with) for r in ranked] == [
        ("a", "1=", ("b",)),
        ("b", "1=", ("a",)),
        ("c", "3", ()),  # c: a and b are clearly above
    ]


def test_ties_need_not_be_transitive() -> None:
    ranked = rank_with_ties({"a": est(65, 60, 70), "b": est(58, 55, 62), "c": est(53, 50, 56)})
    # a overlaps b, b overlaps c, a is clearly above c
    assert [(r.name, r.rank, r.tied_with) for r in ranked] == [("a", 1, ("b",)), ("b", 1, ("a", "c")), ("c", 2, ("b",))]


def test_touching_intervals_overlap_and_separate_ones_do_not() -> None:
    assert overlap(est(5, 0, 10), est(15, 10, 20))
    assert not overlap(est(5, 0, 10), est(15, 10.01, 20))


def test_one_seed_ranks_by_value_and_only_equal_values_tie() -> None:
    nan = float("nan")
    ranked = rank_with_ties(
        {
            "x": Estimate(50, nan, 1, nan, nan),
            "y": Estimate(50, nan, 1, nan, nan),
            "z": Estimate(49.9, nan, 1, nan, nan),
            "w": Estimate(nan, nan, 0, nan, nan),
        }
    )
    assert [(r.name, r.label, r.tied_with) for r in ranked] == [
        ("x", "1=", ("y",)),
        ("y", "1=", ("x",)),
        ("z", "3", ()),
    ]
