"""Eight scenarios of labelled synthetic series for training and validation.

Each series is a normal base signal (``training.signals``) with one to a few
anomalies of one scenario. Its label is a per-point anomaly probability in [0, 1].

Labels follow what a model can detect when its only input is a 16-point window
normalised by ``training.normalise``:

- Deviations of single points or short segments are labelled where they move the
  point away from its window median: by |(x_t - m_t) - (c_t - m'_t)| / s_t, with x
  and m of the anomalous series, c and m' of the clean one and s_t the anomalous
  series' scale. The label rises from 0 at 3 to 1 at 6. Inside a longer segment
  the window median catches up after about 8 points, and the label falls with it.
- A step (level shift, jump into or out of a segment) is labelled 1 for the first
  16 points, while the window still contains points from before the step, then decays
  with a time constant of 8 points for 40 more points. Once the window median has moved, the window
  looks normal, so the rest of a lasting shift is not labelled.
- A change of spread (noise burst, faster oscillation, steeper season or ramp) is
  labelled where the window's deviation d_t or its mean absolute step |x_t - x_{t-1}|,
  relative to the normaliser's own scale s_t and averaged over 16 points, is at least
  1.5 times that of the clean series at the same point. The label reaches 1 at 2.5
  times. The step size catches a faster oscillation whose spread stays normal. Because s_t adapts over about horizon_points points, a
  lasting change fades out of the labels as it fades from view.
- A flat segment (stuck sensor, dropout) gives all-zero windows, which stay visible
  for as long as it lasts, but only where the clean series' windows would not have
  been almost flat themselves: the label rises from 0 at a relative spread d_t / s_t
  (averaged over 16 points) of 0.2 to 1 at 0.5.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from training.normalise import ew_mean_scale, window_statistics
from training.signals import BaseSignal, log_uniform, make_base_signal

SCENARIOS = (
    "point",
    "contextual",
    "collective",
    "seasonal",
    "trend_shift",
    "noise_burst",
    "frequency_change",
    "flat",
)

WINDOW_POINTS = 16  # the model's window size, which sets how long a step stays visible
WARMUP_POINTS = 100  # no anomaly before this point, so the scale s_t has settled
EVENT_GAP_POINTS = 64  # minimum distance between two anomalies of one series
STEP_DECAY_POINTS = 8.0  # time constant of a step label after its first 16 points
STEP_TAIL_POINTS = 40  # the decay is cut off after 5 time constants (below 0.01)
# Shortest series with room for the warm-up, two anomalies and normal points.
MIN_SERIES_LENGTH = WARMUP_POINTS + 2 * EVENT_GAP_POINTS + 400
HORIZON_POINTS = 1000  # normalisation horizon the spread labels are computed with
SAMPLING_INTERVALS_SECONDS = (60, 300, 600, 900, 3600)
START_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LabelledSeries:
    """One generated series with per-point anomaly probabilities."""

    scenario: str
    values: np.ndarray  # (n,) float64
    labels: np.ndarray  # (n,) float32 in [0, 1]
    interval_seconds: int  # sampling interval; only used for timestamps
    start_time: datetime  # UTC timestamp of the first point

    def timestamps(self) -> np.ndarray:
        """Return the timestamp of every point as datetime64[s] (UTC)."""
        start = np.datetime64(self.start_time.replace(tzinfo=None), "s")
        return start + np.arange(self.values.size) * np.timedelta64(
            self.interval_seconds, "s"
        )


def write_csv(series: LabelledSeries, path: Path | str) -> None:
    """Write ``timestamp,value,label`` rows, timestamps in ISO 8601 UTC."""
    stamps = np.datetime_as_string(series.timestamps(), unit="s")
    with open(path, "w", encoding="utf-8") as f:
        f.write("timestamp,value,label\n")
        for stamp, value, label in zip(
            stamps, series.values, series.labels, strict=True
        ):
            f.write(f"{stamp}Z,{float(value)!r},{float(label):.4f}\n")


def generate_series(
    scenario: str,
    rng: np.random.Generator,
    min_length: int = 1000,
    max_length: int = 4000,
) -> LabelledSeries:
    """Generate one series of the given scenario with random parameters and length."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    if min_length < MIN_SERIES_LENGTH or max_length < min_length:
        raise ValueError(
            f"series lengths must satisfy {MIN_SERIES_LENGTH} <= min_length <= max_length, "
            f"got min_length={min_length}, max_length={max_length}"
        )
    n = int(rng.integers(min_length, max_length + 1))
    values, labels = _GENERATORS[scenario](rng, n)
    if not np.all(np.isfinite(values)):
        raise RuntimeError(f"scenario {scenario!r} generated a non-finite value")
    return LabelledSeries(
        scenario=scenario,
        values=values.astype(np.float64),
        labels=np.clip(labels, 0.0, 1.0).astype(np.float32),
        interval_seconds=int(rng.choice(SAMPLING_INTERVALS_SECONDS)),
        start_time=START_EPOCH + timedelta(hours=int(rng.integers(0, 365 * 24))),
    )


