"""Fixtures of the speed suite: sizes from the environment, the ci data, one workload per method (built once).

Plain ``pytest`` does not collect this folder (``testpaths = ["tests"]``); run ``pytest benchmarks/ --benchmark-only``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # workloads.py and ratios.py sit beside the tests (importlib mode)

import workloads  # noqa: E402

from ssl_bench.data.types import Splits  # noqa: E402


@dataclass(frozen=True)
class Rounds:
    rounds: int
    warmup: int


@pytest.fixture(scope="session")
def sizes() -> workloads.Sizes:
    return workloads.sizes()


@pytest.fixture(scope="session")
def rounds(request: pytest.FixtureRequest, sizes: workloads.Sizes) -> Rounds:
    """Timed rounds = --benchmark-min-rounds (default 5), after 1 (smoke sizes) or 2 warm-up rounds."""
    timed = request.config.getoption("benchmark_min_rounds", default=5) or 5
    return Rounds(max(1, int(timed)), 1 if sizes.small else 2)


@pytest.fixture(scope="session")
def splits() -> Splits:
    return workloads.ci_splits()


@pytest.fixture(scope="session")
def workload_for(sizes: workloads.Sizes, splits: Splits) -> Callable[[str], workloads.MethodWorkload]:
    """name -> that method's workload, built on first use and kept: the step and the backbone passes share tensors."""
    built: dict[str, workloads.MethodWorkload] = {}

    def get(name: str) -> workloads.MethodWorkload:
        if name not in built:
            built[name] = workloads.method_workload(name, sizes, splits)
        return built[name]

    return get


@pytest.fixture(scope="session")
def nce(sizes: workloads.Sizes) -> workloads.NCEWorkload:
    return workloads.nce_workload(sizes)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without pytest-benchmark (not installed, or -p no:benchmark) the timed tests are skipped, not errors."""
    if config.pluginmanager.hasplugin("benchmark"):
        return
    skip = pytest.mark.skip(
        reason="needs pytest-benchmark (pip install -e '.[dev]'), which is not installed or disabled"
    )
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Saved with every pytest-benchmark run: what the times depend on besides the CPU."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["ssl_bench_sizes"] = repr(workloads.sizes())
