"""Side by side with a peer (issue 19, point 5): our views, bank and loss against lightly's, and the two COCO
evaluators against each other, measured in one run on the same inputs, as one markdown table.

    python benchmarks/peers.py [--small] [--workers 0] [--coco-images 500] [--only jigsaw,pirl,bank,coco]

Needs the optional extras ``peers`` (lightly) and ``faster-coco-eval``: ``pip install -e ".[peers,faster-coco-eval]"``.

* Views (images/s through one plain ``DataLoader``, the same PIL images, batch, workers and collate for both sides;
  the engine's per-sample seeding is left out):
  - jigsaw tiles, the same work: RandomResizedCrop (0.6-1) to a 255 px crop, nine 64 px tiles jittered in their
    85 px cells, to float, normalised, shuffled. Ours: ``JigsawView`` (no flip, no grayscale, the 2,000-permutation
    set); lightly: ``RandomResizedCrop`` then ``Jigsaw(3, 255, 64, ToTensor + Normalize per tile)``.
  - PIRL's views at 96 px, each library with its defaults, whole and per view: ours ``PIRLViews`` (VISSL's
    augmentation), lightly ``PIRLTransform(input_size=96)``. Not the same work; the notes say where they differ.
* Bank + InfoNCE (float32, B embeddings of 128-d, K negatives, temperature 0.07): given the same negatives and
  positives the two losses agree (checked here to 1e-5). Ours draws K of N slots each step (one per training image,
  momentum-updated); lightly's bank is a FIFO queue of the last K embeddings (MoCo), all of them the negatives.
* COCO bbox evaluation: pycocotools (our default ``detection.coco_backend``) against faster-coco-eval (the optional
  one) on ``benchmarks/coco_backends.py``'s seeded detections; their numbers must agree to 1e-9.

Each time is the median of ``--repeats`` runs after ``--warmup``, the two sides interleaved (``ratios.median_times``),
so a change of load hits both alike. The speed ratio is ours / peer in speed (peer time / our time; > 1: ours faster).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import coco_backends
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from ratios import machine, median_times
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_bench.data.jigsaw import JigsawView, TileGeometry
from ssl_bench.data.permutations import permutation_set
from ssl_bench.data.types import DataInfo
from ssl_bench.methods.pirl import PIRLConfig, PIRLViews
from ssl_bench.modules.memory_bank import MemoryBank, Negatives
from ssl_bench.modules.nce import InfoNCELoss, info_nce_loss

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, lightly's IMAGENET_NORMALIZE
TEMPERATURE = 0.07
EMBEDDING_DIM = 128
PARTS = ("jigsaw", "pirl", "bank", "coco")


@dataclass(frozen=True)
class Sizes:
    batch: int = 128  # images per DataLoader batch
    batches: int = 4  # batches per timed round
    workers: int = 0  # DataLoader workers, both sides
    jigsaw_crop: int = 255  # the paper's crop: 85 px cells, 64 px tiles; lightly's Jigsaw default
    jigsaw_source: int = 256  # the stored images the crop is cut from (ImageNet resized to 256)
    pirl_size: int = 96  # STL-10's size
    bank: int = 1_281_167  # our bank's slots (ImageNet); lightly's queue holds K
    nce_batch: int = 256
    k: int = 32_000  # negatives: PIRL's / NPID's K, lightly's queue length
    coco_images: int = 500  # 50,000 detections at 100 per image; 5,000 for the 500k file of coco_backends.py
    coco_per_image: int = 100
    repeats: int = 5
    warmup: int = 1
    small: bool = False


SMALL = Sizes(
    batch=8,
    batches=2,
    jigsaw_crop=96,
    jigsaw_source=100,
    pirl_size=32,
    bank=10_000,
    nce_batch=16,
    k=1000,
    coco_images=20,
    coco_per_image=10,
    repeats=2,
    warmup=1,
    small=True,
)


@dataclass
class Row:
    workload: str
    ours: float
    peer: float
    unit: str  # "images/s" (higher is faster) or a time unit, "ms" or "s"
    notes: str = ""

    @property
    def speed_ratio(self) -> float:
        """Ours / peer in speed: > 1 means ours is faster."""
        return self.ours / self.peer if self.unit == "images/s" else self.peer / self.ours


def need(module: str, extra: str) -> Any:
    """Import ``module`` or stop with the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(
            f"benchmarks/peers.py needs {module.split('.')[0]}, which is not installed: pip install -e '.[{extra}]' "
            "(from the repository root)"
        ) from None


