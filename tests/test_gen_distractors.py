"""Distractors (--distractors, --distractor-shape, --match-area), checked on rendered pixels:
shapes that are not counted, each its own object, and areas that defeat pixel counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from countnet.errors import CountnetError
from countnet_gen.distractors import AREA, SHAPES, Distractors
from countnet_gen.render import RIM, coverage, coverage_u8
from countnet_gen.sampler import GAP, sample_layout
from countnet_gen.spec import DatasetSpec, color_rgb
from countnet_gen.writer import generate, read_manifest


def _contrast(path, spec: DatasetSpec) -> np.ndarray:
    """Each pixel's distance from the background, as a fraction of fg-bg: read back from the
    PNG as any loader would."""
    rgb = np.asarray(Image.open(path).convert("RGB"), float)
    bg, fg = np.array(color_rgb(spec.bg), float), np.array(color_rgb(spec.fg), float)
    return np.abs(rgb - bg).sum(-1) / np.abs(fg - bg).sum()


def _pixel_count_baseline(out, spec: DatasetSpec) -> tuple[float, float]:
    """The best linear fit of count on foreground area (summed contrast), fitted on train/
    and judged on valid/: (accuracy of the rounded prediction, R^2)."""
    rows = read_manifest(out)
    area = np.array([_contrast(out / r["path"], spec).sum() for r in rows])
    count = np.array([r["count"] for r in rows], float)
    train = np.array([r["split"] == "train" for r in rows])
    (a, b), *_ = np.linalg.lstsq(
        np.column_stack([np.ones(train.sum()), area[train]]), count[train], rcond=None
    )
    pred, true = a + b * area[~train], count[~train]
    lo, hi = spec.counts
    accuracy = float((np.clip(np.rint(pred), lo, hi) == true).mean())
    r2 = 1 - ((true - pred) ** 2).sum() / ((true - true.mean()) ** 2).sum()
    return accuracy, float(r2)


def test_counting_pixels_works_on_a_plain_set_and_fails_with_matched_areas(tmp_path):
    base = {"range": "1-5", "per_class": 40, "size": 64, "radius": 4, "no_overlap": True}
    plain = DatasetSpec.from_dict(base)
    matched = DatasetSpec.from_dict(
        {
            **base,
            "distractors": "3-5",
            "distractor_shape": "square,triangle,ring",
            "match_area": True,
        }
    )
    acc, r2 = _pixel_count_baseline(generate(plain, tmp_path / "plain", workers=1), plain)
    assert acc >= 0.95 and r2 >= 0.95, (acc, r2)
    out = generate(matched, tmp_path / "matched", workers=1)
    acc, r2 = _pixel_count_baseline(out, matched)
    assert acc <= 0.35 and r2 <= 0.1, (acc, r2)  # chance is 0.2 (five counts)
    rows = read_manifest(out)
    assert all(len(r["circles"]) == r["count"] and 3 <= len(r["distractors"]) <= 5 for r in rows)
    assert {d[0] for r in rows for d in r["distractors"]} == {"square", "triangle", "ring"}


@pytest.mark.parametrize(
    "options",
    [
        {"range": "1-5", "radius": 4, "distractors": "2-4", "distractor_shape": list(SHAPES)},
        {"range": "45-50", "radius": 2, "distractors": "4-6", "match_area": True},
    ],
)
def test_each_object_is_its_own_component_and_only_circles_are_counted(tmp_path, options):
    # Connected components of the rendered pixels at a quarter, a tenth and a hundredth of
    # the contrast: every circle and every distractor apart from all others; the folder
    # label is the number of circles alone.
    from skimage import measure

    spec = DatasetSpec.from_dict({"per_class": 6, "size": 64, "no_overlap": True, **options})
    out = generate(spec, tmp_path / "ds", workers=1)
    for row in read_manifest(out):
        contrast = _contrast(out / row["path"], spec)
        assert len(row["circles"]) == row["count"] == int(row["path"].split("/")[1])
        objects = row["count"] + len(row["distractors"])
        for level in (0.25, 0.1, 0.01):
            n = measure.label(contrast > level, connectivity=1).max()
            assert n == objects, f"{row['path']}: {n} components at {level:.0%}, {objects}"


def _one(shape: str, r: float, angle: float = 0.0, x: float = 32.3, y: float = 31.6):
    return np.array([[x, y, r, angle, SHAPES.index(shape)]])


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_areas_and_outlines_in_the_pixels(shape):
    none = np.zeros((0, 3))
    for r in (3.0, 8.0, 20.0):
        for angle in (0.0, 0.4, 1.1):
            cov = coverage(none, 64, _one(shape, r, angle))
            # the geometric area, give or take the anti-aliased rim (< 1 px^2 an object)
            assert abs(cov.sum() - AREA[shape] * r * r) < 1.0, (shape, r, angle, cov.sum())
            # nothing beyond the circumscribed circle's rim: the --no-overlap premise
            yy, xx = np.mgrid[0:64, 0:64] + 0.5
            beyond = np.hypot(xx - 32.3, yy - 31.6) > r + RIM
            assert cov[beyond].max() == 0.0
    cov = coverage(none, 64, _one(shape, 20.0))  # centred on pixel (31, 32)
    centre, left, right = cov[31, 32], cov[31, 32 - 16], cov[31, 32 + 16]
    if shape == "ring":  # a hole in the middle, full on the band r/2 to r
        assert centre == 0.0 and left == right == 1.0
    elif shape == "square":  # at angle 0 its edges are axis-aligned: a corner is inside
        assert centre == 1.0 and cov[31 + 12, 32 + 12] == 1.0 and cov[31 + 16, 32 + 16] == 0.0
    else:  # a vertex to the left, a flat side half the radius to the right
        assert centre == 1.0 and left == 1.0 and right == 0.0 and cov[31, 32 + 8] == 1.0


@st.composite
def layouts(draw):
    size = draw(st.integers(24, 128))
    r0 = draw(st.floats(0.5, size / 10))
    r1 = draw(st.floats(r0, size / 8))
    d0 = draw(st.floats(0.5, size / 10))
    d1 = draw(st.floats(d0, size / 8))
    n, k = draw(st.integers(1, 12)), draw(st.integers(0, 6))
    shapes = tuple(draw(st.sets(st.sampled_from(SHAPES), min_size=1)))
    seed = draw(st.integers(0, 2**32 - 1))
    return n, size, (r0, r1), Distractors((0, k), shapes, (d0, d1)), seed


@settings(max_examples=80, deadline=None)
@given(layouts())
def test_layouts_with_distractors_are_inside_apart_and_disjoint_in_pixels(layout):
    n, size, radius, distractors, seed = layout
    try:
        circles, extra = sample_layout(
            np.random.default_rng(seed), n, size, radius, True, distractors
        )
    except CountnetError:
        return  # a draw too crowded to place: refused, never half-placed
    assert circles.shape == (n, 3) and extra.shape[1] == 5 and len(extra) <= distractors.counts[1]
    x, y, r = np.concatenate([circles, extra[:, :3]]).T
    assert np.all(r >= 0.5) and np.all(x - r >= 0) and np.all(x + r <= size)
    assert np.all(y - r >= 0) and np.all(y + r <= size)
    gap = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) - r[:, None] - r[None, :]
    np.fill_diagonal(gap, np.inf)
    assert gap.min() >= GAP - 1e-9
    # apart, so no pixel has two objects: the disjoint fast path equals summing
    fast = coverage_u8(circles, size, disjoint=True, distractors=extra)
    assert np.array_equal(fast, coverage_u8(circles, size, distractors=extra))


def test_matched_target_areas_do_not_depend_on_the_count():
    # The sizes the sampler gives: circles' area plus distractors' area equals the image's
    # target, drawn from a window that is the same for every count.
    spec = DatasetSpec.from_dict(
        {"range": "1-5", "size": 64, "radius": "3-5", "distractors": "4-6", "match_area": True}
    )
    plan = spec.distractor_plan()
    for count in spec.classes:
        for seed in range(30):
            rng = np.random.default_rng(seed)
            ids, target = plan.draw(np.random.default_rng(seed))
            lo, hi = plan.window(ids)
            assert lo <= target <= hi
            # overlap allowed: one draw an image (--no-overlap may redraw a draw that
            # does not fit, see sampler.MATCHED_MIN_OK)
            circles, extra = sample_layout(rng, count, 64, spec.radius, False, plan)
            area = math.pi * (circles[:, 2] ** 2).sum()
            area += sum(AREA[SHAPES[int(s)]] * rr * rr for rr, s in extra[:, [2, 4]])
            assert area == pytest.approx(target, rel=1e-9)
            d0, d1 = spec.distractor_radius
            assert np.all(extra[:, 2] >= d0 - 1e-9) and np.all(extra[:, 2] <= d1 + 1e-9)


def test_spec_records_distractors_and_sets_without_them_are_unchanged():
    spec = DatasetSpec.from_dict(
        {"range": "1-5", "size": 64, "radius": 4, "distractors": "3-5", "match_area": True,
         "distractor_shape": "ring,square"}
    )  # fmt: skip
    d = spec.to_dict()
    assert d["distractors"] == "3-5" and d["distractor_shape"] == ["square", "ring"]
    assert d["distractor_radius"] == "2-8" and d["match_area"] is True  # resolved default
    assert DatasetSpec.from_dict(d) == spec
    assert spec.default_name() == "count-1-5_r4_s64_n1000_d3-5-square-ring_dr2-8_matcharea"
    plain = DatasetSpec.from_dict({"range": "1-5"})
    assert not {"distractors", "distractor_shape", "distractor_radius", "match_area"} & set(
        plain.to_dict()
    )
    same = DatasetSpec.from_dict({"range": "1-5", "distractors": 2})
    assert same.distractor_radius == same.radius  # as big as the circles by default


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"match_area": True}, "--match-area needs distractors"),
        ({"distractor_radius": "3"}, "--distractor-radius needs distractors"),
        ({"distractor_radius": 0}, "--distractor-radius needs distractors"),
        ({"distractor_shape": "ring"}, "--distractor-shape needs distractors"),
        ({"distractors": "2", "distractor_shape": "star"}, "--distractor-shape must be"),
        ({"distractors": "x"}, "--distractors must look like"),
        ({"distractors": "4-2"}, "reversed"),
        ({"distractors": "2", "distractor_radius": "40"}, "--distractor-radius 40 is too large"),
        ({"distractors": "2", "distractor_radius": "0.2"}, "--distractor-radius 0.2 is below"),
        ({"distractors": "1", "match_area": True}, "use at least 2 distractors"),
        ({"distractors": "0-4", "match_area": True}, "0 distractors"),
        (
            {"distractors": "2", "distractor_shape": "ring", "distractor_radius": "1.5-3"},
            "rings need",
        ),
        (
            {"range": "20-20", "radius": 3, "no_overlap": True, "distractors": "40"},
            "random placement jams",
        ),
        (  # fits at first sight, but most drawn areas of one circle cannot be placed
            {
                "range": "1-4",
                "size": 28,
                "radius": 3,
                "no_overlap": True,
                "distractors": "2-3",
                "distractor_radius": "1-9",
                "match_area": True,
            },
            "images of 1 circle and their distractors cannot be placed reliably",
        ),
    ],
)
def test_bad_distractor_options_are_refused(options, fragment):
    with pytest.raises(CountnetError, match=fragment):
        DatasetSpec.from_dict({"range": "1-5", "size": 64, "radius": 4, **options})


# sha256 of the circles, distractors and coverage indices of the images below: sets with
# distractors keep their pixels too. A change that moves an object or a pixel must bump
# PIXELS_VERSION (so the workflow regenerates its datasets) and this digest with it.
DISTRACTOR_DIGEST = "c89e02a03732f0093c24bf52afa48b7fabfa6916395eeb2639b2e4352e94d2de"


def test_distractor_pixels_are_those_of_this_pixels_version():
    import hashlib

    from countnet_gen import PIXELS_VERSION
    from countnet_gen.writer import ImageJob, make_image

    h = hashlib.sha256()
    for options in (
        {"range": "1-5", "size": 64, "radius": 4, "no_overlap": True, "distractors": "3-5",
         "distractor_shape": list(SHAPES), "match_area": True},
        {"range": "45-50", "size": 64, "radius": 2, "no_overlap": True, "distractors": "4-6",
         "match_area": True},
        {"range": "2-4", "size": 40, "radius": "2-5", "distractors": "0-3",
         "distractor_shape": "triangle,ring"},
    ):  # fmt: skip
        spec = DatasetSpec.from_dict({"per_class": 4, "seed": 7, **options})
        for i in range(6):
            image = make_image(spec, ImageJob(spec.classes[i % len(spec.classes)], i, "train"))
            h.update(np.round(image.circles, 9).tobytes())
            h.update(np.round(image.distractors, 9).tobytes())
            h.update(image.index.tobytes())
    assert PIXELS_VERSION == 4 and h.hexdigest() == DISTRACTOR_DIGEST, (
        f"pixels changed (digest {h.hexdigest()}): bump PIXELS_VERSION and this digest"
    )


def test_a_draw_that_does_not_fit_is_redrawn_whole(monkeypatch):
    # --no-overlap: an image whose layouts keep failing redraws, after RADII_KEPT of them,
    # its distractor draw (shapes, target area) with its radii; the objects it returns are
    # those of the last draw: its shapes, areas adding up to its target.
    import countnet_gen.sampler as sampler

    spec = DatasetSpec.from_dict(
        {"range": "1-5", "size": 64, "radius": 4, "no_overlap": True, "distractors": "3-5",
         "distractor_shape": list(SHAPES), "match_area": True}
    )  # fmt: skip
    draws, calls = [], []
    draw, place = Distractors.draw, sampler._place_sorted

    def recorded(self, rng):
        draws.append(draw(self, rng))
        return draws[-1]

    def failing(rngs, radii, size):  # the image's first RADII_KEPT layouts do not fit
        calls.append(len(radii[0]))
        return [None] if len(calls) <= sampler.RADII_KEPT else place(rngs, radii, size)

    monkeypatch.setattr(Distractors, "draw", recorded)
    monkeypatch.setattr(sampler, "_place_sorted", failing)
    plan = spec.distractor_plan()
    circles, extra = sample_layout(np.random.default_rng(3), 4, 64, spec.radius, True, plan)
    assert len(draws) == 2 and len(calls) > sampler.RADII_KEPT
    ids, target = draws[-1]
    assert extra[:, 4].astype(int).tolist() == ids.tolist() and len(circles) == 4
    area = math.pi * (circles[:, 2] ** 2).sum()
    area += sum(AREA[SHAPES[int(k)]] * r * r for r, k in extra[:, [2, 4]])
    assert area == pytest.approx(target, rel=1e-9)
