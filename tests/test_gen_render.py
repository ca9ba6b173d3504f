"""Pixels: anti-aliased discs where the circles are, background elsewhere."""

from __future__ import annotations

import numpy as np

from countnet_gen.render import coverage, palette, render


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