# -- views ---------------------------------------------------------------------------------------------------------


def synthetic_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """``n`` RGB images of ``size`` px: smooth colour fields plus noise (photo-like statistics, not constant tiles)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BILINEAR)
        noise = rng.normal(0, 12, (size, size, 3))
        out.append(Image.fromarray(np.clip(np.asarray(coarse, np.float64) + noise, 0, 255).astype(np.uint8)))
    return out


class Transformed(Dataset):
    """The same images for both sides, each through one side's transform."""

    def __init__(self, images: list[Image.Image], transform: Callable[[Image.Image], Any]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        return self.transform(self.images[i])


def epoch_fn(images: list[Image.Image], transform: Callable[[Image.Image], Any], size: Sizes) -> Callable[[], None]:
    """One call = one epoch of ``size.batches`` batches; with workers they persist across calls (the warm-up starts
    them), so no call pays their start-up."""
    loader = DataLoader(
        Transformed(images, transform),
        batch_size=size.batch,
        num_workers=size.workers,
        persistent_workers=size.workers > 0,
    )

    def run() -> None:
        for _ in loader:
            pass

    return run


def view_rows(parts: set[str], size: Sizes) -> list[Row]:
    lightly_t = need("lightly.transforms", "peers")
    T = importlib.import_module("lightly.transforms.torchvision_v2_compatibility").torchvision_transforms
    n = size.batch * size.batches
    norm = {"mean": list(MEAN), "std": list(STD)}
    rows = []
    if "jigsaw" in parts:
        geometry = TileGeometry.for_crop(size.jigsaw_crop)  # 255: cells of 85 px, tiles of 64 px
        ours = JigsawView(
            geometry.crop,
            MEAN,
            STD,
            permutation_set(2000),  # the Jigsaw method's set (cached after the first run)
            scale=(0.6, 1.0),
            grayscale_p=0.0,
            flip=False,
            geometry=geometry,
        )
        per_tile = T.Compose([T.ToTensor(), T.Normalize(**norm)])
        peer = T.Compose(
            [
                T.RandomResizedCrop(geometry.crop, scale=(0.6, 1.0)),
                lightly_t.Jigsaw(n_grid=3, img_size=geometry.crop, crop_size=geometry.tile, transform=per_tile),
            ]
        )
        images = synthetic_images(n, size.jigsaw_source)
        t = median_times({"ours": epoch_fn(images, ours, size), "peer": epoch_fn(images, peer, size)}, **_turns(size))
        rows.append(
            Row(
                f"jigsaw tiles: {size.jigsaw_source} px image -> {geometry.crop} px crop -> 9 x {geometry.tile} px",
                n / t["ours"],
                n / t["peer"],
                "images/s",
                "the same work: RandomResizedCrop (0.6-1), tiles jittered in their cells, float, normalise, shuffle "
                "(ours: `JigsawView`, one gather for the 9 tiles; lightly: `Jigsaw`, 9 numpy slices, PIL images, "
                "ToTensor + Normalize per tile)",
            )
        )
    if "pirl" in parts:
        info = DataInfo("peers", 0, n, size.pirl_size, MEAN, STD)
        ours_views = PIRLViews(PIRLConfig(), info)
        peer_views = lightly_t.PIRLTransform(input_size=size.pirl_size, normalize=norm)
        peer_image, peer_tiles = peer_views.transforms
        tiles = TileGeometry.for_crop(ours_views.jigsaw.geometry.crop)
        peer_tile = size.pirl_size // 3
        images = synthetic_images(n, size.pirl_size, seed=1)
        fns = {
            "ours": epoch_fn(images, ours_views, size),
            "peer": epoch_fn(images, peer_views, size),
            "ours_image": epoch_fn(images, ours_views.image, size),
            "peer_image": epoch_fn(images, peer_image, size),
            "ours_tiles": epoch_fn(images, ours_views.jigsaw, size),
            "peer_tiles": epoch_fn(images, peer_tiles, size),
        }
        t = median_times(fns, **_turns(size))
        px = size.pirl_size
        rows += [
            Row(
                f"PIRL views, {px} px images (v_I + 9 tiles)",
                n / t["ours"],
                n / t["peer"],
                "images/s",
                "each library's defaults, not the same work (the two rows below)",
            ),
            Row(
                f"  PIRL v_I, {px} px",
                n / t["ours_image"],
                n / t["peer_image"],
                "images/s",
                "ours: RandomResizedCrop (0.08-1), ColorJitter(0.4, 0.4, 0.4, 0.2) always, photometric 0.66, "
                "grayscale 0.2, flip (VISSL); lightly: RandomResizedCrop (0.08-1) only",
            ),
            Row(
                f"  PIRL tiles, {px} px",
                n / t["ours_tiles"],
                n / t["peer_tiles"],
                "images/s",
                f"ours: RandomResizedCrop (0.6-1) to {tiles.crop} px, 9 x {tiles.tile} px tiles (jittered), per tile "
                "ColorJitter always, photometric 0.66, grayscale 0.2, flip, batched over the 9 tiles; lightly: 9 x "
                f"{peer_tile} px tiles of the uncropped image (no jitter: they fill their cells), per tile flip, "
                "ColorJitter p = 0.8, grayscale 0.2, one PIL image at a time",
            ),
        ]
    return rows


def _turns(size: Sizes) -> dict[str, int]:
    return {"warmup": size.warmup, "repeats": size.repeats}


# -- bank + InfoNCE ------------------------------------------------------------------------------------------------


@dataclass
class BankWorkload:
    """Ours: a ``MemoryBank`` of ``size.bank`` slots + ``InfoNCELoss``; peer: lightly's ``NTXentLoss`` with a
    (K, 128) memory bank. ``x`` (B, 128) is the embedding before normalisation (the gradient's leaf);
    ``positives`` (B, 128) are the samples' memories, lightly's ``out1``."""

    bank: MemoryBank
    loss: InfoNCELoss
    peer: Any  # lightly.loss.NTXentLoss
    x: Tensor
    index: Tensor  # (B,) distinct slots
    k: int
    drawn: Negatives  # one draw, for the loss-only row
    positives: Tensor

    def ours_step(self) -> None:
        """Draw + gather K negatives, positive and negative scores, InfoNCE forward + backward, bank update."""
        self.ours_loss(self.bank.negatives(self.index, self.k))
        self.bank.update(self.index, F.normalize(self.x.detach(), dim=1))

    def ours_loss(self, negatives: Negatives | None = None) -> None:
        """Scores of the positive and the K negatives, InfoNCE forward + backward."""
        self.x.grad = None
        f = F.normalize(self.x, dim=1)  # (B, 128)
        negatives = self.drawn if negatives is None else negatives
        loss = self.loss(self.bank.positive_scores(f, self.index), negatives.scores(f))  # (B,), (B, K)
        loss.backward()

    @torch.no_grad()
    def ours_bank(self) -> None:
        """The bank's own work per step: draw + gather K negatives, momentum update of the B slots."""
        self.bank.negatives(self.index, self.k)
        self.bank.update(self.index, F.normalize(self.x, dim=1))

    def peer_step(self) -> None:
        """lightly: NTXentLoss forward + backward (its bank read and FIFO enqueue happen inside)."""
        self.x.grad = None
        self.peer(self.x, self.positives).backward()

    @torch.no_grad()
    def peer_bank(self) -> None:
        """lightly's bank work per step: the read (a clone of the (K, 128) queue) and the enqueue of B embeddings."""
        self.peer.memory_bank(self.positives, update=True)


def bank_workload(size: Sizes) -> BankWorkload:
    """Both sides set up as ``NCEWorkload`` sets ours up, and a check that their losses agree on the same inputs."""
    ntxent = need("lightly.loss", "peers").NTXentLoss
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(size.bank, EMBEDDING_DIM, momentum=0.5, generator=g)
    index = torch.randperm(size.bank, generator=g)[: size.nce_batch]
    x = torch.randn(size.nce_batch, EMBEDDING_DIM, generator=g).requires_grad_()
    drawn = torch.randperm(size.bank, generator=g)
    drawn = drawn[~torch.isin(drawn, index)][: size.k]  # K slots, none a sample's own: plain InfoNCE, no redraws
    negatives = Negatives(drawn, bank.memory.index_select(0, drawn))  # (K,), (K, 128)
    peer = ntxent(temperature=TEMPERATURE, memory_bank_size=(size.k, EMBEDDING_DIM))
    positives = bank.memory[index].clone()  # (B, 128)

    with torch.no_grad():  # the same numbers when lightly's queue holds our K negatives
        peer.memory_bank.bank.copy_(negatives.memory)
        f = F.normalize(x, dim=1)
        ours = info_nce_loss(bank.positive_scores(f, index), negatives.scores(f), TEMPERATURE)
        theirs = peer(x.detach(), positives)  # out0 without a gradient: lightly does not enqueue
    if not torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5):
        raise SystemExit(f"bank + InfoNCE: our loss {ours.item():.6f} and lightly's {theirs.item():.6f} disagree")
    return BankWorkload(bank, InfoNCELoss(TEMPERATURE), peer, x, index, size.k, negatives, positives)