# Label helpers


def severity(ratio: np.ndarray | float, low: float, high: float) -> np.ndarray:
    """Map a size ratio linearly from 0 at ``low`` to 1 at ``high``, clipped."""
    return np.clip((np.asarray(ratio, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def typical_deviation(values: np.ndarray) -> float:
    """Return the mean window deviation d_t of a series, the unit of anomaly sizes."""
    _, _, deviations = window_statistics(values, WINDOW_POINTS)
    return max(float(deviations.mean()), 1e-9)


def label_step(labels: np.ndarray, index: int, strength: float, stop: int) -> None:
    """Label a step at ``index``: full for 16 points, then decaying, up to ``stop``."""
    stop = min(stop, labels.size, index + WINDOW_POINTS + STEP_TAIL_POINTS)
    offsets = np.arange(stop - index, dtype=np.float64)
    profile = np.where(
        offsets < WINDOW_POINTS,
        1.0,
        np.exp(-(offsets - WINDOW_POINTS + 1) / STEP_DECAY_POINTS),
    )
    labels[index:stop] = np.maximum(labels[index:stop], strength * profile)


def label_spread(
    labels: np.ndarray, clean: np.ndarray, anomalous: np.ndarray, start: int, stop: int
) -> None:
    """Label points in [start, stop) by how much the anomaly widened their windows
    or roughened them (larger steps between neighbouring points)."""
    ratios = []
    for measure in (_relative_spread, _relative_roughness):
        visible = _moving_mean(measure(anomalous))
        reference = _moving_mean(measure(clean))
        floor = max(0.5 * float(np.median(reference)), 1e-12)
        ratios.append(visible[start:stop] / np.maximum(reference[start:stop], floor))
    ratio = np.maximum(ratios[0], ratios[1])
    labels[start:stop] = np.maximum(labels[start:stop], severity(ratio, 1.5, 2.5))


def label_deviation(
    labels: np.ndarray, clean: np.ndarray, anomalous: np.ndarray, points: np.ndarray
) -> None:
    """Label the given points by how far the anomaly moved them from their window
    median, in units of the anomalous series' scale s_t."""
    points = points[points < labels.size]
    _, clean_medians, _ = window_statistics(clean, WINDOW_POINTS)
    _, medians, deviations = window_statistics(anomalous, WINDOW_POINTS)
    scale = np.maximum(ew_mean_scale(deviations, HORIZON_POINTS), 1e-12)
    shift = (anomalous - medians) - (clean - clean_medians)
    change = np.abs(shift[points]) / scale[points]
    labels[points] = np.maximum(labels[points], severity(change, 3.0, 6.0))


def label_flatness(
    labels: np.ndarray, clean: np.ndarray, start: int, stop: int
) -> None:
    """Label a flat segment [start, stop) where the clean windows have visible spread."""
    reference = _moving_mean(_relative_spread(clean))
    labels[start:stop] = np.maximum(
        labels[start:stop], severity(reference[start:stop], 0.2, 0.5)
    )


def _moving_mean(values: np.ndarray) -> np.ndarray:
    """Causal mean over the last 16 points, which steadies the per-window ratios."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    counts = np.minimum(np.arange(1, values.size + 1), WINDOW_POINTS)
    ends = np.arange(1, values.size + 1)
    return (sums[ends] - sums[ends - counts]) / counts


def _relative_spread(values: np.ndarray) -> np.ndarray:
    """d_t / s_t: a window's deviation relative to the normaliser's scale."""
    _, _, deviations = window_statistics(values, WINDOW_POINTS)
    scale = ew_mean_scale(deviations, HORIZON_POINTS)
    return deviations / np.maximum(scale, 1e-12)


def _relative_roughness(values: np.ndarray) -> np.ndarray:
    """|x_t - x_{t-1}| / s_t: the step into each point relative to the normaliser's scale."""
    _, _, deviations = window_statistics(values, WINDOW_POINTS)
    scale = ew_mean_scale(deviations, HORIZON_POINTS)
    steps = np.abs(np.diff(values, prepend=values[0]))
    return steps / np.maximum(scale, 1e-12)


def place_segments(
    rng: np.random.Generator, n: int, count: int, min_length: int, max_length: int
) -> list[tuple[int, int]]:
    """Draw up to ``count`` non-overlapping (start, length) segments after the warm-up.

    Segments keep EVENT_GAP_POINTS apart; fewer are returned when they do not fit,
    but always at least one.
    """
    segments: list[tuple[int, int]] = []
    for _ in range(50 * count):
        if len(segments) == count:
            break
        length = int(rng.integers(min_length, max_length + 1))
        latest = n - length - 1
        if latest <= WARMUP_POINTS:
            length = max(1, n - WARMUP_POINTS - 2)
            latest = WARMUP_POINTS + 1
        start = int(rng.integers(WARMUP_POINTS, latest))
        clear = all(
            start + length + EVENT_GAP_POINTS <= other
            or other + other_length + EVENT_GAP_POINTS <= start
            for other, other_length in segments
        )
        if clear:
            segments.append((start, length))
    if not segments:
        segments.append((WARMUP_POINTS, min(min_length, n - WARMUP_POINTS - 1)))
    return sorted(segments)


def _clean_series(base: BaseSignal) -> tuple[np.ndarray, float]:
    clean = base.observe(base.expected())
    return clean, typical_deviation(clean)


def _round_like(base: BaseSignal, values: np.ndarray) -> np.ndarray:
    """Round values that were changed after observation the way the base rounds."""
    if base.counts:
        return np.maximum(np.round(values), 0.0)
    if base.quantum > 0:
        return np.round(values / base.quantum) * base.quantum
    return values


# Scenarios. Each returns (values, labels) for a series of n points.


def _point(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Spikes and dips of 1 to 3 points on any base signal."""
    base = make_base_signal(rng, n)
    clean, scale = _clean_series(base)
    return _add_spikes(rng, base, clean, scale, int(rng.integers(1, 7)))


def _add_spikes(
    rng: np.random.Generator,
    base: BaseSignal,
    clean: np.ndarray,
    scale: float,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    values = clean.copy()
    labels = np.zeros(values.size)
    segments = place_segments(rng, values.size, count, 1, 3)
    for start, length in segments:
        size = log_uniform(rng, 2.5, 30.0) * scale
        upward = rng.random() < (0.8 if base.counts else 0.5)
        stop = start + length
        values[start:stop] += size if upward else -size
        values[start:stop] = _round_like(base, values[start:stop])
    points = np.concatenate(
        [np.arange(start, start + length) for start, length in segments]
    )
    label_deviation(labels, clean, values, points)
    return values, labels


def _contextual(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points that take the value of the opposite phase of the daily cycle.

    Such a value lies inside the series' normal range but far from its neighbours.
    """
    base = make_base_signal(rng, n, strong_seasonality=True, min_count_rate=50.0)
    clean, scale = _clean_series(base)
    expected = base.expected()
    labels = np.zeros(n)
    changed_points = np.zeros(n, dtype=bool)
    half_period = base.period / 2
    for start, length in place_segments(rng, n, int(rng.integers(1, 5)), 1, 4):
        # Move the segment to where the season is far from its opposite phase,
        # unless that comes close to an earlier segment.
        candidates = rng.integers(WARMUP_POINTS, n - length - 1, 30)
        gaps = np.abs(
            base.seasonal(candidates + half_period) - base.seasonal(candidates)
        )
        preferred = int(candidates[np.argmax(gaps)])
        nearby = changed_points[
            max(preferred - EVENT_GAP_POINTS, 0) : preferred + length + EVENT_GAP_POINTS
        ]
        if not nearby.any():
            start = preferred
        segment = slice(start, start + length)
        changed_points[segment] = True
        time = np.arange(start, start + length, dtype=np.float64)
        expected[segment] = base.trend[segment] + base.seasonal(time + half_period)
    values = base.observe(expected)
    label_deviation(labels, clean, values, np.flatnonzero(changed_points))
    return values, labels


def _collective(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Give segments of 4 to 32 points an abnormal shape: bump, oscillation, pulse,
    sawtooth or a mirrored copy of the segment."""
    base = make_base_signal(rng, n)
    clean, scale = _clean_series(base)
    expected = base.expected()
    labels = np.zeros(n)
    segments = place_segments(rng, n, int(rng.integers(1, 4)), 4, 32)

    for start, length in segments:
        size = log_uniform(rng, 2.0, 15.0) * scale * rng.choice([-1.0, 1.0])
        position = np.arange(length) / max(length - 1, 1)  # 0 .. 1 across the segment
        shape = rng.choice(["bump", "oscillation", "pulse", "sawtooth", "mirror"])
        segment = slice(start, start + length)
        if shape == "bump":
            expected[segment] += size * np.sin(np.pi * position)
        elif shape == "oscillation":
            cycle_points = rng.uniform(3.0, 8.0)
            expected[segment] += size * np.sin(
                2 * np.pi * np.arange(length) / cycle_points
            )
        elif shape == "pulse":
            expected[segment] += size
        elif shape == "sawtooth":
            expected[segment] += size * position
        else:
            local = expected[segment]
            expected[segment] = 2 * local.mean() - local + size / 2

    values = base.observe(expected)
    # The points just after a segment are labelled too while their window median is
    # still displaced by it, as after a step.
    points = [
        np.arange(start, start + length + WINDOW_POINTS) for start, length in segments
    ]
    label_deviation(labels, clean, values, np.concatenate(points))
    return values, labels


def _seasonal(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Anomalies against a strong daily season: a cycle of 2-4x amplitude, a jump
    to another phase of the cycle, or spikes on the seasonal curve."""
    base = make_base_signal(rng, n, strong_seasonality=True, min_count_rate=50.0)
    clean, scale = _clean_series(base)
    kind = rng.choice(["amplitude", "phase", "spikes"])
    if kind == "spikes":
        return _add_spikes(rng, base, clean, scale, int(rng.integers(1, 4)))

    period = base.period
    expected = base.expected()
    labels = np.zeros(n)
    min_length = max(WINDOW_POINTS, period // 4 if kind == "phase" else period // 2)
    segments = place_segments(
        rng, n, int(rng.integers(1, 3)), min_length, max(min_length, period)
    )
    for start, length in segments:
        segment = slice(start, start + length)
        time = np.arange(start, start + length, dtype=np.float64)
        if kind == "amplitude":
            gain = rng.uniform(2.0, 4.0)
            expected[segment] = base.trend[segment] + gain * base.seasonal(time)
        else:
            shift = rng.uniform(0.25, 0.75) * period
            expected[segment] = base.trend[segment] + base.seasonal(time + shift)
    values = base.observe(expected)
    for start, length in segments:
        if kind == "amplitude":
            label_spread(labels, clean, values, start, start + length)
        else:
            _label_jumps(labels, clean, values, scale, start, start + length)
    return values, labels


def _label_jumps(
    labels: np.ndarray,
    clean: np.ndarray,
    values: np.ndarray,
    scale: float,
    start: int,
    stop: int,
) -> None:
    """Label the steps into and out of an altered segment [start, stop)."""
    n = labels.size
    entry = abs(values[start] - clean[start]) / scale
    label_step(labels, start, float(severity(entry, 3.0, 6.0)), stop)
    if stop < n:
        # The step out has the size of the last in-segment change.
        exit_size = abs(values[stop - 1] - clean[stop - 1]) / scale
        label_step(labels, stop, float(severity(exit_size, 3.0, 6.0)), n)


def _trend_shift(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Level shifts (lasting, or returning after 40 to 400 points) and ramps that
    change the trend for 16 to 200 points and keep the new level."""
    base = make_base_signal(rng, n)
    clean, scale = _clean_series(base)
    expected = base.expected()
    labels = np.zeros(n)
    kind = rng.choice(["level", "ramp"])
    count = int(rng.integers(1, 4))
    # Counts only shift upwards, because a fall below zero would clip into a flat line.
    directions = [1.0] if base.counts else [-1.0, 1.0]
    if kind == "level":
        segments = place_segments(rng, n, count, 40, 400)
        changes = []
        for index, (start, length) in enumerate(segments):
            shift = log_uniform(rng, 2.5, 30.0) * scale * rng.choice(directions)
            lasting = index == len(segments) - 1 and rng.random() < 0.6
            stop = n if lasting else start + length
            expected[start:stop] += shift
            changes.append((start, stop))
        values = base.observe(expected)
        for start, stop in changes:
            _label_jumps(labels, clean, values, scale, start, stop)
        return values, labels

    segments = place_segments(rng, n, count, 16, 200)
    for start, length in segments:
        slope = rng.uniform(1.0, 6.0) * scale / 4 * rng.choice(directions)
        # A ramp of slope b has a window deviation of 4b, so 4b / scale is how much
        # wider its windows are than usual.
        expected[start : start + length] += slope * np.arange(length)
        expected[start + length :] += slope * length
    values = base.observe(expected)
    for start, length in segments:
        label_spread(labels, clean, values, start, start + length)
    return values, labels


def _noise_burst(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Extra noise of 1 to 8 typical deviations for 16 to 300 points, or lasting."""
    base = make_base_signal(rng, n)
    clean, scale = _clean_series(base)
    values = clean.copy()
    labels = np.zeros(n)
    segments = place_segments(rng, n, int(rng.integers(1, 4)), 16, 300)
    for index, (start, length) in enumerate(segments):
        lasting = index == len(segments) - 1 and rng.random() < 0.3
        stop = n if lasting else start + length
        noise_std = log_uniform(rng, 1.0, 8.0) * scale
        values[start:stop] += noise_std * rng.standard_normal(stop - start)
        values[start:stop] = _round_like(base, values[start:stop])
        segments[index] = (start, stop - start)
    for start, length in segments:
        label_spread(labels, clean, values, start, start + length)
    return values, labels


def _frequency_change(
    rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Speed the daily cycle up 3 to 20 times, or add a fast oscillation (period 3
    to 12 points), for 32 to 400 points."""
    kind = rng.choice(["faster_season", "oscillation"])
    base = make_base_signal(
        rng, n, strong_seasonality=kind == "faster_season", min_count_rate=50.0
    )
    clean, scale = _clean_series(base)
    expected = base.expected()
    labels = np.zeros(n)
    segments = place_segments(rng, n, int(rng.integers(1, 3)), 32, 400)
    for start, length in segments:
        segment = slice(start, start + length)
        offsets = np.arange(length, dtype=np.float64)
        if kind == "faster_season":
            # The cycle must keep at least 6 points to stay an oscillation.
            speed = min(rng.uniform(3.0, 20.0), base.period / 6)
            expected[segment] = base.trend[segment] + base.seasonal(
                start + speed * offsets
            )
        else:
            cycle_points = rng.uniform(3.0, 12.0)
            amplitude = log_uniform(rng, 1.0, 6.0) * scale
            expected[segment] += amplitude * np.sin(2 * np.pi * offsets / cycle_points)
    values = base.observe(expected)
    for start, length in segments:
        label_spread(labels, clean, values, start, start + length)
        if start + length < n:
            _label_exit(labels, clean, values, scale, start + length)
    return values, labels


def _label_exit(
    labels: np.ndarray, clean: np.ndarray, values: np.ndarray, scale: float, stop: int
) -> None:
    exit_size = abs(values[stop - 1] - clean[stop - 1]) / scale
    label_step(labels, stop, float(severity(exit_size, 3.0, 6.0)), labels.size)


def _flat(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold the value stuck at its last reading, or drop it to 0, for 16 to 200
    points, or until the end of the series when that is at most 400 points away."""
    # Unrounded values and count rates of 20 or more, so that normal windows are
    # never exactly flat by chance.
    base = make_base_signal(rng, n, allow_quantisation=False, min_count_rate=20.0)
    clean, scale = _clean_series(base)
    values = clean.copy()
    labels = np.zeros(n)
    positive = bool(clean.min() > 0)
    segments = place_segments(rng, n, int(rng.integers(1, 4)), 16, 200)
    for index, (start, length) in enumerate(segments):
        lasting = index == len(segments) - 1 and n - start <= 400 and rng.random() < 0.5
        stop = n if lasting else start + length
        dropout = positive and rng.random() < 0.4
        values[start:stop] = 0.0 if dropout else values[start - 1]
        flat = np.zeros(n)
        label_flatness(flat, clean, start, stop)
        if dropout:
            entry_size = abs(clean[start]) / scale
            label_step(labels, start, float(severity(entry_size, 3.0, 6.0)), stop)
        else:
            # Two or three equal points in a row also occur in normal data.
            flat[start:stop] *= np.minimum(1.0, np.arange(1, stop - start + 1) / 4)
        labels[start:stop] = np.maximum(labels[start:stop], flat[start:stop])
        if stop < n:
            return_size = abs(values[stop - 1] - clean[stop]) / scale
            label_step(labels, stop, float(severity(return_size, 3.0, 6.0)), n)
    return values, labels


_GENERATORS = {
    "point": _point,
    "contextual": _contextual,
    "collective": _collective,
    "seasonal": _seasonal,
    "trend_shift": _trend_shift,
    "noise_burst": _noise_burst,
    "frequency_change": _frequency_change,
    "flat": _flat,
}
