"""Distractors: shapes in an image that are not circles and are not counted (--distractors).

Every distractor is inscribed in a circle of radius r, its "radius" (a ring's outer radius):
a square or an equilateral triangle at a random angle (corners slightly rounded), or a ring
half of r wide. The sampler
places every object as a disc of its radius, so ``--no-overlap`` keeps all of them GAP
apart, circles and distractors alike, and the renderer keeps each shape's anti-aliased rim
inside its disc's.

``match_area``: an image's total foreground area (circles plus distractors) is drawn from a
distribution that does not depend on how many circles it holds, so that counting foreground
pixels cannot tell the counts apart (the blog's worry that a CNN "counts the blue pixels").
Per image: the number of distractors K and their shapes are drawn (independently of the
count), then a target total area T uniformly from the window that every count of the set can
reach with those K shapes, then the distractors' areas are what T leaves after the circles,
split at random between them within their size range. Areas are the shapes' geometric
areas; the anti-aliased rims add about 0.26 px^2 an object.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from countnet.errors import CountnetError

if TYPE_CHECKING:  # numpy loads when a set is drawn, not for `countnet --help` (spec imports us)
    import numpy as np

SHAPES = ("square", "triangle", "ring")
SIDES = {"square": 4, "triangle": 3, "ring": 0}  # 0: round, no angle
# A ring is half its outer radius wide, and a polygon's corners are rounded with a radius
# of 0.15 r (the shape still reaches r): thinner rings (below ~2.5 px) and sharp triangle
# tips fall apart into several components at 25% contrast on rendered pixels (1-3% of
# triangles at any size), and then no longer read as one object.
RING_WIDTH = 0.5
RING_MIN_RADIUS = 2.0
ROUNDING = 0.15


def _polygon_area(n: int) -> float:
    """Area / r^2 of a regular n-gon with corners rounded by c = ROUNDING, inside radius r:
    the n-gon of circumradius (1 - c) r grown by c r (Steiner's formula: its area, plus
    perimeter times c r, plus pi (c r)^2)."""
    c, inner = ROUNDING, 1 - ROUNDING
    return (
        n / 2 * math.sin(2 * math.pi / n) * inner**2
        + 2 * n * math.sin(math.pi / n) * inner * c
        + math.pi * c**2
    )


# area / r^2 of each shape inscribed in a circle of radius r
AREA = {
    "circle": math.pi,
    "square": _polygon_area(4),
    "triangle": _polygon_area(3),
    "ring": math.pi * (1 - (1 - RING_WIDTH) ** 2),
}


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """AREA and each shape's symmetry period as arrays indexed like SHAPES."""
    import numpy as np

    area = np.array([AREA[s] for s in SHAPES])
    return area, np.array([2 * math.pi / SIDES[s] if SIDES[s] else 0.0 for s in SHAPES])


def parse_shapes(value: object) -> tuple[str, ...]:
    """ "square", "square,ring" or a list -> the shapes in SHAPES order, each once."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    names = {str(s).strip().lower() for s in items} - {""}
    unknown = sorted(names - set(SHAPES))
    if unknown or not names:
        raise CountnetError(
            f"--distractor-shape must be one or more of {', '.join(SHAPES)} (comma-separated), "
            f"got {value!r}"
        )
    return tuple(s for s in SHAPES if s in names)


@dataclass(frozen=True)
class Distractors:
    """What a set's distractors are: how many (K..L an image), which shapes, their radius
    range, and, for ``match_area``, the least and the most total circle area an image of the
    set can have (``circle_area``)."""

    counts: tuple[int, int]
    shapes: tuple[str, ...]
    radius: tuple[float, float]
    match_area: bool = False
    circle_area: tuple[float, float] = (0.0, 0.0)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        """An image's distractor shapes (indices into SHAPES) and, with match_area, its
        target foreground area: neither depends on the image's count."""
        import numpy as np

        k = int(rng.integers(self.counts[0], self.counts[1] + 1))
        ids = np.array([SHAPES.index(s) for s in self.shapes])[rng.integers(0, len(self.shapes), k)]
        if not self.match_area:
            return ids, None
        lo, hi = self.window(ids)
        return ids, float(rng.uniform(lo, hi))

    def window(self, ids: np.ndarray) -> tuple[float, float]:
        """The total areas every count can reach with distractors ``ids``: the most circle
        area plus the distractors at their smallest, to the least plus them at their largest."""
        alpha = float(_tables()[0][ids].sum())
        r0, r1 = self.radius
        return self.circle_area[1] + alpha * r0 * r0, self.circle_area[0] + alpha * r1 * r1

    def radii(
        self, rng: np.random.Generator, ids: np.ndarray, target: float | None, circles: np.ndarray
    ) -> np.ndarray:
        """Each distractor's radius: uniform in the range, or (with a target area) what the
        target leaves after ``circles`` (their radii), split at random between them."""
        import numpy as np

        r0, r1 = self.radius
        if target is None:
            return rng.uniform(r0, r1, len(ids)) if r1 > r0 else np.full(len(ids), float(r0))
        alpha = _tables()[0][ids]
        lo, cap = alpha * r0 * r0, alpha * (r1 * r1 - r0 * r0)
        spare = target - AREA["circle"] * float(np.dot(circles, circles)) - lo.sum()
        extra = _split(spare, cap, rng.random(len(ids)) + 1e-9)
        return np.sqrt((lo + extra) / alpha)

    def angles(self, rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
        """A random orientation per distractor over its symmetry period (a ring has none)."""
        return rng.random(len(ids)) * _tables()[1][ids]

    def check(self) -> None:
        """Refuse a match_area request that some image could not meet."""
        if not self.match_area:
            return
        k = self.counts[0]
        weakest = min(AREA[s] for s in self.shapes)
        r0, r1 = self.radius
        need = self.circle_area[1] - self.circle_area[0]
        room = k * weakest * (r1 * r1 - r0 * r0)
        if k == 0 or room < need:
            per = weakest * (r1 * r1 - r0 * r0)
            k_min = math.ceil(need / per) if per > 0 else None
            fix = (
                f"use at least {k_min} distractors an image (--distractors {k_min}-...) or a "
                "wider --distractor-radius"
                if k_min
                else "give --distractor-radius a range (R1-R2)"
            )
            raise CountnetError(
                f"--match-area: {k} distractors of radius {r0:g}-{r1:g} cannot make up the "
                f"{need:.0f} px^2 between the least and the most circle area of an image "
                f"({self.circle_area[0]:.0f} and {self.circle_area[1]:.0f} px^2): {fix}"
            )


def _split(total: float, cap: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` with no part above its ``cap`` (what a
    capped part cannot take goes to the others, in the same proportions)."""
    import numpy as np

    out = np.zeros(len(cap))
    total = min(max(total, 0.0), float(cap.sum()))
    free = np.ones(len(cap), bool)
    while total > 1e-9 * max(1.0, float(cap.sum())) and free.any():
        share = total * weights[free] / weights[free].sum()
        room = cap[free] - out[free]
        take = np.minimum(share, room)
        out[free] += take
        total -= float(take.sum())
        free[free] = take < room
    return out
