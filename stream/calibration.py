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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.errors import ModelError

_erfc = np.frompyfunc(math.erfc, 1, 1)
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class CalibrationSpec:
    """Settings of the ``likelihood`` calibration (``none`` passes scores through)."""

    method: str = "none"
    horizon_points: int = 2000
    short_points: int = 10
    warmup_points: int = 200
    min_std: float = 0.01

    @classmethod
    def from_metadata(cls, section: dict[str, Any]) -> CalibrationSpec:
        if not section:
            return cls()
        method = section.get("method", "none")
        if method not in ("none", "likelihood"):
            raise ModelError(
                f"unknown alert calibration method {method!r}; expected 'none' or "
                "'likelihood'"
            )
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        return cls(**known)


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
