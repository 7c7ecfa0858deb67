"""pytest-benchmark suite: the workloads of ``workloads.py``, one benchmark each (see benchmarks/README.md).

    pytest benchmarks/ --benchmark-only                 # full sizes
    SSL_BENCH_BENCH_SMALL=1 pytest benchmarks/ --benchmark-only --benchmark-min-rounds=1   # smoke

Groups: ``step-vs-backbone <method>`` (the engine's training step and the bare backbone passes, on the same
tensors), ``nce`` (ImageNet-scale NCE: shared / per-sample negatives and the matmul floor), ``loader``
(DataLoader alone; images/s = OPS x extra_info["images"]). ``ratios.py`` turns the same workloads into ratios.
"""

from __future__ import annotations

import itertools

import pytest
import workloads
from workloads import METHOD_NAMES


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_step(benchmark, workload_for, rounds, method: str) -> None:
    work = workload_for(method)
    benchmark.group = f"step-vs-backbone {method}"
    benchmark.extra_info.update(images=work.images, passes=work.passes)
    benchmark.pedantic(work.step, rounds=rounds.rounds, warmup_rounds=rounds.warmup)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_backbone(benchmark, workload_for, rounds, method: str) -> None:
    work = workload_for(method)
    benchmark.group = f"step-vs-backbone {method}"
    benchmark.extra_info.update(images=work.images, passes=work.passes)
    benchmark.pedantic(work.backbone_passes, rounds=rounds.rounds, warmup_rounds=rounds.warmup)


@pytest.mark.parametrize("variant", ["matmul", "shared", "per_sample"])
def test_nce(benchmark, nce, sizes, rounds, variant: str) -> None:
    benchmark.group = "nce"
    benchmark.extra_info.update(bank=sizes.bank, batch=sizes.nce_batch, negatives=sizes.negatives)
    if variant == "matmul":
        fn = nce.matmul
    elif variant == "shared":
        fn = lambda: nce.step(shared=True)  # noqa: E731
    else:
        fits, note = workloads.per_sample_fits(nce)
        if not fits:
            pytest.skip(note)
        fn = lambda: nce.step(shared=False)  # noqa: E731
    benchmark.pedantic(fn, rounds=rounds.rounds, warmup_rounds=rounds.warmup)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_loader(benchmark, workload_for, sizes, rounds, method: str) -> None:
    dataset = workload_for(method).dataset
    n = workloads.loader_batches(dataset, sizes)
    epochs = itertools.count(1)
    benchmark.group = "loader"
    benchmark.extra_info.update(images=n * sizes.batch, workers=sizes.workers)
    benchmark.pedantic(
        workloads.take,
        setup=lambda: ((workloads.start_loader(dataset, sizes, next(epochs)), n), {}),
        rounds=rounds.rounds,
        warmup_rounds=min(rounds.warmup, 1),
    )
