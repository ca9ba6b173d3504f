"""Pixels: circles -> an anti-aliased image, vectorised with NumPy.

Each pixel's coverage by a disc is approximated analytically as clip(r - d + 0.5, 0, 1),
d being the distance from the pixel centre to the circle centre: a one-pixel linear ramp
across the edge, which is what supersampling converges to for smooth edges, at a
fraction of the cost. Overlapping coverages add up and are clipped at 1.

An image is a blend of two colours, so it is stored losslessly as 8-bit coverage plus a
256-entry palette (``palette``): a third of the bytes of RGB, and PNG encoding is the
slowest step of generation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from countnet_gen.distractors import RING_WIDTH, ROUNDING, SHAPES, SIDES

# How far coverage reaches beyond a circle's edge: clip(r - d + 0.5, 0, 1) is zero from
# d = r + RIM on. Two circles more than 2 * RIM apart share no pixel.
RIM = 0.5
# Frame pixels of one float64 canvas that overlapping objects are summed on (2 MB, plus the
# margins): images beyond it get another canvas, so a batch's sum stays in cache (at 224 px
# one canvas for a whole batch was slower than one per image; bench/gen_batch.py).
SUM_PIXELS = 1 << 18


def _grid(x: np.ndarray, y: np.ndarray, r: np.ndarray):
    """Each object's square patch of pixels (its disc plus the AA rim): rows (n, p),
    columns (n, p), pixel-centre offsets dx (n, 1, p) and dy (n, p, 1) float32, side p."""
    p = int(math.ceil(r.max())) * 2 + 3
    x0 = np.floor(x - r - 1).astype(np.int64)
    y0 = np.floor(y - r - 1).astype(np.int64)
    steps = np.arange(p)
    cols = x0[:, None] + steps[None, :]  # (n, p) pixel columns of each patch
    rows = y0[:, None] + steps[None, :]
    dx = (cols + 0.5 - x[:, None]).astype(np.float32)
    dy = (rows + 0.5 - y[:, None]).astype(np.float32)
    return rows, cols, dx[:, None, :], dy[:, :, None], p


def _patches(circles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Each circle's patch: rows (n, p), columns (n, p) and coverage values (n, p, p)
    float32, and the patch side p."""
    r = circles[:, 2]
    rows, cols, dx, dy, p = _grid(circles[:, 0], circles[:, 1], r)
    # vals = clip(r - d + 0.5, 0, 1), evaluated in that order but in place: same numbers,
    # three fewer (n, p, p) temporaries
    vals = dy**2 + dx**2  # (n, p, p)
    np.sqrt(vals, out=vals)
    np.subtract(r[:, None, None].astype(np.float32), vals, out=vals)
    vals += np.float32(0.5)
    np.clip(vals, 0.0, 1.0, out=vals)
    return rows, cols, vals, p


