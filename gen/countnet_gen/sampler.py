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
        placed += any(_place_sorted([rng], [radii], size)[0] is not None for _ in range(attempts))
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
    return sample_layouts([rng], [n], size, radius, no_overlap, distractors)[0]


def sample_layouts(
    rngs: list[np.random.Generator],
    counts: list[int],
    size: int,
    radius: tuple[float, float],
    no_overlap: bool = False,
    distractors: Distractors | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``sample_layout`` for several images, each of counts[i] circles from its own
    rngs[i]: the layouts each would get alone (each rng sees the same calls in the same
    order), placed together, which is faster (``_place_many``)."""
    r1 = max(radius[1], distractors.radius[1] if distractors else 0.0)
    if 2 * r1 > size:
        raise CountnetError(f"radius {r1:g} does not fit in a {size}px frame")
    drawers = [
        _radii_drawer(rng, n, radius, distractors) for rng, n in zip(rngs, counts, strict=True)
    ]
    radii = [draw() for _, draw in drawers]
    if no_overlap:
        objects = _place_apart(rngs, counts, radii, drawers, size, radius, distractors)
    else:
        objects = [_scatter(rng, r, size) for rng, r in zip(rngs, radii, strict=True)]
    layouts = []
    for rng, n, (ids, _), obj in zip(rngs, counts, drawers, objects, strict=True):
        circles, rest = obj[:n], obj[n:]
        if distractors is None:
            layouts.append((circles, np.zeros((0, 5))))
        else:
            angles = distractors.angles(rng, ids)
            layouts.append((circles, np.column_stack([rest, angles, ids.astype(float)])))
    return layouts


def _scatter(rng: np.random.Generator, radii: np.ndarray, size: int) -> np.ndarray:
    """Objects of ``radii`` anywhere inside the frame, overlaps allowed: (n, 3) x, y, r."""
    lo = radii[:, None]
    xy = lo + rng.random((len(radii), 2)) * (size - 2 * lo)
    return np.column_stack([xy, radii])


def _place_apart(
    rngs: list[np.random.Generator],
    counts: list[int],
    radii: list[np.ndarray],
    drawers: list[tuple[np.ndarray, Callable[[], np.ndarray]]],
    size: int,
    radius: tuple[float, float],
    distractors: Distractors | None,
) -> list[np.ndarray]:
    """Every image's objects GAP apart, restarting the images whose layout stalled (with new
    radii after RADII_KEPT attempts), up to MAX_RESTARTS; ``radii`` and ``drawers`` are
    updated in place."""
    # circles alone come sorted, largest first, already: placed as before distractors
    place = _place_many if distractors is None else _place_sorted
    objects: list = [None] * len(rngs)
    todo = list(range(len(rngs)))
    for attempt in range(MAX_RESTARTS):
        if attempt >= RADII_KEPT:
            # Redraw the radii too: such an image's radii are drawn from those that fit
            # (and its distractor draw: shapes, target area; see MATCHED_MIN_OK).
            for b in todo:
                if distractors is not None:
                    drawers[b] = _radii_drawer(rngs[b], counts[b], radius, distractors)
                radii[b] = drawers[b][1]()
        placed = place([rngs[b] for b in todo], [radii[b] for b in todo], size)
        for b, obj in zip(todo, placed, strict=True):
            objects[b] = obj
        todo = [b for b in todo if objects[b] is None]
        if not todo:
            return objects
    n, k = counts[todo[0]], len(drawers[todo[0]][0])
    extra = f" and {k} distractors" if k else ""
    what = "--radius or --distractor-radius" if k else "--radius"
    raise CountnetError(
        f"could not place {n} non-overlapping circles of radius {_fmt_radius(radius)}"
        f"{extra} in a {size}x{size} image after {MAX_RESTARTS} attempts: lower the "
        f"counts or {what}, or raise --size"
    )


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


def _place_sorted(
    rngs: list[np.random.Generator], radii: list[np.ndarray], size: int
) -> list[np.ndarray | None]:
    """``_place_many`` with each image's largest objects first, returned in its ``radii``'s
    order."""
    orders = [np.argsort(-r, kind="stable") for r in radii]
    placed = _place_many(rngs, [r[o] for r, o in zip(radii, orders, strict=True)], size)
    out: list[np.ndarray | None] = []
    for objects, order in zip(placed, orders, strict=True):
        if objects is not None:
            objects[order] = objects.copy()
        out.append(objects)
    return out


def _place_many(
    rngs: list[np.random.Generator], radii: list[np.ndarray], size: int
) -> list[np.ndarray | None]:
    """Place each image's circles at once, then redraw only those that collide, in rounds:
    (n, 3) circles per image, or None where its layout stalled or ran out of MAX_ROUNDS.

    Each round draws ``CANDIDATES`` positions for every pending circle, keeps the first that
    clears every accepted circle, then drops any that touches an earlier pending circle
    (so the accepted set stays valid): a few NumPy calls per round instead of a Python
    loop per circle. Images run in lockstep, padded to a batch, each drawing from its own
    ``rng`` exactly as alone (one ``random`` call a round), with the same float operations
    on its own circles: the layouts do not depend on the batch, only the NumPy calls are
    shared (bench/gen_batch.py).
    """
    out: list[np.ndarray | None] = [None if len(r) else np.zeros((0, 3)) for r in radii]
    live = np.array([b for b, r in enumerate(radii) if len(r)], np.int64)
    if not live.size:
        return out
    rad, pending = _padded([radii[b] for b in live])
    # Not-yet-accepted circles sit at infinity, which every candidate clears (inf >= any
    # threshold), so no compaction is needed.
    x = np.full(rad.shape, np.inf)
    y = np.full(rad.shape, np.inf)
    stalled = np.zeros(len(live), np.int64)
    for round_ in range(MAX_ROUNDS):
        slots, valid, r, cand = _draw_candidates([rngs[b] for b in live], rad, pending, size)
        if round_:
            ok, cand = _first_clear(cand, r, valid, x, y, rad)
        else:  # every image accepts its first pending circle in round 0
            ok, cand = valid, cand[:, :, 0]
        _yield_to_earlier(cand, r, ok)
        rows, cols = np.nonzero(ok)
        placed = slots[rows, cols]
        x[rows, placed] = cand[rows, cols, 0]
        y[rows, placed] = cand[rows, cols, 1]
        pending[rows, placed] = False
        stalled = np.where(ok.any(axis=1), 0, stalled + 1)
        done = ~pending.any(axis=1)
        for i in np.flatnonzero(done):
            k = len(radii[live[i]])
            out[live[i]] = np.column_stack([x[i, :k], y[i, :k], rad[i, :k]])
        # a stalled layout: the circles placed so far leave no room (out stays None)
        keep = ~done & (stalled < STALL_ROUNDS)
        if not keep.all():
            live, rad, pending, x, y, stalled = (
                a[keep] for a in (live, rad, pending, x, y, stalled)
            )
            if not live.size:
                break
    return out


def _padded(radii: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(B, n) radii and pending flags, n the most circles of any image. Padded slots:
    radius 0, never pending."""
    n = max(len(r) for r in radii)
    rad = np.zeros((len(radii), n))
    pending = np.zeros((len(radii), n), bool)
    for i, r in enumerate(radii):
        rad[i, : len(r)] = r
        pending[i, : len(r)] = True
    return rad, pending


