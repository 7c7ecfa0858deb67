"""The ``protocol`` column of results.csv: what a number was measured under, beyond its eval, layer and metric.

Rows that share (model, seed, eval, protocol, layer, metric) are one number: the report keeps the latest of them and
the regression check compares them with one baseline entry. So whatever makes two numbers different measurements
of the kind a reader compares across (the label fraction, the transform, the data and schedule) is written here:

* linear: ``""`` (cached features) or ``augmented`` (``linear.protocol``);
* semisup: ``finetune-1%`` / ``linear-10%``; ``finetune-1%:1percent`` for a listed subset (``eval/semisup.py``);
* invariance: the transform, ``jigsaw`` or ``rotation``;
* detection and svm, scored on VOC-layout data: ``<scoring> on <data> <train>-><test>``, and for detection
  `` <iterations> it`` (the fine-tuning schedule), e.g. ``voc07 on voc07+12 trainval->test 25000 it`` (PIRL
  Table 1), ``coco on voc:BCCD trainval->test 300 it``, ``voc07-svm on synthetic-voc-400-200-128px trainval->test``.
  <data> is ``voc07`` / ``voc07+12`` (the Pascal devkit sets), ``voc:<root's directory name>`` (any VOC-layout root,
  e.g. BCCD) or the built-in scenes' directory name (``synthetic-voc-<trainval>-<test>-<size>px``: their sizes
  are what tells two sets of scenes apart). The detector head is the row's ``layer``. Rows written before the data
  was recorded say only ``voc07`` / ``coco`` / ``voc07-svm``; they read back with the data unknown.

Why a richer protocol string and not new results columns: every reader already keys a number by (eval, protocol):
the report's units and tables, the regression check's KEY, the published rows' ``eval_protocol``. Two datasets or
schedules thus become two numbers everywhere without a schema change; old results.csv files and baselines load as they
are; and the text is what a table title shows. Settings that change a number but are not written here (learning
rates, batch sizes, ``linear.epochs``, ``knn.k``, ...) are in the row's ``config_hash`` alone: the report warns when
one key holds results of two config hashes (``report/results.py``) instead of silently keeping one.

Pure Python (no torch): the report reads labels with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

VOC_EVALS: tuple[str, ...] = ("detection", "svm")  # evals whose protocol is a VOCProtocol label
# linear: "" for the probe on cached test-view features (the small presets'), this for Goyal et al.'s augmented one
AUGMENTED = "augmented"
# The linear probe's top-1 on training images held out from its training (``linear.val_fraction``): what chooses the
# best layer when a run recorded it (otherwise the test top-1 does, as Goyal et al., whose val split is ImageNet's).
SELECTION_METRIC = "val_top1"
NOT_RECORDED = "dataset not recorded"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_LABEL = re.compile(r"(?P<scoring>\S+) on (?P<data>\S+) (?P<train>[^\s>]+)->(?P<test>\S+?)(?: (?P<iterations>\d+) it)?")


class VOCData(Protocol):
    """The fields DetectionConfig and SVMConfig share that say which VOC-layout data they use."""

    dataset: str  # synthetic | voc | voc07 | voc07+12
    root: str
    train_split: str
    test_split: str
    synthetic_trainval: int
    synthetic_test: int
    synthetic_size: int


def word(text: str) -> str:
    """``text`` as one word of a label: characters other than letters, digits and ``._+-`` become ``_``."""
    return _UNSAFE.sub("_", text) or "_"


def synthetic_voc_dir(trainval: int, test: int, size: int) -> str:
    """The built-in VOC-layout scenes' directory under ``<out>/data`` (and their name in labels)."""
    return f"synthetic-voc-{trainval}-{test}-{size}px"


def data_name(cfg: VOCData) -> str:
    """What a label calls the data: the scenes' directory, ``voc:<root's directory name>``, or the devkit set."""
    if cfg.dataset == "synthetic":
        return synthetic_voc_dir(cfg.synthetic_trainval, cfg.synthetic_test, cfg.synthetic_size)
    if cfg.dataset == "voc":
        return "voc:" + word(Path(cfg.root).expanduser().resolve().name if cfg.root else "")
    return cfg.dataset


@dataclass(frozen=True)
class VOCProtocol:
    """A number scored on VOC-layout data: the scoring (voc07 | coco | voc07-svm), the data, its train -> test
    splits and, for detection, the fine-tuning iterations. ``data`` is "" for rows that did not record it."""

    scoring: str
    data: str = ""
    train_split: str = ""
    test_split: str = ""
    iterations: int | None = None

    @classmethod
    def of(cls, scoring: str, cfg: VOCData, iterations: int | None = None) -> VOCProtocol:
        return cls(scoring, data_name(cfg), word(cfg.train_split), word(cfg.test_split), iterations)

    @classmethod
    def parse(cls, text: str) -> VOCProtocol:
        """A label read back; a bare scoring ("voc07", rows written before the data was recorded) has no data."""
        match = _LABEL.fullmatch(text.strip())
        if match is None:
            return cls(text.strip())
        iterations = match.group("iterations")
        return cls(
            match.group("scoring"),
            match.group("data"),
            match.group("train"),
            match.group("test"),
            int(iterations) if iterations else None,
        )

    @property
    def recorded(self) -> bool:
        return bool(self.data)

    @property
    def label(self) -> str:
        """The results.csv text."""
        if not self.recorded:
            return self.scoring
        text = f"{self.scoring} on {self.data} {self.train_split}->{self.test_split}"
        return text if self.iterations is None else f"{text} {self.iterations} it"

    @property
    def setting(self) -> str:
        """The data and schedule in words, for table titles: "voc07+12 trainval->test, 25000 iterations"."""
        if not self.recorded:
            return NOT_RECORDED
        text = f"{self.data} {self.train_split}->{self.test_split}"
        return text if self.iterations is None else f"{text}, {self.iterations} iterations"

    def same_data(self, other: VOCProtocol) -> bool:
        """Same scoring of the same data and splits (the schedule aside); never true for unrecorded data."""
        mine = (self.scoring, self.data, self.train_split, self.test_split)
        return self.recorded and mine == (other.scoring, other.data, other.train_split, other.test_split)
