"""The jigsaw permutation set: valid, reproducible, cached, and exactly the greedy choice of a slow reference."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_bench.data import permutations as P
from ssl_bench.data.permutations import cache_file_name, hamming, permutation_set


def min_and_mean_distance(perms: torch.Tensor) -> tuple[int, float]:
    d = hamming(perms, perms).double()
    off = ~torch.eye(len(perms), dtype=torch.bool)
    return int(d[off].min()), float(d[off].mean())


def test_hamming_known_values() -> None:
    a = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    b = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 3, 2]])
    assert hamming(a, b).tolist() == [[0, 4, 2], [2, 4, 4]]
    assert hamming(a[0], b).shape == (1, 3)
    with pytest.raises(ValueError, match="different lengths"):
        hamming(a, b[:, :3])


@pytest.mark.parametrize("variant", ["maxavg", "maxmin"])
def test_rows_are_distinct_permutations(variant: str, tmp_path: Path) -> None:
    perms = permutation_set(100, variant, seed=0, cache_dir=tmp_path)
    assert perms.shape == (100, 9) and perms.dtype == torch.int64
    assert torch.equal(perms.sort(1).values, torch.arange(9).expand(100, 9))
    assert len(torch.unique(perms, dim=0)) == 100


def test_reproducible_and_read_back_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = permutation_set(50, "maxavg", seed=3, cache_dir=tmp_path)
    path = tmp_path / cache_file_name(50, "maxavg", 3)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert (
        "n50" in path.name and "maxavg" in path.name and "seed3" in path.name and f"v{P.ALGORITHM_VERSION}" in path.name
    )
    assert np.array_equal(np.load(path), first.numpy())

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated although the cache file exists")

    monkeypatch.setattr(P, "greedy_permutations", fail)
    assert torch.equal(permutation_set(50, "maxavg", seed=3, cache_dir=tmp_path), first)


def test_same_arguments_same_set_without_cache(tmp_path: Path) -> None:
    a = permutation_set(30, "maxmin", seed=1, cache_dir=tmp_path / "a")
    b = permutation_set(30, "maxmin", seed=1, cache_dir=tmp_path / "b")
    c = permutation_set(30, "maxmin", seed=2, cache_dir=tmp_path / "c")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_env_var_sets_the_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_BENCH_CACHE", str(tmp_path))
    permutation_set(10, "maxavg", seed=0)
    assert (tmp_path / "permutations" / cache_file_name(10, "maxavg", 0)).is_file()


def test_malformed_cache_file_is_regenerated(tmp_path: Path) -> None:
    good = permutation_set(10, "maxavg", seed=0, cache_dir=tmp_path / "good")
    path = tmp_path / cache_file_name(10, "maxavg", 0)
    np.save(path, np.zeros((10, 9), dtype=np.int8))  # rows are not permutations
    with pytest.warns(UserWarning, match="malformed"):
        again = permutation_set(10, "maxavg", seed=0, cache_dir=tmp_path)
    assert torch.equal(again, good)
    assert np.array_equal(np.load(path), good.numpy())


def test_smaller_set_is_prefix_of_larger(tmp_path: Path) -> None:
    small = permutation_set(20, "maxavg", seed=0, cache_dir=tmp_path)
    large = permutation_set(200, "maxavg", seed=0, cache_dir=tmp_path)
    assert torch.equal(small, large[:20])


def test_maxmin_spreads_more_than_random(tmp_path: Path) -> None:
    maxmin = permutation_set(100, "maxmin", seed=0, cache_dir=tmp_path)
    maxavg = permutation_set(100, "maxavg", seed=0, cache_dir=tmp_path)
    g = torch.Generator().manual_seed(0)
    random = torch.stack([torch.randperm(9, generator=g) for _ in range(100)])
    (min_greedy, _), (min_random, mean_random) = min_and_mean_distance(maxmin), min_and_mean_distance(random)
    assert min_greedy >= min_random and min_greedy >= 6, (min_greedy, min_random)
    assert min_and_mean_distance(maxavg)[1] > mean_random  # 8.08 vs about 8.0 for random sets


def greedy_reference(candidates: torch.Tensor, size: int, variant: str) -> torch.Tensor:
    """Algorithm 1 read literally: score every unchosen candidate against the whole chosen set, take the best."""
    chosen = [0]
    distances = torch.zeros(size, len(candidates), dtype=torch.int8)  # row j: every candidate's distance to chosen j
    distances[0] = hamming(candidates[0], candidates)[0]
    for k in range(1, size):
        score = (
            distances[:k].sum(0, dtype=torch.float64) / k
            if variant == "maxavg"
            else distances[:k].min(0).values.double()
        )
        score[chosen] = -math.inf  # (N,) average or minimum distance to the chosen set
        chosen.append(int(torch.nonzero(score == score.max())[0]))  # the earliest candidate among the best
        distances[k] = hamming(candidates[chosen[-1]], candidates)[0]
    return candidates[chosen].long()


def seeded_candidates(n: int, seed: int) -> torch.Tensor:
    """All n! permutations in lexicographic order, in the documented seeded visiting order."""
    lexicographic = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.int8)
    return lexicographic[torch.from_numpy(np.random.default_rng(seed).permutation(math.factorial(n)))]


@pytest.mark.parametrize("variant", ["maxavg", "maxmin"])
def test_greedy_choice_matches_slow_reference(variant: str, tmp_path: Path) -> None:
    expected = greedy_reference(seeded_candidates(9, seed=5), 20, variant)
    assert torch.equal(permutation_set(20, variant, seed=5, cache_dir=tmp_path), expected)


@pytest.mark.parametrize("variant", ["maxavg", "maxmin"])
def test_greedy_choice_matches_reference_on_2x2_grid_for_every_size(variant: str) -> None:
    full = torch.from_numpy(P.greedy_permutations(24, variant, seed=1, grid=2)).long()
    assert torch.equal(full, greedy_reference(seeded_candidates(4, seed=1), 24, variant))


def test_bad_arguments_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid variants: maxavg, maxmin"):
        permutation_set(10, "maxsum", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"between 1 and 9! = 362880, got 0"):
        permutation_set(0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"between 1 and 9! = 362880, got 362881"):
        permutation_set(362881, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="grid must be 2 or 3"):
        permutation_set(10, grid=4, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())
