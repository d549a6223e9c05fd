"""Normal base signals that resemble operational metrics.

A base signal is kept as components: level and drift, a seasonal pattern that can be
evaluated at any time, and fixed noise draws. An anomaly changes one component, and
the result is observed with exactly the same noise as the clean series.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_PERIOD_POINTS = 24  # shortest "day", e.g. hourly samples
MAX_PERIOD_POINTS = 300  # longest "day", e.g. 5-minute samples (288 per day)


@dataclass(frozen=True)
class BaseSignal:
    """Components of one normal series of n points."""

    trend: np.ndarray  # (n,) level plus drift
    period: int  # points per daily cycle
    amplitude: float  # peak deviation of the seasonal component, 0 when there is none
    # Seasonal value as a function of time in points (float, may be fractional).
    pattern: Callable[[np.ndarray], np.ndarray]
    noise: np.ndarray  # (n,) unit-variance noise draws
    noise_std: float  # observation noise of a non-count series
    counts: bool  # observed through rounding with Poisson-like noise sqrt(rate)
    quantum: float  # rounding step of the observed values, 0 for none
    unit: float  # typical magnitude of the metric

    @property
    def n(self) -> int:
        return self.trend.size

    def seasonal(self, time: np.ndarray | None = None) -> np.ndarray:
        """Evaluate the seasonal component at the given times (default: every point)."""
        if time is None:
            time = np.arange(self.n, dtype=np.float64)
        return self.pattern(np.asarray(time, dtype=np.float64))

    def expected(self) -> np.ndarray:
        """Return the noise-free series: trend plus seasonal component."""
        return self.trend + self.seasonal()

    def observe(
        self, expected: np.ndarray, noise_gain: np.ndarray | float = 1.0
    ) -> np.ndarray:
        """Add the fixed noise draws to an expected series, scaled by noise_gain.

        Count series get noise of standard deviation sqrt(rate), as a Poisson count
        would, and are rounded and clipped at zero.
        """
        if self.counts:
            rate = np.maximum(expected, 0.0)
            values = rate + np.sqrt(rate) * self.noise * noise_gain
            return np.maximum(np.round(values), 0.0)
        values = expected + self.noise_std * self.noise * noise_gain
        if self.quantum > 0:
            values = np.round(values / self.quantum) * self.quantum
        return values


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def make_noise(
    rng: np.random.Generator, n: int, heavy_tails: bool = True
) -> np.ndarray:
    """Draw unit-variance noise: Gaussian, Student-t (df 4 to 10) or AR(1) coloured.

    Student-t noise gives occasional large normal values, which keeps the model
    from flagging every outlier of a heavy-tailed metric such as latency.
    """
    kind = rng.choice(["gaussian", "student_t", "ar1"], p=[0.5, 0.3, 0.2])
    if kind == "student_t" and heavy_tails:
        df = rng.uniform(4.0, 10.0)
        return rng.standard_t(df, n) * np.sqrt((df - 2.0) / df)
    if kind == "ar1":
        phi = rng.uniform(0.3, 0.9)
        innovations = rng.normal(0.0, np.sqrt(1.0 - phi**2), n)
        noise = np.empty(n)
        previous = rng.normal()
        for i in range(n):
            previous = phi * previous + innovations[i]
            noise[i] = previous
        return noise
    return rng.normal(0.0, 1.0, n)


def make_daily_shape(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Draw a periodic shape with peak |value| 1, as a function of time in cycles.

    Either a sum of 1 to 3 harmonics, or a smoothed square wave that looks like
    busy and quiet hours.
    """
    grid = np.linspace(0.0, 1.0, 512, endpoint=False)
    if rng.random() < 0.6:
        n_harmonics = int(rng.integers(1, 4))
        weights = np.concatenate([[1.0], rng.uniform(0.0, 0.5, n_harmonics - 1)])
        weights /= np.arange(1, n_harmonics + 1)
        phases = rng.uniform(0.0, 2 * np.pi, n_harmonics)
        harmonics = np.arange(1, n_harmonics + 1)

        def raw(cycles: np.ndarray) -> np.ndarray:
            angles = 2 * np.pi * np.multiply.outer(cycles, harmonics) + phases
            return np.sin(angles) @ weights

    else:
        sharpness = rng.uniform(2.0, 8.0)
        offset = rng.uniform(-0.5, 0.5)
        phase = rng.uniform(0.0, 2 * np.pi)

        def raw(cycles: np.ndarray) -> np.ndarray:
            return np.tanh(sharpness * (np.sin(2 * np.pi * cycles + phase) - offset))

    reference = raw(grid)
    middle = (reference.max() + reference.min()) / 2
    half_range = max((reference.max() - reference.min()) / 2, 1e-12)
    return lambda cycles: (raw(cycles) - middle) / half_range


