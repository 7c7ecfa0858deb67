"""The detection variant of the built-in scenes: several objects per scene, written once in VOC layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_bench import storage
from ssl_bench.data.render import (
    CLASSES,
    SUPERSAMPLE,
    VERSION,
    Array,
    _background,
    _check_size,
    _draw_background,
    _draw_clutter,
    _draw_objects,
    _finish,
    _grid,
    _paint_clutter,
    _paint_objects,
)
from ssl_bench.data.voc import write_annotation

VOC_MARKER = "synthetic_voc.json"


def _visible_box(seen: Array) -> tuple[int, int, int, int] | None:
    """VOC box (1-based, inclusive) of the image pixels that hold any of the (R, R) supersampled ``seen`` pixels.

    None when the box would be under two pixels across: VOC loaders (ours included) reject xmax == xmin.
    """
    s = seen.shape[0] // SUPERSAMPLE
    pixels = seen.reshape(s, SUPERSAMPLE, s, SUPERSAMPLE).any((1, 3))
    rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
    if len(rows) < 2 or len(cols) < 2:
        return None
    return int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1


def _render_scene(rng: np.random.Generator, size: int, max_objects: int) -> tuple[Array, list[dict]]:
    """One detection scene: (H, W, 3) uint8 and its objects [{name, bbox (VOC 1-based), difficult, truncated}].

    Objects and ground clutter are painted far to near; each object's box is the tight box of the pixels where it
    is visible (any of its supersampled pixels survives the nearer ones), and it is difficult when < 40% visible.
    """
    bg = _draw_background(rng, 1)
    n = int(rng.integers(1, max_objects + 1))
    cls = rng.integers(0, len(CLASSES), n)
    objects = _draw_objects(rng, cls, np.repeat(bg.horizon, n), scale=(0.16, 0.5), depth=rng.uniform(0.03, 1, n))
    clutter = _draw_clutter(rng, bg.horizon, slots=5, p=0.6)
    items = [("object", k, float(objects.by[k])) for k in range(n)]
    items += [("clutter", k, float(clutter.by[0, k])) for k in range(clutter.on.shape[1]) if clutter.on[0, k]]
    items.sort(key=lambda item: item[2])

    r = size * SUPERSAMPLE
    u, v = _grid(r)
    img = _background(bg, u, v)
    owner = np.full((r, r), -1)  # index of the object seen at each supersampled pixel
    full: dict[int, Array] = {}
    for kind, k, _ in items:
        if kind == "object":
            full[k] = _paint_objects(img, u, v, objects.take(np.array([k])))[0]
            owner[full[k]] = k
        else:
            active = np.zeros((1, clutter.on.shape[1]), bool)
            active[0, k] = True
            owner[_paint_clutter(img, u, v, clutter, active)[0]] = -1
    pixels = _finish(img, bg, np.random.default_rng(rng.integers(2**32)))[0]

    annotated = []
    for k in range(n):
        bbox = _visible_box(owner == k)
        if bbox is None:  # (almost) hidden
            continue
        drawn = full[k].reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).any((1, 3))
        edge = bool(drawn[0].any() or drawn[-1].any() or drawn[:, 0].any() or drawn[:, -1].any())
        visible = (owner == k).sum() / max(1, full[k].sum())
        annotated.append(
            {
                "name": CLASSES[int(cls[k])],
                "bbox": bbox,
                "difficult": bool(visible < 0.4),
                "truncated": edge,
                "visible": float(visible),
            }
        )
    return pixels, annotated


def write_voc(
    root: str | Path, num_trainval: int, num_test: int, image_size: int = 128, seed: int = 0, max_objects: int = 4
) -> Path:
    """Write the synthetic detection set in Pascal VOC layout under ``root`` (once; the marker file is written last).

    trainval images are ``000001 ..``, test images follow them; scene i depends only on (seed, i). Returns ``root``.
    """
    _check_size(image_size)
    if num_trainval < 1 or num_test < 1 or max_objects < 1:
        raise ValueError(
            f"need num_trainval, num_test, max_objects >= 1, got {num_trainval}, {num_test}, {max_objects}"
        )
    root = Path(root)
    params = {
        "version": VERSION,
        "num_trainval": num_trainval,
        "num_test": num_test,
        "image_size": image_size,
        "seed": seed,
        "max_objects": max_objects,
    }
    marker = root / VOC_MARKER
    try:
        if json.loads(marker.read_text()) == params:
            return root
    except (OSError, ValueError):
        pass
    marker.unlink(missing_ok=True)
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"{i + 1:06d}" for i in range(num_trainval + num_test)]
    for i, name in enumerate(ids):
        pixels, objects = _render_scene(np.random.default_rng([seed, 2, i]), image_size, max_objects)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        write_annotation(root / "Annotations" / f"{name}.xml", f"{name}.jpg", image_size, image_size, objects)
    (root / "ImageSets/Main/trainval.txt").write_text("".join(f"{i}\n" for i in ids[:num_trainval]))
    (root / "ImageSets/Main/test.txt").write_text("".join(f"{i}\n" for i in ids[num_trainval:]))
    storage.write_text(marker, json.dumps(params))  # atomically: a half-written marker never passes for done
    return root
