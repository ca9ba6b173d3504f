"""Pixels: anti-aliased discs where the circles are, background elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from countnet_gen.render import coverage, palette, render
from countnet_gen.spec import DatasetSpec, color_rgb
from countnet_gen.writer import generate


def test_disc_area_and_antialiasing():
    c = np.array([[32.3, 30.7, 10.0]])
    cov = coverage(c, 64)
    assert abs(cov.sum() - np.pi * 100) < 0.5  # area within half a pixel
    edge = (cov > 0) & (cov < 1)
    assert edge.sum() > 40  # a soft rim, not a hard-edged staircase
    assert cov[31, 32] == 1.0 and cov[0, 0] == 0.0


def test_render_colours_and_clipping_at_frame():
    fg, bg = (200, 10, 10), (250, 250, 250)
    c = np.array([[5.0, 5.0, 5.0], [40.0, 40.0, 3.0]])
    img = render(c, 48, fg, bg)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert tuple(img[5, 5]) == fg and tuple(img[40, 40]) == fg
    assert tuple(img[25, 25]) == bg


def test_overlapping_coverage_saturates():
    c = np.array([[20.0, 20.0, 8.0], [24.0, 20.0, 8.0]])
    cov = coverage(c, 40)
    assert cov.max() == 1.0 and cov.min() == 0.0


def test_palette_endpoints():
    pal = palette((0, 0, 255), (255, 255, 255))
    assert tuple(pal[0]) == (255, 255, 255) and tuple(pal[255]) == (0, 0, 255)


@pytest.mark.parametrize("size, radius", [(48, "1.5"), (64, "2"), (64, "1.5-3")])
def test_no_overlap_circles_are_distinct_objects_in_the_written_pixels(tmp_path, size, radius):
    # The default workflow's dense sets: 45-50 circles at 48 and 64 px. Read back the PNGs as any
    # loader would and count connected components (4-connectivity) of every pixel that
    # differs from the background by a quarter, a tenth and a hundredth of the contrast:
    # each count must equal the folder label, i.e. background separates every pair.
    from skimage import measure

    out = tmp_path / "ds"
    spec = DatasetSpec.from_dict(
        {"range": "45-50", "per_class": 8, "size": size, "radius": radius, "no_overlap": True}
    )
    generate(spec, out, workers=1)
    paths = sorted(out.rglob("*.png"))
    assert len(paths) == 48
    bg = np.array(color_rgb(spec.bg), float)
    fg = np.array(color_rgb(spec.fg), float)
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"), float)
        contrast = np.abs(rgb - bg).sum(-1) / np.abs(fg - bg).sum()
        label = int(path.parent.name)
        for level in (0.25, 0.1, 0.01):
            n = measure.label(contrast > level, connectivity=1).max()
            assert n == label, f"{path.name}: {n} components at {level:.0%} contrast, {label}"


# sha256 of the circles and coverage indices of the images below, as PIXELS_VERSION 4 makes
# them. A change that moves a circle or a pixel must bump PIXELS_VERSION (so the workflow
# regenerates its datasets) and this digest with it; a speed-up must leave it alone.
PIXELS_DIGEST = "d319ebd7379fb3979a7f961715b6be28338445d7b75e28953d1d5d8c290f0169"


def test_disjoint_coverage_equals_the_summed_coverage():
    """--no-overlap images take the disjoint fast path: the same indices as summing."""
    from countnet_gen.render import coverage_u8
    from countnet_gen.sampler import sample_circles

    for size, radius, n in ((224, (6, 6), 50), (224, (4, 12), 45), (64, (1.5, 3), 48)):
        for seed in range(20):
            c = sample_circles(np.random.default_rng(seed), n, size, radius, no_overlap=True)
            fast = coverage_u8(c, size, disjoint=True)
            assert np.array_equal(fast, coverage_u8(c, size)) and fast.max() == 255


def test_circles_exactly_the_gap_apart_share_no_pixel():
    """The disjoint path's premise at its limit: neighbours exactly GAP apart, against the
    frame's edges and corners, at the radii the sets use; summed and disjoint agree."""
    from countnet_gen.render import RIM, coverage_u8
    from countnet_gen.sampler import GAP

    assert GAP >= 2 * RIM
    for r in (0.5, 1.5, 3.0, 6.0, 11.7):
        size = int(4 * r + GAP + 8)
        for dx, dy in ((1.0, 0.0), (0.0, 1.0), (0.6, 0.8), (0.28, 0.96)):
            x0, y0 = r + 0.01, r + 0.37  # against the top-left corner
            d = 2 * r + GAP
            c = np.array([[x0, y0, r], [x0 + dx * d, y0 + dy * d, r]])
            assert np.array_equal(coverage_u8(c, size, disjoint=True), coverage_u8(c, size))


