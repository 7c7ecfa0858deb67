"""The backbone's initialisation: every residual branch live at the start (gamma = 1), as torchvision, VISSL and
lemniscate build ResNets; timm's zero-init of the last BN (every block the identity) only when asked."""

from __future__ import annotations

import pytest
import torch
from timm.models.resnet import BasicBlock, Bottleneck

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.run_config import load
from ssl_bench.runner import plan


def last_bns(backbone: Backbone) -> list[torch.nn.BatchNorm2d]:
    blocks = [m for m in backbone.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert blocks, "no residual blocks found"
    return [b.bn3 if isinstance(b, Bottleneck) else b.bn2 for b in blocks]


def branch_output(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The residual branch alone (the block's output before the shortcut is added and the final ReLU)."""
    if isinstance(block, Bottleneck):
        x = block.act1(block.bn1(block.conv1(x)))
        x = block.act2(block.bn2(block.conv2(x)))
        return block.bn3(block.conv3(x))
    x = block.act1(block.bn1(block.conv1(x)))
    return block.bn2(block.conv2(x))


@pytest.mark.parametrize("spec", ["resnet18-smallstem-w0.25", "resnet50-w0.125"])
def test_fresh_backbone_residual_branches_are_not_zero(spec: str) -> None:
    backbone = Backbone(spec).eval()
    for bn in last_bns(backbone):
        assert torch.equal(bn.weight.detach(), torch.ones_like(bn.weight))
    block = backbone.model.layer2[0]
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    assert branch_output(block, x).abs().mean() > 0.1  # a random ResNet's branch, not the identity block


def test_zero_init_residual_is_one_option_away() -> None:
    backbone = Backbone("resnet18-smallstem-w0.25", zero_init_residual=True).eval()
    for bn in last_bns(backbone):
        assert torch.equal(bn.weight.detach(), torch.zeros_like(bn.weight))
    block = backbone.model.layer2[0]
    assert torch.equal(branch_output(block, torch.randn(2, block.conv1.in_channels, 8, 8)), torch.zeros(2, 32, 4, 4))


def test_zero_init_residual_names_a_new_run_and_is_refused_where_undefined() -> None:
    ours = {u.method: u.pretrain_hash for u in plan(load("ci", {}))}
    goyal = {u.method: u.pretrain_hash for u in plan(load("ci", {"backbone": {"zero_init_residual": "true"}}))}
    assert all(ours[m] != goyal[m] for m in ours)  # a cached gamma = 0 result is never reused for gamma = 1
    with pytest.raises(ConfigError, match="zero_init_residual=true is defined for timm ResNets only"):
        Backbone("vit_tiny_patch16_224", zero_init_residual=True)
