"""The renderer of the built-in ``synthetic`` dataset: little outdoor scenes of ten upright object classes.

Why it exists: an offline dataset that still carries the signals the pretext tasks learn from. A canonical up
direction (sky above, ground below, light from above, flat-bottomed clouds, objects standing on the ground with a
shadow at their feet) makes rotations predictable (RotNet); a consistent layout (sky, horizon, ground, object in
the middle band) makes the order of 3x3 tiles predictable (Jigsaw); ten distinct upright silhouettes under nuisance
variation (colour, scale, position, aspect, texture, clutter, sky and ground colours, exposure, pixel noise) make
instance discrimination (NPID++, PIRL) and class probes non-trivial. Those outdoor cues proved too strong for RotNet
(98% of the rotations told after 5 epochs while its probe stayed at random-init's), so the "bare" framing keeps the
object and takes the rest away: a flat background, the object at any height, no shadow, no clutter (the default
preset's scenes).

Scenes are unions of primitives drawn at twice the image size and box-downsampled (anti-aliasing). All drawing is
vectorised numpy over a chunk of images. A scene's parameters come from the seed only, so one seed gives the same
scenes at every image size. The dataset built from it is ``data.synthetic``; its detection variant (several objects
per scene, VOC layout) is ``data.synthetic_voc``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

CLASSES: tuple[str, ...] = ("tree", "house", "person", "car", "mushroom", "lamppost", "cup", "flag", "arrow", "snowman")
SPLITS: tuple[str, ...] = ("train", "test")
VERSION = 1  # bump when the rendering changes: cached files of another version are regenerated
MIN_SIZE, MAX_SIZE = 16, 256
# How the scene frames its object: (object scale, depth range) for ``_draw_objects``. "wide" (the first scenes): an
# object 36-60% of the scene's height anywhere on the ground, most pixels background; "close": the object near the
# camera, 65-90% of the height, so crops and tiles of the scene mostly show it (issue 20); "bare": the wide scenes'
# objects (their draws, this geometry) on a flat background of one muted colour, at any height, without shadow or
# clutter: every cue of which way is up but the object's own taken away (on the outdoor scenes RotNet tells 98% of
# the rotations after 5 epochs from sky, ground and shadows, and never needs the object: README, issue 20).
FRAMINGS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "wide": ((0.36, 0.6), (0.08, 1.0)),
    "close": ((0.65, 0.9), (0.75, 1.0)),
    "bare": ((0.36, 0.6), (0.08, 1.0)),
}
SUPERSAMPLE = 2
CHUNK_PIXELS = 2**20  # supersampled pixels rendered at once (bounds memory: ~12 MB per float32 RGB array)

# Per class: height relative to the scene's object scale, and half-width in units of the object's height.
HEIGHT = np.array([1.0, 0.8, 0.9, 0.42, 0.6, 1.1, 0.5, 1.0, 0.9, 0.85], np.float32)
HALF_WIDTH = np.array([0.40, 0.46, 0.21, 0.95, 0.47, 0.12, 0.58, 0.31, 0.30, 0.21], np.float32)

Array = np.ndarray
TAU = 2 * math.pi
P = TypeVar("P", bound="_Params")


# ----------------------------------------------------------------------------------------------- scene parameters
@dataclasses.dataclass
class _Params:
    """Arrays with one row per scene (or object); ``take`` selects rows."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            a = np.asarray(getattr(self, f.name))
            setattr(self, f.name, a.astype(np.float32) if a.dtype == np.float64 else a)

    def take(self: P, rows: Array | slice) -> P:
        return type(self)(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})


@dataclasses.dataclass
class _Background(_Params):
    horizon: Array  # (N,) fraction of the height
    wave: Array  # (N, 3) amplitude, frequency, phase of the rolling horizon
    hill: Array  # (N, 3) amplitude (0 = no hills), frequency, phase
    sky_top: Array  # (N, 3) RGB
    sky_horizon: Array  # (N, 3)
    ground: Array  # (N, 3)
    ground_tex: Array  # (N, 4) noise amplitude, furrow amplitude, furrow frequency, furrow phase
    noise_coarse: Array  # (N, 5, 5) smooth ground noise
    noise_fine: Array  # (N, 13, 13)
    sun: Array  # (N, 4) on, x, y, radius
    clouds: Array  # (N, K, 6) on, x, y, width, alpha, brightness
    camera: Array  # (N, 2) exposure, pixel noise std (0..1 units)


