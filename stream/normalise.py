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
    centre = np.median(windows, axis=1)
    deviation = windows - centre[:, None]
    spread = np.abs(deviation).mean(axis=1)
    rate = np.maximum(1.0 / n_points, 1.0 / horizon_points)
    scale = (1.0 - rate) * scale_prev + rate * spread
    floor = np.maximum(eps_rel * np.abs(centre), eps_abs)
    effective = np.maximum(scale, floor)
    inputs = np.arcsinh(deviation / effective[:, None]).astype(np.float32)
    return inputs, scale
