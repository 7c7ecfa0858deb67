from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError, TrainConfig
from ssl_bench.data.types import DataInfo, Indexed, Splits
from ssl_bench.engine import Trainer
from ssl_bench.methods import get_method
from ssl_bench.monitor import CollapseWarning, Monitor, MonitorConfig, mean_cosine, rankme
from ssl_bench.run_config import load, parse_set
from ssl_bench.runner import eval_hash, plan

TINY = "resnet18-w0.25"
FULL = {"max_fraction": 100.0}  # no budget cap: every configured image on these tiny sets


def rankme_reference(z: np.ndarray) -> float:
    """Garrido et al. 2023, Eq. 1, in float64 numpy: p_k = s_k / sum(s) + 1e-7, exp(-sum p log p)."""
    s = np.linalg.svd(z.astype(np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (256, 128)])
def test_rankme_matches_a_numpy_reference(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    for scale in (torch.ones(shape[1]), torch.logspace(0, -3, shape[1])):  # flat and decaying spectra
        z = torch.randn(shape, generator=g) * scale
        assert rankme(z) == pytest.approx(rankme_reference(z.numpy()), rel=1e-9)


def test_rankme_of_known_spectra() -> None:
    g = torch.Generator().manual_seed(1)
    rank_one = torch.randn(64, 1, generator=g) @ torch.randn(1, 32, generator=g)  # every row one direction
    assert rankme(rank_one) == pytest.approx(1.0, abs=1e-3)
    q, _ = torch.linalg.qr(torch.randn(100, 40, generator=g, dtype=torch.float64))  # (100, 40) orthonormal columns
    assert rankme(q) == pytest.approx(40, rel=1e-4)
    assert rankme(q.T) == pytest.approx(40, rel=1e-4)  # min(N, D) either way round
    two = torch.zeros(10, 8)
    two[:5, 0], two[5:, 1] = 1.0, 1.0  # two equal singular values
    assert rankme(two) == pytest.approx(2.0, rel=1e-4)


def test_mean_cosine() -> None:
    assert mean_cosine(torch.tensor([[1.0, 2.0, 3.0]] * 5)) == pytest.approx(1.0)
    assert mean_cosine(torch.eye(4)) == pytest.approx(0.0)
    z = torch.randn(7, 5, generator=torch.Generator().manual_seed(2))
    u = z.double().numpy()
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    pairs = [u[i] @ u[j] for i in range(7) for j in range(7) if i != j]
    assert mean_cosine(z) == pytest.approx(float(np.mean(pairs)), rel=1e-9)


def test_sizes_keep_the_monitor_within_its_budget() -> None:
    cfg = MonitorConfig()  # 256 + 2,000 + 500 images, at most 5% of the pretraining images
    assert cfg.sizes(1_281_167, 1_281_167, 50_000, labelled=True) == (256, 2000, 500)
    assert cfg.sizes(100_000, 5_000, 8_000, labelled=True) == (256, 2000, 500)  # STL-10: the budget is unlabeled's
    assert cfg.sizes(50_000, 50_000, 10_000, labelled=True) == (256, 1795, 449)  # CIFAR-10: 2,500 in all
    assert cfg.sizes(50_000, 50_000, 10_000, labelled=False) == (256, 0, 0)
    assert cfg.sizes(2_000, 2_000, 500, labelled=True) == (100, 0, 0)  # ci: the RankMe batch only
    assert cfg.sizes(20, 20, 10, labelled=True) == (2, 0, 0)
    assert MonitorConfig(**FULL).sizes(24, 24, 24, labelled=True) == (24, 24, 24)
    assert MonitorConfig(knn_test=0).sizes(10**6, 10**6, 10**6, labelled=True) == (256, 0, 0)


def test_bad_monitor_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="monitor.images must be at least 2"):
        load("ci", parse_set(["monitor.images=1"]))
    with pytest.raises(ConfigError, match="monitor.max_fraction must be positive"):
        load("ci", parse_set(["monitor.max_fraction=0"]))
    with pytest.raises(ConfigError, match="unknown config key 'monitor.imgs'"):
        load("ci", parse_set(["monitor.imgs=3"]))


