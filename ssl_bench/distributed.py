"""torch.distributed for runs launched by torchrun: process group, rank, and the few collectives the suite uses.

``torchrun --nproc_per_node=N -m ssl_bench run ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; ``init()`` joins the
process group (gloo on CPU, nccl on GPU). Without torchrun every helper here is the single-process identity, so
the same code runs on a laptop, one GPU or a cluster.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def launched() -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(requested: torch.device) -> torch.device:
    """Under torchrun on GPUs, each process takes cuda:LOCAL_RANK."""
    if requested.type == "cuda" and launched():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return requested


def init(device: torch.device) -> None:
    """Join the process group torchrun describes (gloo for CPU, nccl for CUDA); a no-op without torchrun."""
    if launched() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(hours=2))


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_cat(t: Tensor) -> Tensor:
    """Concatenation along dim 0 of every rank's ``t`` (same shape on every rank), in rank order; no gradient."""
    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(world())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def mean(t: Tensor) -> Tensor:
    """The mean of ``t`` over ranks (every rank gets it)."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / world()


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. Ctrl-C reached one process)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
