"""ssl-bench: self-supervised pretext tasks on one shared backbone, measured by one evaluation harness.

The Python API (``ssl_bench.api``; ``load_backbone`` from ``ssl_bench.export``), loaded on first use so that
``import ssl_bench`` stays cheap (no torch, no pandas)::

    df = ssl_bench.run(preset="ci", methods=["pirl", "jigsaw"], out="results")  # the rows, a pandas DataFrame
    files = ssl_bench.report("results")  # results/report/
    df = ssl_bench.load_results("results")  # results/results.csv as the report reads it
    ssl_bench.list_methods()  # {"pirl": "Misra & van der Maaten, ...", ...}
    model = ssl_bench.load_backbone("exported/<run_id>")  # after `ssl-bench export`
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "list_methods", "load_backbone", "load_results", "report", "run"]

LAZY: dict[str, str] = {  # name -> the module that defines it
    "run": "ssl_bench.api",
    "load_results": "ssl_bench.api",
    "list_methods": "ssl_bench.api",
    "load_backbone": "ssl_bench.export",
}


def __getattr__(name: str) -> Any:
    if name == "report":  # the subpackage; loading it makes it callable (_Package.__setattr__)
        return importlib.import_module("ssl_bench.report")
    if name in LAZY:
        value = getattr(importlib.import_module(LAZY[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _CallableReport(types.ModuleType):
    """The ``ssl_bench.report`` subpackage, which is also the API's ``report``: ``ssl_bench.report(out)`` is
    ``ssl_bench.api.report(out)``, and ``ssl_bench.report.make_report`` is still the subpackage's."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ssl_bench.api import report

        return report(*args, **kwargs)


class _Package(types.ModuleType):
    """``ssl_bench`` itself. The import system sets ``ssl_bench.report`` to the report subpackage when anything first
    imports it (``from ssl_bench.report import ...``), which would hide a function of that name; the subpackage is
    made callable instead, so ``ssl_bench.report(out)`` works whoever imported it first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "report" and type(value) is types.ModuleType:
            value.__class__ = _CallableReport
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