@dataclasses.dataclass
class _Objects(_Params):
    cls: Array  # (M,) class index
    bx: Array  # (M,) base centre x, fraction of the width
    by: Array  # (M,) base y (where it stands on the ground)
    height: Array  # (M,) fraction of the image height
    stretch: Array  # (M,) horizontal aspect jitter
    flip: Array  # (M,) +1 / -1 mirror
    c1: Array  # (M, 3) main colour
    c2: Array  # (M, 3) second colour
    texture: Array  # (M, 5) kind (0 plain, 1 stripes, 2 checks, 3 spots), amplitude, frequency, angle, phase
    jitter: Array  # (M, 3) shape proportions in [0, 1]
    spots: Array  # (M, 7, 7) noise grid for the spots texture
    shadow: Array  # (M,) shadow strength


@dataclasses.dataclass
class _Clutter(_Params):
    on: Array  # (N, K) bool
    kind: Array  # (N, K) 0 rock, 1 bush, 2 box, 3 cone
    x: Array  # (N, K)
    by: Array  # (N, K)
    size: Array  # (N, K)
    colour: Array  # (N, K, 3)


def _hsv(h: Array, s: Array, v: Array) -> Array:
    """HSV in [0, 1] to RGB, elementwise; returns (..., 3)."""
    h6 = (h % 1.0) * 6
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], -1)


def _ranged(rng: np.random.Generator, kind: Array, table: Sequence[tuple[float, float]]) -> Array:
    """One uniform draw per row from the (lo, hi) range its ``kind`` selects."""
    lo, hi = np.array(table, np.float64).T
    return lo[kind] + (hi[kind] - lo[kind]) * rng.random(len(kind))


def _draw_background(rng: np.random.Generator, n: int, clouds: int = 3) -> _Background:
    u = rng.uniform
    horizon = u(0.42, 0.66, n)
    wave = np.stack([u(0, 0.015, n), u(0.5, 3, n), u(0, 1, n)], 1)
    hill = np.stack([u(0.03, 0.12, n) * (rng.random(n) < 0.6), u(0.7, 3, n), u(0, 1, n)], 1)

    sky = rng.choice(3, n, p=[0.6, 0.2, 0.2])  # day, dusk, overcast
    th = _ranged(rng, sky, [(0.55, 0.66), (0.62, 0.78), (0.0, 1.0)])
    ts = _ranged(rng, sky, [(0.45, 0.8), (0.35, 0.6), (0.0, 0.1)])
    tv = _ranged(rng, sky, [(0.6, 0.9), (0.35, 0.6), (0.55, 0.78)])
    dusk = sky == 1
    hh = np.where(dusk, u(0.02, 0.12, n), th + u(-0.02, 0.02, n))
    hs = np.where(dusk, u(0.45, 0.75, n), ts * u(0.25, 0.5, n))
    hv = np.where(dusk, u(0.8, 1.0, n), np.minimum(1, tv + u(0.1, 0.25, n)))

    ground = rng.choice(5, n, p=[0.35, 0.2, 0.2, 0.17, 0.08])  # grass, dry grass, earth, rock, snow
    gh = _ranged(rng, ground, [(0.2, 0.36), (0.09, 0.15), (0.04, 0.1), (0.0, 1.0), (0.5, 0.62)])
    gs = _ranged(rng, ground, [(0.4, 0.75), (0.35, 0.6), (0.35, 0.65), (0.0, 0.1), (0.0, 0.08)])
    gv = _ranged(rng, ground, [(0.3, 0.6), (0.5, 0.75), (0.25, 0.45), (0.3, 0.55), (0.78, 0.92)])
    furrows = rng.random(n) < 0.4
    ground_tex = np.stack([u(0.04, 0.14, n), u(0.04, 0.12, n) * furrows, u(0.4, 1.2, n), u(0, TAU, n)], 1)

    sun = np.stack([rng.random(n) < 0.25, u(0.1, 0.9, n), u(0.05, 0.22, n), u(0.03, 0.06, n)], 1)
    cw = u(0.1, 0.3, (n, clouds))
    cy = np.minimum(u(0.04, 0.3, (n, clouds)), horizon[:, None] - 0.15)
    cloud = np.stack(
        [
            rng.random((n, clouds)) < 0.45,
            u(0, 1, (n, clouds)),
            cy,
            cw,
            u(0.5, 0.9, (n, clouds)),
            u(0.85, 1.0, (n, clouds)),
        ],
        2,
    )
    camera = np.stack([u(0.85, 1.15, n), u(1, 4, n) / 255], 1)
    return _Background(
        horizon,
        wave,
        hill,
        _hsv(th, ts, tv),
        _hsv(hh, hs, hv),
        _hsv(gh, gs, gv),
        ground_tex,
        rng.standard_normal((n, 5, 5)),
        rng.standard_normal((n, 13, 13)),
        sun,
        cloud,
        camera,
    )


