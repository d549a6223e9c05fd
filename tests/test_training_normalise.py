"""normalise_series against hand-computed values and a point-by-point reference."""

import math

import numpy as np
import pytest

from training.normalise import ew_mean_scale, normalise_series


def reference_normalise(
    x, horizon_points=1000, eps_rel=1e-6, eps_abs=1e-9, window_size=16
):
    """The method written out point by point, as a streaming implementation runs it."""
    x = np.asarray(x, dtype=np.float64)
    rows = []
    s = 0.0
    for t in range(x.size):
        window = np.array([x[max(i, 0)] for i in range(t - window_size + 1, t + 1)])
        median = np.median(window)
        deviation = np.mean(np.abs(window - median))
        a = max(1.0 / (t + 1), 1.0 / horizon_points)
        s = (1.0 - a) * s + a * deviation
        scale = max(s, eps_rel * abs(median), eps_abs)
        rows.append(np.arcsinh((window - median) / scale))
    return np.array(rows, dtype=np.float32)


def test_constant_series_gives_zeros():
    z = normalise_series(np.full(50, 7.5))
    assert z.shape == (50, 16)
    assert z.dtype == np.float32
    assert np.all(z == 0.0)


def test_short_series_hand_computed():
    z = normalise_series(np.array([1.0, 2.0, 3.0]))
    assert z.shape == (3, 16)
    # t=0: the window is 16 copies of x0.
    assert np.all(z[0] == 0.0)
    # t=1: median 1, d = 1/16, s = d / 2 = 1/32, so the newest value is asinh(32).
    assert np.all(z[1, :15] == 0.0)
    assert z[1, 15] == pytest.approx(math.asinh(32.0), rel=1e-6)
    # t=2: median 1, d = 3/16, s = (2/3)(1/32) + (1/3)(3/16) = 1/12.
    assert np.all(z[2, :14] == 0.0)
    assert z[2, 14] == pytest.approx(math.asinh(12.0), rel=1e-6)
    assert z[2, 15] == pytest.approx(math.asinh(24.0), rel=1e-6)


def test_single_point_series():
    z = normalise_series(np.array([42.0]))
    assert z.shape == (1, 16)
    assert np.all(z == 0.0)


def test_one_spike_hand_computed():
    x = np.zeros(40)
    x[20] = 10.0
    z = normalise_series(x)
    # Before the spike every window is flat.
    assert np.all(z[:20] == 0.0)
    # t=20: median 0, d = 10/16, s = running mean over 21 points = 0.625 / 21.
    assert np.all(z[20, :15] == 0.0)
    assert z[20, 15] == pytest.approx(math.asinh(10.0 / (0.625 / 21)), rel=1e-6)
    # t=21: the spike sits one position back; s = 2 * 0.625 / 22.
    assert z[21, 14] == pytest.approx(math.asinh(10.0 / (1.25 / 22)), rel=1e-6)
    assert z[21, 15] == 0.0
    # t=35 is the last window holding the spike, at position 0.
    assert z[35, 0] == pytest.approx(math.asinh(10.0 / (16 * 0.625 / 36)), rel=1e-6)
    # From t=36 on, the window is flat again.
    assert np.all(z[36:] == 0.0)


def test_relative_floor_applies_to_large_levels():
    x = np.full(21, 1e6)
    x[20] += 1.0
    z = normalise_series(x)
    # s = (1/16) / 21 is far below eps_rel * |median| = 1, so the scale is 1.
    assert z[20, 15] == pytest.approx(math.asinh(1.0), rel=1e-6)


@pytest.mark.parametrize("horizon_points", [1, 2, 3, 50, 1000])
def test_matches_point_by_point_reference(horizon_points):
    rng = np.random.default_rng(horizon_points)
    n = 2600
    x = 100 + np.cumsum(rng.normal(size=n)) + 5 * rng.standard_t(3, size=n)
    x[1500:1600] = x[1499]  # a flat stretch, where d_t = 0
    expected = reference_normalise(x, horizon_points)
    actual = normalise_series(x, horizon_points)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_ew_scale_matches_recurrence():
    rng = np.random.default_rng(7)
    d = rng.exponential(size=5000)
    s = 0.0
    expected = []
    for t, value in enumerate(d):
        a = max(1.0 / (t + 1), 1.0 / 1000)
        s = (1.0 - a) * s + a * value
        expected.append(s)
    np.testing.assert_allclose(ew_mean_scale(d, 1000), expected, rtol=1e-10)


@pytest.mark.parametrize(
    "series",
    [
        np.array([]),
        np.array([1.0, np.nan, 2.0]),
        np.array([1.0, np.inf]),
        np.ones((4, 4)),
    ],
    ids=["empty", "nan", "inf", "two_dimensional"],
)
def test_invalid_series_raises(series):
    with pytest.raises(ValueError):
        normalise_series(series)


def test_invalid_horizon_raises():
    with pytest.raises(ValueError, match="horizon_points"):
        normalise_series(np.arange(20.0), horizon_points=0)
