"""What the per-epoch collapse monitor (``ssl_bench.monitor``) costs against one training epoch, at the ``ci`` preset's
sizes (2,000 synthetic 32 px images, ``resnet18-smallstem-w0.25``, batch 64, fp32, 2 threads).

For each method: one epoch of ``Trainer.fit`` without the monitor, then the monitor's pass on the trained method
(the median of ``--repeats`` calls; the first call is timed apart); the monitor is built once (its images are
cropped once) and that is timed too. Prints one markdown table with the CPU named.

usage: python benchmarks/monitor_cost.py [--methods rotnet,pirl] [--repeats 3] [--set monitor.knn_train=500 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from workloads import cache_root

from ssl_bench.backbone import Backbone
from ssl_bench.check import cpu_model
from ssl_bench.data.registry import load_dataset
from ssl_bench.data.types import Indexed
from ssl_bench.engine import Trainer, autocast_dtype
from ssl_bench.monitor import Monitor
from ssl_bench.run_config import load, parse_set, resolve

TRAINING = ("supervised", "autoencoder", "rotnet", "jigsaw", "npidpp", "pirl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(TRAINING))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = the preset's: 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    cfg = load("ci", parse_set(args.set))
    torch.set_num_threads(args.threads or cfg.threads or torch.get_num_threads())
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    device = torch.device("cpu")
    splits = load_dataset(cfg.data, cache_root())
    backbone = cfg.backbones[0]
    m = cfg.monitor
    print(
        f"CPU: {cpu_model()}, {torch.get_num_threads()} threads; ci sizes: {len(splits.pretraining())} train images "
        f"of {splits.info.image_size} px, {backbone}, batch {cfg.train.batch_size}, {cfg.train.precision}; monitor: "
        f"{m.images} images, kNN {m.knn_train} -> {m.knn_test} (k = {m.knn_k}), at most {m.max_fraction:g} x the "
        "pretraining images in all\n"
    )
    print(
        "| method | embedding | images | kNN | epoch (s) | monitor (s) | first call (s) | build (s) | monitor / epoch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.methods.split(","):
        resolved = resolve(cfg, name)
        torch.manual_seed(0)
        method = resolved.method(Backbone(backbone), resolved.method_cfg, splits.info)
        data = splits.train if resolved.method.needs_labels else splits.pretraining()
        dataset = Indexed(data, method.transform())
        train = dataclasses.replace(resolved.run.train, epochs=1)
        t0 = time.perf_counter()
        monitor = Monitor(splits, m, device, autocast_dtype(train.precision, device), cfg.data.num_workers, name)
        build = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="ssl-bench-monitor-cost-") as run_dir:
            trainer = Trainer(method, train, device, Path(run_dir), 0, cfg.data.num_workers, cfg.checkpoint)
            t0 = time.perf_counter()
            trainer.fit(dataset)
            epoch = time.perf_counter() - t0
        t0 = time.perf_counter()
        values = monitor(method, 1)
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            monitor(method, 1)
            times.append(time.perf_counter() - t0)
        cost = statistics.median(times)
        layer = next(iter(values)).split("/")[1]
        knn = f"{len(monitor.train_x)} -> {len(monitor.test_x)}" if monitor.labelled else "-"
        cells = [name, layer, len(monitor.images), knn, f"{epoch:.1f}", f"{cost:.2f}", f"{first:.2f}", f"{build:.2f}"]
        print(f"| {' | '.join(map(str, cells))} | {100 * cost / epoch:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