def test_pixels_are_those_of_this_pixels_version():
    import hashlib

    from countnet_gen import PIXELS_VERSION
    from countnet_gen.spec import DatasetSpec
    from countnet_gen.writer import ImageJob, make_image

    h = hashlib.sha256()
    for kw in (
        {"counts": (45, 50), "size": 224, "no_overlap": True},
        {"counts": (45, 50), "size": 224, "radius": (4, 12), "no_overlap": True},
        {"counts": (45, 50), "size": 64, "radius": (1.5, 3), "no_overlap": True},
        {"counts": (1, 9), "size": 40, "radius": (2, 5)},
    ):
        spec = DatasetSpec(per_class=4, seed=7, **kw)
        for i in range(6):
            circles, idx, _ = make_image(
                spec, ImageJob(spec.classes[i % len(spec.classes)], i, "train")
            )
            h.update(np.round(circles, 9).tobytes())
            h.update(idx.tobytes())
    assert PIXELS_VERSION == 4 and h.hexdigest() == PIXELS_DIGEST, (
        f"pixels changed (digest {h.hexdigest()}): bump PIXELS_VERSION and this digest"
    )


def test_images_made_together_are_those_made_alone(monkeypatch):
    """gen's workers make RENDER_BATCH images at a time (make_images): layouts placed in
    lockstep, pixels drawn on one canvas. Each image must be exactly what it is alone,
    including images whose layouts stall and start over while the rest of the batch
    finishes, images without distractors beside images with them, and overlap-allowed
    sets."""
    import countnet_gen.sampler as sampler
    from countnet_gen.distractors import SHAPES
    from countnet_gen.writer import RENDER_BATCH, ImageJob, make_image, make_images

    place, calls = sampler._place_many, []

    def recorded(rngs, radii, size):
        out = place(rngs, radii, size)
        calls.append((len(rngs), sum(objects is None for objects in out)))
        return out

    monkeypatch.setattr(sampler, "_place_many", recorded)
    for kw in (
        {"range": "45-50", "size": 224, "radius": "4-12", "no_overlap": True},
        {"range": "8-10", "size": 64, "radius": "2-11", "no_overlap": True},  # many restarts
        {"range": "1-5", "size": 64, "radius": 4, "no_overlap": True, "distractors": "3-5",
         "distractor_shape": list(SHAPES), "match_area": True},
        {"range": "1-9", "size": 40, "radius": "2-5", "distractors": "0-2"},  # overlap allowed
        {"range": "1-4", "size": 48, "radius": "2-4", "no_overlap": True, "distractors": "0-2"},
    ):  # fmt: skip
        spec = DatasetSpec.from_dict({"per_class": 6, "seed": 11, **kw})
        jobs = [ImageJob(c, i, "train") for c in spec.classes for i in range(6)]
        calls.clear()
        together = list(make_images(spec, jobs))
        if spec.no_overlap:
            assert calls[0][0] == min(len(jobs), RENDER_BATCH) > 1  # placed together, really
        if kw["range"] == "8-10":
            assert sum(failed for _, failed in calls) > 10  # restarts inside the batch
        for job, image in zip(jobs, together, strict=True):
            alone = make_image(spec, job)
            for a, b in zip(image, alone, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b), (kw, job)


