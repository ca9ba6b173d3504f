"""DatasetSpec: the one description of a synthetic dataset, shared by the CLI, the
Snakefile (config/config.yaml) and the dataset's own dataset.json."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from countnet.errors import CountnetError
from countnet.options import NOT_CLI, cli
from countnet_gen.distractors import AREA, RING_MIN_RADIUS, SHAPES, Distractors, parse_shapes

# matplotlib's default scatter colour on white, as in the blog's images.
DEFAULT_FG = "#1f77b4"
DEFAULT_BG = "#ffffff"

_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_int_range(
    text: str | int | list | tuple, what: str, *, allow_single: bool, low: int = 1
) -> tuple[int, int]:
    """Parse "A-B" (inclusive) or, where allowed, "A", into (A, B) with low <= A <= B."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if isinstance(text, list | tuple) and len(text) == 2:
        text = f"{text[0]}-{text[1]}"
    m = _RANGE_RE.match(str(text))
    if not m or (m.group(2) is None and not allow_single):
        form = "A-B or A" if allow_single else "A-B, e.g. 45-50"
        kind = "positive integers" if low == 1 else "whole numbers"
        raise CountnetError(f"{what} must look like {form} ({kind}), got {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo < low:
        kind = "positive" if low == 1 else f"at least {low}"
        raise CountnetError(f"{what} must be {kind}, got {text!r}")
    if lo > hi:
        raise CountnetError(f"{what} {text!r} is reversed: write {hi}-{lo}")
    return lo, hi


def parse_color(text: str, what: str) -> str:
    """A colour as '#rrggbb' from anything Pillow's ImageColor reads: hex (#rgb, #rrggbb),
    CSS names (``blue`` is CSS blue, #0000ff), rgb(...), hsl(...)."""
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(str(text).strip())
    except ValueError:
        raise CountnetError(
            f"{what} must be a colour: hex like #1f77b4 or #fff, a CSS name like navy, or "
            f"rgb(31,119,180); got {text!r}"
        ) from None
    if len(rgb) == 4 and rgb[3] != 255:
        raise CountnetError(f"{what} must be opaque, got {text!r}")
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


def color_rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a generated dataset: its circles and pixels (its PNG bytes
    too, with the same Pillow and zlib).

    ``counts`` is inclusive on both ends: (45, 50) gives six classes, 45 to 50.
    ``radius`` is (min, max) in pixels; equal ends mean fixed-size circles.
    """

    counts: tuple[int, int] = field(
        metadata=cli(
            "Circle counts A-B, inclusive on both ends: 45-50 makes six classes, 45 to 50.",
            flags=("--range",),
            type=str,
        )
    )
    per_class: int = field(default=1000, metadata=cli("Images per class (train + valid)."))
    size: int = field(default=224, metadata=cli("Image side in pixels."))
    radius: tuple[float, float] = field(
        default=(6.0, 6.0),
        metadata=cli(
            "Circle radius in pixels: R (fixed) or R1-R2 (uniform in range).",
            type=str,
            default="6",
        ),
    )
    no_overlap: bool = field(
        default=False,
        metadata=cli(
            "Keep circles >= 2 px apart edge to edge: each a distinct object in the pixels.",
            flags=("--no-overlap/--overlap",),
        ),
    )
    valid_pct: float = field(
        default=0.2, metadata=cli("Fraction of each class kept for validation.")
    )
    seed: int = field(default=0, metadata=cli("Random seed: same parameters + seed: same pixels."))
    fg: str = field(default=DEFAULT_FG, metadata=cli("Circle colour (hex, CSS name, rgb())."))
    bg: str = field(default=DEFAULT_BG, metadata=cli("Background colour (hex, CSS name, rgb())."))
    # Counts written only to test/ (never trained or validated on): what a model makes of
    # counts it has not seen. Their images are the ones the set would have without it.
    holdout: tuple[int, ...] = field(
        default=(),
        metadata=cli(
            "Counts written only to test/ (e.g. 47,49; repeatable): never trained or validated on.",
            multiple=True,
            default=None,
        ),
    )
    # Other shapes in every image, not counted (--distractors K or K-L an image): which
    # shapes, their radius (of the circle each is inscribed in; default: the circles' own,
    # or with match_area half the smallest to twice the largest, rings at least
    # RING_MIN_RADIUS), and whether an image's
    # total foreground area is drawn independently of its count (distractors.py).
    distractors: tuple[int, int] = field(
        default=(0, 0),
        metadata=cli(
            "Other shapes in every image, not counted: K or K-L an image (0: none). "
            "The label stays the number of circles.",
            type=str,
            default="0",
        ),
    )
    distractor_shape: tuple[str, ...] | None = field(  # None: squares
        default=None,
        metadata=cli(
            "{choices} (comma-separated or repeated: a mix) \\[default: square].",
            choices=SHAPES,
            multiple=True,
        ),
    )
    distractor_radius: tuple[float, float] | None = field(
        default=None,
        metadata=cli(
            "Radius of the circle each distractor is inscribed in: R or R1-R2 "
            "\\[default: --radius; with --match-area half its smallest to twice its largest].",
            type=str | None,
        ),
    )
    match_area: bool = field(
        default=False,
        metadata=cli(
            "Size the distractors so an image's total foreground area has the same "
            "distribution for every count: counting pixels cannot work."
        ),
    )
    # the folder's name; `countnet gen` takes a whole --out instead
    name: str | None = field(default=None, compare=False, metadata=NOT_CLI)
    # False: the trial layouts of check_packable are left out (seconds): for a Snakemake
    # job's process, whose plan ran them on the same options
    check_layouts: InitVar[bool] = True

    def __post_init__(self, check_layouts: bool = True) -> None:
        # 0 circles is a count too (subitizing starts there): class 0, blank images
        counts = parse_int_range(self.counts, "--range", allow_single=False, low=0)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "holdout", parse_holdout(self.holdout, counts))
        object.__setattr__(self, "radius", parse_radius(self.radius))
        object.__setattr__(self, "fg", parse_color(self.fg, "--fg"))
        object.__setattr__(self, "bg", parse_color(self.bg, "--bg"))
        if not isinstance(self.per_class, int) or self.per_class <= 0:
            raise CountnetError(f"--per-class must be a positive integer, got {self.per_class!r}")
        if not isinstance(self.size, int) or self.size < 8:
            raise CountnetError(
                f"--size must be an integer of at least 8 pixels, got {self.size!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise CountnetError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= float(self.valid_pct) < 1.0:
            raise CountnetError(f"--valid-pct must be in [0, 1), got {self.valid_pct!r}")
        object.__setattr__(self, "valid_pct", float(self.valid_pct))
        if self.per_class > 1 and self.valid_pct > 0 and self.n_valid == 0:
            raise CountnetError(
                f"--valid-pct {self.valid_pct} of --per-class {self.per_class} rounds to no "
                "validation image per class; raise either"
            )
        if self.n_valid == self.per_class:
            raise CountnetError("--valid-pct leaves no training images; lower it")
        r_max = self.radius[1]
        if 2 * r_max > self.size:
            raise CountnetError(
                f"--radius {r_max:g} is too large for --size {self.size}: a circle of diameter "
                f"{2 * r_max:g} px cannot lie inside the frame"
            )
        if self.fg == self.bg:
            raise CountnetError("--fg and --bg are the same colour: circles would be invisible")
        self._resolve_distractors()
        if not check_layouts:
            return
        # here: the sampler loads numpy, which `countnet --help` (cli -> spec) never needs
        from countnet_gen.sampler import check_packable

        # Checked here, up front, so an impossible packing never starts a job.
        check_packable(
            self.counts[1],
            self.size,
            self.radius,
            self.no_overlap,
            self.distractor_plan(),
            n_low=self.counts[0],
        )

    def _resolve_distractors(self) -> None:
        counts = parse_int_range(self.distractors, "--distractors", allow_single=True, low=0)
        object.__setattr__(self, "distractors", counts)
        if not isinstance(self.match_area, bool):
            raise CountnetError(f"--match-area must be true or false, got {self.match_area!r}")
        if counts[1] == 0:
            given = {"--match-area": self.match_area or None,
                     "--distractor-radius": self.distractor_radius,
                     "--distractor-shape": self.distractor_shape}  # fmt: skip
            option = next((k for k, v in given.items() if v is not None), None)
            if option:
                raise CountnetError(f"{option} needs distractors: add --distractors K or K-L")
            return
        shapes = "square" if self.distractor_shape is None else self.distractor_shape
        object.__setattr__(self, "distractor_shape", parse_shapes(shapes))
        if self.distractor_radius is not None:
            radius = parse_radius(self.distractor_radius, "--distractor-radius")
        elif self.match_area:  # sizes must vary for the areas to balance
            smallest = RING_MIN_RADIUS if "ring" in self.distractor_shape else 0.5
            radius = (max(smallest, self.radius[0] / 2), min(2 * self.radius[1], self.size / 2))
        else:  # as big as the circles, so size tells nothing apart
            radius = self.radius
        if 2 * radius[1] > self.size:
            raise CountnetError(
                f"--distractor-radius {radius[1]:g} is too large for --size {self.size}"
            )
        if "ring" in self.distractor_shape and radius[0] < RING_MIN_RADIUS:
            raise CountnetError(
                f"rings need a --distractor-radius of at least {RING_MIN_RADIUS:g} px (a smaller "
                f"one is a blob, or falls apart in the pixels), got {radius[0]:g}"
            )
        object.__setattr__(self, "distractor_radius", radius)
        self.distractor_plan().check()

    def distractor_plan(self) -> Distractors | None:
        """The distractors' description the sampler uses (None without distractors)."""
        if self.distractors[1] == 0:
            return None
        (lo, hi), (r0, r1) = self.counts, self.radius
        return Distractors(
            counts=self.distractors,
            shapes=self.distractor_shape,
            radius=self.distractor_radius,
            match_area=self.match_area,
            circle_area=(lo * AREA["circle"] * r0 * r0, hi * AREA["circle"] * r1 * r1),
        )

    # -- derived values -------------------------------------------------
    @property
    def classes(self) -> list[int]:
        return list(range(self.counts[0], self.counts[1] + 1))

    @property
    def trained_classes(self) -> list[int]:
        """The counts in train/ and valid/ (all but the held-out ones)."""
        return [c for c in self.classes if c not in self.holdout]

    @property
    def n_valid(self) -> int:
        return int(round(self.per_class * self.valid_pct))

    @property
    def n_train(self) -> int:
        return self.per_class - self.n_valid

    @property
    def n_images(self) -> int:
        return self.per_class * len(self.classes)

    def default_name(self) -> str:
        """A folder name derived from the parameters that change the images."""
        lo, hi = self.counts
        r0, r1 = self.radius
        parts = [f"count-{lo}-{hi}"]
        parts.append(f"r{r0:g}" if r0 == r1 else f"r{r0:g}-{r1:g}")
        parts.append(f"s{self.size}")
        parts.append(f"n{self.per_class}")
        if self.no_overlap:
            parts.append("nooverlap")
        if (self.fg, self.bg) != (DEFAULT_FG, DEFAULT_BG):
            parts.append(f"{self.fg.lstrip('#')}-on-{self.bg.lstrip('#')}")
        if self.valid_pct != DatasetSpec.valid_pct:
            parts.append(f"v{self.valid_pct:g}")
        if self.holdout:
            parts.append("holdout-" + "-".join(map(str, self.holdout)))
        if self.distractors[1]:
            d0, d1 = self.distractor_radius
            parts.append(f"d{range_text(*self.distractors)}-" + "-".join(self.distractor_shape))
            if (d0, d1) != self.radius:
                parts.append(f"dr{d0:g}" if d0 == d1 else f"dr{d0:g}-{d1:g}")
            if self.match_area:
                parts.append("matcharea")
        if self.seed:
            parts.append(f"seed{self.seed}")
        return "_".join(parts)

    def layout_key(self) -> int:
        """32 bits of a hash of every parameter but the seed (and the name). Mixed into each
        image's seed, so two sets that differ in any parameter (a smaller --per-class
        "test" set, say) never share images, even with the same --seed."""
        d = self.to_dict()
        d.pop("seed"), d.pop("name")
        d.pop("holdout", None)  # which split a count goes to does not change its images
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
        return int(digest[:8], 16)

    def out_dir(self, root: Path | str = "datasets") -> Path:
        return Path(root) / (self.name or self.default_name())

    # -- (de)serialisation ----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["counts"] = f"{self.counts[0]}-{self.counts[1]}"
        # exact: the workflow rebuilds specs from it
        d["radius"] = range_text(*(_exact(r) for r in self.radius))
        if self.holdout:
            d["holdout"] = list(self.holdout)
        else:  # absent, not empty: sets made before --holdout keep their records and keys
            d.pop("holdout")
        if self.distractors[1]:
            d["distractors"] = range_text(*self.distractors)
            d["distractor_shape"] = list(self.distractor_shape)
            d["distractor_radius"] = range_text(*(_exact(r) for r in self.distractor_radius))
        else:  # likewise: sets without distractors keep their records and layout keys
            for key in ("distractors", "distractor_shape", "distractor_radius", "match_area"):
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, check_layouts: bool = True) -> DatasetSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        # "range" is the CLI's word for counts; accept it in configs too.
        d = dict(d)
        if "range" in d and "counts" not in d:
            d["counts"] = d.pop("range")
        unknown = sorted(set(d) - known)
        if unknown:
            raise CountnetError(
                f"unknown dataset option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "counts" not in d:
            raise CountnetError("a dataset needs a count range, e.g. range: 45-50")
        return cls(**d, check_layouts=check_layouts)


def range_text(lo: object, hi: object) -> str:
    """ "A" when both ends are the same, else "A-B": how ranges are written back."""
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _exact(x: float) -> str:
    """The shortest text that reads back as exactly ``x`` (3.0 -> "3", 1.23456789 stays)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def parse_holdout(value: Any, counts: tuple[int, int]) -> tuple[int, ...]:
    """ "47,49" (or a list) -> (47, 49): counts inside ``counts`` leaving two to train on."""
    if value is None or (isinstance(value, str | list | tuple) and not str(value).strip("[]() ")):
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    out = set()
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not re.fullmatch(r"[0-9]+", text):
            raise CountnetError(f"--holdout must be counts like 47,49; got {value!r}")
        out.add(int(text))
    lo, hi = counts
    outside = sorted(c for c in out if not lo <= c <= hi)
    if outside:
        raise CountnetError(
            f"--holdout {', '.join(map(str, outside))} is outside --range {lo}-{hi}: hold out "
            "counts the set has"
        )
    if (hi - lo + 1) - len(out) < 2:
        raise CountnetError(
            f"--holdout {','.join(map(str, sorted(out)))} leaves fewer than two counts of "
            f"--range {lo}-{hi} to train on"
        )
    return tuple(sorted(out))


def parse_radius(value: Any, what: str = "--radius") -> tuple[float, float]:
    """Parse "R" or "R1-R2" (pixels, may be fractional) into (min, max)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo = hi = float(value)
    elif isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        m = re.match(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?$", str(value))
        if not m:
            raise CountnetError(f"{what} must look like R or R1-R2 in pixels, got {value!r}")
        lo = float(m.group(1))
        hi = float(m.group(2)) if m.group(2) is not None else lo
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
        raise CountnetError(f"{what} must be positive, got {value!r}")
    if lo < 0.5:
        raise CountnetError(f"{what} {lo:g} is below half a pixel: such circles are invisible")
    if lo > hi:
        raise CountnetError(f"{what} {value!r} is reversed: write {hi:g}-{lo:g}")
    return lo, hi
