"""The jigsaw permutation set: greedy maximal-Hamming-distance selection (Noroozi & Favaro, ECCV 2016, arXiv:1603.09246).

Sec. 3.3 / Algorithm 1 of the paper: start from one permutation of the grid*grid tiles and repeatedly add the
candidate, among all (grid*grid)! permutations not yet chosen, that is farthest from the chosen set:

* ``"maxavg"``: largest average Hamming distance to the chosen set (the paper's main choice);
* ``"maxmin"``: largest minimum Hamming distance to the chosen set.

Determinism: the candidates are all permutations in lexicographic order, shuffled once by
``numpy.random.default_rng(seed).permutation``; the first permutation of the set is the first of that order and
every tie goes to the candidate earliest in it. The choice is sequential, so a set of size K is the prefix of
any larger set with the same variant and seed.

A running score over all n! candidates (total distance for maxavg, minimum distance for maxmin) is updated with
the newly chosen permutation only, so each step is O(n * n!) int8 operations. The result is cached as ``.npy``
(written atomically) and never downloaded.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ssl_bench import storage

VARIANTS = ("maxavg", "maxmin")
ALGORITHM_VERSION = 1  # bump when the selection rule or the tie-breaking changes: old cache files are then ignored
MAX_GRID = 3  # (grid*grid)! candidates are enumerated: 9! = 362,880 is fine, 16! is not


def default_cache_dir() -> Path:
    """``$SSL_BENCH_CACHE/permutations`` if the variable is set, else ``~/.cache/ssl_bench/permutations``."""
    root = os.environ.get("SSL_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "ssl_bench") / "permutations"


def cache_file_name(size: int, variant: str, seed: int, grid: int = 3) -> str:
    return f"perms_g{grid}_{variant}_n{size}_seed{seed}_v{ALGORITHM_VERSION}.npy"


def hamming(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise Hamming distances: a (M, n), b (N, n) -> (M, N) int64 (a 1-D input counts as one row)."""
    a2, b2 = torch.atleast_2d(a), torch.atleast_2d(b)
    if a2.shape[-1] != b2.shape[-1]:
        raise ValueError(f"hamming: rows have different lengths ({a2.shape[-1]} vs {b2.shape[-1]})")
    return (a2[:, None, :] != b2[None, :, :]).sum(-1)  # (M, N)


def _check(size: int, variant: str, grid: int) -> int:
    if variant not in VARIANTS:
        raise ValueError(f"unknown permutation variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    if not 2 <= grid <= MAX_GRID:
        raise ValueError(f"grid must be 2 or 3 (all (grid*grid)! permutations are enumerated), got {grid}")
    n = grid * grid
    total = math.factorial(n)
    if not 1 <= size <= total:
        raise ValueError(f"permutation set size must be between 1 and {n}! = {total}, got {size}")
    return n


def greedy_permutations(size: int, variant: str = "maxavg", seed: int = 0, grid: int = 3) -> np.ndarray:
    """Run the greedy selection (no cache): (size, grid*grid) int8, row k = the k-th chosen permutation."""
    n = _check(size, variant, grid)
    cands = np.array(list(itertools.permutations(range(n))), dtype=np.int8)  # (n!, n), lexicographic
    cands = cands[np.random.default_rng(seed).permutation(len(cands))]  # seeded visiting order
    cols = np.ascontiguousarray(cands.T)  # (n, n!): one row per tile position, for fast column compares
    if variant == "maxavg":
        score = np.zeros(len(cands), dtype=np.int32)  # total distance to the chosen set (same argmax as the average)
        taken = np.iinfo(np.int32).min  # stays far below any real total (at most 9 * 9! added later)
    else:
        score = np.full(len(cands), n, dtype=np.int8)  # minimum distance to the chosen set
        taken = -1
    dist = np.empty(len(cands), dtype=np.int8)
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = 0
    for k in range(1, size):
        last = cands[chosen[k - 1]]
        dist[:] = 0
        for i in range(n):
            np.add(dist, cols[i] != last[i], out=dist)  # (n!,) distance of every candidate to the last choice
        if variant == "maxavg":
            score += dist
        else:
            np.minimum(score, dist, out=score)
        score[chosen[k - 1]] = taken
        chosen[k] = int(np.argmax(score))  # first maximum = earliest in the seeded order
    return cands[chosen]


def _valid(perms: np.ndarray, size: int, n: int) -> bool:
    if perms.shape != (size, n):
        return False
    rows_ok = bool((np.sort(perms, axis=1) == np.arange(n)).all())
    return rows_ok and len(np.unique(perms, axis=0)) == size


def permutation_set(
    size: int = 1000, variant: str = "maxavg", seed: int = 0, grid: int = 3, cache_dir: str | Path | None = None
) -> Tensor:
    """(size, grid*grid) int64, row k = the k-th greedily chosen permutation; generated once, then read from the cache.

    ``cache_dir`` defaults to ``default_cache_dir()``. An unreadable or malformed cache file is regenerated; an
    unwritable cache directory only costs the regeneration next time.
    """
    n = _check(size, variant, grid)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / cache_file_name(size, variant, seed, grid)
    if path.exists():
        try:
            perms = np.load(path, allow_pickle=False)
            if _valid(perms, size, n):
                return torch.from_numpy(perms.astype(np.int64))
            warnings.warn(f"permutation cache {path} is malformed; regenerating it", stacklevel=2)
        except (OSError, ValueError) as err:
            warnings.warn(f"permutation cache {path} is unreadable ({err}); regenerating it", stacklevel=2)
    perms = greedy_permutations(size, variant, seed, grid)
    try:
        with storage.atomic(path) as tmp, tmp.open("wb") as f:  # readers never see a partial file
            np.save(f, perms, allow_pickle=False)
    except OSError as err:
        warnings.warn(f"could not write the permutation cache {path} ({err}); continuing without it", stacklevel=2)
    return torch.from_numpy(perms.astype(np.int64))
