"""Colour augmentation on the device (ssl_bench.data.device_augment): the batched kernels against torchvision's image by
image, the parameters' distribution, reproducibility across workers, the CPU default unchanged, exact resume."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext

import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ssl_bench.backbone import Backbone
from ssl_bench.config import CheckpointConfig, ConfigError, TrainConfig
from ssl_bench.data import device_augment as da
from ssl_bench.data.batch import collate
from ssl_bench.data.jigsaw import JigsawView
from ssl_bench.data.transforms import RandomPhotometric, light_crop, npid_view, npidpp_view, pirl_view
from ssl_bench.data.types import DataInfo, Indexed
from ssl_bench.engine import EpochLoader, Trainer, training_views
from ssl_bench.methods import get_method

TINY = "resnet18-w0.25"
CPU = torch.device("cpu")
INFO = DataInfo("tiny", num_classes=10, num_train=24, image_size=32, mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.3))
# method, options: every view maker that can leave its colour to the device
SPLIT = [
    ("npidpp", {}),
    ("npidpp", {"augmentation": "npid", "crop_scale": 0.2}),
    ("pirl", {}),
    ("pirl", {"transform": "rotation"}),
    ("supervised", {}),
    ("autoencoder", {}),
    ("rotnet", {}),
]
ALL = [*SPLIT, ("jigsaw", {}), ("rotnet", {"all_rotations": False})]


class Images(torch.utils.data.Dataset):
    """n random uint8 (3, 32, 32) images with labels i % 10 (as tests/test_engine.py)."""

    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], i % 10


def build(name: str, options: dict):
    cls = get_method(name)
    capped = pytest.warns(UserWarning, match="negatives requested") if name in ("npidpp", "pirl") else nullcontext()
    with capped:  # NPID++ and PIRL cap K at N - 1
        return cls(Backbone(TINY), cls.Config(**options), INFO)


# ---- 1. the batched colour equals torchvision's kernels image by image ---------------------------------------------


def random_parameters(n: int, g: torch.Generator) -> torch.Tensor:
    """n parameter vectors covering every branch: any op order, some ops absent (NaN), both grayscales, photometric."""
    p = da.blank((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), n)
    for i in range(n):
        p[i, da.ORDER] = torch.randperm(4, generator=g).float() if i % 7 else -1.0  # every 7th: no jitter
    p[:, da.BRIGHTNESS : da.SATURATION + 1] = 0.6 + 0.8 * torch.rand(n, 3, generator=g)
    p[:, da.HUE] = 0.8 * torch.rand(n, generator=g) - 0.4
    absent = torch.rand(n, 4, generator=g) < 0.15
    p[:, da.BRIGHTNESS : da.HUE + 1][absent] = float("nan")
    p[:, da.GRAY_BEFORE] = (torch.rand(n, generator=g) < 0.2).float()
    p[:, da.GRAY_AFTER] = (torch.rand(n, generator=g) < 0.2).float()
    p[:, da.PHOTOMETRIC] = (torch.rand(n, generator=g) < 0.66).float()
    p[:, da.BITS] = torch.randint(4, 8, (n,), generator=g).float()
    p[:, da.SHARPNESS] = 0.1 + 1.8 * torch.rand(n, generator=g)
    p[:, da.THRESHOLD] = torch.randint(0, 256, (n,), generator=g).float()
    return p


def reference(image: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One image through torchvision's public functional kernels, in the order the parameters say: uint8 out."""
    x = image
    if p[da.GRAY_BEFORE]:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    adjust = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    for op in p[da.ORDER].long().tolist():
        factor = float(p[da.BRIGHTNESS + op])
        if op >= 0 and not math.isnan(factor):
            x = adjust[op](x, factor)
    if p[da.PHOTOMETRIC]:
        x = F.posterize(x, int(p[da.BITS]))
        x = F.adjust_sharpness(x, float(p[da.SHARPNESS]))
        x = F.solarize(x, float(p[da.THRESHOLD]))
        x = F.autocontrast(x)
    if p[da.GRAY_AFTER]:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    return x