def _draw_objects(
    rng: np.random.Generator,
    cls: Array,
    horizon: Array,
    scale: tuple[float, float] = FRAMINGS["wide"][0],
    depth: Array | None = None,
) -> _Objects:
    """Objects of the given classes standing on the ground of scenes with the given horizons (one row each).

    ``depth`` in [0, 1] (0 at the horizon, 1 at the bottom) places the base; nearer objects are drawn larger.
    """
    n, u = len(cls), rng.uniform
    depth = u(*FRAMINGS["wide"][1], n) if depth is None else depth
    by = horizon + (0.97 - horizon) * depth
    height = np.minimum(u(*scale, n) * (0.75 + 0.45 * depth) * HEIGHT[cls], by - 0.04)
    stretch = u(0.85, 1.2, n)
    half = HALF_WIDTH[cls] * height * stretch
    bx = u(np.minimum(half + 0.01, 0.5), np.maximum(1 - half - 0.01, 0.5))
    flip = rng.choice(np.array([-1.0, 1.0]), n)
    c1 = _hsv(u(0, 1, n), u(0.35, 0.9, n), u(0.45, 0.95, n))
    c2 = _hsv(u(0, 1, n), u(0.2, 0.8, n), u(0.4, 0.95, n))
    texture = np.stack([rng.integers(0, 4, n), u(0.1, 0.3, n), u(2.5, 7, n), u(0, math.pi, n), u(0, TAU, n)], 1)
    return _Objects(
        cls,
        bx,
        by,
        height,
        stretch,
        flip,
        c1,
        c2,
        texture,
        u(0, 1, (n, 3)),
        rng.standard_normal((n, 7, 7)),
        u(0.3, 0.5, n),
    )


def _draw_clutter(rng: np.random.Generator, horizon: Array, slots: int = 4, p: float = 0.5) -> _Clutter:
    n, u = len(horizon), rng.uniform
    kind = rng.integers(0, 4, (n, slots))
    depth = u(0.02, 1, (n, slots))
    by = horizon[:, None] + (0.99 - horizon[:, None]) * depth
    size = u(0.03, 0.08, (n, slots)) * (0.6 + 0.8 * depth)
    hue = np.where(kind == 1, u(0.2, 0.4, (n, slots)), u(0, 1, (n, slots)))
    sat = np.where(kind == 0, u(0, 0.25, (n, slots)), u(0.3, 0.8, (n, slots)))
    colour = _hsv(hue, sat, u(0.3, 0.8, (n, slots)))
    return _Clutter(rng.random((n, slots)) < p, kind, u(0, 1, (n, slots)), by, size, colour)


# ----------------------------------------------------------------------------------------------------- primitives
def _rect(x: Array, y: Array, x0: Array | float, x1: Array | float, y0: Array | float, y1: Array | float) -> Array:
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _ellipse(x: Array, y: Array, cx: Array | float, cy: Array | float, rx: Array | float, ry: Array | float) -> Array:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def _trap(x: Array, y: Array, y0: Array | float, y1: Array | float, w0: Array | float, w1: Array | float) -> Array:
    """Symmetric trapezoid about x=0, half-width w0 at y0 and w1 at y1 (w1=0: a triangle with its apex at y1)."""
    t = (y - y0) / (y1 - y0)
    return (t >= 0) & (t <= 1) & (np.abs(x) <= w0 + (w1 - w0) * t)