def bank_rows(size: Sizes) -> list[Row]:
    work = bank_workload(size)
    t = median_times(
        {
            "ours_step": work.ours_step,
            "ours_loss": work.ours_loss,
            "ours_bank": work.ours_bank,
            "peer_step": work.peer_step,
            "peer_bank": work.peer_bank,
        },
        **_turns(size),
    )
    shape = f"B = {size.nce_batch}, K = {size.k:,}, 128-d"
    ms = 1e3
    return [
        Row(
            f"bank + InfoNCE step, {shape}",
            t["ours_step"] * ms,
            t["peer_step"] * ms,
            "ms",
            f"ours: draw K of {size.bank:,} slots + gather, scores, InfoNCE fwd + bwd, momentum update of B slots; "
            "lightly: `NTXentLoss(memory_bank_size=(K, 128))` fwd + bwd, its bank a FIFO queue of the last K "
            "embeddings (clone, scores, cross-entropy, enqueue). Same loss on the same negatives (checked, 1e-5)",
        ),
        Row(
            "  scores + InfoNCE fwd + bwd",
            t["ours_loss"] * ms,
            t["peer_step"] * ms,
            "ms",
            "ours without the bank's draw and update (negatives drawn once); lightly's call as above: its bank "
            "read and enqueue cannot be taken out of it (they are the row below)",
        ),
        Row(
            "  the bank's own work",
            t["ours_bank"] * ms,
            t["peer_bank"] * ms,
            "ms",
            f"ours: draw + gather K rows of the {size.bank:,}-slot bank, update B slots (normalise(0.5 old + 0.5 new)); "
            "lightly: clone the whole (K, 128) queue, copy B rows in",
        ),
    ]


