"""Do the accuracy layer's bands hold for a run they were not made from? Leave-one-out over pooled samples.

Each sample (a seed of one results table, e.g. one machine's `ci` run) is held out in turn; the bands are built by
`ssl_bench.check` from the other samples, exactly as `ssl-bench check --update` would, and the held-out sample is
checked against them. Prints, per held-out sample, how many of its numbers fall outside, and the band sizes.

    python benchmarks/band_holdout.py /tmp/ci3/results.csv other-machine/results.csv [--sds 4 5 6]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ssl_bench import check


def samples(paths: list[Path]) -> pd.DataFrame:
    frames = [
        check.read_csv(p, check.RESULTS_COLUMNS, "results table", "").assign(source=i) for i, p in enumerate(paths)
    ]
    df = pd.concat(frames, ignore_index=True)
    df["sample"] = df["source"].astype(str) + "/seed" + df["seed"].astype(str)
    return df[df["value"].notna()]


def holdout(df: pd.DataFrame, sds: float) -> list[tuple[str, int, int]]:
    """(held-out sample, numbers outside the band made from the others, numbers compared) per sample."""
    old, check.BAND_SDS = check.BAND_SDS, sds
    try:
        out = []
        for name in sorted(df["sample"].unique()):
            rest, held = df[df["sample"] != name], df[df["sample"] == name]
            baseline = check.with_bands(check.aggregate(rest))
            rows = check.compare(baseline, check.aggregate(held))
            compared = [r for r in rows if r.baseline is not None and r.now is not None]
            out.append((name, sum(r.status == check.REGRESSION for r in compared), len(compared)))
        return out
    finally:
        check.BAND_SDS = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--sds", nargs="+", type=float, default=[3.0, 4.0, 5.0, 6.0])
    args = parser.parse_args()
    df = samples(args.results)
    print(f"{df['sample'].nunique()} samples: {', '.join(sorted(df['sample'].unique()))}")
    for sds in args.sds:
        cells = ", ".join(f"{name}: {bad}/{n}" for name, bad, n in holdout(df, sds))
        print(f"band = max({sds:g} sd, floor): outside the others' band -> {cells}")
    bands = check.with_bands(check.aggregate(df))
    table = bands.groupby(["eval", "metric"])["band"].describe(percentiles=[0.5])[["count", "min", "50%", "max"]]
    print(f"\nbands of all samples pooled (BAND_SDS = {check.BAND_SDS:g}):\n{table.round(2).to_string()}")


if __name__ == "__main__":
    main()
