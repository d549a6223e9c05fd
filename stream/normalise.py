"""Causal per-series normalisation of windows ("window_median_ew_mad_asinh").

For the newest point t of a series, the window w holds the last ``window_size``
values (a series with fewer points is left-padded with its first value):

    m = median(w)                    centre of the window
    d = mean(|w - m|)                spread of the window
    s = (1 - a) * s_prev + a * d     a = max(1 / n, 1 / horizon_points), n points seen
    scale = max(s, eps_rel * |m|, eps_abs)
    model input = asinh((w - m) / scale)

The centre follows the window, so levels, trends and seasons drift out of it; the
scale is the long-run typical spread of the series, so a spike stands out by how
far it leaves that spread. ``asinh`` keeps huge deviations finite without
clipping their order. The training code implements the same formula over whole
series; a test keeps the two equal.
"""

from __future__ import annotations

import numpy as np


def normalise_windows(
    windows: np.ndarray,
    scale_prev: np.ndarray,
    n_points: np.ndarray,
    horizon_points: int,
    eps_rel: float,
    eps_abs: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise the newest window of several series at once.

    ``windows`` is ``(k, window_size)`` float64, ``scale_prev`` the scale before
    this point and ``n_points`` the number of points seen including this one.
    Returns the float32 model inputs and the updated scales.
    """
    centre, deviation, spread = _centre_and_spread(windows)
    rate = np.maximum(1.0 / n_points, 1.0 / horizon_points)
    scale = (1.0 - rate) * scale_prev + rate * spread
    return _inputs(centre, deviation, scale, eps_rel, eps_abs), scale


def normalise_sequence(
    windows: np.ndarray,
    scale_prev: float,
    n_first: int,
    horizon_points: int,
    eps_rel: float,
    eps_abs: float,
    stored: type = float,
) -> tuple[np.ndarray, float]:
    """Normalise consecutive windows of one series, the oldest first.

    Gives the inputs that :func:`normalise_windows` gives one window at a
    time, when the scale is kept as ``stored`` (``float`` or ``np.float32``)
    between windows. ``n_first`` counts the points seen including the first
    window's newest. Returns the float32 inputs and the stored scale after the
    last window.
    """
    centre, deviation, spread = _centre_and_spread(windows)
    n_points = n_first + np.arange(len(windows), dtype=np.float64)
    rates = np.maximum(1.0 / n_points, 1.0 / horizon_points)
    # The recurrence is sequential, and plain floats keep it cheap.
    scales = np.empty(len(windows))
    scale = float(scale_prev)
    for i, (rate, d) in enumerate(zip(rates.tolist(), spread.tolist(), strict=True)):
        scales[i] = (1.0 - rate) * scale + rate * d
        scale = float(stored(scales[i]))
    return _inputs(centre, deviation, scales, eps_rel, eps_abs), scale


def _centre_and_spread(windows: np.ndarray) -> tuple[np.ndarray, ...]:
    centre = np.median(windows, axis=1)
    deviation = windows - centre[:, None]
    spread = np.abs(deviation).mean(axis=1)
    return centre, deviation, spread


def _inputs(
    centre: np.ndarray,
    deviation: np.ndarray,
    scale: np.ndarray,
    eps_rel: float,
    eps_abs: float,
) -> np.ndarray:
    floor = np.maximum(eps_rel * np.abs(centre), eps_abs)
    effective = np.maximum(scale, floor)
    return np.arcsinh(deviation / effective[:, None]).astype(np.float32)