# -- COCO ----------------------------------------------------------------------------------------------------------


def coco_rows(size: Sizes, seed: int = 0) -> list[Row]:
    need("faster_coco_eval", "faster-coco-eval")
    reference, peer = coco_backends.BACKENDS
    gt, results = coco_backends.make_data(size.coco_images, 20, size.coco_per_image, seed)
    n_dets = len(results)
    records: dict[str, list[tuple[dict[str, float], dict[str, Any]]]] = {b: [] for b in coco_backends.BACKENDS}
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, dets_file = Path(tmp) / "gt.json", Path(tmp) / "detections.json"
        gt_file.write_text(json.dumps(gt))
        dets_file.write_text(json.dumps(results))
        del gt, results
        for backend in coco_backends.BACKENDS:
            coco_backends.classes(backend)  # the imports, outside the timing

        def evaluate(backend: str) -> Callable[[], None]:
            return lambda: records[backend].append(coco_backends.run(backend, gt_file, dets_file))

        median_times({b: evaluate(b) for b in coco_backends.BACKENDS}, warmup=0, repeats=size.repeats)
    a, b = records[reference][-1][1], records[peer][-1][1]
    diff = max(
        [abs(a["stats"][k] - b["stats"][k]) for k in a["stats"]]
        + [abs(v - b["per_class"].get(k, float("inf"))) for k, v in a["per_class"].items()]
    )
    if diff > 1e-9:
        raise SystemExit(f"COCO: pycocotools and faster-coco-eval disagree by {diff:.3g} (more than 1e-9)")

    def phase(backend: str, names: tuple[str, ...]) -> float:
        return statistics.median(sum(times[p] for p in names) for times, _ in records[backend])

    label = f"{size.coco_images:,} images, {n_dets:,} detections"
    evaluate_phases = ("evaluate", "accumulate", "summarize")
    loading, everything = ("load",), ("load", *evaluate_phases)
    return [
        Row(
            f"COCO bbox evaluation, {label}",
            phase(reference, everything),
            phase(peer, everything),
            "s",
            "ours = pycocotools (the default `detection.coco_backend`), peer = faster-coco-eval (the optional one, "
            f"COCOeval in C++); the same AP..APl and per-class APs (largest difference {diff:.2g})",
        ),
        Row("  load (COCO + loadRes)", phase(reference, loading), phase(peer, loading), "s", "json parse + index"),
        Row(
            "  evaluate + accumulate + summarize",
            phase(reference, evaluate_phases),
            phase(peer, evaluate_phases),
            "s",
            "the matching per image and class, then the precision table",
        ),
    ]


