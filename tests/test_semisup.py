from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.eval.harness import EvalContext, evaluate
from ssl_bench.eval.semisup import SemisupConfig, balanced_subset, finetune, lowshot_linear, subset_ids
from ssl_bench.run_config import RunConfig

INFO = DataInfo("colours", 4, 64, 32, (0.5,) * 3, (0.25,) * 3)
COLOURS = torch.tensor([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30]], dtype=torch.uint8)


class Colours(Dataset):
    """Class = the dominant colour of a noisy image: learnable in a few steps."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = [i % 4 for i in range(n)]
        noise = torch.randint(-25, 26, (n, 3, 32, 32), generator=g)
        self.x = (COLOURS[self.targets][:, :, None, None].int() + noise).clamp(0, 255).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


def test_subsets_are_class_balanced_and_reproducible() -> None:
    labels = [c for c in range(10) for _ in range(100 + 10 * c)]  # unbalanced on purpose: 100..190 per class
    ids = balanced_subset(labels, 0.1, seed=3)
    counts = Counter(labels[i] for i in ids)
    assert counts == {c: round(0.1 * (100 + 10 * c)) for c in range(10)}
    assert ids == sorted(set(ids)) and ids == balanced_subset(labels, 0.1, seed=3)
    assert ids != balanced_subset(labels, 0.1, seed=4)
    assert Counter(labels[i] for i in balanced_subset(labels, 0.001, seed=0)) == {
        c: 1 for c in range(10)
    }  # >= 1 a class


def test_subset_ids_are_saved_once_and_checked(tmp_path) -> None:
    labels = [i % 5 for i in range(500)]
    first = subset_ids(tmp_path, "folder:cifar10", labels, 0.01, 0)
    (path,) = tmp_path.glob("*.json")
    assert path.name == "folder-cifar10-1pct-s0.json"
    assert json.loads(path.read_text())["ids"] == first and len(first) == 5
    path.write_text(json.dumps({**json.loads(path.read_text()), "ids": [1, 2, 3]}))
    assert subset_ids(tmp_path, "folder:cifar10", labels, 0.01, 0) == [
        1,
        2,
        3,
    ]  # the saved file wins: same images for all
    with pytest.raises(ConfigError, match="different folder:cifar10 training split.*Delete it"):
        subset_ids(tmp_path, "folder:cifar10", labels[:-5], 0.01, 0)


def test_finetune_learns_and_leaves_the_pretrained_backbone_alone() -> None:
    backbone = Backbone("resnet18-smallstem-w0.25")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = SemisupConfig(epochs=1, min_steps=40, batch_size=16, lr=0.2)
    scores = finetune(backbone, Colours(64, 0), list(range(32)), Colours(40, 1), INFO, cfg, torch.device("cpu"), seed=0)
    assert scores["top1"] >= 90.0  # chance is 25%
    assert scores["top5"] == 100.0  # 4 classes
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())


def test_lowshot_probe_keeps_enough_steps() -> None:
    cfg = lowshot_linear(RunConfig().linear, num_ids=50)
    assert cfg.batch_size == 50 and cfg.epochs >= 200


def test_semisup_rows_and_shared_subsets(tmp_path) -> None:
    cfg = RunConfig()
    cfg.linear.epochs, cfg.linear.max_dims = 2, 256
    cfg.semisup = SemisupConfig(fractions=[0.25, 0.5], epochs=1, min_steps=2, batch_size=8)
    splits = Splits(Colours(48, 0), Colours(16, 1), INFO)
    rows_by_method = {}
    for method in ("random", "supervised"):
        run_dir = tmp_path / "out" / "runs" / method
        run_dir.mkdir(parents=True)
        ctx = EvalContext(Backbone("resnet18-w0.25"), splits, run_dir, torch.device("cpu"), seed=0)
        rows_by_method[method] = evaluate("semisup", ctx, cfg)  # also checks the backbone came out unchanged
    rows = rows_by_method["random"]
    assert {r.protocol for r in rows} == {"finetune-25%", "finetune-50%", "linear-25%", "linear-50%"}
    assert {r.layer for r in rows if r.protocol.startswith("finetune")} == {"all"}
    assert {r.layer for r in rows if r.protocol.startswith("linear")} == set(Backbone("resnet18-w0.25").stage_names)
    assert {r.metric for r in rows} == {"top1", "top5"} and all(0 <= r.value <= 100 for r in rows)
    assert sorted(p.name for p in (tmp_path / "out" / "subsets").iterdir()) == [
        "colours-25pct-s0.json",
        "colours-50pct-s0.json",
    ]
    ids = json.loads((tmp_path / "out" / "subsets" / "colours-25pct-s0.json").read_text())["ids"]
    assert Counter(splits.train.targets[i] for i in ids) == {c: 3 for c in range(4)}
