"""Each method's augmentation is its reference's: PIRL's photometric step against PIL, the view chains' steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from torchvision.transforms import v2

from ssl_bench.backbone import Backbone
from ssl_bench.data.transforms import RandomPhotometric, eval_view, photometric
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.npid import NPIDConfig, NPIDpp
from ssl_bench.methods.pirl import PIRL, PIRLConfig

INFO = DataInfo(name="t", num_classes=10, num_train=8, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)


def pil_photometric(image: torch.Tensor, bits: int, sharpness: float, threshold: int) -> torch.Tensor:
    """VISSL's ImgPilRandomPhotometric with its draws fixed: PIL's posterize, sharpness, solarize, autocontrast."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    pil = ImageOps.posterize(pil, bits)
    pil = ImageEnhance.Sharpness(pil).enhance(sharpness)
    pil = ImageOps.autocontrast(ImageOps.solarize(pil, threshold))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


def test_photometric_matches_pil_per_image() -> None:
    g = torch.Generator().manual_seed(0)
    differing, total = 0, 0
    for size in (3, 9, 32):
        images = torch.randint(0, 256, (6, 3, size, size), dtype=torch.uint8, generator=g)
        images[1] = 77  # a flat image: autocontrast leaves it alone
        bits = torch.randint(4, 8, (6,), generator=g)
        sharpness = 0.1 + 1.8 * torch.rand(6, generator=g)
        threshold = torch.randint(0, 256, (6,), generator=g)
        got = photometric(images, bits, sharpness, threshold)
        for i in range(6):
            ref = pil_photometric(images[i], int(bits[i]), float(sharpness[i]), int(threshold[i]))
            diff = (got[i].int() - ref.int()).abs()
            assert int(diff.max()) <= 1, (size, i)  # PIL rounds autocontrast's LUT its own way: one grey level at most
            differing, total = differing + int((diff > 0).sum()), total + diff.numel()
    assert differing / total < 0.05


def test_random_photometric_draws_per_image_with_probability_p() -> None:
    images = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = RandomPhotometric(0.66)(images, torch.Generator().manual_seed(2))
    changed = (out != images).flatten(1).any(1).float().mean()
    assert 0.55 < float(changed) < 0.75  # p = 0.66 (an image the chain leaves as it was counts as untouched)
    one = RandomPhotometric(1.0)(images[0].float() / 255, torch.Generator().manual_seed(3))
    assert one.dtype == torch.float32 and one.shape == (3, 8, 8)  # floats in [0, 1] work on their 8-bit levels


def steps(view: v2.Compose) -> dict[str, object]:
    return {type(t).__name__: t for t in view.transforms}


def test_npidpp_augmentation_is_vissls_and_npids_is_one_option_away() -> None:
    vissl = steps(NPIDpp(Backbone("resnet18-w0.25"), NPIDConfig(), INFO).transform().__closure__[0].cell_contents)
    assert list(vissl)[:4] == ["ToImage", "ColorJitter", "RandomResizedCrop", "RandomHorizontalFlip"]
    assert vissl["ColorJitter"].hue == (-0.4, 0.4) and vissl["RandomResizedCrop"].scale == (0.08, 1.0)
    assert "RandomGrayscale" not in vissl
    cfg = NPIDConfig(augmentation="npid", crop_scale=0.2)
    npid = steps(NPIDpp(Backbone("resnet18-w0.25"), cfg, INFO).transform().__closure__[0].cell_contents)
    assert npid["RandomGrayscale"].p == 0.2 and npid["RandomResizedCrop"].scale == (0.2, 1.0)
    with pytest.raises(Exception, match="npidpp.augmentation='simclr' is not valid"):
        NPIDConfig(augmentation="simclr").check()


def test_pirl_views_are_vissls() -> None:
    views = PIRL(Backbone("resnet18-w0.25"), PIRLConfig(), INFO).transform()
    image = steps(views.image)
    assert image["ColorJitter"].hue == (-0.2, 0.2) and image["RandomPhotometric"].p == 0.66
    assert image["RandomGrayscale"].p == 0.2 and image["RandomResizedCrop"].scale == (0.08, 1.0)
    jigsaw = views.jigsaw
    assert (jigsaw.geometry.crop, jigsaw.geometry.tile) == (36, 9)  # 255 px per 224 px of image
    assert jigsaw.tile_color_jitter and not jigsaw.per_tile_norm
    assert "RandomHorizontalFlip" not in steps(jigsaw.image_ops)  # flipped per tile instead (jitter_tiles)
    out = views(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert out["image"].shape == (3, 32, 32) and out["tiles"].shape == (9, 3, 9, 9)


def test_eval_view_keeps_a_native_size_image_whole() -> None:
    """CIFAR at 32 px (and STL-10 at 96): the test view is the image itself, normalised, border included (NPID's and
    solo-learn's CIFAR evaluations); no 8/7 resize and centre crop."""
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = eval_view(32, INFO.mean, INFO.std)(image)
    expected = (image.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    torch.testing.assert_close(eval_view(32, INFO.mean, INFO.std)(pil), expected, rtol=0, atol=1e-6)


def test_eval_view_at_imagenet_scale_is_resize_256_and_centre_crop_224() -> None:
    image = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = eval_view(224, INFO.mean, INFO.std)(image)
    crop = v2.CenterCrop(224)(v2.Resize(256, antialias=True)(image))
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, (crop.float() / 255 - 0.5) / 0.25, rtol=0, atol=1e-6)


def test_eval_view_upsamples_a_smaller_image_whole() -> None:
    """A 32 px image seen at 64 px (``data.image_size=64`` on CIFAR) is resized whole, as training resizes it."""
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    got = eval_view(64, INFO.mean, INFO.std)(image)
    expected = v2.Resize(64, antialias=True)(image)
    torch.testing.assert_close(got, (expected.float() / 255 - 0.5) / 0.25, rtol=0, atol=1e-6)
