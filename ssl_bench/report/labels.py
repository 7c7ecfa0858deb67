"""How the report names things: method display names and the paper's layer names.

The names are kept here rather than read from ``ssl_bench.methods`` so that the report never imports
torch; a test checks that they agree with each method's ``display_name``. Unknown methods (third-party,
or published ones such as "MoCo") are shown as they are spelled.
"""

from __future__ import annotations

DISPLAY_NAMES: dict[str, str] = {
    "random": "Random",
    "supervised": "Supervised",
    "autoencoder": "Autoencoder",
    "rotnet": "RotNet",
    "jigsaw": "Jigsaw",
    "npidpp": "NPID++",
    "pirl": "PIRL",
}
# Our timm stage names -> the names of PIRL's ResNet-50 tables (Goyal et al. 2019).
PAPER_LAYERS: dict[str, str] = {"stem": "conv1", "layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}


def display_name(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def paper_layer(layer: str) -> str:
    return PAPER_LAYERS.get(layer, layer)


def published_name(method: str, note: str = "") -> str:
    """'PIRL (published)' or 'MoCo (published; BN fine-tuned, not frozen)'."""
    return f"{display_name(method)} (published{'; ' + note if note else ''})"
