from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from ssl_bench.backbone import Backbone
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.eval import harness
from ssl_bench.eval.harness import EvalContext, evaluate
from ssl_bench.run_config import RunConfig


class Tiny(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.targets = [i % 4 for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


CFG = RunConfig()
CFG.linear.epochs, CFG.linear.max_dims, CFG.knn.k = 2, 512, 5


@pytest.fixture
def ctx(tmp_path) -> EvalContext:
    info = DataInfo("tiny", 4, 24, 32, (0.5,) * 3, (0.25,) * 3)
    backbone = Backbone("resnet18-w0.25")
    backbone.train()  # the harness must switch BN to eval itself
    return EvalContext(backbone, Splits(Tiny(24, 0), Tiny(12, 1), info), tmp_path, torch.device("cpu"), seed=0)


def test_linear_probe_covers_every_stage_and_leaves_the_backbone_unchanged(ctx) -> None:
    before = {k: v.clone() for k, v in ctx.backbone.state_dict().items()}
    rows = evaluate("linear", ctx, CFG)
    assert {r.layer for r in rows} == set(ctx.backbone.stage_names)
    assert {r.metric for r in rows} == {"top1", "top5"}
    assert all(0 <= r.value <= 100 for r in rows)
    for k, v in ctx.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running statistics included
    assert (ctx.run_dir / "features-train-d512.pt").exists() and (ctx.run_dir / "features-test-d512.pt").exists()


def test_features_are_cached_and_reused(ctx, monkeypatch) -> None:
    evaluate("knn", ctx, CFG)
    monkeypatch.setattr(harness, "extract", lambda *a, **k: pytest.fail("features were extracted again"))
    rows = evaluate("linear", ctx, CFG)
    assert rows


def test_an_evaluation_that_trains_the_backbone_is_refused(ctx, monkeypatch) -> None:
    def sneaky(c: EvalContext, cfg: object):
        with torch.no_grad():
            next(c.backbone.parameters()).add_(1.0)
        return []

    monkeypatch.setitem(harness.EVALS, "linear", harness.Evaluation(sneaky, ("linear",), ""))
    with pytest.raises(RuntimeError, match="changed backbone weights"):
        evaluate("linear", ctx, CFG)


def test_corrupt_feature_cache_is_redone_with_a_warning(ctx) -> None:
    evaluate("knn", ctx, CFG)
    path = ctx.run_dir / "features-train-d512.pt"
    good = path.read_bytes()
    path.write_bytes(good[:100])  # truncated
    with pytest.warns(UserWarning, match="does not match its checksum.*redone"):
        evaluate("knn", ctx, CFG)
    assert path.read_bytes() == good and (path.parent / (path.name + ".corrupt")).exists()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 1  # one bit flipped inside the tensor data: still loads, the checksum catches it
    path.write_bytes(bytes(flipped))
    with pytest.warns(UserWarning, match="does not match its checksum"):
        evaluate("knn", ctx, CFG)
    assert path.read_bytes() == good
