"""Where circles (and distractors) go: a pure function of (rng, count, size, radius range,
overlap rule, distractors).

Coordinates are continuous pixels: pixel (i, j) covers [j, j+1) x [i, i+1), so a circle
(x, y, r) lies inside a ``size`` frame when r <= x <= size - r (same for y).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from countnet.errors import CountnetError
from countnet_gen.distractors import Distractors

# Minimum gap between non-overlapping circles, edge to edge in output pixels. The renderer's
# anti-aliased rim reaches half a pixel beyond each edge (coverage clip(r - d + 0.5, 0, 1)), so
# with a 2 px gap the rims of two neighbours are >= 1 px apart: no two 4-adjacent pixels can
# both carry coverage from different circles, and every circle is its own connected component
# in the rendered image at any threshold above zero. At 1 px the rims touched and a quarter-
# contrast component count matched the label on only ~40% of dense images (tests/test_gen_render).
GAP = 2.0
# No packing of equal discs covers more of a region than the hexagonal one (Fejes Toth):
# beyond it, with every circle at the smallest radius, a request is impossible. Random
# sequential placement (what the sampler does) of many discs jams well before that: equal
# discs stop fitting near 55% coverage, discs of varying sizes a little higher; requests of
# more than JAMMING_MIN_COUNT circles beyond that are refused at once too (their trials
# would be slow). Everything else is measured: check_packable's trial layouts.
HEX_DENSITY = math.pi / (2 * math.sqrt(3))
JAMMING_EQUAL = 0.55
JAMMING_VARYING = 0.65
JAMMING_MIN_COUNT = 20
MAX_ROUNDS = 64
CANDIDATES = 8  # positions tried per pending circle per round
STALL_ROUNDS = 16  # a layout that placed nothing new in this many rounds is given up
# Per image, up to MAX_RESTARTS layouts; a stalled layout costs a few rounds, so the bound
# on work is MAX_RESTARTS * MAX_ROUNDS rounds but failures are cheap. The first
# RADII_KEPT layouts keep the image's radii (so a feasible draw is never biased towards small
# circles); after that they are redrawn too, for a draw of many large circles that cannot
# fit. check_packable asks TRIAL_MIN_OK of TRIAL_LAYOUTS trial layouts to fit (a quarter):
# the true rate is then above ~15% with 95% confidence, and an image fails all its
# restarts with odds below 0.85^200 = 8e-15, so a set that starts also finishes.
MAX_RESTARTS = 200
RADII_KEPT = 20
TRIAL_LAYOUTS = 64
TRIAL_MIN_OK = 16
TRIAL_SEED = 20261125
# With --match-area an image's distractor draw (shapes, target area) is kept with its radii
# for the first RADII_KEPT layouts too, and redrawn with them after that, so a set never
# fails midway; a draw that must be redrawn is one the area distribution loses, so trial
# images at the lowest and the highest count must almost all place within RADII_KEPT
# layouts of their first draw (MATCHED_MIN_OK of TRIAL_LAYOUTS).
MATCHED_MIN_OK = 62


def covered_fraction(n: int, size: int, radius: float) -> float:
    """Fraction of the frame (grown by half the gap on each side) that n circles of one
    radius cover, each grown by half the gap."""
    g = GAP / 2
    return n * math.pi * (radius + g) ** 2 / (size + GAP) ** 2


def check_packable(
    n: int,
    size: int,
    radius: tuple[float, float],
    no_overlap: bool,
    distractors: Distractors | None = None,
    n_low: int | None = None,
) -> None:
    """Refuse, before anything is written, a --no-overlap request that cannot be placed:
    beyond random placement's jamming coverage even with every object at its smallest
    radius, or too rarely placed in trial layouts of the actual radius distribution (so the
    set could fail midway). ``distractors`` are placed too; with matched areas, trial
    images at ``n_low`` circles (the set's lowest count) as well. Bounded work; the
    verdict is cached per process."""
    if not no_overlap:
        return
    what = f"{n} non-overlapping circles of radius {_fmt_radius(radius)}"
    fix = "lower the count or --radius, or raise --size"
    r0, r1 = radius
    cover = covered_fraction(n, size, r0)
    equal, objects = r0 == r1, n
    if distractors is not None:
        k, (d0, d1) = distractors.counts[1], distractors.radius
        objects += k
        what += f" and {k} distractors of radius {_fmt_radius((d0, d1))}"
        fix = "lower the counts, --radius or --distractor-radius, or raise --size"
        cover += covered_fraction(k, size, d0)
        equal = equal and (d0, d1) == (r0, r1) and not distractors.match_area
    bound = HEX_DENSITY if equal else 1.0  # discs of unequal sizes can pack denser
    jams = JAMMING_EQUAL if equal else JAMMING_VARYING
    if cover > bound or (objects > JAMMING_MIN_COUNT and cover > jams):
        why = (
            f"at most {bound:.0%} is possible"
            if cover > bound
            else f"random placement jams near {jams:.0%}"
        )
        raise CountnetError(
            f"{what} cannot be placed in a {size}x{size} image (even at their smallest radius "
            f"they would cover {cover:.0%} of it, with the {GAP:g} px gaps; {why}): {fix}"
        )
    radius = (float(r0), float(r1))
    placed, tried = _trial_layouts(n, size, radius, distractors, 1, TRIAL_MIN_OK)
    if placed < TRIAL_MIN_OK:
        raise CountnetError(
            f"{what} cannot be placed reliably in a {size}x{size} image (only {placed} of "
            f"{tried} trial layouts fit; at least {TRIAL_MIN_OK} of {TRIAL_LAYOUTS} must): {fix}"
        )
    if distractors is None or not distractors.match_area:
        return
    for count in sorted({n_low or n, n}):
        placed, tried = _trial_layouts(count, size, radius, distractors, RADII_KEPT, MATCHED_MIN_OK)
        if placed < MATCHED_MIN_OK:
            raise CountnetError(
                f"--match-area: images of {count} circle{'s' * (count != 1)} and their "
                "distractors cannot be "
                f"placed reliably in a {size}x{size} image without overlap (only {placed} of "
                f"{tried} trial images fit their drawn areas; at least {MATCHED_MIN_OK} of "
                f"{TRIAL_LAYOUTS} must): {fix}"
            )


@functools.lru_cache(maxsize=64)
def _trial_layouts(
    n: int,
    size: int,
    radius: tuple[float, float],
    distractors: Distractors | None,
    attempts: int,
    need: int,
) -> tuple[int, int]:
    """(trial images placed, images tried): each image one draw of its radii (and
    distractor draw) and up to ``attempts`` layouts of it; stops as soon as it is known
    whether ``need`` of TRIAL_LAYOUTS place."""
    rng = np.random.default_rng(TRIAL_SEED)
    placed = tried = 0
    while tried < TRIAL_LAYOUTS and placed < need:
        if tried - placed > TRIAL_LAYOUTS - need:
            break  # too many failures for the rest to reach ``need``
        radii = _radii_drawer(rng, n, radius, distractors)[1]()
        placed += any(_place_sorted(rng, radii, size) is not None for _ in range(attempts))
        tried += 1
    return placed, tried


def _fmt_radius(radius: tuple[float, float]) -> str:
    r0, r1 = radius
    return f"{r0:g}" if r0 == r1 else f"{r0:g}-{r1:g}"


def sample_circles(
    rng: np.random.Generator,
    n: int,
    size: int,
    radius: tuple[float, float],
    no_overlap: bool = False,
) -> np.ndarray:
    """Return an (n, 3) float64 array of circles (x, y, r), all fully inside the frame.

    With ``no_overlap``, every pair is at least ``GAP`` pixels apart edge to edge. Placement
    is bounded: after ``MAX_RESTARTS`` failed layouts a CountnetError is raised.
    """
    return sample_layout(rng, n, size, radius, no_overlap)[0]


def sample_layout(
    rng: np.random.Generator,
    n: int,
    size: int,
    radius: tuple[float, float],
    no_overlap: bool = False,
    distractors: Distractors | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An image's objects: circles (n, 3) as in ``sample_circles``, and distractors (k, 5):
    x, y, r (the radius of the circle each shape is inscribed in), angle (radians) and the
    shape's index into ``distractors.SHAPES``. All lie inside the frame; with ``no_overlap``
    every pair of objects is at least ``GAP`` apart (as discs of their radii)."""
    r1 = max(radius[1], distractors.radius[1] if distractors else 0.0)
    if 2 * r1 > size:
        raise CountnetError(f"radius {r1:g} does not fit in a {size}px frame")
    ids, draw = _radii_drawer(rng, n, radius, distractors)
    # circles alone come sorted, largest first, already: placed as before distractors
    place = _place_without_overlap if distractors is None else _place_sorted
    radii = draw()
    if not no_overlap:
        lo = radii[:, None]
        xy = lo + rng.random((len(radii), 2)) * (size - 2 * lo)
        objects = np.column_stack([xy, radii])
    else:
        for attempt in range(MAX_RESTARTS):
            if attempt >= RADII_KEPT:
                # Redraw the radii too: such an image's radii are drawn from those that fit
                # (and its distractor draw: shapes, target area; see MATCHED_MIN_OK).
                if distractors is not None:
                    ids, draw = _radii_drawer(rng, n, radius, distractors)
                radii = draw()
            objects = place(rng, radii, size)
            if objects is not None:
                break
        else:
            extra = f" and {len(ids)} distractors" if len(ids) else ""
            what = "--radius or --distractor-radius" if len(ids) else "--radius"
            raise CountnetError(
                f"could not place {n} non-overlapping circles of radius {_fmt_radius(radius)}"
                f"{extra} in a {size}x{size} image after {MAX_RESTARTS} attempts: lower the "
                f"counts or {what}, or raise --size"
            )
    circles, rest = objects[:n], objects[n:]
    if distractors is None:
        return circles, np.zeros((0, 5))
    return circles, np.column_stack([rest, distractors.angles(rng, ids), ids.astype(float)])


def _radii_drawer(
    rng: np.random.Generator,
    n: int,
    radius: tuple[float, float],
    distractors: Distractors | None,
) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
    """An image's distractor shapes (indices into SHAPES; none without distractors), drawn
    now with its target area, and a function drawing its radii: its n circles' (largest
    first), then its distractors', for those shapes and that target at every call."""
    if distractors is None:
        return np.zeros(0, np.int64), lambda: _draw_radii(rng, n, radius)
    ids, target = distractors.draw(rng)

    def draw() -> np.ndarray:
        circles = _draw_radii(rng, n, radius)
        return np.concatenate([circles, distractors.radii(rng, ids, target, circles)])

    return ids, draw


def _draw_radii(rng: np.random.Generator, n: int, radius: tuple[float, float]) -> np.ndarray:
    """n radii, largest first: big circles are the hard ones to fit once the frame fills."""
    r0, r1 = radius
    radii = rng.uniform(r0, r1, n) if r1 > r0 else np.full(n, float(r0))
    return np.sort(radii)[::-1]


def _place_sorted(rng: np.random.Generator, radii: np.ndarray, size: int) -> np.ndarray | None:
    """``_place_without_overlap`` with the largest objects first, returned in ``radii``'s
    order."""
    order = np.argsort(-radii, kind="stable")
    placed = _place_without_overlap(rng, radii[order], size)
    if placed is None:
        return None
    out = np.empty_like(placed)
    out[order] = placed
    return out


def _place_without_overlap(
    rng: np.random.Generator, radii: np.ndarray, size: int
) -> np.ndarray | None:
    """Place all circles at once, then redraw only those that collide, in rounds.

    Each round draws ``CANDIDATES`` positions for every pending circle, keeps the first that
    clears every accepted circle, then drops any that touches an earlier pending circle
    (so the accepted set stays valid): a few NumPy calls per round instead of a Python
    loop per circle.
    """
    n = len(radii)
    xy = np.empty((n, 2))
    accepted = np.zeros(n, bool)
    pending = np.arange(n)
    earlier = np.triu(np.ones((n, n), bool), 1)  # [i, j]: pending circle i precedes j
    stalled = 0
    # x and y are kept apart: a squared distance as dx*dx + dy*dy is the same number as a
    # sum over a length-2 axis, without NumPy's slow reduction over a tiny axis.
    for _ in range(MAX_ROUNDS):
        m = len(pending)
        r = radii[pending]
        cand = r[:, None, None] + rng.random((m, CANDIDATES, 2)) * (size - 2 * r[:, None, None])
        acc = np.flatnonzero(accepted)
        if acc.size:
            dx = cand[:, :, 0, None] - xy[acc, 0]  # (m, K, a)
            dy = cand[:, :, 1, None] - xy[acc, 1]
            free = (dx * dx + dy * dy >= (r[:, None, None] + radii[acc] + GAP) ** 2).all(axis=2)
            ok = free.any(axis=1)
            cand = cand[np.arange(m), free.argmax(axis=1)]
        else:
            ok = np.ones(m, bool)
            cand = cand[:, 0]
        if m > 1:
            dx = cand[:, None, 0] - cand[None, :, 0]
            dy = cand[:, None, 1] - cand[None, :, 1]
            clash = (dx * dx + dy * dy < (r[:, None] + r[None, :] + GAP) ** 2) & earlier[:m, :m]
            clash &= ok[:, None] & ok[None, :]
            ok &= ~clash.any(axis=0)  # lose to any earlier pending circle
        xy[pending[ok]] = cand[ok]
        accepted[pending[ok]] = True
        pending = pending[~ok]
        if pending.size == 0:
            return np.column_stack([xy, radii])
        stalled = 0 if ok.any() else stalled + 1
        if stalled == STALL_ROUNDS:
            return None  # the circles placed so far leave no room: start over
    return None
