from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from ssl_bench import storage
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
    assert {r.metric for r in rows} == {"top1", "top5", "val_top1"}  # val: the held-out training images
    assert all(0 <= r.value <= 100 for r in rows)
    for k, v in ctx.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running statistics included
    assert (ctx.run_dir / "features-train-d512-view2.pt").exists()
    assert (ctx.run_dir / "features-test-d512-view2.pt").exists()


def test_the_held_out_images_are_class_balanced_disjoint_and_the_same_every_time() -> None:
    labels = torch.tensor([i % 4 for i in range(200)])
    fit, val = harness.held_out(labels, 0.1)
    assert len(val) == 20 and torch.bincount(labels[val]).tolist() == [5, 5, 5, 5]
    assert sorted(fit.tolist() + val.tolist()) == list(range(200))
    assert torch.equal(harness.held_out(labels, 0.1)[1], val)  # fixed seed: every method and run seed alike
    fit, val = harness.held_out(labels, 0.0)
    assert val is None and torch.equal(fit, torch.arange(200))


def test_the_probe_trains_without_the_held_out_images(ctx, monkeypatch) -> None:
    """The probe never sees the images its layer is chosen on; val_fraction 0 trains on all and records no val."""
    seen = []
    real = harness.train_linear
    monkeypatch.setattr(harness, "train_linear", lambda x, *a, **k: seen.append(len(x)) or real(x, *a, **k))
    cfg = RunConfig()
    cfg.linear.epochs, cfg.linear.max_dims, cfg.linear.layers, cfg.linear.val_fraction = 1, 512, ["layer4"], 0.25
    rows = evaluate("linear", ctx, cfg)
    assert seen == [16] and {r.metric for r in rows} == {"top1", "top5", "val_top1"}  # 24 - 2 of each 6 (round 1.5)
    cfg.linear.val_fraction = 0.0
    seen.clear()
    rows = evaluate("linear", ctx, cfg)
    assert seen == [24] and {r.metric for r in rows} == {"top1", "top5"}


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
    path = ctx.run_dir / "features-train-d512-view2.pt"
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


def test_the_augmented_protocol_is_named_in_the_rows(ctx) -> None:
    """linear.protocol=augmented: Goyal et al.'s protocol through the harness, rows' protocol "augmented", the layer
    chosen on held-out images as for the cached one, and no feature cache written."""
    cfg = RunConfig()
    cfg.linear.epochs, cfg.linear.max_dims, cfg.linear.layers, cfg.linear.batch_size = 1, 512, ["layer3", "layer4"], 8
    cfg.linear.protocol = "augmented"
    rows = evaluate("linear", ctx, cfg)
    assert {(r.layer, r.metric, r.protocol) for r in rows} == {
        (layer, metric, "augmented") for layer in ("layer3", "layer4") for metric in ("top1", "top5", "val_top1")
    }
    assert not list(ctx.run_dir.glob("features-*.pt"))


@pytest.mark.parametrize("method", ["npidpp", "pirl"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_knn_on_the_head_reads_the_cached_pooled_features_and_equals_a_pass_through_the_backbone(
    ctx, method: str, dtype: torch.dtype | None
) -> None:
    """The method's "pooled" head on the pooled features the probes cached gives the kNN of its "image" embedding
    (a second pass through the backbone) bit for bit, in fp32 and under bf16 autocast, without that pass."""
    from ssl_bench.methods import get_method

    trained = get_method(method)(
        Backbone("resnet18-w0.25"), get_method(method).Config(num_negatives=8), ctx.splits.info
    )
    trained.eval()
    ctx.backbone, ctx.dtype = trained.backbone, dtype
    heads = trained.embeddings()
    assert set(heads) >= {"image", "pooled"}
    passes = []

    def image_only() -> dict:
        def image(x: torch.Tensor) -> torch.Tensor:
            passes.append(len(x))
            return heads["image"](x)

        return {"image": image}

    ctx.embeddings = image_only
    through_backbone = evaluate("knn", ctx, CFG)
    assert sum(passes) == 24 + 12  # every train and test image once more through the backbone
    ctx.embeddings = lambda: {**image_only(), "pooled": heads["pooled"]}
    from_cache = evaluate("knn", ctx, CFG)
    assert sum(passes) == 24 + 12  # none this time
    assert [r for r in from_cache if r.layer == "head"] and from_cache == through_backbone
    for split in ("train", "test"):  # the embeddings themselves, not only the kNN they give
        (pooled,) = (storage.load(p)["features"]["pooled"] for p in ctx.run_dir.glob(f"features-{split}-d*.pt"))
        (passed,) = (storage.load(p)["features"]["head"] for p in ctx.run_dir.glob(f"features-{split}-head-*.pt"))
        assert torch.equal(harness.on_features(ctx, heads["pooled"], pooled), passed)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_channels_last_extraction_gives_the_same_features_to_float_rounding(ctx, dtype) -> None:
    """train.channels_last reaches the frozen-feature pass (EvalContext.channels_last): the batches go in
    channels_last, the features are the NCHW pass's to rounding (fp32) or to bf16's precision, and the backbone's own
    parameters keep their memory format."""
    from ssl_bench.eval.features import extract

    info = ctx.splits.info
    args = (ctx.backbone, ctx.splits.test, [*ctx.backbone.stage_names, "pooled"], 32, info.mean, info.std, ctx.device)
    formats = [p.is_contiguous() for p in ctx.backbone.parameters()]
    (nchw, y0), (nhwc, y1) = (extract(*args, max_dims=512, dtype=dtype, channels_last=cl) for cl in (False, True))
    assert torch.equal(y0, y1) and nchw.keys() == nhwc.keys()
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype is None else {"rtol": 0.05, "atol": 0.05}
    for layer in nchw:
        assert nchw[layer].shape == nhwc[layer].shape and nhwc[layer].is_contiguous()
        torch.testing.assert_close(nhwc[layer], nchw[layer], **tol)
    assert [p.is_contiguous() for p in ctx.backbone.parameters()] == formats