@pytest.mark.parametrize("size", [16, 33])
def test_batched_colour_equals_torchvision_image_by_image(size: int) -> None:
    g = torch.Generator().manual_seed(size)
    n = 48
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    images[:4] = images[:4, :1]  # a few grey images (hue and saturation on equal channels)
    params = random_parameters(n, g)
    batched = da.colour(images, params).mul(255).round().to(torch.uint8)  # mean 0, std 1: back on the uint8 levels
    expected = torch.stack([reference(images[i], params[i]) for i in range(n)])
    diff = (batched.int() - expected.int()).abs()
    # Same arithmetic, but a batched reduction or a fused multiply-add can round a value across an integer boundary:
    # one grey level then, and the photometric chain after it (posterize, solarize) can amplify that pixel.
    assert float((diff > 0).float().mean()) < 1e-3, float((diff > 0).float().mean())
    without_photometric = params[:, da.PHOTOMETRIC] == 0
    assert int(diff[without_photometric].max()) <= 1


def test_normalisation_is_torchvisions() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=g)
    mean, std = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)
    out = da.colour(images, da.blank(mean, std, 5))
    expected = F.normalize(F.to_dtype(images, torch.float32, scale=True), list(mean), list(std))
    assert torch.equal(out, expected)


# ---- 2. the parameters have torchvision's distribution; the geometry is the per-sample path's -----------------------


def deferred_draws(view: v2.Compose, n: int, size: int = 8) -> torch.Tensor:
    """The parameters of n samples, each seeded as the loader seeds it."""
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    maker = da.Deferred(view)
    dataset = Indexed([(image, 0)] * n, lambda im: {"p": maker(im)[1]})
    return torch.stack([dataset[(7, i)][0]["p"] for i in range(n)])


