"""Per-series calibration of window scores into alert scores.

Raw window scores sit at a different normal level on every series, and one
threshold must serve them all. The "likelihood" method (after Numenta's anomaly
likelihood) tracks, per series, an exponential mean and variance of the raw
scores over a long horizon and a short exponential average of the most recent
ones. The alert score is the log-scaled tail probability of the short average
under a normal distribution fitted to the long one:

    z = (short - mean) / max(std, min_std)
    alert = min(1, -log10(max(Q(z), 1e-10)) / 10)       Q = normal tail

so 0.5 means "a recent level this high happens once in 100,000 points". During
the first ``warmup_points`` of a series the alert score is 0 while the
distribution is learnt.

The "record" method scores how far a point beats the recent record of the
series. The signal is ``x = raw * |deviation|``, the window score times the
point's normalised deviation (its model input, ``asinh((v - m) / scale)``).
Per series it keeps a record ``r`` that decays by ``1 - 1 / horizon_points`` per
point, and the running minimum and maximum of the raw values:

    alert = x / (x + r)                          0.5 when x equals the record
    alert = 1  when the value leaves [low - tol * (high - low), high + tol * (high - low)]
    r = max(x, r * (1 - 1 / horizon_points))     updated after the alert

with ``tol = range_tolerance``. The second rule is the "spatial anomaly" of
Numenta's detector in NAB v1.1 (``SPATIAL_TOLERANCE = 0.05`` in
nab/detectors/numenta/numenta_detector.py). A high signal raises the record,
so a sustained high level alerts at its start and then fades, which keeps the
count of repeated alerts low. The alert score is 0 during the first
``warmup_points``.

Two more channels of the "record" method look at a slower view of the series
(``stream.channels``): every ``coarse_points`` points form a block, and each
block's mean is a point of a coarse series. The model scores the window of the
last blocks, and the block is compared with the block at the same hour of an
earlier day (``season_buckets`` buckets per day). Each channel has its own
record, which decays over ``channel_horizon_points``. A block mean outside the
range of the earlier block means, widened by ``coarse_range_tolerance`` of its
width, gives the coarse channel an alert of 1, as the range rule does for
points. The point that completes a block gets the largest of the three alert
scores. ``coarse_points = 0`` turns both channels off and ``season_buckets = 0``
the seasonal one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.errors import ModelError

_erfc = np.frompyfunc(math.erfc, 1, 1)
_SQRT2 = math.sqrt(2.0)
METHODS = ("none", "likelihood", "record")
# The record never falls below this, so a series whose signal was always 0 (a
# flat line) gives finite alert scores.
_RECORD_FLOOR = 1e-6
# Largest horizon or warm-up in points: 31 years at one point a second. It keeps
# the settings within the int64 and float ranges that the scorer computes in.
MAX_POINTS = 1_000_000_000


@dataclass(frozen=True)
class CalibrationSpec:
    """Settings of the ``likelihood`` and ``record`` calibrations (``none`` passes scores through)."""

    method: str = "none"
    horizon_points: int = 2000
    short_points: int = 10
    warmup_points: int = 200
    min_std: float = 0.01
    range_tolerance: float = 0.05
    coarse_points: int = 0
    season_buckets: int = 0
    # Record horizon of the coarse and seasonal channels, in points; None uses
    # horizon_points.
    channel_horizon_points: int | None = None
    # Range rule of the coarse channel: a block mean outside the range of the
    # earlier block means, widened by this share of its width, alerts with 1.
    # None turns the rule off.
    coarse_range_tolerance: float | None = None

    @property
    def channel_horizon(self) -> int:
        """Record horizon of the coarse and seasonal channels, in points."""
        if self.channel_horizon_points is None:
            return self.horizon_points
        return self.channel_horizon_points

    @classmethod
    def from_metadata(cls, section: dict[str, Any]) -> CalibrationSpec:
        if not section:
            return cls()
        method = section.get("method", "none")
        if method not in METHODS:
            raise ModelError(
                f"unknown alert calibration method {method!r}; expected one of "
                + ", ".join(repr(m) for m in METHODS)
            )
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        spec = cls(**known)
        for name, low, high in (
            ("coarse_points", 2, 10_000),
            ("season_buckets", 1, 1440),
        ):
            value = getattr(spec, name)
            if value != 0 and not (_whole(value) and low <= value <= high):
                raise ModelError(
                    f"alert calibration {name}={value!r} is invalid; use 0 (off) "
                    f"or a whole number from {low} to {high}"
                )
        for name, low in (
            ("horizon_points", 1),
            ("short_points", 1),
            ("warmup_points", 0),
            ("channel_horizon_points", 1),
        ):
            value = getattr(spec, name)
            if name == "channel_horizon_points" and value is None:
                continue
            if not (_whole(value) and low <= value <= MAX_POINTS):
                default = (
                    ", or null for horizon_points"
                    if name == "channel_horizon_points"
                    else ""
                )
                raise ModelError(
                    f"alert calibration {name}={value!r} is invalid; use a whole "
                    f"number from {low} to {MAX_POINTS}{default}"
                )
        for name in ("min_std", "range_tolerance", "coarse_range_tolerance"):
            value = getattr(spec, name)
            if name == "coarse_range_tolerance" and value is None:
                continue
            if not (_finite(value) and value >= 0):
                off = ", or null for off" if name == "coarse_range_tolerance" else ""
                raise ModelError(
                    f"alert calibration {name}={value!r} is invalid; use a finite "
                    f"number of at least 0{off}"
                )
        return spec


def leaves_range(value, low, high, tolerance: float):
    """Tell whether ``value`` lies outside [low, high] widened by ``tolerance`` of its width.

    The range rule of the point and coarse channels. A range of width 0 (one
    value seen, or a flat series) never fires. Works on floats and on numpy
    arrays alike.
    """
    margin = tolerance * (high - low)
    return (high > low) & ((value > high + margin) | (value < low - margin))


def _finite(value: object) -> bool:
    """Tell whether ``value`` is an int or float (not a bool) with a finite float value."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _whole(value: object) -> bool:
    """Tell whether ``value`` is an int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def calibrate(
    spec: CalibrationSpec,
    raw: np.ndarray,
    n_scored: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    short: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn raw scores of several series into alert scores; update their statistics.

    ``n_scored`` counts the raw scores of each series including this one.
    Returns ``(alert, mean, var, short)``; the statistics include ``raw``.
    """
    if spec.method == "none":
        return raw.astype(np.float64), mean, var, short

    short_rate = np.maximum(1.0 / n_scored, 1.0 / spec.short_points)
    short = (1.0 - short_rate) * short + short_rate * raw

    std = np.maximum(np.sqrt(var), spec.min_std)
    z = (short - mean) / std
    tail = 0.5 * _erfc(z / _SQRT2).astype(np.float64)
    alert = np.minimum(1.0, -np.log10(np.maximum(tail, 1e-10)) / 10.0)
    alert = np.where(n_scored > spec.warmup_points, alert, 0.0)

    rate = np.maximum(1.0 / n_scored, 1.0 / spec.horizon_points)
    delta = raw - mean
    mean = mean + rate * delta
    var = (1.0 - rate) * (var + rate * delta * delta)
    return alert, mean, var, short


