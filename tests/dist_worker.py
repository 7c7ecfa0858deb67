"""The one training step the distributed tests compare across ranks, in a module of its own: ``mp.spawn`` pickles
``worker`` by module name, and a test module imported by pytest's importlib mode cannot be imported by name in
the spawned process (tests/ is on sys.path through pytest's ``pythonpath``, so this module can)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from ssl_bench.backbone import Backbone
from ssl_bench.data.batch import collate
from ssl_bench.data.types import DataInfo
from ssl_bench.methods import get_method

TINY = "resnet18-w0.25"
INFO = DataInfo("tiny", num_classes=10, num_train=64, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
GLOBAL_BATCH = 8


def one_step(name: str, options: dict, rank: int, world: int) -> dict[str, torch.Tensor]:
    """A method built from seed 0, BN in eval mode (its batch statistics are the one thing allowed to differ),
    one training step on this rank's slice of a fixed global batch of dataset indices 3, 10, 17, ..."""
    torch.manual_seed(0)
    cls = get_method(name)
    method = cls(Backbone(TINY), cls.Config(**options), INFO).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(GLOBAL_BATCH)]
    transform = method.transform()
    torch.manual_seed(2)
    samples = [(transform(img), i % 10, (3 + 7 * i) % INFO.num_train) for i, img in enumerate(images)]
    local = GLOBAL_BATCH // world
    torch.manual_seed(3)  # the generator every rank draws negatives from: the same state everywhere
    out = method.training_step(collate(samples[rank * local : (rank + 1) * local]))
    state = {"loss": out["loss"].detach(), "bank": method.bank.memory.clone()}
    buffers = dict(method.criterion.named_buffers())
    if "z" in buffers:  # NCE's normaliser (NPID++ and PIRL with loss="nce"), estimated in this step
        state["z"] = buffers["z"].clone()
    return state


def worker(rank: int, world: int, port: int, name: str, options: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(one_step(name, options, rank, world), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
