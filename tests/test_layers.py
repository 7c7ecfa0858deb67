"""The house's one-way layering (README, Layout), read from the source's import statements.

    cli -> runner, run_config, check, fingerprints -> {methods, engine, eval, detection, results}
        -> {modules, data, backbone, config, storage, ...};  report reads results only.

Run as a script (``python tests/test_layers.py``) it prints the package-level import graph.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"ssl_bench": ROOT / "ssl_bench", "ssl_bench.methods": ROOT / "methods"}

# A unit may import only the units of the layers below it (and its own layer's, for the middle ones). "report" reads
# results files and imports nothing of the rest.
LAYERS = [
    {
        "config",
        "faults",
        "interrupt",
        "storage",
        "distributed",
        "backbone",
        "references",
        "presets",
        "protocol",
        "__init__",
    },
    {"data", "modules"},
    {"methods", "engine", "checkpointer", "eval", "detection", "results", "metrics_log", "monitor"},
    {"run_config", "runner", "check", "fingerprints", "report", "export"},
    {"api"},
    {"cli", "__main__"},
]
REPORT_MAY_IMPORT = {"report", "__init__", "references", "protocol"}  # protocol: the rows' protocol text, parsed
# Siblings of the middle layer that must not see each other: an evaluation never sees a method (or the engine that
# trains one); a method never sees an evaluation.
FORBIDDEN = {
    "eval": {"methods", "engine", "checkpointer"},
    "detection": {"methods", "engine"},
    "methods": {"eval", "detection", "results"},
    "monitor": {"methods"},  # it sees a method's embedding functions, handed down, never a method's code
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (methods/ is installed as ssl_bench.methods)."""
    out = {}
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join((package, *parts)).removesuffix(".__init__")] = path
    return out


def imports(path: Path) -> set[str]:
    """The ssl_bench modules a file imports (at any depth in the file, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_bench"):
            if node.module != "ssl_bench":
                found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from ssl_bench import storage`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ssl_bench"))
    return found


def unit(module: str) -> str:
    """The layering unit of a module: its sub-package (data, eval, methods, ...) or its own name at the top."""
    rest = module.split(".")[1:]
    return rest[0] if rest else "__init__"


def graph() -> dict[str, set[str]]:
    """unit -> the units it imports."""
    known = modules()
    out: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {t for t in imports(path) if t in known or t.rsplit(".", 1)[0] in known}
        out.setdefault(unit(name), set()).update(unit(t) for t in targets)
    for name, deps in out.items():
        deps.discard(name)
    return out


def layer(name: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if name in units)


def test_every_unit_has_a_layer() -> None:
    assert set(graph()) <= set().union(*LAYERS)


# The package's own lazy exports of the public API (``ssl_bench.run`` etc., loaded on first use): a facade, not a
# dependency of anything below.
FACADE = {("__init__", "api"), ("__init__", "export")}


def test_imports_only_go_down() -> None:
    wrong = [(a, b) for a, deps in graph().items() for b in deps if layer(b) > layer(a) and (a, b) not in FACADE]
    assert not wrong, f"imports against the layering (importer, imported): {sorted(wrong)}"


def test_evaluations_never_see_a_method_and_methods_never_see_an_evaluation() -> None:
    wrong = [(a, b) for a, deps in graph().items() for b in deps & FORBIDDEN.get(a, set())]
    assert not wrong, f"forbidden imports (importer, imported): {sorted(wrong)}"


def test_report_reads_results_only() -> None:
    assert graph().get("report", set()) <= REPORT_MAY_IMPORT


def test_no_method_name_is_tested_outside_methods() -> None:
    """No ``if ... == "pirl"`` (or any method's name) outside methods/: what a method offers, it offers by interface.
    ("jigsaw" and "rotation" are also transform names: ``transform == "jigsaw"`` is about the transform.)"""
    names = "|".join(["random", "supervised", "autoencoder", "rotnet", "jigsaw", "npidpp", "pirl"])
    pattern = re.compile(rf"""[=!]=\s*["']({names})["']|["']({names})["']\s*[=!]=|\bin\s*\(["']({names})["']""")
    hits = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted((ROOT / "ssl_bench").rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not re.search(r"\btransform\s*==", line)
    ]
    assert not hits, f"method names compared outside methods/: {hits}"


if __name__ == "__main__":
    for name, deps in sorted(graph().items(), key=lambda item: (-layer(item[0]), item[0])):
        print(f"{name:>13} -> {', '.join(sorted(deps)) or '-'}")
    sys.exit(0)
