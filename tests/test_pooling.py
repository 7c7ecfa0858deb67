"""Stage pooling for the linear probes: the adaptive grids of ``max_dims`` and FSSB's fixed AvgPool windows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_bench.config import ConfigError
from ssl_bench.eval.features import grid_size, pool_stage

# A ResNet-50's stage maps at 224 px: (channels, size); "stem" is conv1 after bn + relu, before the max-pool.
RESNET50_224 = {"stem": (64, 112), "layer1": (256, 56), "layer2": (512, 28), "layer3": (1024, 14), "layer4": (2048, 7)}


def windowed_mean(fmap: torch.Tensor, kernel: int, stride: int, pad: int) -> torch.Tensor:
    """Slow reference: the mean of each window's cells inside the map (padding not counted), as Caffe2's AveragePool."""
    _, _, h, w = fmap.shape
    out_h, out_w = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    out = torch.empty(*fmap.shape[:2], out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        for j in range(out_w):
            top, left = i * stride - pad, j * stride - pad
            rows = slice(max(top, 0), min(top + kernel, h))
            cols = slice(max(left, 0), min(left + kernel, w))
            out[:, :, i, j] = fmap[:, :, rows, cols].double().mean((2, 3))
    return out.flatten(1)


@pytest.mark.parametrize("name", list(RESNET50_224))
def test_fixed_grids_match_the_adaptive_grids_of_a_resnet50_at_224(name: str) -> None:
    channels, size = RESNET50_224[name]
    fmap = torch.randn(1, channels, size, size)
    k = grid_size(channels, size, 9216)
    assert k == {"stem": 12, "layer1": 6, "layer2": 4, "layer3": 3, "layer4": 2}[name]
    fixed, adaptive = pool_stage(name, fmap, 9216, "fixed"), pool_stage(name, fmap, 9216, "adaptive")
    assert fixed.shape == adaptive.shape == (1, channels * k * k)


def test_adaptive_is_the_adaptive_average_pool_of_max_dims() -> None:
    fmap = torch.randn(2, 16, 9, 9)
    expected = F.adaptive_avg_pool2d(fmap, grid_size(16, 9, 300)).flatten(1)  # 4x4
    assert torch.equal(pool_stage("layer1", fmap, 300, "adaptive"), expected)
    assert pool_stage("anything", fmap, 300, "adaptive").shape == (2, 16 * 4 * 4)  # any stage, any size


def test_conv1_window_excludes_the_padding_from_the_mean() -> None:
    fmap = torch.randn(2, 3, 112, 112)
    fixed = pool_stage("stem", fmap, 9216, "fixed")
    torch.testing.assert_close(fixed.double(), windowed_mean(fmap, kernel=10, stride=10, pad=4), rtol=0, atol=1e-5)
    # the corner window holds 6x6 real cells: with the padding counted it would be 36/100 of this
    torch.testing.assert_close(fixed[0, 0], fmap[0, 0, :6, :6].mean())


@pytest.mark.parametrize(("name", "kernel", "stride"), [("layer1", 16, 8), ("layer2", 13, 5), ("layer4", 6, 1)])
def test_unpadded_windows_are_plain_means(name: str, kernel: int, stride: int) -> None:
    _, size = RESNET50_224[name]
    fmap = torch.randn(1, 2, size, size)
    expected = windowed_mean(fmap, kernel, stride, pad=0)
    torch.testing.assert_close(pool_stage(name, fmap, 9216, "fixed").double(), expected, rtol=0, atol=1e-5)


def test_fixed_pooling_at_another_size_names_the_stage_and_the_fix() -> None:
    small_stem_32px = torch.randn(1, 64, 32, 32)  # resnet18-smallstem's stem at 32 px
    with pytest.raises(ConfigError) as err:
        pool_stage("stem", small_stem_32px, 9216, "fixed")
    message = str(err.value)
    for part in ("'stem'", "32x32", "112x112", "linear.pool=adaptive, or 224 px inputs"):
        assert part in message, (part, message)


def test_fixed_pooling_of_a_stage_without_a_window_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"'stages\.0' has no FSSB window.*linear\.pool=adaptive"):
        pool_stage("stages.0", torch.randn(1, 8, 56, 56), 9216, "fixed")
