"""The augmented linear protocol: frozen trunk, one pass per batch for every head, heads that learn."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import Dataset

from ssl_bench.backbone import Backbone
from ssl_bench.data.types import DataInfo
from ssl_bench.eval.linear_augmented import augmented_probe
from ssl_bench.eval.linear_probe import LinearConfig

INFO = DataInfo("colours", 4, 64, 32, (0.5,) * 3, (0.25,) * 3)
COLOURS = torch.tensor([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30]], dtype=torch.uint8)
LAYERS = ["stem", "layer2", "pooled"]
CFG = LinearConfig(epochs=4, batch_size=16, lr=0.1)
TRAIN, TEST = 64, 32


class Colours(Dataset):
    """Class = the dominant colour of a noisy uint8 image: learnable by a linear head in a few steps. ``random``:
    labels drawn at random instead, so what the heads make of them depends on every random draw of the probe."""

    def __init__(self, n: int, seed: int, random: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.targets = [i % 4 for i in range(n)]
        noise = torch.randint(-25, 26, (n, 3, 32, 32), generator=g)
        self.x = (COLOURS[self.targets][:, :, None, None].int() + noise).clamp(0, 255).to(torch.uint8)
        if random:
            self.targets = torch.randint(0, 4, (n,), generator=g).tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.targets[i]


@dataclass
class Run:
    scores: dict[str, dict[str, dict[str, float]]]
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    trunk_calls: int
    rng_kept: bool  # the caller's global generator is where it was


def run(seed: int = 0, random: bool = False, caller_seed: int = 0) -> Run:
    torch.manual_seed(0)
    backbone = Backbone("resnet18-smallstem-w0.25").train()  # train mode: a probe that forgot eval() moves BN stats
    before = copy.deepcopy(backbone.state_dict())
    calls = 0
    stages = backbone.stages

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        nonlocal calls
        calls += 1
        return stages(*args, **kwargs)

    backbone.stages = counted  # type: ignore[method-assign]
    train = Colours(TRAIN, seed=0, random=random)
    evals = {"test": Colours(TEST, seed=1, random=random), "train": train}
    torch.manual_seed(caller_seed)
    rng = torch.get_rng_state()
    scores = augmented_probe(backbone, train, evals, INFO, LAYERS, CFG, torch.device("cpu"), seed)
    return Run(scores, before, backbone.state_dict(), calls, torch.equal(rng, torch.get_rng_state()))


@pytest.fixture(scope="module")
def first() -> Run:
    return run()


def test_every_layer_of_every_split_has_top1_and_top5(first: Run) -> None:
    assert list(first.scores) == ["test", "train"]
    for split in first.scores.values():
        assert list(split) == LAYERS
        for numbers in split.values():
            assert set(numbers) == {"top1", "top5"}
            assert 0 <= numbers["top1"] <= numbers["top5"] <= 100
            assert numbers["top5"] == 100  # 4 classes: the right one is always among the top 5


def test_backbone_is_bit_identical_afterwards(first: Run) -> None:
    assert list(first.after) == list(first.before)
    changed = [k for k in first.before if not torch.equal(first.before[k], first.after[k])]
    assert changed == []


def test_one_trunk_pass_per_batch_for_all_heads(first: Run) -> None:
    train_batches = CFG.epochs * TRAIN // CFG.batch_size
    eval_batches = (TEST + TRAIN) // CFG.batch_size
    assert first.trunk_calls == 1 + train_batches + eval_batches  # 1: the probe of the feature sizes


def test_heads_learn_the_dominant_colour(first: Run) -> None:
    for layer in LAYERS:
        assert first.scores["test"][layer]["top1"] >= 75, (layer, first.scores["test"])  # chance: 25


def test_same_seed_same_numbers_whatever_the_callers_generator() -> None:
    fit = run(seed=0, random=True)  # random labels: the training-split scores hang on every draw
    assert fit.rng_kept
    assert run(seed=0, random=True, caller_seed=99).scores == fit.scores
    assert run(seed=1, random=True).scores["train"] != fit.scores["train"]


def test_an_unknown_layer_is_named() -> None:
    backbone = Backbone("resnet18-smallstem-w0.25")
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['layer9'\]; valid: \['stem', .*'pooled'"):
        augmented_probe(backbone, Colours(8, 0), {}, INFO, ["layer9"], CFG, torch.device("cpu"))