def _draw_candidates(
    rngs: list[np.random.Generator], rad: np.ndarray, pending: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This round's pending circles, each image's first and in order (the order decides who
    yields): their slots (B, m), which are real (B, m), their radii (B, m), and CANDIDATES
    positions each (B, m, K, 2), one ``random`` call per image."""
    counts = pending.sum(axis=1)
    m = int(counts.max())
    slots = np.argsort(~pending, axis=1, kind="stable")[:, :m]
    valid = np.arange(m) < counts[:, None]
    r = np.take_along_axis(rad, slots, axis=1)
    u = np.zeros((len(rngs), m, CANDIDATES, 2))
    for i, rng in enumerate(rngs):
        u[i, : counts[i]] = rng.random((counts[i], CANDIDATES, 2))
    r4 = r[:, :, None, None]
    return slots, valid, r, r4 + u * (size - 2 * r4)


def _first_clear(
    cand: np.ndarray,
    r: np.ndarray,
    valid: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rad: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(whether any candidate clears every accepted circle (B, m), the first that does
    (B, m, 2)): each circle's first candidate, then, for those it fails, the rest; as
    testing all K at once would find, with a fraction of the distances (most first
    candidates clear)."""
    first = cand[:, :, 0]  # (B, m, 2), a view: cand is this round's own
    ok = _clears(first, r, x[:, None, :], y[:, None, :], rad[:, None, :]) & valid
    rows, cols = np.nonzero(valid & ~ok)
    if rows.size:
        rest = cand[rows, cols, 1:]  # (P, K - 1, 2)
        at = (rows, None, slice(None))
        free = _clears(rest, r[rows, cols, None], x[at], y[at], rad[at])
        ok[rows, cols] = free.any(axis=1)
        first[rows, cols] = rest[np.arange(rows.size), free.argmax(axis=1)]
    return ok, first


def _yield_to_earlier(cand: np.ndarray, r: np.ndarray, ok: np.ndarray) -> None:
    """Clear ``ok`` (in place) where a candidate touches an earlier pending circle's."""
    m = cand.shape[1]
    if m > 1:
        dx = cand[:, :, None, 0] - cand[:, None, :, 0]
        dy = cand[:, :, None, 1] - cand[:, None, :, 1]
        clash = dx * dx + dy * dy < (r[:, :, None] + r[:, None, :] + GAP) ** 2
        clash &= _earlier(m) & ok[:, :, None] & ok[:, None, :]
        ok &= ~clash.any(axis=1)  # lose to any earlier pending circle


def _clears(
    cand: np.ndarray, r: np.ndarray, x: np.ndarray, y: np.ndarray, rad: np.ndarray
) -> np.ndarray:
    """Whether each candidate (..., 2) of radius r (...) is at least GAP from every circle
    (x, y, rad), broadcast along a last axis of circles."""
    # x and y kept apart: dx*dx + dy*dy is the same number as a sum over a length-2 axis,
    # without NumPy's slow reduction over a tiny axis
    dx = cand[..., 0, None] - x
    dy = cand[..., 1, None] - y
    return (dx * dx + dy * dy >= (r[..., None] + rad + GAP) ** 2).all(axis=-1)


@functools.lru_cache(maxsize=64)
def _earlier(m: int) -> np.ndarray:
    """(m, m): [i, j] when pending circle i precedes j. Read-only, cached."""
    mask = np.triu(np.ones((m, m), bool), 1)
    mask.flags.writeable = False
    return mask
