"""Property tests of where circles go: inside the frame, apart when asked, right count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from countnet.errors import CountnetError
from countnet_gen.sampler import GAP, check_packable, covered_fraction, sample_circles


@st.composite
def layouts(draw):
    size = draw(st.integers(16, 160))
    r0 = draw(st.floats(0.5, size / 8))
    r1 = draw(st.floats(r0, size / 6))
    n = draw(st.integers(1, 60))
    no_overlap = draw(st.booleans())
    if no_overlap and covered_fraction(n, size, r1) > 0.3:
        n = 1
    seed = draw(st.integers(0, 2**32 - 1))
    return n, size, (r0, r1), no_overlap, seed


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_circles_inside_frame_apart_and_counted(layout):
    n, size, radius, no_overlap, seed = layout
    c = sample_circles(np.random.default_rng(seed), n, size, radius, no_overlap)
    assert c.shape == (n, 3)
    x, y, r = c.T
    assert np.all(r >= radius[0]) and np.all(r <= radius[1])
    assert np.all(x - r >= 0) and np.all(x + r <= size)
    assert np.all(y - r >= 0) and np.all(y + r <= size)
    if no_overlap and n > 1:
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        gap = d - r[:, None] - r[None, :]
        np.fill_diagonal(gap, np.inf)
        assert gap.min() >= GAP - 1e-9


def test_same_seed_same_circles():
    a = sample_circles(np.random.default_rng(3), 40, 128, (3, 8), True)
    b = sample_circles(np.random.default_rng(3), 40, 128, (3, 8), True)
    assert np.array_equal(a, b)


def test_impossible_packing_is_refused_up_front():
    with pytest.raises(CountnetError, match="cannot be placed"):
        check_packable(500, 64, (5, 5), no_overlap=True)
    check_packable(500, 64, (5, 5), no_overlap=False)  # overlap allowed: anything fits


def test_the_area_bound_refuses_only_the_impossible():
    check_packable(1, 32, (16, 16), no_overlap=True)  # exactly as wide as the frame
    # 45 circles of radius 1.5-30 fit by area at their smallest radius: not refused by it
    # (the trial layouts judge them), whereas 500 of radius 5 in 64 px never fit.
    with pytest.raises(CountnetError) as e:
        check_packable(45, 64, (1.5, 30), no_overlap=True)
    assert "trial layouts" in str(e.value)


def test_dense_but_nominally_feasible_packing_fails_in_bounded_time(monkeypatch):
    # Below the up-front density bound but pathologically hard: the sampler must give up
    # with a clear error after its bounded attempts, never loop forever.
    import countnet_gen.sampler as sampler

    monkeypatch.setattr(sampler, "MAX_ROUNDS", 2)
    monkeypatch.setattr(sampler, "MAX_RESTARTS", 2)
    with pytest.raises(CountnetError, match="could not place"):
        sample_circles(np.random.default_rng(0), 40, 48, (3, 3), no_overlap=True)
