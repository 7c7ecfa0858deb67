"""FIDELITY.md stays true: every value in its "ours" column equals the code's default for that key.

The page is written by hand from the papers and reference code; this test reads it as a reviewer would (the key
column and the ours column of every table) and compares with the defaults of each method's Config and of the
backbone, kNN, SVM and detection sections, so a default changed in the code without the page (or the reverse) fails
here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from ssl_bench.backbone import BackboneConfig
from ssl_bench.detection.config import DetectionConfig
from ssl_bench.eval.knn import KNNConfig
from ssl_bench.eval.linear_probe import LinearConfig
from ssl_bench.eval.semisup import SemisupConfig
from ssl_bench.eval.svm import SVMConfig
from ssl_bench.methods import available_methods, get_method

PAGE = Path(__file__).resolve().parent.parent / "FIDELITY.md"
SECTIONS: dict[str, Any] = {
    "backbone": BackboneConfig(),
    "linear": LinearConfig(),
    "knn": KNNConfig(),
    "semisup": SemisupConfig(),
    "svm": SVMConfig(),
    "detection": DetectionConfig(),
}


def literal(text: str) -> Any:
    """'0.03' -> 0.03, 'true' -> True, 'unset' -> None, 'vissl' -> 'vissl' (the first word of a cell)."""
    word = text.split()[0]
    if word in ("true", "false"):
        return word == "true"
    if word == "unset":
        return None
    try:
        return int(word) if re.fullmatch(r"-?\d+", word) else float(word)
    except ValueError:
        return word


def documented() -> list[tuple[str, Any]]:
    """(key, value) for every table row whose key cell names a method's or a section's field."""
    owners = set(available_methods()) | set(SECTIONS)
    out = []
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6:
            continue
        keys = re.findall(r"`([a-z0-9_]+)\.([a-z0-9_]+)`", cells[1])
        if not keys or any(owner not in owners for owner, _ in keys):
            continue
        values = [v.strip() for v in re.sub(r"\([^)]*\)", "", cells[2]).split(",")]
        assert len(values) == len(keys), f"FIDELITY.md row {cells[0]!r}: {len(keys)} keys but ours is {cells[2]!r}"
        out += [(f"{owner}.{name}", literal(value)) for (owner, name), value in zip(keys, values)]
    return out


def default(key: str) -> Any:
    owner, name = key.split(".")
    cfg = SECTIONS[owner] if owner in SECTIONS else get_method(owner).Config()
    assert name in {f.name for f in dataclasses.fields(cfg)}, f"FIDELITY.md names {key}, which is not a config key"
    return getattr(cfg, name)


def test_the_page_documents_every_method() -> None:
    text = PAGE.read_text()
    for name in available_methods():
        assert f"methods/{get_method(name).__module__.rsplit('.', 1)[-1]}.py" in text, name


def test_the_page_covers_the_paper_defaults_that_matter() -> None:
    keys = {key for key, _ in documented()}
    for method in ("npidpp", "pirl"):
        assert {f"{method}.{f}" for f in ("lr", "temperature", "num_negatives", "bank_momentum", "z_momentum")} <= keys
    assert {"jigsaw.per_tile_norm", "rotnet.lr", "rotnet.nesterov", "backbone.zero_init_residual", "knn.k"} <= keys
    assert {"linear.protocol", "linear.pool", "linear.val_fraction", "semisup.nesterov"} <= keys
    assert {"svm.folds", "svm.max_iter", "svm.max_dims", "svm.train_difficult"} <= keys
    assert {f"detection.{f}" for f in ("freeze_at", "freeze_bn", "multiscale", "roi_aligned", "box_loss")} <= keys


@pytest.mark.parametrize("key, value", documented(), ids=[key for key, _ in documented()])
def test_each_documented_value_is_the_code_default(key: str, value: Any) -> None:
    assert default(key) == value, f"FIDELITY.md says {key} = {value!r}; the code's default is {default(key)!r}"
