"""Standard image transforms (torchvision.transforms.v2): the augmented crop of NPID/PIRL and the test view.

Each transform takes a PIL image or a (3, H, W) uint8 tensor and returns a normalised float tensor.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def to_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def eval_view(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Resize the short side to 8/7 of the crop and centre-crop (224 <- 256 at ImageNet scale)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(image_size * 8 / 7), antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def augmented_crop(
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    scale: tuple[float, float] = (0.2, 1.0),
    color: bool = True,
) -> v2.Compose:
    """The data augmentation of NPID (Wu et al. 2018) and PIRL's v_I: random resized crop, flip, colour jitter, grayscale."""
    steps: list = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if color:
        steps += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def light_crop(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Supervised / autoencoder augmentation: pad-and-crop and flip at small sizes, resized crop otherwise."""
    if image_size <= 64:
        crop = v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect")
        steps = [v2.ToImage(), v2.Resize(image_size, antialias=True), crop]
    else:
        steps = [v2.ToImage(), v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), antialias=True)]
    return v2.Compose(
        steps + [v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )
