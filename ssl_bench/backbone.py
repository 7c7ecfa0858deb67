"""The one backbone every method shares: a thin wrapper over a timm model.

A backbone is named by a spec string: a timm model name plus optional modifiers separated by "-":

* ``resnet18``                the timm model as is (ImageNet stem: 7x7 conv stride 2 + max-pool);
* ``resnet18-smallstem``      small-image stem for 32 px inputs (3x3 conv stride 1, no max-pool),
                              as in the CIFAR ResNets of He et al. 2016 and the SimCLR/solo-learn recipes;
* ``resnet18-w0.5``           the four stages' widths scaled by 0.5 (the stem keeps 64 channels): the width-scaled points of
                              the accuracy-vs-parameters sweep (PIRL Fig. 2 uses several network sizes).

Initialisation: every residual branch starts as He et al.'s and torchvision's (``zero_init_residual=False``), VISSL's
(``ZERO_INIT_RESIDUAL: False``) and lemniscate's: the last BatchNorm of each block at gamma = 1, so a fresh network is a
random ResNet and the ``random`` baseline is PIRL Table 7's "Random". timm's own default (``zero_init_last=True``:
gamma = 0, every block the identity at the start) is Goyal et al.'s large-batch trick, one option away
(``backbone.zero_init_residual=true``).

The wrapper exposes what methods and evaluations need (feature dimension, named stages, parameter count)
so that no method reaches into ``.fc`` or renames weights.

Parameter count: results rows and the report count a backbone as torchvision and timm count their ImageNet models,
with a 1000-way linear classifier on the pooled features (``num_params_with_classifier``), whatever dataset was run:
ResNet-50 is 25.6 M (23.5 M trunk + 2.0 M classifier). That is the count a reader knows and the one PIRL prints
(Fig. 2's points: ResNet-50 25.6 M, ResNet-50 at twice the width 98 M), so our points and the published ones share
one x axis. The trunk alone (``num_params``) would put the same ResNet-50 9% to the left of the published point.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import Tensor, nn

from ssl_bench.config import ConfigError, close_match

SMALL_STEM = "smallstem"
COUNTED_CLASSES = 1000  # the reported parameter count includes a linear classifier with this many outputs
VALID = (
    f"a timm model name such as resnet18, resnet34, resnet50 or resnet10t, optionally with -{SMALL_STEM} and/or "
    f"-w<width>, e.g. resnet18-{SMALL_STEM}-w0.5 (see `ssl-bench list`)"
)


@dataclass(frozen=True)
class BackboneSpec:
    model: str
    small_stem: bool = False
    width: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> "BackboneSpec":
        model, *mods = spec.split("-")
        small, width = False, 1.0
        for mod in mods:
            if mod == SMALL_STEM:
                small = True
            elif mod.startswith("w"):
                try:
                    width = float(mod[1:])
                except ValueError:
                    raise ConfigError(
                        f"backbone {spec!r}: width modifier {mod!r} is not a number; use e.g. '-w0.5'"
                    ) from None
                if not 0 < width <= 8:
                    raise ConfigError(f"backbone {spec!r}: width must be in (0, 8], got {width}")
            else:
                raise ConfigError(
                    f"backbone {spec!r}: unknown modifier {mod!r}; valid modifiers are '-{SMALL_STEM}' and '-w<width>'"
                )
        models = timm.list_models()
        if model not in models:
            where = "" if model == spec else f" in {spec!r}"
            raise ConfigError(
                f"unknown backbone {model!r}{where}.{close_match(model, models)} Valid backbones: {VALID}."
            )
        return cls(model, small, width)


@dataclass
class BackboneConfig:
    """How every backbone of a run is built (the architecture itself is the spec string of ``backbones``)."""

    zero_init_residual: bool = False  # True: the last BN of each residual branch starts at gamma = 0 (timm's default)

    def check(self) -> None:
        """Nothing to range-check: a boolean."""


class Backbone(nn.Module):
    """A timm model without classifier: ``forward`` gives pooled features, ``stages`` the named stage outputs."""

    def __init__(self, spec: str, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.spec = spec
        parsed = BackboneSpec.parse(spec)
        kwargs: dict = {}
        if parsed.width != 1.0:
            base = timm.create_model(parsed.model, pretrained=False)
            if not hasattr(base, "layer1"):
                raise ValueError(f"backbone {spec!r}: width scaling is only supported for ResNets")
            channels = tuple(
                max(8, int(round(info["num_chs"] * parsed.width / _expansion(base)))) for info in base.feature_info[1:]
            )
            kwargs = {"channels": channels}  # the 64-channel stem is kept: only the four stages scale
        self.model = _create(parsed.model, zero_init_residual, spec, **kwargs)
        if parsed.small_stem:
            _use_small_stem(self.model, spec)
        self.stage_names: list[str] = [_stage_name(info["module"]) for info in self.model.feature_info]
        self.stage_channels: list[int] = [info["num_chs"] for info in self.model.feature_info]
        self.num_features: int = self.model.num_features

    @property
    def num_params(self) -> int:
        """The trunk's parameters: what is trained and saved."""
        return sum(p.numel() for p in self.parameters())

    @property
    def num_params_with_classifier(self) -> int:
        """The reported count (results rows, PIRL Fig. 2's x axis): the trunk plus a ``COUNTED_CLASSES``-way linear
        classifier (weights and biases) on the pooled features; resnet50: 23,508,032 + 2,049,000 = 25,557,032."""
        return self.num_params + COUNTED_CLASSES * (self.num_features + 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, num_features): globally average-pooled last stage."""
        return self.model(x)

    def forward_map(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C, h, w): last-stage feature map, before pooling (for decoders)."""
        return self.model.forward_features(x)

    def stages(self, x: Tensor, names: list[str] | None = None) -> dict[str, Tensor]:
        """Feature maps of the named stages, e.g. {"stem": (B,64,H,W), ..., "layer4": (B,512,h,w)}."""
        names = names or self.stage_names
        unknown = sorted(set(names) - set(self.stage_names))
        if unknown:
            raise ValueError(f"backbone {self.spec}: unknown stage(s) {unknown}; valid stages: {self.stage_names}")
        ordered = [n for n in self.stage_names if n in names]  # timm returns the maps in network order
        indices = [self.stage_names.index(n) for n in ordered]
        maps = dict(zip(ordered, self.model.forward_intermediates(x, indices=indices, intermediates_only=True)))
        return {n: maps[n] for n in names}


def _create(model: str, zero_init_residual: bool, spec: str, **kwargs: object) -> nn.Module:
    """The timm model without classifier; ResNets get ``zero_init_last`` = ``zero_init_residual`` (timm's is True)."""
    try:
        return timm.create_model(model, pretrained=False, num_classes=0, zero_init_last=zero_init_residual, **kwargs)
    except TypeError:  # a timm family without the option (not a ResNet): its own initialisation
        if zero_init_residual:
            raise ConfigError(
                f"backbone {spec!r}: backbone.zero_init_residual=true is defined for timm ResNets only; "
                "leave it false for this model"
            ) from None
        return timm.create_model(model, pretrained=False, num_classes=0, **kwargs)


def _expansion(model: nn.Module) -> int:
    block = model.layer1[0]
    return getattr(block, "expansion", 1)


def _stage_name(module: str) -> str:
    return "stem" if module in ("act1", "bn1", "conv1", "stem") else module


def _use_small_stem(model: nn.Module, spec: str) -> None:
    """Replace the ImageNet stem by a 3x3 stride-1 conv and drop the max-pool (He et al. 2016, CIFAR ResNet)."""
    if not (hasattr(model, "conv1") and hasattr(model, "maxpool") and isinstance(model.conv1, nn.Conv2d)):
        raise ValueError(f"backbone {spec!r}: the small-image stem is only defined for ResNets with a single-conv stem")
    out = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, out, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm initialises every conv
    model.maxpool = nn.Identity()
    for info in model.feature_info:
        info["reduction"] = max(1, info["reduction"] // 4)