# -- the table -----------------------------------------------------------------------------------------------------


def number(value: float, unit: str) -> str:
    if unit == "images/s":
        return f"{value:,.0f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def render(rows: list[Row], size: Sizes, header: list[str]) -> str:
    lines = [*header, ""]
    if size.small:
        lines += ["**Smoke sizes (`--small`): these numbers say nothing.**", ""]
    lines += [
        "| workload | ours | peer | unit | ours / peer (speed) | notes |",
        "|---|--:|--:|---|--:|---|",
    ]
    for r in rows:
        cells = [r.workload, number(r.ours, r.unit), number(r.peer, r.unit), r.unit, f"{r.speed_ratio:.2f}", r.notes]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "ours / peer (speed): > 1 means ours is faster (images/s: ours / peer; times: peer / ours)."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--small", action="store_true", help="smoke sizes: a few seconds, the numbers mean nothing")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    p.add_argument("--batch", type=int, help="images per DataLoader batch (default 128)")
    p.add_argument("--batches", type=int, help="batches per timed round (default 4)")
    p.add_argument("--workers", type=int, help="DataLoader workers, both sides (default 0)")
    p.add_argument("--pirl-size", type=int, help="PIRL's image size (default 96)")
    p.add_argument("--bank", type=int, help="our bank's slots (default 1,281,167)")
    p.add_argument("--nce-batch", type=int, help="embeddings per bank + InfoNCE step (default 256)")
    p.add_argument("--k", type=int, help="negatives, lightly's queue length (default 32,000)")
    p.add_argument(
        "--coco-images", type=int, help="COCO images, ~100 detections each (default 500; 5000: the 500k file)"
    )
    p.add_argument("--repeats", type=int, help="timed runs per measurement, median taken (default 5; --small 2)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {s.strip() for s in args.only.split(",") if s.strip()}
    if parts - set(PARTS) or not parts:
        raise SystemExit(f"--only: unknown {sorted(parts - set(PARTS))}; valid: {', '.join(PARTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {
        "batch": args.batch,
        "batches": args.batches,
        "workers": args.workers,
        "pirl_size": args.pirl_size,
        "bank": args.bank,
        "nce_batch": args.nce_batch,
        "k": args.k,
        "coco_images": args.coco_images,
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    size = replace(SMALL if args.small else Sizes(), **{k: v for k, v in options.items() if v is not None})
    if parts & {"jigsaw", "pirl", "bank"}:
        need("lightly", "peers")  # before any measuring: say which extra is missing first
    if "coco" in parts:
        need("faster_coco_eval", "faster-coco-eval")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start, load_before = datetime.now(timezone.utc), os.getloadavg()[0]
    rows: list[Row] = []
    if parts & {"jigsaw", "pirl"}:
        log(f"views: batch {size.batch} x {size.batches}, {size.workers} workers ...")
        rows += view_rows(parts, size)
    if "bank" in parts:
        log(f"bank + InfoNCE: N = {size.bank:,}, B = {size.nce_batch}, K = {size.k:,} ...")
        rows += bank_rows(size)
    if "coco" in parts:
        log(f"COCO: {size.coco_images} images, ~{size.coco_per_image} detections each ...")
        rows += coco_rows(size)
    load_after = os.getloadavg()[0]
    lightly = importlib.import_module("lightly").__version__ if parts & {"jigsaw", "pirl", "bank"} else "-"
    header = [
        f"Measured {start:%Y-%m-%d %H:%M} UTC, {(datetime.now(timezone.utc) - start).total_seconds():.0f} s.",
        "",
        f"- Machine: {machine()}; load average {load_before:.1f} at the start, {load_after:.1f} at the end (other "
        "processes slow both sides alike: the sides are interleaved).",
        f"- lightly {lightly}; views through one `DataLoader`, batch {size.batch}, {size.batches} batches per round, "
        f"{size.workers} workers; median of {size.repeats} runs after {size.warmup} warm-up, interleaved.",
    ]
    print(render(rows, size, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
