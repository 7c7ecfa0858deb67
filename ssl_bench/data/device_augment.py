"""Batched augmentation on the device (``train.device_augment``): each view's colour for the whole batch at once.

On a GPU a ResNet-18 step at 32 px takes thousands of images a second, more than per-sample colour augmentation in a
few loader workers makes. A view is therefore split at its geometry/colour boundary:

* in the loader worker, per sample and seeded by (seed, epoch, index) as every view (``data.types.Indexed``):
  ``Deferred`` does the geometry on uint8 (crop, resize, flip) and draws every colour parameter, the same draws in
  the same order as the per-sample view, so a sample's parameters do not depend on the path and resume stays exact.
  It ships the uint8 crop, ``views[name]`` (3, S, S) (a quarter of a float view's bytes to the device), and its
  parameters, ``views[name + ".colour"]`` (P,) float32 laid out as below.
* on the device, in ``Trainer.step`` right after the batch is moved (``to_device``): ``colour`` applies each sample's
  grayscale, ColorJitter (its four ops in that sample's drawn order), PIRL's photometric chain, then float and
  normalisation, for the whole batch. The arithmetic is that of torchvision's uint8 kernels (each op back to uint8),
  with a factor per sample: the pixels equal the per-sample view's up to float rounding (on the CPU tested, exactly;
  posterize and solarize can turn a level of rounding into more). PIRL's tiles (``data.jigsaw``) draw as
  ``jitter_tiles`` does, which rounds once in float: their pixels differ from it by a few levels.

Colour ops act per pixel or on a whole image's statistics, so they commute with a flip and a quarter turn exactly. A
view whose colour comes before its crop (VISSL's NPID++: jitter, then RandomResizedCrop) gets its colour after the
crop here: contrast's grey mean is then the crop's, not the whole image's (FIDELITY.md).

Which samples an op touches is read from the parameters' host copy, so the device never waits for a decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ssl_bench.data.batch import Batch
from ssl_bench.data.transforms import RandomPhotometric, photometric

SUFFIX = ".colour"

# The parameter vector of one image (float32; every value is exact in it): mean and std of the normalisation, the
# jitter's factors (NaN: that op is not in the jitter, torchvision's None), the jitter's op ids in the order they
# apply (-1: no jitter), grayscale before or after the jitter (0/1), and the photometric chain's draw.
MEAN, STD = slice(0, 3), slice(3, 6)
BRIGHTNESS, CONTRAST, SATURATION, HUE = 6, 7, 8, 9  # ColorJitter's op ids 0-3 are these columns minus 6
ORDER = slice(10, 14)
GRAY_BEFORE, GRAY_AFTER = 14, 15
PHOTOMETRIC, BITS, SHARPNESS, THRESHOLD = 16, 17, 18, 19
SIZE = 20


def enabled(mode: str, device: torch.device) -> bool:
    """``train.device_augment``: "auto" is on for a CUDA device only, where the loader would limit the step."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def colour_key(name: str) -> str:
    return name + SUFFIX


def blank(mean: Any, std: Any, n: int = 1) -> Tensor:
    """(n, SIZE) parameters that only normalise: no jitter, grayscale or photometric."""
    p = torch.zeros(n, SIZE)
    p[:, MEAN], p[:, STD] = torch.tensor(list(mean)), torch.tensor(list(std))
    p[:, BRIGHTNESS : HUE + 1], p[:, ORDER] = float("nan"), -1.0
    return p


