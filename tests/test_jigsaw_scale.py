"""benchmarks/jigsaw_scale.py (the README's Jigsaw tile-scale probe): its features against a slow per-tile reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssl_bench.backbone import Backbone
from ssl_bench.data.transforms import eval_view

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "jigsaw_scale.py"
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def load_script():
    spec = importlib.util.spec_from_file_location("jigsaw_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean((-2, -1), keepdim=True)) / (x.var((-2, -1), unbiased=False, keepdim=True) + 1e-5).sqrt()


@pytest.mark.parametrize("per_tile_norm", [False, True])
def test_tile_and_small_features_match_a_per_tile_reference(images, per_tile_norm: bool) -> None:
    script = load_script()
    torch.manual_seed(0)
    backbone = Backbone("resnet18-smallstem-w0.25").eval()
    dataset = [(img, i % 3) for i, img in enumerate(images[:5])]
    feats, labels = script.tile_scale_features(backbone, dataset, 32, MEAN, STD, per_tile_norm)
    norm = standardise if per_tile_norm else (lambda x: x)
    assert labels.tolist() == [0, 1, 2, 0, 1]

    image = eval_view(32, MEAN, STD)(images[3])  # (3, 32, 32); cells of 10 px, 8 px tiles centred in them
    with torch.no_grad():
        for stage in script.STAGES:
            tiles = []
            for row in range(3):
                for col in range(3):
                    y, x = 1 + 10 * row + 1, 1 + 10 * col + 1  # 1 px margin (32 = 3 x 10 + 2), 1 px centring
                    tile = norm(image[:, y : y + 8, x : x + 8])
                    tiles.append(backbone.stages(tile[None], [stage])[stage].float().mean((2, 3))[0])
            expected = torch.cat(tiles)
            got = feats["tiles", stage][3]
            assert got.shape == expected.shape, stage
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

            small = norm(F.interpolate(image[None], size=8, mode="bilinear", antialias=True, align_corners=False))
            expected_small = backbone.stages(small, [stage])[stage].float().mean((2, 3))[0]
            torch.testing.assert_close(feats["small", stage][3], expected_small, rtol=1e-4, atol=1e-5)
            assert feats["tiles", stage].shape == (5, 9 * expected_small.numel())  # nine pooled tiles side by side
