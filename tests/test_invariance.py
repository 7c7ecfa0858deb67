from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from ssl_bench.backbone import Backbone
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.eval import invariance as inv
from ssl_bench.eval.harness import EvalContext, evaluate
from ssl_bench.eval.invariance import InvarianceConfig
from ssl_bench.methods import get_method
from ssl_bench.methods.pirl import PIRLConfig
from ssl_bench.run_config import RunConfig

INFO = DataInfo("tiny", 4, 16, 32, (0.5,) * 3, (0.25,) * 3)


def tiny(n: int, seed: int) -> list[tuple[torch.Tensor, int]]:
    """n random 32 px uint8 images with labels i % 4 (a list is all the evaluation needs of a split)."""
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return [(x[i], i % 4) for i in range(n)]


class ChannelMean(nn.Module):
    """A 'backbone' blind to where pixels are: invariant to any tile shuffle and any rotation."""

    def eval(self):
        return self

    def forward(self, x):
        return x.mean((2, 3)) + torch.tensor([1.0, -2.0, 3.0])


def test_distance_and_summary() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    b = torch.tensor([[5.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert torch.allclose(inv.distance(a, b), torch.tensor([0.0, math.sqrt(2), 2.0]))
    d = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    s = inv.summary(d)
    assert s["mean"] == pytest.approx(float(d.mean())) and s["std"] == pytest.approx(float(d.std()))
    for q in (5, 25, 50, 75, 95):
        assert s[f"q{q:02d}"] == pytest.approx(np.quantile(d.numpy().astype(np.float64), q / 100), abs=1e-12)


def test_draws_are_the_same_for_every_method_and_real_permutations() -> None:
    cfg = InvarianceConfig(repeats=6, seed=1)
    orders, turns = inv.draws(cfg, 10)
    again, _ = inv.draws(cfg, 10)
    assert torch.equal(orders, again)
    assert torch.equal(orders.sort(-1).values, torch.arange(9).expand(6, 10, 9))
    assert set(turns.flatten().tolist()) == {1, 2, 3}


def test_a_position_blind_backbone_is_invariant_and_a_real_one_is_not() -> None:
    views = inv.test_views(tiny(8, 0), INFO, 8)
    cfg = InvarianceConfig(repeats=3)
    for transform in ("jigsaw", "rotation"):
        blind = inv.backbone_distances(ChannelMean(), views, transform, cfg, torch.device("cpu"))
        assert blind.shape == (24,) and blind.max() < 1e-5
        real = inv.backbone_distances(Backbone("resnet18-smallstem-w0.25"), views, transform, cfg, torch.device("cpu"))
        assert real.mean() > 0.05 and real.max() <= 2.0


def test_jigsaw_distance_is_zero_for_the_identity_order(monkeypatch) -> None:
    views = inv.test_views(tiny(4, 0), INFO, 4)
    monkeypatch.setattr(
        inv, "draws", lambda cfg, n, k=9: (torch.arange(9).expand(cfg.repeats, n, 9), torch.ones(cfg.repeats, n))
    )
    d = inv.backbone_distances(
        Backbone("resnet18-w0.25"), views, "jigsaw", InvarianceConfig(repeats=2), torch.device("cpu")
    )
    assert d.abs().max() < 1e-5


def test_invariance_eval_rows_raw_file_and_pirl_heads(tmp_path) -> None:
    cfg = RunConfig()
    cfg.invariance = InvarianceConfig(num_images=6, repeats=2)
    backbone = Backbone("resnet18-w0.25")
    pirl_cfg = PIRLConfig(num_negatives=8)
    method = get_method("pirl")(backbone, pirl_cfg, INFO)
    torch.save({"method": method.state_dict()}, tmp_path / "checkpoint.pt")
    trained = get_method("pirl")(copy.deepcopy(backbone), pirl_cfg, INFO)
    trained.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["method"])
    ctx = EvalContext(
        backbone,
        Splits(tiny(16, 0), tiny(8, 1), INFO),
        tmp_path,
        torch.device("cpu"),
        seed=0,
        embeddings=lambda: trained.eval().embeddings(),
    )  # what the runner hands down for PIRL
    rows = evaluate("invariance", ctx, cfg)
    keys = {(r.protocol, r.layer) for r in rows}
    assert keys == {("jigsaw", "pooled"), ("rotation", "pooled"), ("jigsaw", "head")}
    assert {r.metric for r in rows} == {"mean", "std", "q05", "q25", "q50", "q75", "q95"}
    raw = torch.load(tmp_path / "invariance.pt", weights_only=True)
    assert set(raw) == {"jigsaw/pooled", "rotation/pooled", "jigsaw/head"} and raw["jigsaw/head"].shape == (12,)
    mean = next(r.value for r in rows if (r.protocol, r.layer, r.metric) == ("jigsaw", "head", "mean"))
    assert mean == pytest.approx(float(raw["jigsaw/head"].mean()), abs=1e-6)
