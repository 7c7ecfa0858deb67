"""Image transforms (torchvision.transforms.v2): each method's own augmentation, as its reference code has it, and the
test view (``eval_view``: the native image where it already has the network's size, resize + centre-crop above it).

Each view maker takes a PIL image or a (3, H, W) uint8 tensor and returns a normalised float tensor. Random draws come
from torch's global generator, which the dataset seeds per sample (``data.types``).

* ``npidpp_view``: VISSL's NPID++ (``pretrain/npid/npid++_4nodes_resnet.yaml``): ColorJitter(0.4, 0.4, 0.4, 0.4)
  always, RandomResizedCrop (0.08-1), flip; no grayscale. NPID's own code (lemniscate ``main.py``) differs in crop
  scale (0.2) and adds grayscale 0.2: ``npid_view``.
* ``pirl_view``: VISSL's PIRL v_I (``pretrain/pirl/pirl_jigsaw_4node_resnet50.yaml``): RandomResizedCrop (0.08-1),
  ColorJitter(0.4, 0.4, 0.4, 0.2) always, ``RandomPhotometric`` (p = 0.66), grayscale 0.2, flip.
* ``light_crop``: supervised, autoencoder and RotNet (Gidaris et al.'s pad-and-crop + flip at CIFAR size).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2


def view(mean: tuple[float, ...], std: tuple[float, ...], *steps: object) -> v2.Compose:
    """``steps`` on the uint8 image, then to float in [0, 1] and normalised: the frame of every view below."""
    return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def to_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return view(mean, std)


# 1: resize to 8/7 and centre-crop at every size (before issue 17); 2: ``TestCrop``. In the hashes of the results that
# see the test view and the names of the feature caches, so nothing computed with another view is reused.
EVAL_VIEW_VERSION = 2


class TestCrop(torch.nn.Module):
    """The test view's geometry, by the image's size against the network's input size S:

    * larger than S on its short side (photos at ImageNet scale): short side to 8/7 S and the centre S x S (224 <- 256,
      as torchvision's, VISSL's and Goyal et al.'s evaluations);
    * otherwise (CIFAR at 32 px, STL-10 at 96, small folders): short side to S and the centre S x S, so an S x S image is
      used whole, as NPID's (lemniscate ``cifar.py``) and solo-learn's CIFAR/STL evaluations do; the 8/7 margin would
      drop the border (14% of a 32 px image).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.large = v2.Compose([v2.Resize(round(size * 8 / 7), antialias=True), v2.CenterCrop(size)])
        self.small = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    def forward(self, image: Tensor) -> Tensor:
        h, w = v2.functional.get_size(image)
        if (h, w) == (self.size, self.size):
            return image
        return self.large(image) if min(h, w) > self.size else self.small(image)


def eval_view(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """The test view (features, kNN, invariance, semi-supervised and probe tests): ``TestCrop``, then normalised."""
    return view(mean, std, TestCrop(image_size))


def squash_view(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Resize the short side to 8/7 of the size, then the whole image to size x size, aspect not kept: Goyal et al.'s
    VOC07 SVM view (FSSB ``voc07/*_extract_features.yaml``: scale 256, global_resize 224; VISSL
    ``eval_resnet_8gpu_transfer_voc07_svm.yaml``: Resize 256, Resize [224, 224])."""
    resize = v2.Resize(round(image_size * 8 / 7), antialias=True)
    return view(mean, std, resize, v2.Resize((image_size, image_size), antialias=True))


def photometric(images: Tensor, bits: Tensor, sharpness: Tensor, threshold: Tensor) -> Tensor:
    """PIRL's photometric chain on a batch of uint8 images (N, C, H, W), each with its own parameters (N,): posterize
    to ``bits``, sharpness ``sharpness`` (PIL's 3x3 smoothing kernel, border pixels kept), solarize at ``threshold``,
    autocontrast per channel. The same arithmetic as torchvision's functional kernels (which match PIL's), for many
    images at once: a per-image loop over those kernels costs about 0.3 ms an image, most of a PIRL sample's time."""
    n, c, h, w = images.shape
    mask = (((1 << bits) - 1) << (8 - bits)).to(torch.uint8).view(n, 1, 1, 1)
    x = images & mask
    if h > 2 and w > 2:
        out = x.float()
        a, b = 1.0 / 13.0, 5.0 / 13.0
        kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]]).to(x.device, non_blocking=True).expand(c, 1, 3, 3)
        blurred = torch.nn.functional.conv2d(out, kernel, groups=c).round_()
        inner = out[..., 1:-1, 1:-1]
        inner.add_(blurred.sub_(inner).mul_((1.0 - sharpness).float().view(n, 1, 1, 1)))
        x = out.clamp_(0, 255).to(torch.uint8)
    x = torch.where(x >= threshold.view(n, 1, 1, 1), 255 - x, x)
    low = x.float().amin(dim=(-2, -1), keepdim=True)
    high = x.float().amax(dim=(-2, -1), keepdim=True)
    flat = high == low  # a constant channel is kept (torch.where, not masked assignment: no device sync)
    scale = torch.where(flat, 1.0, (high - low).mul_(1.0 / 255))
    low = torch.where(flat, 0.0, low)
    return x.float().sub_(low).div_(scale).clamp_(0, 255).to(torch.uint8)


class RandomPhotometric:
    """VISSL's ``ImgPilRandomPhotometric`` (PIRL): with probability ``p``, all four of posterize (4-7 bits kept),
    sharpness (factor uniform in 0.1-1.9), solarize (threshold uniform in 0-255) and autocontrast, in that order
    (``photometric``).

    Takes an image tensor (3, H, W), uint8 or float in [0, 1], or (N, 3, H, W) with independent draws per image
    (PIRL's tiles). VISSL works on PIL images with PIL's operations; these are the same operations on tensors.
    """

    def __init__(self, p: float = 0.66) -> None:
        self.p = p

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(chosen, bits, sharpness, threshold) for ``n`` images, each (n,): what ``__call__`` applies, in its order of
        draws (the device path of ``data.device_augment`` draws the same)."""
        chosen = torch.rand(n, generator=generator) < self.p
        bits = torch.randint(4, 8, (n,), generator=generator)
        sharpness = 0.1 + 1.8 * torch.rand(n, generator=generator)
        threshold = torch.randint(0, 256, (n,), generator=generator)
        return chosen, bits, sharpness, threshold

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        batch = image.as_subclass(Tensor) if image.ndim == 4 else image.as_subclass(Tensor)[None]
        chosen, bits, sharpness, threshold = self.draw(batch.shape[0], generator)
        if not chosen.any():
            return image
        fp = batch.is_floating_point()
        levels = batch.mul(255).round().to(torch.uint8) if fp else batch  # [0, 1] floats on their 8-bit levels
        done = photometric(levels[chosen], bits[chosen], sharpness[chosen], threshold[chosen])
        out = levels.clone()
        out[chosen] = done
        out = out.to(batch.dtype).div(255) if fp else out
        return out if image.ndim == 4 else out[0]


def npidpp_view(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], scale: tuple[float, float] = (0.08, 1.0)
) -> v2.Compose:
    """VISSL's NPID++ augmentation: ColorJitter(0.4, 0.4, 0.4, 0.4) always, then RandomResizedCrop, flip."""
    return view(
        mean,
        std,
        v2.ColorJitter(0.4, 0.4, 0.4, 0.4),
        v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(),
    )


def npid_view(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], scale: tuple[float, float] = (0.2, 1.0)
) -> v2.Compose:
    """NPID's own augmentation (lemniscate ``main.py``): RandomResizedCrop (0.2-1), grayscale 0.2, ColorJitter(0.4 x 4)
    always, flip."""
    return view(
        mean,
        std,
        v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
        v2.RandomGrayscale(p=0.2),
        v2.ColorJitter(0.4, 0.4, 0.4, 0.4),
        v2.RandomHorizontalFlip(),
    )


def pirl_view(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], scale: tuple[float, float] = (0.08, 1.0)
) -> v2.Compose:
    """VISSL's PIRL v_I: RandomResizedCrop, ColorJitter(0.4, 0.4, 0.4, 0.2) always, photometric 0.66, grayscale 0.2,
    flip."""
    return view(
        mean,
        std,
        v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
        v2.ColorJitter(0.4, 0.4, 0.4, 0.2),
        RandomPhotometric(0.66),
        v2.RandomGrayscale(p=0.2),
        v2.RandomHorizontalFlip(),
    )


def light_crop(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Supervised / autoencoder augmentation: pad-and-crop and flip at small sizes, resized crop otherwise."""
    if image_size <= 64:
        crop = v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect")
        return view(mean, std, v2.Resize(image_size, antialias=True), crop, v2.RandomHorizontalFlip())
    # torchvision's ImageNet reference (and VISSL's supervised and RotNet configs): RandomResizedCrop, 0.08-1
    crop = v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), antialias=True)
    return view(mean, std, crop, v2.RandomHorizontalFlip())
