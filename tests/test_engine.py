from __future__ import annotations

import json
import warnings

import pytest
import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import TrainConfig
from ssl_bench.data.types import Indexed
from ssl_bench.engine import (
    FINAL_LR_RATIO,
    EpochLoader,
    NonFiniteLoss,
    Trainer,
    lr_factor,
    make_loader,
    param_groups,
)
from ssl_bench.methods import get_method

TINY = "resnet18-w0.25"


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.y = torch.arange(n) % 10

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def trainer(tmp_path, info, epochs: int, name: str = "supervised", **train) -> Trainer:
    torch.manual_seed(0)
    cls = get_method(name)
    method = cls(Backbone(TINY), cls.Config(), info)
    cfg = TrainConfig(epochs=epochs, batch_size=8, precision="fp32", channels_last=False, **train)
    return Trainer(method, cfg, torch.device("cpu"), tmp_path, seed=0)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, info, monkeypatch) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = trainer(tmp_path / "a", info, epochs=2)
    straight.fit(Indexed(Images(), straight.method.transform()))

    crashing = trainer(tmp_path / "b", info, epochs=2)
    real_step = Trainer.step

    def crash_in_epoch_two(self, batch, optimizer, epoch, step):
        if epoch == 1:
            raise KeyboardInterrupt  # killed during epoch 2, after epoch 1's checkpoint
        return real_step(self, batch, optimizer, epoch, step)

    monkeypatch.setattr(Trainer, "step", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(Indexed(Images(), crashing.method.transform()))
    monkeypatch.setattr(Trainer, "step", real_step)

    resumed = trainer(tmp_path / "b", info, epochs=2)  # a fresh process: same run dir, picks up checkpoint.pt
    resumed.fit(Indexed(Images(), resumed.method.transform()))
    for (k, a), b in zip(straight.method.state_dict().items(), resumed.method.state_dict().values()):
        assert torch.equal(a, b), k
    lines = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2] and all("loss" in l for l in lines)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, info) -> None:
    t = trainer(tmp_path, info, epochs=1, lr=1e30)
    with pytest.raises(
        NonFiniteLoss, match=r"supervised: the loss became (nan|inf).*epoch 1, step \d+.*Lower the learning rate"
    ):
        t.fit(Indexed(Images(), t.method.transform()))


def test_weight_decay_skips_biases_and_norms() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(net, 1e-4)
    assert {p.ndim for p in decay["params"]} == {2, 4} and {p.ndim for p in no_decay["params"]} == {1}
    assert no_decay["weight_decay"] == 0.0


def test_schedule_warms_up_then_decays_to_the_final_ratio() -> None:
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(FINAL_LR_RATIO)
    values = [lr_factor(s, 100, 10) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_persistent_workers_make_the_same_batches_as_fresh_loaders_every_epoch(info) -> None:
    """The epoch's seed travels with each index, so workers kept alive across epochs (and a resume mid-epoch) make
    exactly the views a fresh loader of that epoch makes."""
    cls = get_method("pirl")  # random crops, flips, jitter and per-tile augmentation: every draw must match
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # K capped at N - 1 on 24 images
        method = cls(Backbone(TINY), cls.Config(), info)
    dataset = Indexed(Images(), method.transform())
    kept = EpochLoader(dataset, 8, workers=2, seed=3, device=torch.device("cpu"))
    assert kept.loader.persistent_workers
    for epoch, skip in [(0, 0), (1, 0), (2, 1)]:
        fresh = list(make_loader(dataset, 8, 0, seed=3, epoch=epoch, device=torch.device("cpu"), skip=skip))
        reused = list(kept.epoch(epoch, skip))
        assert len(reused) == len(fresh) == 3 - skip
        for a, b in zip(reused, fresh, strict=True):
            assert torch.equal(a.index, b.index)
            for name in a.views:
                assert torch.equal(a.views[name], b.views[name]), (epoch, name)
    other = list(make_loader(dataset, 8, 0, seed=3, epoch=1, device=torch.device("cpu")))
    first = list(make_loader(dataset, 8, 0, seed=3, epoch=0, device=torch.device("cpu")))
    assert not torch.equal(other[0].index, first[0].index)  # epochs do differ
