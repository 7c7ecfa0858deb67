"""The sweep over every registered method: one CPU step, finite loss, gradients reach the backbone."""

from __future__ import annotations

import pytest
import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.batch import collate
from ssl_bench.methods import METHODS, get_method

TINY = "resnet18-w0.25"


def make_batch(method, images):
    transform = method.transform()
    return collate([(transform(img), i % 10, i) for i, img in enumerate(images)])


@pytest.mark.parametrize("name", [n for n, cls in METHODS.items() if cls.trains])
def test_one_cpu_step(name: str, info, images) -> None:
    torch.manual_seed(0)
    cls = get_method(name)
    method = cls(Backbone(TINY), cls.Config(), info)
    out = method.training_step(make_batch(method, images))
    assert torch.isfinite(out["loss"]), out
    out["loss"].backward()
    grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), f"{name}: no gradient reached the backbone"


def test_random_init_does_not_train() -> None:
    assert get_method("random").trains is False


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="Valid methods: .*supervised"):
        get_method("pirll")


def test_autoencoder_loss_falls(info) -> None:
    """A few SGD steps on one fixed batch reduce the reconstruction error (the method can learn)."""
    torch.manual_seed(0)
    cls = get_method("autoencoder")
    method = cls(Backbone(TINY), cls.Config(), info)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 32, 32, generator=g)
    from ssl_bench.data.batch import Batch

    batch = Batch({"image": x}, torch.zeros(8, dtype=torch.long), torch.arange(8))
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = method.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_checkpoint_round_trips_strictly(name: str, info, images, tmp_path) -> None:
    """state_dict -> file -> torch.load(weights_only=True) -> strict load: heads, banks and buffers included."""
    cls = get_method(name)
    torch.manual_seed(0)
    trained = cls(Backbone(TINY), cls.Config(), info)
    if cls.trains:  # one step, so banks / Z / BN statistics hold non-initial values
        trained.training_step(make_batch(trained, images))["loss"].backward()
    torch.save(trained.state_dict(), tmp_path / "ckpt.pt")
    torch.manual_seed(1)
    fresh = cls(Backbone(TINY), cls.Config(), info)
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True), strict=True)
    for (k, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