def test_the_monitor_is_in_no_hash() -> None:
    base = load("ci", None)
    changed = load("ci", parse_set(["monitor.enabled=false", "monitor.images=64", "monitor.rank_warn=0.5"]))
    for a, b in zip(plan(base), plan(changed), strict=True):
        assert a.pretrain_hash == b.pretrain_hash
        assert [eval_hash(a, e, base) for e in base.evals] == [eval_hash(b, e, changed) for e in changed.evals]


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.y = torch.arange(n) % 4

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def tiny_splits(classes: int = 4) -> Splits:
    info = DataInfo("tiny", classes, 24, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return Splits(Images(24), Images(12, seed=1), info)


def fit(
    run_dir: Path, name: str, splits: Splits, monitor: MonitorConfig | None, epochs: int = 2
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Trains ``name`` from seed 0 with or without the monitor: (metrics.jsonl records, final state dict)."""
    run_dir.mkdir()
    torch.manual_seed(0)
    cls = get_method(name)
    options = {"num_negatives": 16} if name in ("pirl", "npidpp") else {}
    method = cls(Backbone(TINY), cls.Config(**options), splits.info)
    cfg = TrainConfig(epochs=epochs, batch_size=8, precision="fp32", channels_last=False)
    watch = Monitor(splits, monitor, torch.device("cpu"), name=name) if monitor else None
    Trainer(method, cfg, torch.device("cpu"), run_dir, seed=0, monitor=watch).fit(
        Indexed(splits.train, method.transform())
    )
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return records, method.state_dict()


@pytest.mark.parametrize(("name", "layer"), [("pirl", "head"), ("rotnet", "pooled")])
def test_training_logs_the_monitor_and_is_unchanged_by_it(tmp_path: Path, name: str, layer: str) -> None:
    splits = tiny_splits()
    watched, state = fit(tmp_path / "on", name, splits, MonitorConfig(**FULL, images=16, knn_train=24, knn_test=12))
    plain, plain_state = fit(tmp_path / "off", name, splits, None)
    keys = {f"monitor/{layer}/{m}" for m in ("rankme", "mean_cos", "knn_top1")} | {"monitor/seconds"}
    for record in watched:
        assert keys <= set(record), record
        assert 1.0 <= record[f"monitor/{layer}/rankme"] <= 16
        assert -1.0 <= record[f"monitor/{layer}/mean_cos"] <= 1.0
        assert record[f"monitor/{layer}/knn_top1"] in {100 * i / 12 for i in range(13)}
    assert not any(k.startswith("monitor/") for r in plain for k in r)
    # training is bit for bit the same with the monitor on: every logged number and every weight and buffer
    strip = [{k: v for k, v in r.items() if not k.startswith("monitor/") and k != "seconds"} for r in watched]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in plain]
    for (k, a), b in zip(state.items(), plain_state.values(), strict=True):
        assert torch.equal(a, b), k


def test_no_knn_without_labels(tmp_path: Path) -> None:
    records, _ = fit(tmp_path / "run", "rotnet", tiny_splits(classes=0), MonitorConfig(**FULL), epochs=1)
    assert {k for k in records[0] if k.startswith("monitor/")} == {
        "monitor/pooled/rankme",
        "monitor/pooled/mean_cos",
        "monitor/seconds",
    }


def test_the_monitor_leaves_mode_and_rng_as_they_were() -> None:
    splits = tiny_splits()
    cls = get_method("npidpp")
    method = cls(Backbone(TINY), cls.Config(num_negatives=16), splits.info).train()
    rng = torch.get_rng_state()
    monitor = Monitor(splits, MonitorConfig(**FULL), torch.device("cpu"))  # its DataLoader draws no training numbers
    assert torch.equal(torch.get_rng_state(), rng)
    out = monitor(method)
    assert method.training and all(m.training for m in method.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    assert set(out) == {f"monitor/head/{m}" for m in ("rankme", "mean_cos", "knn_top1")} | {"monitor/seconds"}
    assert Monitor.describe(out).startswith("rank ") and " cos " in Monitor.describe(out)


def test_a_low_rank_warns_once(tmp_path: Path) -> None:
    never_enough = MonitorConfig(**FULL, rank_warn=2.0)  # threshold 2 x min(N, D): above any possible RankMe
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path / "run", "rotnet", tiny_splits(), never_enough, epochs=3)
    collapse = [w for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(collapse) == 1
    assert "rotnet: the pooled embedding may be collapsing: RankMe" in str(collapse[0].message)
    assert "after epoch 1" in str(collapse[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path / "quiet", "rotnet", tiny_splits(), dataclasses.replace(never_enough, rank_warn=0.0), epochs=1)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]


class Progress:
    """Records the descriptions ``Trainer.fit`` gives its progress task (the console's per-epoch line)."""

    def __init__(self) -> None:
        self.descriptions: list[str] = []

    def add_task(self, description: str, **_: object) -> int:
        return 0

    def update(self, task: int, description: str | None = None, **_: object) -> None:
        if description is not None:
            self.descriptions.append(description)

    def remove_task(self, task: int) -> None:
        pass


def test_the_progress_line_shows_the_numbers(tmp_path: Path) -> None:
    splits, progress = tiny_splits(), Progress()
    cls = get_method("rotnet")
    method = cls(Backbone(TINY), cls.Config(), splits.info)
    cfg = TrainConfig(epochs=2, batch_size=8, precision="fp32", channels_last=False)
    monitor = Monitor(splits, MonitorConfig(**FULL), torch.device("cpu"))
    Trainer(method, cfg, torch.device("cpu"), tmp_path, seed=0, monitor=monitor).fit(
        Indexed(splits.train, method.transform()),
        progress,
        "unit",  # type: ignore[arg-type]
    )
    after_epoch_1 = [d for d in progress.descriptions if d.startswith("unit ep 1/2") and "|" in d]
    assert len(after_epoch_1) == 1
    assert re.fullmatch(r"unit ep 1/2 loss \d+\.\d{3} \| rank \d+\.\d cos -?\d\.\d\d knn \d+\.\d", after_epoch_1[0])
    during_epoch_2 = [d for d in progress.descriptions if d.startswith("unit ep 2/2")]
    assert during_epoch_2 and all("| rank " in d for d in during_epoch_2)  # kept while the next epoch trains


def test_non_finite_embeddings_give_nan_not_an_error() -> None:
    z = torch.randn(8, 4)
    z[3, 1] = float("inf")
    assert math.isnan(rankme(z))