def named(name: str, made: Tensor | tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    """A view maker's output under its view name: the view, or a ``Deferred`` view's crop and its parameters."""
    if isinstance(made, tuple):
        return {name: made[0], colour_key(name): made[1]}
    return {name: made}


class Deferred:
    """The worker half of a view (``transforms.view``: ToImage, steps, ToDtype, Normalize): image -> ((3, S, S)
    uint8, (SIZE,) parameters). Geometry steps run as they are; ColorJitter, RandomGrayscale and ``RandomPhotometric``
    only draw, as their own calls would, and their draws are recorded. A float input is taken to uint8 first.

    The device applies grayscale, jitter, photometric, grayscale in that order (``colour``); a view whose colour steps
    come in another order is refused.
    """

    def __init__(self, view: v2.Compose) -> None:
        first, *steps, to_float, normalise = view.transforms
        if not (
            isinstance(first, v2.ToImage) and isinstance(to_float, v2.ToDtype) and isinstance(normalise, v2.Normalize)
        ):
            raise ValueError("Deferred: expected a view of transforms.view (ToImage, steps, ToDtype, Normalize)")
        self.steps = steps
        self.blank = blank(normalise.mean, normalise.std)[0]  # every sample's parameters start from it (a copy)
        self.after: list[bool] = []  # per step: a grayscale after the jitter
        stage = -1  # the device's order: 0 grayscale, 1 jitter, 2 photometric, 3 grayscale
        for step in steps:
            if isinstance(step, v2.ColorJitter | RandomPhotometric | v2.RandomGrayscale):
                slot = {v2.ColorJitter: 1, RandomPhotometric: 2}.get(type(step), 0 if stage < 0 else 3)
                if slot <= stage:
                    raise ValueError(f"Deferred: {type(step).__name__} comes where the device cannot apply it")
                stage = slot
            self.after.append(stage == 3)

    def __call__(self, image: Any) -> tuple[Tensor, Tensor]:
        x = F.to_image(image)
        if x.is_floating_point():
            x = F.to_dtype(x, torch.uint8, scale=True)
        p = self.blank.clone()
        for step, after in zip(self.steps, self.after):
            if isinstance(step, v2.ColorJitter):
                drawn = step.make_params([x])  # torchvision's own draw: the op order, then the four factors
                p[ORDER] = drawn["fn_idx"].float()
                factors = [drawn[f"{op}_factor"] for op in ("brightness", "contrast", "saturation", "hue")]
                p[BRIGHTNESS : HUE + 1] = torch.tensor([float("nan") if f is None else f for f in factors])
            elif isinstance(step, v2.RandomGrayscale):
                p[GRAY_AFTER if after else GRAY_BEFORE] = float(torch.rand(1) < step.p)  # as its own forward
            elif isinstance(step, RandomPhotometric):
                chosen, bits, sharpness, threshold = step.draw(1)
                p[PHOTOMETRIC], p[BITS], p[SHARPNESS], p[THRESHOLD] = chosen.float(), bits, sharpness, threshold
            else:
                x = step(x)
        return x.as_subclass(Tensor), p


def deferred(view: v2.Compose, on: bool) -> Callable[[Any], Tensor | tuple[Tensor, Tensor]]:
    """``view`` itself, or with ``on`` its ``Deferred`` worker half."""
    return Deferred(view) if on else view


# ---- the device half ---------------------------------------------------------------------------------------------


def _blend(x: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's uint8 blend, ``ratio`` per image (N, 1, 1, 1): x * r + other * (1 - r), clamped, truncated.
    addcmul rounds as its ``add_(other, alpha=1 - r)`` does on the CPU (a separate product can differ by a level)."""
    return torch.addcmul(x.mul(ratio), other, 1.0 - ratio).clamp_(0, 255).to(torch.uint8)


def _grey(x: Tensor) -> Tensor:
    """(N, 3, H, W) uint8 -> (N, 1, H, W) float: torchvision's luma, floored as its uint8 kernels floor it."""
    return F.rgb_to_grayscale(x).float()


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    return x.mul(factor.view(-1, 1, 1, 1)).clamp_(0, 255).to(torch.uint8)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), factor.view(-1, 1, 1, 1))


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, _grey(x), factor.view(-1, 1, 1, 1))


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision's hue kernel with a shift per image. Its HSV conversions work on batches but are private: imported
    here, on first use, so that a torchvision that renames them breaks only this path (tests/test_device_augment.py
    compares the result with ``adjust_hue`` image by image)."""
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    h, s, v = _rgb_to_hsv(F.to_dtype(x, torch.float32, scale=True)).unbind(dim=-3)
    h = h.add(factor.view(-1, 1, 1)).remainder_(1.0)
    return F.to_dtype(_hsv_to_rgb(torch.stack((h, s, v), dim=-3)), torch.uint8, scale=True)


ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # ColorJitter's op ids 0-3


def _on_rows(x: Tensor, params: Tensor, rows: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn(x[rows], params[rows])`` written back into those rows, the others unchanged; ``rows`` (N,) bool on the
    host."""
    if not bool(rows.any()):
        return x
    if bool(rows.all()):
        return fn(x, params)
    index = rows.nonzero().squeeze(1).to(x.device, non_blocking=True)
    return x.index_copy(0, index, fn(x.index_select(0, index), params.index_select(0, index)).contiguous())