def make_weekly_factor(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Draw a weekly amplitude factor: 1 on weekdays, lower on a two-day "weekend"."""
    drop = rng.uniform(0.3, 0.8)
    phase = rng.uniform(0.0, 1.0)
    sharpness = 30.0
    # cos(2 pi (c - 6/7)) exceeds cos(2 pi / 7) within 1/7 cycle of 6/7: days 5 and 6.
    threshold = np.cos(2 * np.pi / 7)

    def factor(week_cycles: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * (week_cycles + phase - 6 / 7)
        weekend = 1.0 / (1.0 + np.exp(-sharpness * (np.cos(angle) - threshold)))
        return 1.0 - drop * weekend

    return factor


def make_base_signal(
    rng: np.random.Generator,
    n: int,
    strong_seasonality: bool = False,
    allow_quantisation: bool = True,
    min_count_rate: float = 3.0,
) -> BaseSignal:
    """Draw a normal series: level, drift, daily (and weekly) seasonality and noise.

    strong_seasonality forces a seasonal amplitude of at least 20% of the level and
    8 noise standard deviations, for scenarios whose anomalies act on the season.
    """
    counts = rng.random() < 0.2
    family = rng.choice(["percent", "magnitude", "centred"], p=[0.3, 0.5, 0.2])
    if counts:
        level = log_uniform(rng, min_count_rate, 1000.0)
        unit = level
    elif family == "percent":
        level = rng.uniform(5.0, 90.0)
        unit = level
    elif family == "magnitude":
        level = log_uniform(rng, 1e-2, 1e5)
        unit = level
    else:
        level = 0.0
        unit = log_uniform(rng, 0.1, 100.0)

    period = int(rng.integers(MIN_PERIOD_POINTS, MAX_PERIOD_POINTS + 1))
    if strong_seasonality:
        amplitude = unit * rng.uniform(0.2, 0.6)
    elif rng.random() < 0.25:
        amplitude = 0.0
    else:
        amplitude = unit * rng.uniform(0.05, 0.6)
    if counts:
        amplitude = min(amplitude, 0.9 * level)

    noise_std = unit * 10 ** rng.uniform(-2.3, -0.8)
    if strong_seasonality:
        noise_std = min(noise_std, amplitude / 8)

    time = np.arange(n, dtype=np.float64)
    drift = unit * rng.uniform(-0.3, 0.3) * time / n
    if rng.random() < 0.3:
        step_std = unit * 10 ** rng.uniform(-3.5, -2.5)
        drift = drift + np.cumsum(rng.normal(0.0, step_std, n))
    trend = level + drift
    if counts:
        trend = np.maximum(trend, 0.5 * level)

    daily = make_daily_shape(rng)
    weekly = make_weekly_factor(rng) if rng.random() < 0.3 else None
    daily_phase = rng.uniform(0.0, 1.0)

    def pattern(t: np.ndarray) -> np.ndarray:
        values = amplitude * daily(t / period + daily_phase)
        if weekly is not None:
            values = values * weekly(t / (7 * period))
        return values

    quantum = 0.0
    if allow_quantisation and not counts and rng.random() < 0.2:
        # Round to a power of ten at or below the noise level, like a metric
        # reported with a fixed number of decimals.
        quantum = 10.0 ** np.floor(np.log10(noise_std))

    return BaseSignal(
        trend=trend,
        period=period,
        amplitude=float(amplitude),
        pattern=pattern,
        noise=make_noise(rng, n),
        noise_std=float(noise_std),
        counts=bool(counts),
        quantum=float(quantum),
        unit=float(unit),
    )
