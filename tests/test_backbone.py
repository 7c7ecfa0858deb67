"""The backbone's initialisation: every residual branch live at the start (gamma = 1), as torchvision, VISSL and
lemniscate build ResNets; timm's zero-init of the last BN (every block the identity) only when asked. Its reported
parameter count: with a 1000-way classifier, as torchvision and the published points count it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from timm.models.resnet import BasicBlock, Bottleneck

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.types import DataInfo
from ssl_bench.eval.harness import Row
from ssl_bench.methods.pirl import PIRLConfig
from ssl_bench.report import figures, results
from ssl_bench.report.published import linear_points, load_published
from ssl_bench.results import ResultsTable
from ssl_bench.run_config import RunConfig, load
from ssl_bench.runner import Unit, plan, result_rows


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


# The parameter count (issue 17): ours and the published points on one x axis, the network with a 1000-way classifier.
@pytest.mark.parametrize(
    "spec, trunk, published_backbone",
    [
        ("resnet50", 23_508_032, "ResNet-50"),  # torchvision's resnet50 with its fc: 25,557,032
        ("resnet50-w2", 93_856_576, "ResNet-50 (2x width)"),  # PIRL-c2x: 98 M
        ("resnet101", 42_500_160, "ResNet-101"),  # CPC: 44.5 M
    ],
)
def test_the_reported_count_adds_a_1000_way_classifier_and_matches_the_published_one(
    spec: str, trunk: int, published_backbone: str
) -> None:
    with torch.device("meta"):  # shapes only: no memory for the weights
        backbone = Backbone(spec)
    assert backbone.num_params == trunk
    assert backbone.num_params_with_classifier == trunk + 1000 * backbone.num_features + 1000
    refs = load_published()
    printed = refs.loc[refs["backbone"] == published_backbone, "params"].unique()
    assert len(printed) == 1
    assert backbone.num_params_with_classifier == pytest.approx(printed[0], rel=0.005)  # the paper prints 3 digits
    assert backbone.num_params < 0.96 * printed[0]  # the trunk alone: 4-8% to the left of the published point


def test_the_count_is_torchvisions() -> None:
    with torch.device("meta"):
        for name in ("resnet18", "resnet50", "resnet101"):
            theirs = sum(p.numel() for p in getattr(torchvision.models, name)().parameters())  # with its 1000-way fc
            assert Backbone(name).num_params_with_classifier == theirs, name


def test_our_resnet50_row_and_the_published_resnet50_share_one_x(tmp_path: Path) -> None:
    """From the row the runner writes to the point the plot draws, next to the published ResNet-50 point."""
    with torch.device("meta"):
        backbone = Backbone("resnet50")
    cfg = RunConfig(preset="imagenet-paper")
    unit = Unit("pirl", "resnet50", 0, PIRLConfig(), "0123456789abcdef", cfg, ("linear",))
    info = DataInfo("imagenet", 1000, 1000, 224, (0.5,) * 3, (0.25,) * 3)
    rows = result_rows(unit, "linear", "e" * 16, [Row("layer4", "top1", 60.0)], backbone, info, cfg)
    ResultsTable(tmp_path / "results.csv").append(rows)
    df, _ = results.clean(results.read_results(tmp_path / "results.csv"))
    ours = figures.plot_points(results.headline(results.aggregate(df), results.backbone_params(df)))
    theirs = linear_points(load_published())
    (x_published,) = theirs.loc[theirs["backbone"] == "ResNet-50", "x"].unique()
    assert ours["x"].tolist() == [pytest.approx(x_published, rel=0.005)]  # 25.557 vs 25.6; the trunk was 23.5
    fig = figures.accuracy_vs_params(results.headline(results.aggregate(df), results.backbone_params(df)), theirs)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_xlabel() == "Number of parameters (millions, with a 1000-way linear classifier)"


def test_stages_asked_out_of_order_keep_their_names() -> None:
    """timm returns intermediates in network order; each map stays under its own name whatever order is asked."""
    backbone = Backbone("resnet18-smallstem-w0.25").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ordered, reversed_ = backbone.stages(x, ["stem", "layer4"]), backbone.stages(x, ["layer4", "stem"])
    assert list(reversed_) == ["layer4", "stem"]
    for name in ("stem", "layer4"):
        assert torch.equal(ordered[name], reversed_[name])
    assert reversed_["stem"].shape[-1] == 32 and reversed_["layer4"].shape[-1] == 4