def colour(images: Tensor, params: Tensor, host: Tensor | None = None) -> Tensor:
    """(N, 3, H, W) uint8 and (N, SIZE) parameters on the device -> (N, 3, H, W) float32, normalised: grayscale
    (before), the jitter's ops in each image's order, photometric, grayscale (after), then ToDtype and Normalize.
    ``host``: the parameters on the CPU (default: ``params`` itself)."""
    host = params if host is None else host
    gray = lambda x, p: F.rgb_to_grayscale(x, num_output_channels=3).contiguous()  # noqa: E731
    x = _on_rows(images, params, host[:, GRAY_BEFORE] > 0, gray)
    for position in range(ORDER.stop - ORDER.start):
        for op, adjust in enumerate(ADJUST):
            column = BRIGHTNESS + op
            rows = (host[:, ORDER.start + position] == op) & ~host[:, column].isnan()
            x = _on_rows(x, params, rows, lambda x, p, c=column, a=adjust: a(x, p[:, c]))
    chain = lambda x, p: photometric(x, p[:, BITS].long(), p[:, SHARPNESS], p[:, THRESHOLD])  # noqa: E731
    x = _on_rows(x, params, host[:, PHOTOMETRIC] > 0, chain)
    x = _on_rows(x, params, host[:, GRAY_AFTER] > 0, gray)
    out = F.to_dtype(x, torch.float32, scale=True)
    return out.sub_(params[:, MEAN, None, None]).div_(params[:, STD, None, None])


def finish(view: Tensor, params: Tensor, host: Tensor | None = None) -> Tensor:
    """``colour`` over any leading dims: (..., 3, H, W) uint8 with (..., SIZE) parameters (RotNet's rotations, PIRL's
    tiles: (B, 9, 3, t, t) as B·9 images)."""
    lead = view.shape[:-3]
    flat_host = None if host is None else host.reshape(-1, SIZE)
    out = colour(view.reshape(-1, *view.shape[-3:]), params.reshape(-1, SIZE), flat_host)
    return out.view(*lead, *view.shape[-3:])


def to_device(batch: Batch, device: torch.device, channels_last: bool = False) -> Batch:
    """``batch.to(device)``, then every view that came with parameters (``name + ".colour"``) finished on the device
    (``finish``) and the parameters dropped. A batch without any is ``batch.to``'s own result."""
    moved = batch.to(device, channels_last=channels_last)
    if not any(k.endswith(SUFFIX) for k in batch.views):
        return moved
    views = {}
    for name, view in moved.views.items():
        if name.endswith(SUFFIX):
            continue
        key = colour_key(name)
        if key in moved.views:
            view = finish(view, moved.views[key], batch.views[key])
            if channels_last and view.ndim == 4:
                view = view.contiguous(memory_format=torch.channels_last)
        views[name] = view
    return Batch(views, moved.target, moved.index)