def within_binomial(count: float, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_pirl_parameters_have_torchvisions_distribution() -> None:
    n = 2000
    p = deferred_draws(pirl_view(8, (0.5,) * 3, (0.25,) * 3), n)
    for column in (da.BRIGHTNESS, da.CONTRAST, da.SATURATION):
        assert stats.kstest(p[:, column].numpy(), "uniform", args=(0.6, 0.8)).pvalue > 1e-3
    assert stats.kstest(p[:, da.HUE].numpy(), "uniform", args=(-0.2, 0.4)).pvalue > 1e-3
    assert within_binomial(float(p[:, da.GRAY_AFTER].sum()), n, 0.2) and p[:, da.GRAY_BEFORE].sum() == 0
    assert within_binomial(float(p[:, da.PHOTOMETRIC].sum()), n, 0.66)
    assert set(p[:, da.BITS].long().tolist()) == {4, 5, 6, 7}
    assert stats.kstest(p[:, da.SHARPNESS].numpy(), "uniform", args=(0.1, 1.8)).pvalue > 1e-3
    orders = {tuple(row) for row in p[:, da.ORDER].long().tolist()}
    assert len(orders) == 24 and all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert torch.equal(p[:, da.MEAN], torch.full((n, 3), 0.5)) and torch.equal(p[:, da.STD], torch.full((n, 3), 0.25))


def test_npid_parameters_grayscale_first_and_npidpp_without_grayscale() -> None:
    n = 2000
    npid = deferred_draws(npid_view(8, (0.5,) * 3, (0.25,) * 3), n)
    assert within_binomial(float(npid[:, da.GRAY_BEFORE].sum()), n, 0.2) and npid[:, da.GRAY_AFTER].sum() == 0
    npidpp = deferred_draws(npidpp_view(8, (0.5,) * 3, (0.25,) * 3), 500)
    assert npidpp[:, [da.GRAY_BEFORE, da.GRAY_AFTER, da.PHOTOMETRIC]].sum() == 0
    assert stats.kstest(npidpp[:, da.HUE].numpy(), "uniform", args=(-0.4, 0.8)).pvalue > 1e-3
    assert npid[:, da.PHOTOMETRIC].sum() == 0


@pytest.mark.parametrize("maker", [pirl_view, npidpp_view, npid_view])
def test_the_same_seed_draws_the_same_crop_and_jitter_on_both_paths(maker, monkeypatch) -> None:
    """The worker half makes torchvision's own draws in the per-sample view's order: per seed the same crop boxes (so
    the same distribution of area fractions) and the same jitter factors and order."""
    boxes: list[tuple[int, int]] = []
    jitters: list[tuple] = []
    crop_params, jitter_params = v2.RandomResizedCrop.make_params, v2.ColorJitter.make_params

    def crop_spy(self, inputs):
        out = crop_params(self, inputs)
        boxes.append((out["height"], out["width"]))
        return out

    def jitter_spy(self, inputs):
        out = jitter_params(self, inputs)
        jitters.append((tuple(out["fn_idx"].tolist()), out["brightness_factor"], out["hue_factor"]))
        return out

    monkeypatch.setattr(v2.RandomResizedCrop, "make_params", crop_spy)
    monkeypatch.setattr(v2.ColorJitter, "make_params", jitter_spy)
    view = maker(16, (0.5,) * 3, (0.25,) * 3)
    image = torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    runs = {}
    for name, fn in (("per-sample", view), ("deferred", da.Deferred(view))):
        boxes.clear(), jitters.clear()
        dataset = Indexed([(image, 0)] * 300, lambda im: {"x": fn(im)})
        for i in range(300):
            dataset[(3, i)]
        runs[name] = (list(boxes), list(jitters))
    assert runs["per-sample"] == runs["deferred"] and len(runs["deferred"][0]) == 300
    area = torch.tensor([h * w / (24 * 20) for h, w in runs["deferred"][0]])
    assert 0.0 < float(area.min()) and float(area.max()) <= 1.0 and len(set(runs["deferred"][0])) > 50


def test_tiles_draw_what_jitter_tiles_draws() -> None:
    """PIRL's tiles: the same crop, tile offsets, per-tile draws and order as the per-sample tiles; the pixels differ
    by rounding (torchvision's uint8 arithmetic here, jitter_tiles' float arithmetic there), which the photometric
    chain can amplify, so the test compares what is drawn: the tile order and the grey tiles."""
    kwargs = dict(crop=27, mean=[0.5] * 3, std=[0.25] * 3, perms=None, scale=(0.6, 1.0), grayscale_p=0.0)
    per_sample = JigsawView(**kwargs, tile_color_jitter=True, flip=False)
    split = JigsawView(**kwargs, tile_color_jitter=True, flip=False, device_colour=True)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        a = per_sample(image)
        torch.manual_seed(5)
        b = split(image)
    assert torch.equal(a["perm"], b["perm"]) and b["tiles"].dtype == torch.uint8
    assert b["tiles.colour"].shape == (9, da.SIZE)
    finished = da.finish(b["tiles"], b["tiles.colour"])
    grey = b["tiles.colour"][:, da.GRAY_AFTER] > 0
    assert torch.allclose(finished.std(1)[grey], torch.zeros(1), atol=1e-6)  # grey tiles: equal channels (std 0.25)
    assert finished.shape == a["tiles"].shape and (finished - a["tiles"]).abs().median() < 4 / 255 / 0.25


def test_a_view_whose_colour_order_the_device_cannot_follow_is_refused() -> None:
    bad = v2.Compose([v2.ToImage(), RandomPhotometric(), v2.ColorJitter(0.4), v2.ToDtype(torch.float32)])
    with pytest.raises(ValueError, match="expected a view"):
        da.Deferred(bad)
    with pytest.raises(ValueError, match="ColorJitter comes where the device cannot apply it"):
        da.Deferred(v2.Compose([*bad.transforms, v2.Normalize([0.5] * 3, [0.2] * 3)]))
    with pytest.raises(ValueError, match="device_colour needs tile_color_jitter"):
        JigsawView(27, [0.5] * 3, [0.25] * 3, None, device_colour=True)


# ---- 3. reproducible: the same (seed, epoch, index), the same views, with any number of workers ---------------------


def loader_batches(workers: int) -> list:
    method = build("pirl", {})
    dataset = Indexed(Images(), method.transform(device_colour=True))
    loader = EpochLoader(dataset, batch_size=8, workers=workers, seed=3, device=CPU)
    out = [list(loader.epoch(e)) for e in (0, 1)]
    del loader
    return out


def test_the_batched_views_repeat_and_do_not_depend_on_the_workers() -> None:
    first, again, workers = loader_batches(0), loader_batches(0), loader_batches(2)
    for a_epoch, b_epoch, c_epoch in zip(first, again, workers):
        for a, b, c in zip(a_epoch, b_epoch, c_epoch):
            assert set(a.views) == {"image", "image.colour", "tiles", "tiles.colour"}
            assert a.views["image"].dtype == torch.uint8 and a.views["tiles"].dtype == torch.uint8
            for k in a.views:
                assert torch.equal(a.views[k], b.views[k]) and torch.equal(a.views[k], c.views[k]), k
            x, y = da.to_device(a, CPU), da.to_device(c, CPU)
            assert set(x.views) == {"image", "tiles"} and x.views["image"].dtype == torch.float32
            assert all(torch.equal(x.views[k], y.views[k]) for k in x.views)
    assert not torch.equal(first[0][0].views["image"], first[1][0].views["image"])  # epochs differ


# ---- 4. the CPU default is the per-sample path, unchanged; auto means on CUDA ----------------------------------------


def test_auto_is_on_for_cuda_only_and_the_setting_is_checked() -> None:
    assert da.enabled("auto", torch.device("cuda")) and da.enabled("auto", torch.device("cuda", 1))
    assert not da.enabled("auto", CPU) and da.enabled("on", CPU) and not da.enabled("off", torch.device("cuda"))
    TrainConfig(device_augment="on").check()
    with pytest.raises(ConfigError, match=r"train.device_augment='gpu' is not valid; choose one of auto, on, off"):
        TrainConfig(device_augment="gpu").check()


def plain_views(name: str, options: dict):
    """Each method's views as the per-sample view functions make them (what the CPU default must keep)."""
    mean, std = INFO.mean, INFO.std
    if name in ("supervised", "autoencoder"):
        crop = light_crop(32, mean, std)
        return lambda image: {"image": crop(image)}
    if name == "npidpp":
        view = npid_view if options.get("augmentation") == "npid" else npidpp_view
        crop = view(32, mean, std, scale=(options.get("crop_scale", 0.08), 1.0))
        return lambda image: {"image": crop(image)}
    return None


@pytest.mark.parametrize(("name", "options"), ALL)
def test_the_cpu_default_makes_todays_views_bit_for_bit(name: str, options: dict) -> None:
    method = build(name, options)
    views = training_views(method, TrainConfig(), CPU)  # device_augment "auto" on a CPU: off
    plain = method.transform()
    expected = plain_views(name, options)
    images = Images(4)
    for i in range(4):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            got = views(images[i][0])
            torch.manual_seed(i)
            want = plain(images[i][0])
            if expected is not None:
                torch.manual_seed(i)
                own = expected(images[i][0])
                assert all(torch.equal(own[k], want[k]) for k in own)
        assert list(got) == list(want) and not any(k.endswith(da.SUFFIX) for k in got)
        assert all(torch.equal(got[k], want[k]) for k in got)
    batch = collate([(plain(images[i][0]), 0, i) for i in range(2)])
    moved = da.to_device(batch, CPU)
    assert all(moved.views[k] is batch.views[k] for k in batch.views)  # nothing to finish: batch.to itself


@pytest.mark.parametrize(("name", "options"), SPLIT)
def test_the_batched_views_are_the_per_sample_views_up_to_rounding(name: str, options: dict) -> None:
    """Same seeds, same draws: the views agree pixel for pixel up to float rounding, except NPID++'s (its colour comes
    before the crop per sample, after it here), PIRL's tiles (jitter_tiles rounds once, the device after every op)
    and where the photometric chain amplifies a rounding."""
    method = build(name, options)
    on = training_views(method, TrainConfig(device_augment="on"), CPU)
    plain = method.transform()
    images = Images(8)
    a = Indexed(images, plain)
    b = Indexed(images, on)
    per_sample = collate([a[(1, i)] for i in range(8)])
    split = collate([b[(1, i)] for i in range(8)])
    assert any(k.endswith(da.SUFFIX) for k in split.views) and set(per_sample.views) < set(split.views)
    finished = da.to_device(split, CPU)
    assert list(finished.views) == list(per_sample.views)
    for k, want in per_sample.views.items():
        got = finished.views[k]
        assert got.shape == want.shape and got.dtype == want.dtype, k
        if not want.is_floating_point():
            assert torch.equal(got, want), k
            continue
        levels = ((got - want) * torch.tensor(INFO.std).view(3, 1, 1) * 255).abs()
        if name == "npidpp" and not options:
            assert float(levels.median()) < 16, k  # the same crop, its colour applied after the resampling
        elif k == "tiles":
            assert float(levels.median()) <= 3, k  # jitter_tiles rounds once, torchvision's kernels after every op
        else:
            assert float((levels > 0.01).float().mean()) < 0.01 and float(levels.max()) <= 4.01, k


# ---- 5. training with the batched path, and exact resume ---------------------------------------------------------


def trainer(tmp_path, epochs: int, every_steps: int = 0) -> Trainer:
    torch.manual_seed(0)
    method = build("pirl", {})
    cfg = TrainConfig(epochs=epochs, batch_size=8, precision="fp32", channels_last=False, device_augment="on")
    return Trainer(method, cfg, CPU, tmp_path, seed=0, checkpoint=CheckpointConfig(every_steps=every_steps))


def test_training_on_the_batched_path_resumes_exactly(tmp_path, monkeypatch) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = trainer(tmp_path / "a", epochs=2)
    dataset = Indexed(Images(), training_views(straight.method, straight.cfg, CPU))
    assert "image.colour" in dataset[(0, 0)][0] and "tiles.colour" in dataset[(0, 0)][0]
    straight.fit(dataset)

    crashing = trainer(tmp_path / "b", epochs=2, every_steps=1)
    real_step = Trainer.step

    def crash_in_epoch_two(self, batch, optimizer, epoch, step):
        if epoch == 1 and step == 1:
            raise KeyboardInterrupt  # after a mid-epoch checkpoint (every step) in epoch 2
        return real_step(self, batch, optimizer, epoch, step)

    monkeypatch.setattr(Trainer, "step", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(Indexed(Images(), training_views(crashing.method, crashing.cfg, CPU)))
    monkeypatch.setattr(Trainer, "step", real_step)

    resumed = trainer(tmp_path / "b", epochs=2)
    resumed.fit(Indexed(Images(), training_views(resumed.method, resumed.cfg, CPU)))
    for (k, a), b in zip(straight.method.state_dict().items(), resumed.method.state_dict().values()):
        assert torch.equal(a, b), k
    lines = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and all(math.isfinite(line["loss"]) for line in lines)


@pytest.mark.parametrize(("name", "options"), SPLIT)
def test_every_split_method_takes_a_step_on_the_batched_path(tmp_path, name: str, options: dict) -> None:
    torch.manual_seed(0)
    method = build(name, options)
    cfg = TrainConfig(batch_size=8, precision="fp32", channels_last=True, device_augment="on")
    t = Trainer(method, cfg, CPU, tmp_path, seed=0)
    t.model = method.to(memory_format=torch.channels_last)
    dataset = Indexed(Images(8), training_views(method, cfg, CPU))
    optimizer, _ = t.optimizer(1)
    out = t.step(collate([dataset[(0, i)] for i in range(8)]), optimizer, 0, 0)
    assert math.isfinite(out["loss"])
    grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("maker", [npidpp_view, pirl_view])
def test_the_batched_views_have_the_per_sample_views_distribution(maker) -> None:
    """On smooth images (where resampling before or after the colour matters little), the views' per-image mean and
    std have the same distribution on both paths (two-sample KS), NPID++'s jitter-before-crop included."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 256, (32, 3, 4, 4), generator=g).float()
    smooth = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    images = [(smooth[i % 32].round().clamp(0, 255).to(torch.uint8), 0) for i in range(300)]
    view = maker(32, (0.5,) * 3, (0.25,) * 3)
    per_sample = Indexed(images, lambda im: {"x": view(im)})
    split = Indexed(images, lambda im: da.named("x", da.Deferred(view)(im)))
    a = torch.stack([per_sample[(1, i)][0]["x"] for i in range(300)])
    b = da.to_device(collate([split[(1, i)] for i in range(300)]), CPU).views["x"]
    for statistic in (lambda x: x.mean((1, 2, 3)), lambda x: x.std((1, 2, 3))):
        assert stats.ks_2samp(statistic(a).numpy(), statistic(b).numpy()).pvalue > 0.01
    assert float(((a - b).abs() * 0.25 * 255).median()) <= 2  # the same draws: most pixels within a grey level or two
