"""Random initialisation: the backbone as timm initialises it, never trained (the lower reference row)."""

from __future__ import annotations

from ssl_bench.methods.base import Method


class RandomInit(Method):
    name = "random"
    paper = "baseline: untrained network (PIRL, 2020, arXiv:1912.01991, Table 7 'Random')"
    trains = False