# ------------------------------------------------------------------------------------------------------- shapes
# Each shape takes object-local coordinates (x across, y up from the base, both in units of the object's height,
# so the object spans y in [0, 1]) and shape jitter j (three (B, 1, 1) arrays in [0, 1]); it returns boolean masks
# (main colour, second colour, dark details), each (B, R, R).
Parts = tuple[Array, Array, Array]


def _tree(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    trunk = _rect(np.abs(x), y, 0, 0.045 + 0.03 * j[0], 0, 0.26)
    w = 0.85 + 0.3 * j[1]
    crown = (
        _trap(x, y, 0.18, 0.62, 0.34 * w, 0) | _trap(x, y, 0.4, 0.82, 0.28 * w, 0) | _trap(x, y, 0.6, 1, 0.21 * w, 0)
    )
    return crown, trunk & ~crown, np.zeros_like(crown)


def _house(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    wall_top = 0.5 + 0.12 * j[0]
    walls = _rect(np.abs(x), y, 0, 0.33, 0, wall_top)
    roof = _trap(x, y, wall_top - 0.02, 1, 0.44, 0) | _rect(x, y, 0.17, 0.25, wall_top, 0.92 - 0.1 * j[1])
    door = _rect(x, y, 0.06, 0.19, 0, 0.3)
    window = _rect(x, y, -0.25, -0.09, 0.24, 0.24 + 0.14)
    return walls & ~door & ~window, roof & ~walls, (door | window) & walls


def _person(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    ax = np.abs(x)
    hip = 0.42 + 0.06 * j[0]
    torso = _trap(x, y, hip, 0.77, 0.11, 0.15) | _rect(ax, y, 0.15, 0.2, hip + 0.04, 0.76)
    legs = _rect(ax, y, 0.02 + 0.01 * j[1], 0.11, 0, hip + 0.01)
    head = _ellipse(x, y, 0, 0.885, 0.095, 0.11)
    return torso, (legs | head) & ~torso, np.zeros_like(torso)


def _car(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    ax = np.abs(x)
    body = _rect(ax, y, 0, 0.95, 0.15, 0.55) | _ellipse(ax, y, 0.88, 0.35, 0.08, 0.2)
    xc = x + 0.12 * j[0] - 0.06
    cabin = _trap(xc, y, 0.54, 1, 0.6, 0.36 + 0.06 * j[1])
    windows = _trap(xc, y, 0.6, 0.93, 0.51, 0.31) & (np.abs(xc) >= 0.04)
    wheels = _ellipse(ax, y, 0.58, 0.17, 0.17, 0.17)
    hubs = _ellipse(ax, y, 0.58, 0.17, 0.07, 0.07)
    return (body | cabin) & ~windows & ~wheels, hubs, (windows | wheels) & ~hubs


def _mushroom(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    cap_y = 0.45 + 0.1 * j[0]
    cap = _ellipse(x, y, 0, cap_y, 0.46, 1 - cap_y) & (y >= cap_y - 0.02)
    stem = _trap(x, y, 0, cap_y, 0.13, 0.09 + 0.03 * j[1])
    gills = _rect(np.abs(x), y, 0, 0.4, cap_y - 0.02, cap_y + 0.02) & cap
    return cap & ~gills, stem & ~cap, gills


def _lamppost(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    ax = np.abs(x)
    pole = _rect(ax, y, 0, 0.03, 0, 0.86) | _trap(x, y, 0, 0.08, 0.08, 0.04)
    lamp_w = 0.09 + 0.025 * j[0]
    lamp = _trap(x, y, 0.84, 0.96, lamp_w * 0.55, lamp_w)
    hood = _trap(x, y, 0.95, 1, lamp_w + 0.02, 0.02)
    return pole | hood, lamp & ~hood, np.zeros_like(pole)


def _cup(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    top = 0.85
    body = _trap(x, y, 0, top, 0.25 + 0.04 * j[0], 0.36) | _ellipse(x, y, 0, top, 0.36, 0.07)
    inside = _ellipse(x, y, 0, top + 0.01, 0.31, 0.045)
    r = np.sqrt((x - 0.36) ** 2 + (y - 0.47) ** 2)
    handle = (r <= 0.2) & (r >= 0.1 + 0.02 * j[1]) & (x > 0.3)
    return (body | handle) & ~inside, np.zeros_like(body), inside


def _flag(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    pole = _rect(x, y, -0.3, -0.25, 0, 0.98) | _ellipse(x, y, -0.275, 0.99, 0.04, 0.03)
    ripple = 0.03 * np.sin(14 * x + TAU * j[0])
    cloth = (x > -0.25) & (x <= 0.3) & (y >= 0.6 + 0.04 * j[1] + ripple) & (y <= 0.95 + ripple)
    return cloth, pole, np.zeros_like(pole)


def _arrow(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    neck = 0.55 + 0.08 * j[0]
    head = _trap(x, y, neck, 1, 0.28, 0)
    shaft = _rect(np.abs(x), y, 0, 0.07 + 0.02 * j[1], 0, neck + 0.01)
    base = _rect(np.abs(x), y, 0, 0.14, 0, 0.04)
    return head | shaft, base & ~shaft, np.zeros_like(head)


def _snowman(x: Array, y: Array, j: Sequence[Array]) -> Parts:
    r0 = 0.19 + 0.03 * j[0]
    body = _ellipse(x, y, 0, r0, r0, r0) | _ellipse(x, y, 0, 0.52, 0.15, 0.15) | _ellipse(x, y, 0, 0.76, 0.11, 0.11)
    hat = _rect(np.abs(x), y, 0, 0.07, 0.84, 1) | _rect(np.abs(x), y, 0, 0.12 + 0.03 * j[1], 0.84, 0.87)
    buttons = _ellipse(x, y, 0, 0.47, 0.025, 0.025) | _ellipse(x, y, 0, 0.56, 0.025, 0.025)
    return body & ~hat & ~buttons, hat, buttons


SHAPES: tuple[Callable[[Array, Array, Sequence[Array]], Parts], ...] = (
    _tree,
    _house,
    _person,
    _car,
    _mushroom,
    _lamppost,
    _cup,
    _flag,
    _arrow,
    _snowman,
)


# ---------------------------------------------------------------------------------------------------- rendering
def _col(a: Array) -> Array:
    """Per-row parameter (B,) or (B, C) broadcast against (B, R, R) or (B, R, R, C) pixels."""
    return a[:, None, None]


def _smooth(grid: Array, r: int) -> Array:
    """Bilinear upsampling of (B, g, g) noise grids to (B, r, r).

    Gathers and lerps rather than matrix products: no BLAS threads (which stall under load) and bit-identical
    results on every machine.
    """
    g = grid.shape[-1]
    pos = (np.arange(r, dtype=np.float32) + 0.5) / r * (g - 1)
    lo = np.minimum(pos.astype(np.int64), g - 2)
    f = (pos - lo).astype(np.float32)
    grid = grid.astype(np.float32)
    rows = grid[:, lo] * (1 - f[:, None]) + grid[:, lo + 1] * f[:, None]  # (B, r, g)
    return rows[:, :, lo] * (1 - f) + rows[:, :, lo + 1] * f


def _background(bg: _Background, u: Array, v: Array) -> Array:
    """Sky (with sun and clouds), distant hills and textured ground: (B, R, R, 3).

    Gradients use the mean horizon, so they are (B, R, 1, 3) columns; only the horizon line itself is wavy.
    Optional parts (sun, clouds, furrows) are drawn only in the rows that have them.
    """
    r = u.shape[-1]
    h = _col(bg.horizon)
    hz = h + _col(bg.wave[:, 0]) * np.sin(TAU * (_col(bg.wave[:, 1]) * u + _col(bg.wave[:, 2])))  # (B,1,R)
    hill = hz - _col(bg.hill[:, 0]) * (0.55 + 0.45 * np.sin(TAU * (_col(bg.hill[:, 1]) * u + _col(bg.hill[:, 2]))))

    t = np.clip(v / h, 0, 1)  # (B,R,1) 0 at the top, 1 at the horizon
    t = 1 - (1 - t) ** 2
    sky = _col(bg.sky_top) + (_col(bg.sky_horizon) - _col(bg.sky_top)) * t[..., None]  # (B,R,1,3)
    sky = np.broadcast_to(sky, (len(h), r, r, 3)).copy()
    rows = np.flatnonzero(bg.sun[:, 0] > 0)
    if rows.size:
        sx, sy, sr = (_col(bg.sun[rows, k]) for k in range(1, 4))
        d2 = ((u - sx) ** 2 + (v - sy) ** 2) / sr**2
        glow = 0.3 / (1 + d2 / 4)  # a soft halo falling off with distance
        sky[rows] = np.where((d2 <= 1)[..., None], np.array([1.0, 0.97, 0.85], np.float32), sky[rows] + glow[..., None])
    cover = np.zeros((len(h), r, r), np.float32)  # clouds composited "over" each other: coverage and
    grey = np.zeros((len(h), r, r), np.float32)  # premultiplied grey level, applied to the sky once
    for k in range(bg.clouds.shape[1]):
        rows = np.flatnonzero(bg.clouds[:, k, 0] > 0)
        if rows.size == 0:
            continue
        cx, cy, cw, alpha, bright = (_col(bg.clouds[rows, k, m]) for m in range(1, 6))
        puff = (
            _ellipse(u, v, cx, cy, cw, 0.35 * cw)
            | _ellipse(u, v, cx - 0.3 * cw, cy - 0.2 * cw, 0.5 * cw, 0.35 * cw)
            | _ellipse(u, v, cx + 0.25 * cw, cy - 0.25 * cw, 0.45 * cw, 0.4 * cw)
        )
        a = alpha * (puff & (v <= cy + 0.2 * cw))  # (B,R,R) flat bottom
        shade = bright * (1.05 - 0.3 * np.clip((v - cy + 0.5 * cw) / (0.7 * cw), 0, 1))  # (B,R,1) lit from above
        cover[rows] += a * (1 - cover[rows])
        grey[rows] = grey[rows] * (1 - a) + shade * a
    sky = sky * (1 - cover[..., None]) + grey[..., None]

    g = np.clip((v - h) / (1 - h), 0, 1)  # (B,R,1) 0 at the horizon, 1 at the bottom
    noise = _smooth(bg.noise_coarse, r) + 0.5 * _smooth(bg.noise_fine, r)  # (B,R,R)
    light = 1 + _col(bg.ground_tex[:, 0]) * noise
    rows = np.flatnonzero(bg.ground_tex[:, 1] > 0)
    if rows.size:
        famp, ffreq, fphase = (_col(bg.ground_tex[rows, k]) for k in range(1, 4))
        light[rows] *= 1 + famp * g[rows] * np.sin(
            ffreq / (v - h[rows] + 0.03) + fphase
        )  # furrows crowd to the horizon
    haze = 0.35 * (1 - g) ** 3  # aerial perspective: far ground fades into the horizon sky
    ground = (_col(bg.ground) * (1 - haze[..., None]) + _col(bg.sky_horizon) * haze[..., None]) * (1.1 - 0.25 * g)[
        ..., None
    ]
    hills = 0.425 * _col(bg.ground) + 0.5 * _col(bg.sky_horizon)  # (B,1,1,3) hazy, far away

    np.copyto(sky, hills, where=(v >= hill)[..., None])  # in place: faster than np.where
    np.copyto(sky, ground * light[..., None], where=(v >= hz)[..., None])
    return sky


def _texture(o: _Objects, x: Array, y: Array, r: int) -> Array:
    """Multiplicative surface texture in object coordinates: (B, R, R) around 1; each kind only where it is used."""
    t = np.zeros(x.shape, np.float32)
    for kind in (1, 2, 3):
        rows = np.flatnonzero(o.texture[:, 0] == kind)
        if rows.size == 0:
            continue
        freq, angle, phase = (_col(o.texture[rows, k]) for k in (2, 3, 4))
        xr, yr = x[rows], y[rows]
        if kind == 1:  # stripes
            t[rows] = np.tanh(2.5 * np.sin(TAU * freq * (xr * np.cos(angle) + yr * np.sin(angle)) + phase))
        elif kind == 2:  # checks
            t[rows] = np.sign(np.sin(math.pi * freq * xr + phase)) * np.sign(np.sin(math.pi * freq * yr + phase))
        else:  # spots
            t[rows] = np.tanh(1.5 * _smooth(o.spots[rows], r))
    return 1 + _col(o.texture[:, 1]) * t


def _paint_objects(img: Array, u: Array, v: Array, o: _Objects) -> Array:
    """Paint one object per row of ``img`` (shadow, then the shaded, textured shape); returns the (B, R, R) masks."""
    r = u.shape[-1]
    masks = np.zeros(img.shape[:3], bool)
    for c in np.unique(o.cls):
        rows = np.flatnonzero(o.cls == c)
        p = o.take(rows)
        h, w = _col(p.height), _col(p.height * p.stretch)
        x = (u - _col(p.bx)) / w * _col(p.flip)  # (B,1,R)
        y = (_col(p.by) - v) / h  # (B,R,1)
        x, y = np.broadcast_arrays(x, y)
        main, second, dark = SHAPES[c](x, y, [_col(p.jitter[:, k]) for k in range(3)])
        shape = main | second | dark

        sub = img[rows]
        sw = _col(HALF_WIDTH[p.cls]) * w * 1.1  # a shadow right under the object: the light comes from above
        d2 = ((u - _col(p.bx)) / sw) ** 2 + ((v - _col(p.by) - 0.01 * h) / (0.06 * h + 0.006)) ** 2
        sub *= (1 - _col(p.shadow) * np.sqrt(np.clip(1 - d2, 0, 1)))[..., None]

        colour = np.broadcast_to(_col(p.c1), sub.shape).copy()  # (B,R,R,3)
        np.copyto(colour, _col(p.c2), where=second[..., None])
        np.copyto(colour, _col(p.c1) * 0.2, where=dark[..., None])
        colour *= ((0.55 + 0.6 * np.clip(y, 0, 1)) * _texture(p, x, y, r))[..., None]  # brighter on top, textured
        np.copyto(sub, colour, where=shape[..., None])
        img[rows] = sub
        masks[rows] = shape
    return masks


CLUTTER: tuple[Callable[[Array, Array], Array], ...] = (
    lambda x, y: _ellipse(x, y, 0, 0, 0.9, 0.6) & (y >= 0),  # rock
    lambda x, y: (
        (
            _ellipse(x, y, -0.4, 0.35, 0.4, 0.4)
            | _ellipse(x, y, 0.4, 0.35, 0.4, 0.4)
            | _ellipse(x, y, 0, 0.6, 0.45, 0.45)
        )
        & (y >= 0)
    ),  # bush
    lambda x, y: _rect(np.abs(x), y, 0, 0.4, 0, 0.75),  # box
    lambda x, y: _trap(x, y, 0, 1, 0.45, 0),  # cone
)


def _paint_clutter(img: Array, u: Array, v: Array, cl: _Clutter, active: Array) -> Array:
    """Paint the clutter slots where ``active`` (B, K) holds, shaded from above; returns their (B, R, R) mask union."""
    masks = np.zeros(img.shape[:3], bool)
    for k in range(active.shape[1]):
        for kind, shape in enumerate(CLUTTER):
            rows = np.flatnonzero(active[:, k] & (cl.kind[:, k] == kind))
            if rows.size == 0:
                continue
            s = _col(cl.size[rows, k])
            x, y = (u - _col(cl.x[rows, k])) / s, (_col(cl.by[rows, k]) - v) / s  # (B,1,R), (B,R,1)
            m = shape(x, y)
            colour = _col(cl.colour[rows, k]) * (0.6 + 0.5 * np.clip(y, 0, 1))[..., None]  # (B,R,1,3)
            sub = img[rows]
            np.copyto(sub, colour, where=m[..., None])
            img[rows] = sub
            masks[rows] |= m
    return masks


def _grid(r: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates in [0, 1]: u (1, 1, R) across, v (1, R, 1) down."""
    c = ((np.arange(r, dtype=np.float32) + 0.5) / r).astype(np.float32)
    return c[None, None, :], c[None, :, None]


def _finish(img: Array, bg: _Background, noise: np.random.Generator) -> Array:
    """Box-downsample the supersampled (B, R, R, 3) canvas, apply exposure and sensor noise: (B, H, W, 3) uint8."""
    out = sum(img[:, i::SUPERSAMPLE, j::SUPERSAMPLE] for i in range(SUPERSAMPLE) for j in range(SUPERSAMPLE))
    out *= bg.camera[:, 0, None, None, None] / SUPERSAMPLE**2
    out += noise.standard_normal(out.shape, dtype=np.float32) * bg.camera[:, 1, None, None, None]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def _bare(rng: np.random.Generator, bg: _Background, objects: _Objects, clutter: _Clutter) -> None:
    """Make scenes bare in place: the background one muted colour (``bg.ground``, grey-ish, drawn here), the object
    standing at any height that keeps it inside the image, no shadow and no clutter."""
    n = len(bg.horizon)
    grey = rng.uniform(0.35, 0.75, (n, 1)) * rng.uniform(0.9, 1.1, (n, 3))
    bg.ground[:] = grey
    objects.by[:] = rng.uniform(objects.height + 0.03, 0.97)
    objects.shadow[:] = 0
    clutter.on[:] = False


def _render(
    bg: _Background, objects: _Objects, clutter: _Clutter, size: int, noise: np.random.Generator, bare: bool = False
) -> Array:
    """One object per scene with clutter behind and in front of it: (B, size, size, 3) uint8. ``bare``: on a flat
    background of ``bg.ground``'s colour instead of the outdoor one."""
    u, v = _grid(size * SUPERSAMPLE)
    r = u.shape[-1]
    img = np.broadcast_to(_col(bg.ground), (len(bg.horizon), r, r, 3)).copy() if bare else _background(bg, u, v)
    behind = clutter.by <= objects.by[:, None]
    _paint_clutter(img, u, v, clutter, clutter.on & behind)
    _paint_objects(img, u, v, objects)
    _paint_clutter(img, u, v, clutter, clutter.on & ~behind)
    return _finish(img, bg, noise)


def _check_size(image_size: int) -> None:
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ValueError(f"synthetic image_size must be in {MIN_SIZE}..{MAX_SIZE}, got {image_size}")


def generate(num_images: int, image_size: int, seed: int, framing: str = "wide") -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 images and (N,) int64 labels, balanced over the ten classes; same seed -> same arrays.
    ``framing`` is a key of ``FRAMINGS``."""
    _check_size(image_size)
    if num_images < 1:
        raise ValueError(f"num_images must be positive, got {num_images}")
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; valid framings: {', '.join(FRAMINGS)}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % len(CLASSES))
    bg = _draw_background(rng, num_images)
    bare = framing == "bare"
    if framing == "wide" or bare:  # the first scenes' draws, in their order: "wide" files stay valid
        objects = _draw_objects(rng, labels, bg.horizon)
    else:
        scale, depth = FRAMINGS[framing]
        objects = _draw_objects(rng, labels, bg.horizon, scale, rng.uniform(*depth, num_images))
    clutter = _draw_clutter(rng, bg.horizon)
    if bare:  # after every outdoor draw: the wide scenes' labels, objects and camera, placed anew
        _bare(rng, bg, objects, clutter)
    noise = np.random.default_rng([seed, 1])  # sensor noise: its own stream, the only draw that depends on the size
    out = np.empty((num_images, image_size, image_size, 3), np.uint8)
    step = max(1, CHUNK_PIXELS // (image_size * SUPERSAMPLE) ** 2)
    for s in range(0, num_images, step):
        rows = slice(s, s + step)
        out[rows] = _render(bg.take(rows), objects.take(rows), clutter.take(rows), image_size, noise, bare)
    return out, labels.astype(np.int64)