def _shape_patches(distractors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``_patches`` for distractors (x, y, r, angle, shape index): coverage
    clip(0.5 - sd, 0, 1), the circles' one-pixel ramp, over each shape's exact signed
    distance sd. Outside a shape that is at least the distance beyond its circle of radius
    r, so every rim stays within r + RIM of the centre, as a circle's."""
    x, y, r, angle, shape = distractors.T
    rows, cols, dx, dy, p = _grid(x, y, r)
    r3 = r[:, None, None].astype(np.float32)
    dist = np.sqrt(dx**2 + dy**2)  # (k, p, p)
    sd = np.empty_like(dist)
    for index, name in enumerate(SHAPES):
        m = shape == index
        if not m.any():
            continue
        n = SIDES[name]
        if n == 0:  # ring: |d - mid| - width / 2
            half = r3[m] * np.float32(RING_WIDTH / 2)
            sd[m] = np.abs(dist[m] - (r3[m] - half)) - half
            continue
        # A rounded polygon: the n-gon of circumradius (1 - ROUNDING) r, grown by
        # ROUNDING r. Each point is folded into the sector of one edge (normal along +u),
        # by symmetry: that edge is the segment u = apothem, |v| <= half its length.
        inner, grow = r3[m] * np.float32(1 - ROUNDING), r3[m] * np.float32(ROUNDING)
        sector = np.float32(2 * np.pi / n)
        phi = np.arctan2(dy[m], dx[m]) - angle[m][:, None, None].astype(np.float32)
        phi = np.mod(phi + sector / 2, sector) - sector / 2
        u = dist[m] * np.cos(phi) - inner * np.float32(math.cos(math.pi / n))
        v = dist[m] * np.abs(np.sin(phi)) - inner * np.float32(math.sin(math.pi / n))
        np.maximum(v, 0, out=v)
        sd[m] = np.where(u > 0, np.sqrt(u * u + v * v), u) - grow
    vals = np.clip(np.float32(0.5) - sd, 0.0, 1.0)
    return rows, cols, vals, p


Layout = tuple[np.ndarray, np.ndarray | None]  # one image's circles and distractors


def _canvas(layouts: list[Layout], size: int, by_size: bool = False):
    """The canvas margin m, its width w = size + 2m and, per group of objects, the flat
    indices (n, p, p) and values (n, p, p) of their patches in a (B, w, w) canvas holding
    every image of ``layouts``: a margin on every side, so every patch pixel has a bin (no
    masking: 1.3-1.6x faster at 224 px), cropped afterwards; pixels off the frame carry zero
    ramp anyway. One canvas for many images shares the NumPy calls (bench/gen_batch.py).

    Circles come first, in image order and each image's order, then distractors: the order
    their values land in at any one pixel is that image's alone.

    ``by_size``: circles grouped by patch side, each on a patch no larger than its own disc
    and rim needs: fewer values where radii vary. Only for the disjoint path, whose maximum
    does not depend on the order values land in; a sum would."""
    circles = [c for c, _ in layouts]
    shapes = [d if d is not None else np.zeros((0, 5)) for _, d in layouts]
    c_img = np.repeat(np.arange(len(layouts)), [len(c) for c in circles])
    d_img = np.repeat(np.arange(len(layouts)), [len(d) for d in shapes])
    circles, shapes = np.concatenate(circles), np.concatenate(shapes)
    groups = []
    if len(circles):
        sides = np.ceil(circles[:, 2]) * 2 + 3
        if by_size:
            for side in np.unique(sides):
                g = sides == side
                groups.append((c_img[g], _patches(circles[g])))
        else:
            groups.append((c_img, _patches(circles)))
    if len(shapes):
        groups.append((d_img, _shape_patches(shapes)))
    m = max(patches[3] for _, patches in groups)
    w = size + 2 * m
    out = []
    for img, (rows, cols, vals, p) in groups:
        corner = img * (w * w) + (rows[:, 0] + m) * w + (cols[:, 0] + m)
        offsets = np.arange(p)[:, None] * w + np.arange(p)
        out.append((corner[:, None, None] + offsets, vals))
    return m, w, out


def _empty(layouts: list[Layout]) -> bool:
    return all(len(c) == 0 and (d is None or len(d) == 0) for c, d in layouts)


def _summed(layouts: list[Layout], size: int) -> np.ndarray:
    """``coverage`` of images that share one canvas: (B, size, size) float32."""
    if _empty(layouts):
        return np.zeros((len(layouts), size, size), np.float32)
    m, w, groups = _canvas(layouts, size)
    flat = np.concatenate([f.ravel() for f, _ in groups])
    vals = np.concatenate([v.ravel() for _, v in groups])
    cov = np.bincount(flat, weights=vals, minlength=len(layouts) * w * w)
    cov = cov.reshape(len(layouts), w, w)[:, m : m + size, m : m + size]
    return np.minimum(cov, 1.0).astype(np.float32)


def _summed_canvases(layouts: list[Layout], size: int) -> Iterator[list[Layout]]:
    step = max(1, SUM_PIXELS // (size * size))
    for i in range(0, len(layouts), step):
        yield layouts[i : i + step]


def coverage_many(layouts: list[Layout], size: int) -> np.ndarray:
    """``coverage`` of several images' (circles, distractors or None): (B, size, size)."""
    parts = [_summed(part, size) for part in _summed_canvases(layouts, size)]
    return np.concatenate(parts) if parts else np.zeros((0, size, size), np.float32)


def coverage(circles: np.ndarray, size: int, distractors: np.ndarray | None = None) -> np.ndarray:
    """(size, size) float32 map in [0, 1]: how much of each pixel the objects cover
    (overlapping coverages add up, clipped at 1)."""
    return coverage_many([(circles, distractors)], size)[0]


def coverage_u8_many(layouts: list[Layout], size: int, *, disjoint: bool = False) -> np.ndarray:
    """``coverage_u8`` of several images' (circles, distractors or None): (B, size, size)."""
    if not layouts:
        return np.zeros((0, size, size), np.uint8)
    if not disjoint or _empty(layouts):
        parts = _summed_canvases(layouts, size)
        return np.concatenate([np.rint(_summed(p, size) * 255).astype(np.uint8) for p in parts])
    m, w, groups = _canvas(layouts, size, by_size=True)
    out = np.zeros(len(layouts) * w * w, np.uint8)
    for flat, vals in groups:
        np.maximum.at(out, flat.ravel(), np.rint(vals.ravel() * 255).astype(np.uint8))
    out = out.reshape(len(layouts), w, w)[:, m : m + size, m : m + size]
    return np.ascontiguousarray(out)


def coverage_u8(
    circles: np.ndarray,
    size: int,
    *,
    disjoint: bool = False,
    distractors: np.ndarray | None = None,
) -> np.ndarray:
    """Coverage quantised to 0..255: the index into ``palette``.

    ``disjoint``: no pixel is covered by two objects — true of objects more than 2 * RIM
    apart edge to edge, as ``--no-overlap`` layouts are (sampler.GAP, 2 px). Each covered pixel
    then takes its one object's value, quantised first, as the largest of the (zero
    elsewhere) patch values landing on it, instead of summing a float canvas: the same
    pixels, ~2x faster at 224 px."""
    return coverage_u8_many([(circles, distractors)], size, disjoint=disjoint)[0]


def palette(fg: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
    """(256, 3) uint8: entry k is bg blended towards fg by k/255."""
    t = np.arange(256, dtype=np.float64)[:, None] / 255.0
    bg_a, fg_a = np.asarray(bg, np.float64), np.asarray(fg, np.float64)
    return np.rint(bg_a + t * (fg_a - bg_a)).astype(np.uint8)


def render(
    circles: np.ndarray,
    size: int,
    fg: tuple[int, int, int] = (31, 119, 180),
    bg: tuple[int, int, int] = (255, 255, 255),
    distractors: np.ndarray | None = None,
) -> np.ndarray:
    """Draw circles (and distractors) in ``fg`` on ``bg``: a (size, size, 3) uint8 RGB
    array, pixel for pixel what the written PNG decodes to."""
    return palette(fg, bg)[coverage_u8(circles, size, distractors=distractors)]
