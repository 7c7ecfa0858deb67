"""Is Jigsaw's deep-stage deficit on CIFAR-10 a scale mismatch?  Probes trained backbones at the scale Jigsaw saw.

Jigsaw trains the backbone on tiles only: on `quick` (32 px images, 3x3 cells of 10 px) the tiles are 8 px, so with
the small-image stem layer2 sees 4x4 maps, layer3 2x2 and layer4 1x1 (every 3x3 tap but the centre on zero
padding), while the standard linear probe feeds whole 32 px images (layer4 4x4). This script probes each given
method's pretrained backbone (from a finished `ssl-bench run` under --out) three ways, per stage, with the run's
own linear-probe settings (train split -> test split):

- image: the standard probe on the whole image, read from results.csv (stages pooled to <= linear.max_dims);
- tiles: the nine centre tiles of each image, passed through the backbone one by one as Jigsaw's training did
  (normalised per tile only if the run's Jigsaw was: ``jigsaw.per_tile_norm``), pooled per tile and concatenated
  in grid order;
- small: the whole image shrunk to one tile's size (antialiased), normalised the same way, pooled.

If Jigsaw beats random-init on tiles but not on images, its deep stages learned something at the scale they were
trained at that does not carry over to 4x larger inputs; if it loses on tiles too, they specialised to the task.

usage: python benchmarks/jigsaw_scale.py --out results-quick --data-root ~/data/cifar10 [--preset quick]
       [--set KEY=VALUE ...] [--methods random,jigsaw] [--seed 0]
(the same --preset / --set / --data-root as the run, so the units resolve to the same run directories)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ssl_bench import storage
from ssl_bench.backbone import Backbone
from ssl_bench.data.jigsaw import TileGeometry, extract_tiles, normalize_tiles
from ssl_bench.data.registry import load_dataset
from ssl_bench.data.transforms import eval_view
from ssl_bench.eval.features import _Viewed
from ssl_bench.eval.linear_probe import probe
from ssl_bench.run_config import load, merge, parse_set
from ssl_bench.runner import plan

STAGES = ["layer2", "layer3", "layer4"]


@torch.no_grad()
def tile_scale_features(
    backbone: Backbone, dataset, image_size: int, mean, std, per_tile_norm: bool = False
) -> tuple[dict, torch.Tensor]:
    """{("tiles" | "small", stage): (N, D) features}, (N,) labels. ``per_tile_norm``: each tile (and the shrunk image)
    normalised on its own, as Jigsaw trains with ``jigsaw.per_tile_norm``."""
    norm = normalize_tiles if per_tile_norm else (lambda t: t)
    geometry = TileGeometry.for_crop(image_size)
    loader = DataLoader(_Viewed(dataset, eval_view(image_size, mean, std)), batch_size=256)
    feats: dict[tuple[str, str], list[torch.Tensor]] = {}
    labels = []
    for x, y in loader:
        tiles = norm(extract_tiles(x, geometry, jitter=False))  # (B, 9, C, t, t), centre of each cell
        small = norm(F.interpolate(x, size=geometry.tile, mode="bilinear", antialias=True, align_corners=False))
        b = x.shape[0]
        for view, batch in (("tiles", tiles.flatten(0, 1)), ("small", small)):
            for stage, fmap in backbone.stages(batch, STAGES).items():
                feats.setdefault((view, stage), []).append(fmap.float().mean((2, 3)).reshape(b, -1))
        labels.append(y)
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the --out of a finished ssl-bench run (runs/, results.csv)")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--methods", default="random,jigsaw")
    parser.add_argument("--seed", type=int, default=0, help="which pretraining seed's backbones")
    args = parser.parse_args()
    out = Path(args.out).expanduser()
    overrides = merge(parse_set(args.set), {"data": {"root": str(Path(args.data_root).expanduser())}})
    cfg = load(args.preset, overrides)
    splits = load_dataset(cfg.data, out)
    info = splits.info
    wanted = args.methods.split(",")
    cfg.seeds = [args.seed]
    planned = plan(cfg)
    units = [u for u in planned if u.method in wanted and u.backbone == cfg.backbones[0]]
    results = pd.read_csv(out / "results.csv")
    per_tile_norm = next((u.method_cfg.per_tile_norm for u in planned if u.method == "jigsaw"), False)
    rows = []
    for unit in units:
        backbone = Backbone(unit.backbone, cfg.backbone.zero_init_residual)
        backbone.load_state_dict(storage.load(out / "runs" / unit.run_id / "backbone.pt"))
        backbone.eval()
        train, train_y = tile_scale_features(
            backbone, splits.train, info.image_size, info.mean, info.std, per_tile_norm
        )
        test, test_y = tile_scale_features(backbone, splits.test, info.image_size, info.mean, info.std, per_tile_norm)
        image = results[(results.run_id == unit.run_id) & (results["eval"] == "linear") & (results.metric == "top1")]
        image = image.sort_values("created").drop_duplicates("layer", keep="last").set_index("layer")["value"]
        for stage in STAGES:
            row = {"method": unit.method, "stage": stage, "image": image.get(stage, float("nan"))}
            for view in ("tiles", "small"):
                row[view] = probe(
                    train[view, stage], train_y, test[view, stage], test_y, info.num_classes, cfg.linear, unit.seed
                )["top1"]
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows).pivot(index="stage", columns="method", values=["image", "tiles", "small"])
    print(
        f"\nlinear-probe top-1 (%) on {info.name} test, {len(splits.train)} train images; run ids: "
        + ", ".join(u.run_id for u in units)
    )
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