def calibrate_sequence(
    spec: CalibrationSpec,
    raw: np.ndarray,
    n_first: int,
    mean: float,
    var: float,
    short: float,
) -> tuple[np.ndarray, float, float, float]:
    """Calibrate consecutive raw scores of one series, one after the other.

    Gives the same results as calling :func:`calibrate` once per score; this
    form avoids numpy's per-call cost on long runs of one series. ``n_first``
    is the ``n_scored`` of the first score.
    """
    if spec.method == "none":
        return raw.astype(np.float64), mean, var, short
    tails = np.empty(len(raw))
    for i, score in enumerate(raw.tolist()):
        n = float(n_first + i)
        short_rate = max(1.0 / n, 1.0 / spec.short_points)
        short = (1.0 - short_rate) * short + short_rate * score
        std = max(math.sqrt(var), spec.min_std)
        tails[i] = 0.5 * math.erfc(((short - mean) / std) / _SQRT2)
        rate = max(1.0 / n, 1.0 / spec.horizon_points)
        delta = score - mean
        mean = mean + rate * delta
        var = (1.0 - rate) * (var + rate * delta * delta)
    alert = np.minimum(1.0, -np.log10(np.maximum(tails, 1e-10)) / 10.0)
    n_scored = n_first + np.arange(len(raw))
    alert = np.where(n_scored > spec.warmup_points, alert, 0.0)
    return alert, mean, var, short


def record_alerts(
    spec: CalibrationSpec,
    raw: np.ndarray,
    deviation: np.ndarray,
    value: np.ndarray,
    n_scored: np.ndarray,
    record: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn raw scores of several series into ``record`` alert scores.

    ``deviation`` is each point's normalised deviation, ``value`` its raw value and
    ``n_scored`` counts the raw scores of each series including this one. Returns
    ``(alert, record, low, high)`` updated with these points.
    """
    signal = raw * np.abs(deviation)
    first = n_scored <= 1
    low = np.where(first, value, low)
    high = np.where(first, value, high)
    record = np.where(first, _RECORD_FLOOR, record)

    alert = signal / (signal + record)
    # NOTE: low and high never decay, so one early extreme widens the range for
    # good and the range rule fires less often on long-lived series.
    outside = leaves_range(value, low, high, spec.range_tolerance)
    alert = np.where(outside, 1.0, alert)
    alert = np.where(n_scored > spec.warmup_points, alert, 0.0)

    keep = 1.0 - 1.0 / spec.horizon_points
    record = np.maximum(np.maximum(signal, record * keep), _RECORD_FLOOR)
    return alert, record, np.minimum(low, value), np.maximum(high, value)


def record_alerts_sequence(
    spec: CalibrationSpec,
    raw: np.ndarray,
    deviation: np.ndarray,
    value: np.ndarray,
    n_first: int,
    record: float,
    low: float,
    high: float,
) -> tuple[np.ndarray, float, float, float]:
    """Compute ``record`` alert scores of consecutive points of one series.

    Gives the same results as calling :func:`record_alerts` once per point.
    ``n_first`` is the ``n_scored`` of the first point.
    """
    signal = raw * np.abs(deviation)
    alert = np.empty(len(raw))
    keep = 1.0 - 1.0 / spec.horizon_points
    for i, (x, v) in enumerate(zip(signal.tolist(), value.tolist(), strict=True)):
        if n_first + i <= 1:
            low = high = v
            record = _RECORD_FLOOR
        if leaves_range(v, low, high, spec.range_tolerance):
            alert[i] = 1.0
        else:
            alert[i] = x / (x + record)
        record = max(x, record * keep, _RECORD_FLOOR)
        low = min(low, v)
        high = max(high, v)
    n_scored = n_first + np.arange(len(raw))
    alert = np.where(n_scored > spec.warmup_points, alert, 0.0)
    return alert, record, low, high
