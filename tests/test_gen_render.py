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
