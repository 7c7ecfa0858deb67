from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from ssl_bench.backbone import Backbone
from ssl_bench.data.batch import Batch, collate
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.base import Method
from ssl_bench.methods.npid import NPIDConfig, NPIDpp
from ssl_bench.methods.pirl import PIRL, PIRLConfig
from ssl_bench.modules.nce import InfoNCELoss, NCELoss

TINY = "resnet18-w0.25"
N = 40  # bank size
K = 16  # negatives (< N - 1: no warning)
INDEX = [5, 0, 39, 12]


@pytest.fixture
def data() -> DataInfo:
    return DataInfo("tiny", num_classes=10, num_train=N, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def build(cls: type[Method], data: DataInfo, seed: int = 0, **overrides: Any) -> Method:
    torch.manual_seed(seed)
    return cls(Backbone(TINY), cls.Config(num_negatives=K, **overrides), data)


def make_batch(method: Method, seed: int = 0) -> Batch:
    """Real views from the method's own transform, on random uint8 images."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in INDEX]
    view = method.transform()
    torch.manual_seed(seed)
    return collate([(view(img), 0, i) for img, i in zip(images, INDEX)])


def step(method: Method, batch: Batch, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return method.training_step(batch)


METHODS = [
    (NPIDpp, {}),
    (NPIDpp, {"loss": "infonce"}),
    (NPIDpp, {"shared_negatives": False}),
    (PIRL, {}),
    (PIRL, {"transform": "rotation"}),
    (PIRL, {"loss": "infonce", "shared_negatives": False}),
]
IDS = ["npidpp", "npidpp-infonce", "npidpp-per-sample", "pirl-jigsaw", "pirl-rotation", "pirl-infonce-per-sample"]


def test_paper_defaults() -> None:
    for cfg in (NPIDConfig(), PIRLConfig()):
        assert cfg.lr * 1024 / 256 == pytest.approx(0.12) and cfg.weight_decay == 1e-4 and cfg.momentum == 0.9
        assert (cfg.num_negatives, cfg.temperature, cfg.bank_momentum, cfg.embedding_dim) == (32_000, 0.07, 0.5, 128)
        assert cfg.loss == "nce" and cfg.shared_negatives
    assert PIRLConfig().lam == 0.5 and PIRLConfig().transform == "jigsaw"
    assert (NPIDpp.name, NPIDpp.display_name, PIRL.name, PIRL.display_name) == ("npidpp", "NPID++", "pirl", "PIRL")


def test_views(data: DataInfo) -> None:
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    npid = build(NPIDpp, data).transform()(img)
    assert set(npid) == {"image"} and npid["image"].shape == (3, 32, 32)
    jig = build(PIRL, data).transform()(img)
    assert set(jig) == {"image", "tiles"} and jig["image"].shape == (3, 32, 32)
    assert jig["tiles"].shape[:2] == (9, 3) and jig["tiles"].shape[2] == jig["tiles"].shape[3] < 32 / 3 + 1
    rot = build(PIRL, data, transform="rotation").transform()(img)
    assert set(rot) == {"image", "rotated"} and rot["rotated"].shape == (3, 32, 32)


def test_bad_config_is_an_error(data: DataInfo) -> None:
    with pytest.raises(ValueError, match="unknown contrastive loss 'softmax'; valid losses: nce, infonce"):
        build(NPIDpp, data, loss="softmax")
    with pytest.raises(ValueError, match="pirl.transform='colour' is not valid; choose one of jigsaw, rotation"):
        build(PIRL, data, transform="colour")
    with pytest.raises(
        ValueError, match=r"pirl.lam must be in \[0, 1\] \(the weight of the transformed-view term\), got 1.5"
    ):
        build(PIRL, data, lam=1.5)


@pytest.mark.parametrize("cls", [NPIDpp, PIRL])
def test_default_negatives_are_capped_with_a_warning(cls: type[Method], data: DataInfo) -> None:
    with pytest.warns(UserWarning, match=f"32000 negatives requested .* only {N} slots .* using {N - 1}"):
        method = cls(Backbone(TINY), cls.Config(), data)
    assert method.num_negatives == N - 1


@pytest.mark.parametrize(("cls", "overrides"), METHODS, ids=IDS)
def test_one_cpu_step(cls: type[Method], overrides: dict[str, Any], data: DataInfo) -> None:
    method = build(cls, data, **overrides).train()
    batch = make_batch(method)
    bank_before = method.bank.memory.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # K < N - 1: no cap warning, nothing else either
        out = step(method, batch, seed=1)
    loss = out["loss"]
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert -1 <= float(out["pos_sim"]) <= 1
    if isinstance(method.criterion, NCELoss):
        assert method.criterion.estimated
    else:
        assert isinstance(method.criterion, InfoNCELoss)
    loss.backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    if cls is PIRL:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.transform_head.parameters())
    changed = (method.bank.memory != bank_before).any(1).nonzero().flatten().tolist()
    assert sorted(changed) == sorted(INDEX)
    torch.testing.assert_close(method.bank.memory.norm(dim=1), torch.ones(N))


def test_bank_follows_f_of_the_image_view(data: DataInfo) -> None:
    """The update uses f(v_I) (not g) with momentum 0.5, after the loss."""
    method = build(PIRL, data).train()
    batch = make_batch(method)
    old = method.bank.memory[INDEX].clone()
    step(method, batch, seed=2)
    with torch.no_grad():  # train-mode BN uses batch statistics: the same f as inside the step
        f = method.head(method.backbone(batch.views["image"]))
    expected = torch.nn.functional.normalize(0.5 * old + 0.5 * f, dim=1)
    torch.testing.assert_close(method.bank.memory[INDEX], expected, rtol=1e-4, atol=1e-5)


LAMBDA_0 = [{}, {"shared_negatives": False}, {"loss": "infonce"}, {"transform": "rotation"}]


@pytest.mark.parametrize("overrides", LAMBDA_0, ids=["nce", "per-sample", "infonce", "rotation"])
def test_pirl_with_lambda_0_is_npidpp(overrides: dict[str, Any], data: DataInfo) -> None:
    shared = {k: v for k, v in overrides.items() if k != "transform"}  # NPID++ has no transform option
    npid = build(NPIDpp, data, seed=0, **shared).train()
    pirl = build(PIRL, data, seed=1, lam=0.0, **overrides).train()
    missing, unexpected = pirl.load_state_dict(npid.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("transform_head.") for k in missing)
    batch = make_batch(pirl, seed=3)  # has "image" and "tiles" or "rotated"; NPID++ reads only "image"
    for seed in (4, 5):  # the first step estimates Z, the second reuses it
        out_npid, out_pirl = step(npid, batch, seed), step(pirl, batch, seed)
        assert torch.equal(out_pirl["loss"], out_npid["loss"])
        assert float(out_pirl["loss_transformed"]) > 0  # the jigsaw term was computed, only weighted by 0
        assert torch.equal(pirl.bank.memory, npid.bank.memory)
        if isinstance(npid.criterion, NCELoss):
            assert torch.equal(pirl.criterion.z, npid.criterion.z)
    default = build(PIRL, data, seed=1, **overrides).train()
    default.load_state_dict(pirl.state_dict())
    assert not torch.equal(step(default, batch, 6)["loss"], step(pirl, batch, 6)["loss"])  # λ matters


@pytest.mark.parametrize(("cls", "overrides"), METHODS, ids=IDS)
def test_checkpoint_round_trip(cls: type[Method], overrides: dict[str, Any], data: DataInfo, tmp_path: Path) -> None:
    method = build(cls, data, seed=0, **overrides).train()
    batch = make_batch(method)
    step(method, batch, seed=1)  # Z estimated, bank moved, BN statistics updated
    torch.save(method.state_dict(), tmp_path / "ckpt.pt")
    fresh = build(cls, data, seed=7, **overrides).train()  # different initial weights and bank
    assert not torch.equal(fresh.bank.memory, method.bank.memory)
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True), strict=True)
    state, loaded = method.state_dict(), fresh.state_dict()
    assert state.keys() == loaded.keys() and "bank.memory" in state
    assert ("criterion.z" in state) == (method.cfg.loss == "nce")
    for key in state:
        assert torch.equal(state[key], loaded[key]), key
    assert torch.equal(step(fresh, batch, seed=2)["loss"], step(method, batch, seed=2)["loss"])
    assert torch.equal(fresh.bank.memory, method.bank.memory)


def test_step_under_bf16_autocast(data: DataInfo) -> None:
    method = build(PIRL, data).train()
    batch = make_batch(method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = step(method, batch, seed=1)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert method.bank.memory.dtype == method.criterion.z.dtype == torch.float32
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.backbone.parameters())