@pytest.mark.parametrize("per_canvas", [None, 2])
def test_one_canvas_for_many_images_keeps_them_apart(monkeypatch, per_canvas):
    """Several images drawn on one canvas: discs against every edge and corner of their
    frame, next to images with other radii and with none at all, are pixel for pixel
    what each image gets alone, summed and disjoint; nothing bleeds across. Summed images
    beyond SUM_PIXELS go on further canvases (per_canvas=2: three canvases here)."""
    from countnet_gen import render
    from countnet_gen.render import coverage_many, coverage_u8, coverage_u8_many

    size = 40
    if per_canvas:
        monkeypatch.setattr(render, "SUM_PIXELS", per_canvas * size * size)
    edges = np.array([[r, r, r] for r in (3.0, 7.5)] + [[size - 2.0, size - 2.0, 2.0]])
    layouts = [
        (edges, None),
        (np.array([[size - 11.5, 11.5, 11.5]]), None),
        (np.zeros((0, 3)), None),
        (np.array([[20.0, 2.5, 2.5], [2.5, 20.0, 2.5]]), np.array([[30.0, 30.0, 6.0, 0.3, 0]])),
        (np.array([[size / 2, size / 2, size / 2]]), np.zeros((0, 5))),
    ]
    cov = coverage_many(layouts, size)
    assert cov.shape == (len(layouts), size, size) and cov.dtype == np.float32
    assert cov[2].max() == 0 and cov[4].max() == 1.0
    for disjoint in (False, True):
        many = coverage_u8_many(layouts, size, disjoint=disjoint)
        for (circles, extra), got, summed in zip(layouts, many, cov, strict=True):
            alone = coverage_u8(circles, size, disjoint=disjoint, distractors=extra)
            assert np.array_equal(got, alone)
            assert np.array_equal(summed, coverage(circles, size, extra))


def test_an_image_redrawn_inside_a_batch_is_the_image_redrawn_alone(monkeypatch):
    """One image of a batch fails its first RADII_KEPT layouts (forced): it alone redraws
    its distractor draw and radii, the others are placed at once and never redrawn, and
    every image equals the one made alone under the same forced failures."""
    import countnet_gen.sampler as sampler
    from countnet_gen.distractors import Distractors
    from countnet_gen.writer import ImageJob, image_rng, make_image, make_images

    spec = DatasetSpec.from_dict(
        {"range": "1-5", "size": 64, "radius": 4, "no_overlap": True, "distractors": "3-5",
         "match_area": True, "per_class": 5, "seed": 3}
    )  # fmt: skip
    jobs = [ImageJob(c, i, "train") for c in spec.classes for i in range(2)]
    target = image_rng(spec, jobs[3].count, jobs[3].index).bit_generator.seed_seq.spawn_key
    place, failures, draws = sampler._place_many, {}, []
    draw = Distractors.draw

    def failing(rngs, radii, size):  # the target image's first RADII_KEPT layouts fail
        key = [g.bit_generator.seed_seq.spawn_key for g in rngs]
        forced = [k == target and failures.get("n", 0) < sampler.RADII_KEPT for k in key]
        failures["n"] = failures.get("n", 0) + any(forced)
        kept = [i for i, f in enumerate(forced) if not f]
        placed = iter(place([rngs[i] for i in kept], [radii[i] for i in kept], size))
        return [None if f else next(placed) for f in forced]

    def recorded(self, rng):
        draws.append(rng.bit_generator.seed_seq.spawn_key)
        return draw(self, rng)

    monkeypatch.setattr(sampler, "_place_many", failing)
    monkeypatch.setattr(Distractors, "draw", recorded)
    together = list(make_images(spec, jobs))
    assert failures["n"] == sampler.RADII_KEPT
    assert draws.count(target) == 2 and len(draws) == len(jobs) + 1  # only the target redrew
    for job, image in zip(jobs, together, strict=True):
        failures.clear()
        alone = make_image(spec, job)
        for a, b in zip(image, alone, strict=True):
            assert np.array_equal(a, b), job
