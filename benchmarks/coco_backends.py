"""The coco protocol's two backends (``detection.coco_backend``) timed on one detections file of realistic size:
pycocotools (the reference) and faster-coco-eval (its C++ port, an optional extra), one after the other in one run.

The data is seeded: ``--images`` images of 640 x 480 with about 7 objects each (COCO val2017 has 7.3) of ``--classes``
classes, small, medium and large, a few of them crowd regions; ``--per-image`` detections per image on average (a
detector's output at COCOeval's 100 per image): near copies of the objects, the others anywhere, continuous scores.
Both files are written to a temporary directory and read by each backend as ``detect-eval`` reads them.

Timed per backend (the median of ``--repeats``): loading (``COCO(gt)`` + ``loadRes(dets)``), then evaluate,
accumulate and summarize, the COCOeval work the backend replaces. The numbers of both must agree (stats[0:6] and
per-class AP within 1e-9). Prints one markdown table with the CPU named and the load average (other jobs slow both).

usage: python benchmarks/coco_backends.py [--images 5000] [--classes 20] [--per-image 100] [--seed 0] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssl_bench.check import cpu_model
from ssl_bench.detection.coco import SUMMARY, per_class_ap

BACKENDS = ("pycocotools", "faster-coco-eval")


def make_data(images: int, classes: int, per_image: int, seed: int) -> tuple[dict, list[dict]]:
    """(COCO instances dict, results list) as described in the module docstring."""
    rng = np.random.default_rng(seed)
    gt_images, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        gt_images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id:012d}.jpg"})
        objects = []
        for _ in range(int(rng.poisson(7))):
            side = float(np.exp(rng.uniform(np.log(8), np.log(400))))  # small, medium and large (COCO: 32, 96 px)
            w, h = side * float(rng.uniform(0.6, 1.4)), side * float(rng.uniform(0.6, 1.4))
            w, h = min(w, 639.0), min(h, 479.0)
            x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            cat = int(rng.integers(1, classes + 1))
            crowd = int(rng.random() < 0.01)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            objects.append((cat, x, y, w, h))
        count = int(rng.poisson(per_image))
        near = min(count, 3 * len(objects))  # about 3 detections near each object, the rest anywhere
        for k in range(count):
            if k < near:
                cat, x, y, w, h = objects[k % len(objects)]
                if rng.random() < 0.2:
                    cat = int(rng.integers(1, classes + 1))  # a confused class
                dx, dy, dw, dh = rng.normal(0, 0.12, 4) * [w, h, w, h]
                box = [x + dx, y + dy, max(w + dw, 1.0), max(h + dh, 1.0)]
                score = float(rng.beta(5, 2))
            else:
                w, h = (float(v) for v in np.exp(rng.uniform(np.log(8), np.log(300), 2)))
                box = [float(rng.uniform(0, 640 - min(w, 639))), float(rng.uniform(0, 480 - min(h, 479))), w, h]
                cat = int(rng.integers(1, classes + 1))
                score = float(rng.beta(1, 6))
            results.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})
    categories = [{"id": k, "name": f"class{k:02d}"} for k in range(1, classes + 1)]
    return {"images": gt_images, "annotations": annotations, "categories": categories}, results


def classes(backend: str) -> tuple[Any, Any]:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    from faster_coco_eval import COCO, COCOeval_faster

    return COCO, COCOeval_faster


def run(backend: str, gt_file: Path, dets_file: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """({phase: seconds}, {"stats": AP..APl x 100, "per_class": {name: AP}}) of one full evaluation."""
    coco_class, eval_class = classes(backend)
    times: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        t0 = time.perf_counter()
        coco_gt = coco_class(str(gt_file))
        coco_dt = coco_gt.loadRes(str(dets_file))
        times["load"] = time.perf_counter() - t0
        evaluator = eval_class(coco_gt, coco_dt, iouType="bbox")
        for phase in ("evaluate", "accumulate", "summarize"):
            t0 = time.perf_counter()
            getattr(evaluator, phase)()
            times[phase] = time.perf_counter() - t0
    stats = {name: float(evaluator.stats[i]) * 100 for name, i in SUMMARY.items()}
    return times, {"stats": stats, "per_class": per_class_ap(evaluator)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    gt, results = make_data(args.images, args.classes, args.per_image, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, dets_file = Path(tmp) / "gt.json", Path(tmp) / "detections.json"
        gt_file.write_text(json.dumps(gt))
        dets_file.write_text(json.dumps(results))
        size = dets_file.stat().st_size / 1e6
        n_boxes, n_dets = len(gt["annotations"]), len(results)
        del gt, results
        timings: dict[str, list[dict[str, float]]] = {b: [] for b in BACKENDS}
        numbers: dict[str, dict[str, Any]] = {}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for backend in BACKENDS:
                times, numbers[backend] = run(backend, gt_file, dets_file)
                timings[backend].append(times)
        load = max(load, os.getloadavg()[0])

    reference, faster = (numbers[b] for b in BACKENDS)
    diff = max(
        [abs(reference["stats"][k] - faster["stats"][k]) for k in SUMMARY]
        + [abs(v - faster["per_class"][k]) for k, v in reference["per_class"].items()]
    )
    same_keys = set(reference["per_class"]) == set(faster["per_class"])
    phases = ("load", "evaluate", "accumulate", "summarize")
    median = {b: {p: statistics.median(t[p] for t in timings[b]) for p in phases} for b in BACKENDS}
    for b in BACKENDS:
        median[b]["evaluate+accumulate+summarize"] = sum(median[b][p] for p in phases[1:])
        median[b]["total"] = median[b]["load"] + median[b]["evaluate+accumulate+summarize"]

    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs; load average {load:.1f} during the run); "
        f"{args.images} images, {args.classes} classes, {n_boxes} boxes, {n_dets} detections (detections file "
        f"{size:.0f} MB), seed {args.seed}, median of {args.repeats} run(s)"
    )
    print()
    print("| phase | pycocotools (s) | faster-coco-eval (s) | ratio (pycocotools / faster) |")
    print("|---|---:|---:|---:|")
    for p in (*phases, "evaluate+accumulate+summarize", "total"):
        a, b = median["pycocotools"][p], median["faster-coco-eval"][p]
        ratio = f"{a / b:.1f}x" if b >= 0.01 else "–"
        print(f"| {p} | {a:.2f} | {b:.2f} | {ratio} |")
    print()
    print(
        "faster-coco-eval accumulates inside evaluate (separate_eval=False, as ssl-bench runs it); its accumulate ~0 s."
    )
    print(
        f"AP {reference['stats']['AP']:.4f}, AP50 {reference['stats']['AP50']:.4f}; largest difference between the "
        f"backends over AP..APl and {len(reference['per_class'])} per-class APs: {diff:.3g}"
        + ("" if same_keys else " (per-class keys differ!)")
    )
    if diff > 1e-9 or not same_keys:
        raise SystemExit("the backends disagree beyond 1e-9")


if __name__ == "__main__":
    main()
