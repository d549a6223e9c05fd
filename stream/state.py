"""Streaming scoring state of many series, scored in batches.

Every series owns one row ("slot") of a set of arrays: its last ``window_size``
values and timestamps, the running sums of the window scores of those points,
the normaliser scale, the calibration statistics and the alert episode state.
Keeping the state in arrays rather than per-series objects keeps it small (about
660 bytes of arrays per series with the committed model's settings, a third
of it for the coarse and seasonal channels) and lets a batch of points of different
series be normalised and aggregated with one numpy operation per step.

How a point is scored: when point t of a series arrives, the window of its last
``window_size`` points is normalised and scored by the model (one ONNX Runtime
call for all windows of a batch). Window position j gives a score to the point at
that position, and each point sums the scores of the windows that contain it. With
``lag_points = d``, the arrival of point t completes the score of point t - d: the
mean of the scores of its first d + 1 windows. With d = 0 a point is scored on
arrival from its own window alone; with d = window_size - 1 its score is the mean
over every window that contains it. Before a series has ``window_size`` points its
windows are left-padded with its first value, and padded positions add nothing.

With ``stride = k`` (to keep up when points arrive faster than the model scores
windows) only the window ending at a series' k-th, 2k-th, ... point is scored. A
point's score is then the mean over the scored windows among its first d + 1,
and d is raised to at least k - 1 so that there is always one.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from stream.batching import group_by, sequence_cutoff
from stream.calibration import (
    CalibrationSpec,
    calibrate,
    calibrate_sequence,
    record_alerts,
    record_alerts_sequence,
)
from stream.channels import ChannelTable, channel_alerts
from stream.model import WindowModel
from stream.normalise import normalise_sequence, normalise_windows
from stream.points import (
    MAX_ABS_VALUE,
    REASON_DUPLICATE_TIMESTAMP,
    REASON_INVALID_TIMESTAMP,
    REASON_NON_FINITE_VALUE,
    REASON_OUT_OF_ORDER,
    REASON_VALUE_OUT_OF_RANGE,
    Point,
    format_timestamp,
)

logger = logging.getLogger(__name__)

# Layout of a series' state in the changelog. The head holds a format byte, the
# point count, the scale, the likelihood calibration's mean, variance and short
# average, and the record calibration's record, minimum and maximum. It ends with
# the count of points below the threshold and the episode flag. Values,
# timestamps and score sums follow, then the coarse and seasonal channels' state
# (format 3; empty when the channels are off). Format 2 has no channel state.
STATE_FORMAT_VERSION = 3
_READABLE_FORMATS = (2, 3)
_STATE_HEAD = struct.Struct("<BqdddddddqB")

# Fixed CPU cost in µs of one round (one point of every series in it, vectorised
# over series) and of one sequence (every point of one series, vectorised over
# time), measured with a zero-cost model on a 2-CPU AMD EPYC VM. Both ways also
# cost about 8 µs per point, so only the fixed costs decide between them.
ROUND_COST = 430.0
SEQUENCE_COST = 400.0
GROWTH_STEP_SLOTS = 65_536


def _sequence_cutoff(per_slot: np.ndarray) -> int:
    """Return c such that series with more than c points in a batch go as sequences.

    The others take c rounds. ``per_slot`` holds each slot's point count in the
    batch. Both ways give the same scores (tests/test_scorer_routing.py checks
    this), so c only minimises the estimated cost c * ROUND_COST + (series
    above c) * SEQUENCE_COST.
    """
    return sequence_cutoff(per_slot, ROUND_COST, SEQUENCE_COST)


def _channel_settings(spec: CalibrationSpec) -> tuple[int, int, bool]:
    if spec.method != "record" or not spec.coarse_points:
        return (0, 0, False)
    return (
        spec.coarse_points,
        spec.season_buckets,
        spec.coarse_range_tolerance is not None,
    )


def _channel_table_settings(spec: CalibrationSpec) -> tuple[int, int, bool] | None:
    """Return the channels' state layout for SeriesTable, or None when they are off."""
    settings = _channel_settings(spec)
    return settings if settings[0] else None


@dataclass(frozen=True)
class ScorerSettings:
    """Behaviour of the scorer that is not part of the model."""

    threshold: float
    lag_points: int = 0
    # An episode ends after this many consecutive points below the threshold; only
    # the first point of an episode is marked for publishing. 0 publishes every
    # point at or above the threshold.
    episode_gap_points: int = 16
    max_series: int = 1_000_000
    initial_capacity: int = 1024
    # Only the windows that end at a series' k-th, 2k-th, ... point are scored by
    # the model. At least lag_points = k - 1 is used, so that every point is
    # covered by one scored window when its score is due.
    stride: int = 1


@dataclass(slots=True)
class ScoredPoint:
    """The score of one point, known when a later (or the same) point arrived."""

    series: str
    timestamp: float
    value: float
    window_score: float
    score: float
    is_anomaly: bool
    publish: bool
    input_index: int

    def to_record(self, threshold: float, model_version: str) -> dict[str, object]:
        return {
            "series": self.series,
            "timestamp": format_timestamp(self.timestamp),
            "value": self.value,
            "score": self.score,
            "window_score": self.window_score,
            "threshold": threshold,
            "model_version": model_version,
        }


@dataclass(slots=True)
class Rejection:
    """A point the scorer refused, with the reason code and a message."""

    input_index: int
    reason: str
    message: str


@dataclass
class BatchResult:
    scored: list[ScoredPoint] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    windows_scored: int = 0


class SeriesTable:
    """Array-backed state of every series, one slot per series."""

    def __init__(
        self,
        window_size: int,
        capacity: int,
        channels: tuple[int, int, bool] | None = None,
    ) -> None:
        """``channels``: (coarse_points, season_buckets, range rule on), or None for none."""
        self.window_size = window_size
        self.slot_of: dict[str, int] = {}
        self.series_of: list[str | None] = []
        self._free: list[int] = []
        self._allocate(capacity)
        self.channels = None
        if channels is not None:
            coarse_points, buckets, coarse_range = channels
            self.channels = ChannelTable(
                window_size, coarse_points, buckets, capacity, coarse_range
            )

    def _allocate(self, capacity: int) -> None:
        w = self.window_size
        self.capacity = capacity
        self.values = np.zeros((capacity, w))
        self.times = np.zeros((capacity, w))
        self.sums = np.zeros((capacity, w))
        self.count = np.zeros(capacity, dtype=np.int64)
        self.scale = np.zeros(capacity)
        self.last_seen = np.zeros(capacity)
        self.cal_mean = np.zeros(capacity)
        self.cal_var = np.zeros(capacity)
        self.cal_short = np.zeros(capacity)
        # A scorer uses one calibration method, and replace_model rejects a
        # switch, so the record method's statistics share the likelihood's arrays.
        self.cal_record = self.cal_mean
        self.cal_low = self.cal_var
        self.cal_high = self.cal_short
        self.below = np.zeros(capacity, dtype=np.int32)
        self.in_episode = np.zeros(capacity, dtype=bool)
        self.series_of.extend([None] * (capacity - len(self.series_of)))

    def _grow(self) -> None:
        old = {
            name: getattr(self, name)
            for name in (
                "values times sums count scale last_seen cal_mean cal_var "
                "cal_short below in_episode"
            ).split()
        }
        previous = self.capacity
        # Doubling while small; above GROWTH_STEP_SLOTS a quarter more at a
        # time, so that a large table has few unused slots.
        factor = 2.0 if previous < GROWTH_STEP_SLOTS else 1.25
        self._allocate(int(previous * factor))
        for name, array in old.items():
            getattr(self, name)[:previous] = array
        if self.channels is not None:
            self.channels.grow(self.capacity)
        self._free.extend(range(self.capacity - 1, previous - 1, -1))

    def __len__(self) -> int:
        return len(self.slot_of)

    def add(self, series: str) -> int:
        if not self._free and len(self.slot_of) == self.capacity:
            self._grow()
        if not self._free:
            self._free.extend(range(self.capacity - 1, len(self.slot_of) - 1, -1))
        slot = self._free.pop()
        self.slot_of[series] = slot
        self.series_of[slot] = series
        self._reset(slot)
        return slot

    def _reset(self, slot: int) -> None:
        for array in (
            self.values,
            self.times,
            self.sums,
            self.count,
            self.scale,
            self.cal_mean,
            self.cal_var,
            self.cal_short,
            self.cal_record,
            self.cal_low,
            self.cal_high,
            self.below,
            self.in_episode,
        ):
            array[slot] = 0
        if self.channels is not None:
            self.channels.reset(slot)

    def remove(self, series: str) -> None:
        slot = self.slot_of.pop(series)
        self.series_of[slot] = None
        self._free.append(slot)

    def export_state(self, series: str) -> bytes:
        """Encode one series' state (everything but its idle clock) as bytes."""
        slot = self.slot_of[series]
        head = _STATE_HEAD.pack(
            STATE_FORMAT_VERSION,
            int(self.count[slot]),
            float(self.scale[slot]),
            float(self.cal_mean[slot]),
            float(self.cal_var[slot]),
            float(self.cal_short[slot]),
            float(self.cal_record[slot]),
            float(self.cal_low[slot]),
            float(self.cal_high[slot]),
            int(self.below[slot]),
            bool(self.in_episode[slot]),
        )
        arrays = np.concatenate([self.values[slot], self.times[slot], self.sums[slot]])
        channels = b"" if self.channels is None else self.channels.export_state(slot)
        return head + arrays.astype("<f8").tobytes() + channels

    def import_state(self, series: str, data: bytes, now: float) -> None:
        """Set a series' state from :meth:`export_state` bytes, adding it if new.

        Channel state written with other channel settings, or none (format 2),
        is dropped and the series' channels start afresh. Raises ValueError,
        and changes nothing, for bytes that this class could not have written.
        """
        expected = _STATE_HEAD.size + 3 * self.window_size * 8
        version = data[0] if data else None
        if (
            version not in _READABLE_FORMATS
            or len(data) < expected
            or (version == 2 and len(data) != expected)
        ):
            raise ValueError(
                f"state of series {series!r} has {len(data)} bytes (format "
                f"{data[:1].hex() or 'none'}); expected at least {expected} bytes "
                f"of format {STATE_FORMAT_VERSION}"
            )
        channel_data = data[expected:]
        (
            version,
            count,
            scale,
            mean,
            var,
            short,
            record,
            low,
            high,
            below,
            in_episode,
        ) = _STATE_HEAD.unpack(data[: _STATE_HEAD.size])
        arrays = np.frombuffer(data[:expected], dtype="<f8", offset=_STATE_HEAD.size)
        floats = (scale, mean, var, short, record, low, high)
        if (
            not 0 <= count
            or not 0 <= below <= np.iinfo(np.int32).max
            or in_episode > 1
            or not np.isfinite(floats).all()
            or not np.isfinite(arrays).all()
        ):
            raise ValueError(
                f"state of series {series!r} contains values the scorer cannot have "
                f"written (count {count}, below {below}, episode flag {in_episode}, "
                "or a non-finite number)"
            )
        try:
            channels = (
                None
                if self.channels is None
                else self.channels.decode_state(channel_data)
            )
        except ValueError as exc:
            raise ValueError(f"state of series {series!r}: {exc}") from exc
        slot = self.slot_of.get(series)
        if slot is None:
            slot = self.add(series)
        w = self.window_size
        self.values[slot] = arrays[:w]
        self.times[slot] = arrays[w : 2 * w]
        self.sums[slot] = arrays[2 * w :]
        self.count[slot] = count
        self.scale[slot] = scale
        self.cal_mean[slot] = mean
        self.cal_var[slot] = var
        self.cal_short[slot] = short
        self.cal_record[slot] = record
        self.cal_low[slot] = low
        self.cal_high[slot] = high
        self.below[slot] = below
        self.in_episode[slot] = in_episode
        self.last_seen[slot] = now
        if self.channels is not None:
            self.channels.import_state(slot, channels)

    def used_slots(self) -> np.ndarray:
        return np.fromiter(
            self.slot_of.values(), dtype=np.int64, count=len(self.slot_of)
        )


class StreamScorer:
    """Scores points of many series with one model call per batch.

    Points of one series must arrive in timestamp order; a point whose timestamp
    is not after the previous one of its series is rejected. ``process`` is not
    thread-safe: one scorer belongs to one consumer task.
    """

    def __init__(
        self,
        model: WindowModel,
        settings: ScorerSettings,
        calibration: CalibrationSpec | None = None,
    ) -> None:
        meta = model.metadata
        if not 0 <= settings.lag_points < meta.window_size:
            raise ValueError(
                f"lag_points={settings.lag_points} must be between 0 and "
                f"{meta.window_size - 1}"
            )
        if not 1 <= settings.stride <= meta.window_size:
            raise ValueError(
                f"stride={settings.stride} must be between 1 and {meta.window_size} "
                "(the window size)"
            )
        if settings.lag_points < settings.stride - 1:
            logger.info(
                "stride %d scores one window in %d, so lag_points %d is raised to %d",
                settings.stride,
                settings.stride,
                settings.lag_points,
                settings.stride - 1,
            )
            settings = replace(settings, lag_points=settings.stride - 1)
        self.model = model
        self.settings = settings
        self.calibration = calibration or CalibrationSpec.from_metadata(
            meta.alert.calibration
        )
        self.window_size = meta.window_size
        self.table = SeriesTable(
            meta.window_size,
            settings.initial_capacity,
            _channel_table_settings(self.calibration),
        )
        self.evicted_total = 0
        # Series evicted since the caller last cleared this list (the consumer
        # writes their tombstones to the state changelog).
        self.evicted_series: list[str] = []

    def replace_model(self, model: WindowModel, threshold: float | None = None) -> None:
        """Score the next batches with ``model``, keeping every series' state.

        The windows, sums and calibration statistics stay valid as long as the
        new model reads the same window size, normalisation and lag; a model that
        differs there raises ``ValueError`` and the old one stays in use.
        """
        old, new = self.model.metadata, model.metadata
        if new.window_size != old.window_size or new.normalisation != old.normalisation:
            raise ValueError(
                f"model {new.model_version} changes the window size or normalisation "
                f"of {old.model_version}; restart the consumer to switch to it"
            )
        calibration = CalibrationSpec.from_metadata(new.alert.calibration)
        if calibration.method != self.calibration.method:
            raise ValueError(
                f"model {new.model_version} changes the alert calibration method "
                f"from {self.calibration.method!r} to {calibration.method!r}; "
                "restart the consumer to switch to it"
            )
        if _channel_settings(calibration) != _channel_settings(self.calibration):
            raise ValueError(
                f"model {new.model_version} changes the coarse or seasonal channels "
                f"of {old.model_version}; restart the consumer to switch to it"
            )
        self.model = model
        self.calibration = calibration
        if threshold is not None:
            self.settings = replace(self.settings, threshold=threshold)

    @property
    def active_series(self) -> int:
        return len(self.table)

    def process(self, points: Sequence[Point], now: float = 0.0) -> BatchResult:
        """Validate, normalise and score a batch of points (any mix of series).

        ``now`` is the caller's clock in seconds, used only to find idle series.
        Returns the points whose score became known, in arrival order, and the
        rejected points.
        """
        result = BatchResult()
        accepted, slots, rounds = self._admit(points, now, result)
        if not accepted:
            return result
        slots_arr = np.asarray(slots, dtype=np.int64)
        rounds_arr = np.asarray(rounds, dtype=np.int64)
        values = np.fromiter((points[i].value for i in accepted), dtype=np.float64)
        times = np.fromiter((points[i].timestamp for i in accepted), dtype=np.float64)

        n = len(accepted)
        lag = self.settings.lag_points
        self._inputs = np.empty((n, self.window_size), dtype=np.float32)
        self._counts_after = np.empty(n, dtype=np.int64)
        self._lagged_time = np.empty(n)
        self._lagged_value = np.empty(n)
        self._lagged_deviation = np.empty(n)

        # A series with many more points in the batch than most others is
        # processed as one sequence, vectorised over time. The others go in
        # rounds, one point of each per round.
        per_slot = np.bincount(slots_arr)
        in_sequence = per_slot[slots_arr] > _sequence_cutoff(per_slot)
        sequence_indices = np.flatnonzero(in_sequence)
        sequences = group_by(slots_arr[sequence_indices], sequence_indices)
        round_indices = np.flatnonzero(~in_sequence)
        groups = group_by(rounds_arr[round_indices], round_indices)

        for group in groups:
            self._advance_round(slots_arr[group], values[group], times[group], group)
        for indices in sequences:
            slot = int(slots_arr[indices[0]])
            self._advance_sequence(slot, values[indices], times[indices], indices)

        stride = self.settings.stride
        if stride == 1:
            window_scores = self.model.score(self._inputs).astype(np.float64)
            result.windows_scored = n
        else:
            # Windows left out add zero to the sums, and the divisor counts only
            # the scored windows (see _scored_windows).
            chosen = self._counts_after % stride == 0
            window_scores = np.zeros((n, self.window_size))
            window_scores[chosen] = self.model.score(self._inputs[chosen])
            result.windows_scored = int(chosen.sum())

        raw = np.empty(n)
        alert = np.zeros(n)
        anomalous = np.zeros(n, dtype=bool)
        publish = np.zeros(n, dtype=bool)
        outputs = (raw, alert)
        valid = self._counts_after > lag
        for group in groups:
            self._aggregate_round(
                slots_arr[group], group, window_scores, valid, outputs
            )
        for indices in sequences:
            slot = int(slots_arr[indices[0]])
            self._aggregate_sequence(slot, indices, window_scores, valid, outputs)
        lagged_time, lagged_value = self._lagged_time, self._lagged_value

        scored = np.flatnonzero(valid)
        if self.table.channels is not None and len(scored):
            channel_alert = alert[scored]
            result.windows_scored += channel_alerts(
                self.table.channels,
                self.calibration,
                self.model.metadata.normalisation,
                self.model.score,
                slots_arr[scored],
                lagged_value[scored],
                lagged_time[scored],
                self._counts_after[scored] - lag,
                channel_alert,
            )
            alert[scored] = channel_alert
        threshold = self.settings.threshold
        for group in groups:
            due = group[valid[group]]
            if len(due):
                hit = alert[due] >= threshold
                anomalous[due] = hit
                publish[due] = self._advance_episodes(slots_arr[due], hit)
        for indices in sequences:
            due = indices[valid[indices]]
            if len(due):
                hits = alert[due] >= threshold
                anomalous[due] = hits
                publish[due] = self._advance_episodes_sequence(
                    int(slots_arr[due[0]]), hits
                )

        for k in np.flatnonzero(valid):
            index = accepted[k]
            result.scored.append(
                ScoredPoint(
                    series=points[index].series,
                    timestamp=float(lagged_time[k]),
                    value=float(lagged_value[k]),
                    window_score=float(raw[k]),
                    score=float(alert[k]),
                    is_anomaly=bool(anomalous[k]),
                    publish=bool(publish[k]),
                    input_index=index,
                )
            )
        return result

    def _admit(
        self, points: Sequence[Point], now: float, result: BatchResult
    ) -> tuple[list[int], list[int], list[int]]:
        """Check order and values, find or create slots, and number the rounds."""
        t = self.table
        accepted: list[int] = []
        slots: list[int] = []
        rounds: list[int] = []
        seen_in_batch: dict[int, int] = {}
        last_time: dict[int, float] = {}
        for index, point in enumerate(points):
            if not math.isfinite(point.timestamp):
                result.rejected.append(
                    Rejection(
                        index,
                        REASON_INVALID_TIMESTAMP,
                        f"timestamp {point.timestamp!r} is not finite",
                    )
                )
                continue
            if not math.isfinite(point.value):
                result.rejected.append(
                    Rejection(
                        index,
                        REASON_NON_FINITE_VALUE,
                        f"value {point.value!r} is not finite",
                    )
                )
                continue
            if abs(point.value) > MAX_ABS_VALUE:
                result.rejected.append(
                    Rejection(
                        index,
                        REASON_VALUE_OUT_OF_RANGE,
                        f"value {point.value!r} is beyond +-{MAX_ABS_VALUE:g}; "
                        "rescale the series",
                    )
                )
                continue
            slot = t.slot_of.get(point.series)
            if slot is None:
                slot = self._new_slot(point.series, seen_in_batch.keys())
            previous = last_time.get(slot)
            if previous is None and t.count[slot] > 0:
                previous = float(t.times[slot, -1])
            if previous is not None and point.timestamp <= previous:
                reason = (
                    REASON_DUPLICATE_TIMESTAMP
                    if point.timestamp == previous
                    else REASON_OUT_OF_ORDER
                )
                result.rejected.append(
                    Rejection(
                        index,
                        reason,
                        f"timestamp {format_timestamp(point.timestamp)} of series "
                        f"{point.series!r} is not after its previous point "
                        f"{format_timestamp(previous)}; send each series in "
                        "timestamp order without repeats",
                    )
                )
                continue
            last_time[slot] = point.timestamp
            round_number = seen_in_batch.get(slot, 0)
            seen_in_batch[slot] = round_number + 1
            t.last_seen[slot] = now
            accepted.append(index)
            slots.append(slot)
            rounds.append(round_number)
        return accepted, slots, rounds

    def _new_slot(self, series: str, batch_slots: Collection[int]) -> int:
        """Add a series, first evicting the least recently seen ones at the cap.

        Series with points in the current batch (``batch_slots``) are never
        evicted, because their slots still receive those points. When every held
        series has points in the batch, the table exceeds ``max_series`` until a
        new series arrives in a later batch.
        """
        cap = self.settings.max_series
        if len(self.table) >= cap:
            excess = len(self.table) - cap + 1
            self._evict_least_recent(max(1, cap // 100, excess), batch_slots)
        return self.table.add(series)

    def _advance_round(
        self, s: np.ndarray, values: np.ndarray, times: np.ndarray, group: np.ndarray
    ) -> None:
        """Append one point to each slot in ``s`` and build its normalised window."""
        t = self.table
        first = t.count[s] == 0
        t.values[s, :-1] = t.values[s, 1:]
        t.values[s, -1] = values
        t.times[s, :-1] = t.times[s, 1:]
        t.times[s, -1] = times
        if first.any():
            t.values[s[first]] = values[first, None]
            t.times[s[first]] = times[first, None]
        t.count[s] += 1
        norm = self.model.metadata.normalisation
        self._inputs[group], t.scale[s] = normalise_windows(
            t.values[s],
            t.scale[s],
            t.count[s].astype(np.float64),
            norm.horizon_points,
            norm.eps_rel,
            norm.eps_abs,
        )
        lag_position = self.window_size - 1 - self.settings.lag_points
        self._counts_after[group] = t.count[s]
        self._lagged_time[group] = t.times[s, lag_position]
        self._lagged_value[group] = t.values[s, lag_position]
        self._lagged_deviation[group] = self._inputs[group, lag_position]

    def _advance_sequence(
        self, slot: int, values: np.ndarray, times: np.ndarray, indices: np.ndarray
    ) -> None:
        """Append k points to one slot and build their k normalised windows at once."""
        t = self.table
        w = self.window_size
        k = len(values)
        count_before = int(t.count[slot])
        if count_before == 0:
            old_values = np.full(w, values[0])
            old_times = np.full(w, times[0])
        else:
            old_values, old_times = t.values[slot], t.times[slot]
        # Extended index p: 0..w-1 the buffer before the batch, w.. the new points.
        extended_values = np.concatenate([old_values, values])
        extended_times = np.concatenate([old_times, times])
        windows = np.lib.stride_tricks.sliding_window_view(extended_values, w)[1:]

        norm = self.model.metadata.normalisation
        inputs, scale = normalise_sequence(
            windows,
            float(t.scale[slot]),
            count_before + 1,
            norm.horizon_points,
            norm.eps_rel,
            norm.eps_abs,
        )
        self._inputs[indices] = inputs

        t.values[slot] = extended_values[-w:]
        t.times[slot] = extended_times[-w:]
        t.count[slot] = count_before + k
        t.scale[slot] = scale
        lag_position = w - 1 - self.settings.lag_points
        self._counts_after[indices] = count_before + 1 + np.arange(k)
        self._lagged_time[indices] = extended_times[
            1 + lag_position : 1 + lag_position + k
        ]
        self._lagged_value[indices] = extended_values[
            1 + lag_position : 1 + lag_position + k
        ]
        self._lagged_deviation[indices] = inputs[:, lag_position]

    def _aggregate_round(
        self,
        s: np.ndarray,
        group: np.ndarray,
        window_scores: np.ndarray,
        valid: np.ndarray,
        outputs: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Add one window per slot to the sums and score the lagged points."""
        t = self.table
        w = self.window_size
        lag = self.settings.lag_points
        raw = outputs[0]
        t.sums[s, :-1] = t.sums[s, 1:]
        t.sums[s, -1] = 0.0
        counts = self._counts_after[group]
        real = np.arange(w)[None, :] >= (w - np.minimum(counts, w))[:, None]
        t.sums[s] += np.where(real, window_scores[group], 0.0)
        raw[group] = t.sums[s, w - 1 - lag] / self._scored_windows(counts, lag)
        keep = valid[group]
        if keep.any():
            self._alert(s[keep], group[keep], raw, outputs[1])

    def _aggregate_sequence(
        self,
        slot: int,
        indices: np.ndarray,
        window_scores: np.ndarray,
        valid: np.ndarray,
        outputs: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Add k consecutive windows of one slot to its sums and score the lagged points."""
        t = self.table
        w = self.window_size
        lag = self.settings.lag_points
        raw, alert = outputs[0], outputs[1]
        k = len(indices)
        scores = window_scores[indices]
        count_before = int(self._counts_after[indices[0]]) - 1
        old_sums = np.concatenate([t.sums[slot], np.zeros(k)])

        # Window i covers extended indices i + 1 .. i + w, so position j of window i
        # belongs to the point at extended index i + 1 + j. Positions before the
        # first real point (padding) add nothing.
        first_real = w - min(count_before, w)
        window_index = np.arange(k)
        sums = old_sums.copy()
        for j in range(w):
            column = scores[:, j]
            if j + 1 < first_real:
                column = np.where(window_index + 1 + j >= first_real, column, 0.0)
            sums[1 + j : 1 + j + k] += column
        t.sums[slot] = sums[-w:]

        # When window i arrives, its lagged point (extended index i + w - lag) has
        # been covered by windows i - lag .. i and by the windows before the batch.
        lagged = old_sums[w - lag : w - lag + k].copy()
        for u in range(min(lag, k - 1) + 1):
            lagged[u:] += scores[: k - u, w - 1 - lag + u]
        raw[indices] = lagged / self._scored_windows(self._counts_after[indices], lag)

        keep = valid[indices]
        if not keep.any():
            return
        kept = indices[keep]
        n_first = int(self._counts_after[kept[0]]) - lag
        if self.calibration.method == "record":
            alerts, record, low, high = record_alerts_sequence(
                self.calibration,
                raw[kept],
                self._lagged_deviation[kept],
                self._lagged_value[kept],
                n_first,
                float(t.cal_record[slot]),
                float(t.cal_low[slot]),
                float(t.cal_high[slot]),
            )
            t.cal_record[slot], t.cal_low[slot], t.cal_high[slot] = record, low, high
        else:
            alerts, mean, var, short = calibrate_sequence(
                self.calibration,
                raw[kept],
                n_first,
                float(t.cal_mean[slot]),
                float(t.cal_var[slot]),
                float(t.cal_short[slot]),
            )
            t.cal_mean[slot], t.cal_var[slot], t.cal_short[slot] = mean, var, short
        alert[kept] = alerts

    def _scored_windows(self, counts: np.ndarray, lag: int) -> np.ndarray:
        """Count the scored windows among those ending at points p to p + lag.

        ``counts`` are the series' point counts after point p + lag arrived. The
        window ending at a series' c-th point is scored when c is a multiple of
        the stride, so with stride 1 every one of the lag + 1 windows counts.
        """
        stride = self.settings.stride
        return counts // stride - (counts - lag - 1) // stride

    def _advance_episodes_sequence(self, slot: int, hits: np.ndarray) -> np.ndarray:
        """Update one slot's episode state over consecutive points; return publish flags."""
        t = self.table
        gap = self.settings.episode_gap_points
        if gap <= 0:
            return hits
        flags = np.zeros(len(hits), dtype=bool)
        in_episode = bool(t.in_episode[slot])
        below = int(t.below[slot])
        for i, hit in enumerate(hits.tolist()):
            if hit:
                flags[i] = not in_episode
                below = 0
                in_episode = True
            else:
                below += 1
                in_episode = in_episode and below < gap
        t.below[slot] = below
        t.in_episode[slot] = in_episode
        return flags

    def _alert(
        self, s: np.ndarray, group: np.ndarray, raw: np.ndarray, alert: np.ndarray
    ) -> None:
        """Calibrate the raw scores of one round into point alerts."""
        n_scored = (self._counts_after[group] - self.settings.lag_points).astype(
            np.float64
        )
        alert[group] = self._calibrate_slots(
            s,
            raw[group],
            self._lagged_deviation[group],
            self._lagged_value[group],
            n_scored,
        )

    def _calibrate_slots(
        self,
        s: np.ndarray,
        raw: np.ndarray,
        deviation: np.ndarray,
        value: np.ndarray,
        n_scored: np.ndarray,
    ) -> np.ndarray:
        """Calibrate one raw score per slot in ``s``, updating the slots' statistics."""
        t = self.table
        if self.calibration.method == "record":
            alert, t.cal_record[s], t.cal_low[s], t.cal_high[s] = record_alerts(
                self.calibration,
                raw,
                deviation,
                value,
                n_scored,
                t.cal_record[s],
                t.cal_low[s],
                t.cal_high[s],
            )
            return alert
        alert, t.cal_mean[s], t.cal_var[s], t.cal_short[s] = calibrate(
            self.calibration,
            raw,
            n_scored,
            t.cal_mean[s],
            t.cal_var[s],
            t.cal_short[s],
        )
        return alert

    def _advance_episodes(self, s: np.ndarray, hit: np.ndarray) -> np.ndarray:
        """Update the episode state of slots ``s``; return which hits to publish."""
        t = self.table
        gap = self.settings.episode_gap_points
        if gap <= 0:
            return hit
        publish = hit & ~t.in_episode[s]
        t.below[s] = np.where(hit, 0, t.below[s] + 1)
        t.in_episode[s] = np.where(hit, True, t.in_episode[s] & (t.below[s] < gap))
        return publish

    def flush(self) -> list[ScoredPoint]:
        """Score the points still waiting for later windows, as if their series ended.

        With ``lag_points = d`` the last d points of a series are scored from the
        windows they have (fewer than d + 1). With a stride above 1 the newest
        window is scored here if it was left out. Used at the end of a file; a
        stream never ends, so the consumer does not flush. The series' state is
        kept.
        """
        lag = self.settings.lag_points
        stride = self.settings.stride
        flushed: list[ScoredPoint] = []
        if lag == 0:
            return flushed
        # Flushing scores the waiting points as if their series ended, and the
        # later points of a stream score them again, so the calibration,
        # episode and channel state go back to what they were afterwards.
        saved = {
            name: getattr(self.table, name).copy()
            for name in ("cal_mean", "cal_var", "cal_short", "below", "in_episode")
        }
        saved_channels = (
            None if self.table.channels is None else self.table.channels.snapshot()
        )
        # (series, slot, position, raw score, point alert) of each waiting point
        pending: list[tuple[str, int, int, float, float]] = []
        slots: list[int] = []
        n_scored_list: list[int] = []
        t = self.table
        w = self.window_size
        norm = self.model.metadata.normalisation
        for series, slot in list(t.slot_of.items()):
            count = int(t.count[slot])
            first_real = w - min(count, w)
            # The deviations of the waiting points, in the normalisation of the
            # newest window (the window each lagged point would be scored in).
            centre = float(np.median(t.values[slot]))
            scale = max(float(t.scale[slot]), norm.eps_rel * abs(centre), norm.eps_abs)
            deviations = np.arcsinh((t.values[slot] - centre) / scale).astype(
                np.float32
            )
            sums, newest_scored = t.sums[slot], 0
            if stride > 1 and count % stride != 0:
                # The newest window was left out, so a waiting point may have no
                # scored window yet. Score it now; the stored sums stay unchanged.
                extra = self.model.score(deviations[None, :])[0].astype(np.float64)
                sums, newest_scored = sums + extra, 1
            for position in range(max(w - lag, first_real), w):
                point_count = count - (w - 1 - position)
                windows = count // stride - (point_count - 1) // stride + newest_scored
                raw = np.array([sums[position] / windows])
                s = np.array([slot])
                n_scored = count - (w - 1 - position)
                alert = self._calibrate_slots(
                    s,
                    raw,
                    deviations[position : position + 1],
                    t.values[slot, position : position + 1],
                    np.array([float(n_scored)]),
                )
                pending.append((series, slot, position, float(raw[0]), float(alert[0])))
                slots.append(slot)
                n_scored_list.append(n_scored)

        alerts = np.array([entry[4] for entry in pending])
        if t.channels is not None and pending:
            slot_array = np.array(slots, dtype=np.int64)
            positions = np.array([entry[2] for entry in pending])
            channel_alerts(
                t.channels,
                self.calibration,
                norm,
                self.model.score,
                slot_array,
                t.values[slot_array, positions],
                t.times[slot_array, positions],
                np.array(n_scored_list),
                alerts,
            )
        for (series, slot, position, raw_score, _), score in zip(
            pending, alerts.tolist(), strict=True
        ):
            hit = np.array([score >= self.settings.threshold])
            publish = self._advance_episodes(np.array([slot]), hit)
            flushed.append(
                ScoredPoint(
                    series=series,
                    timestamp=float(t.times[slot, position]),
                    value=float(t.values[slot, position]),
                    window_score=raw_score,
                    score=score,
                    is_anomaly=bool(hit[0]),
                    publish=bool(publish[0]),
                    input_index=-1,
                )
            )
        for name, array in saved.items():
            getattr(t, name)[:] = array
        if saved_channels is not None:
            t.channels.restore(saved_channels)
        return flushed

    def evict_idle(self, now: float, max_idle_seconds: float) -> int:
        """Drop series that received no point for ``max_idle_seconds``; return how many."""
        slots = self.table.used_slots()
        if len(slots) == 0:
            return 0
        idle = slots[self.table.last_seen[slots] < now - max_idle_seconds]
        for slot in idle:
            self.evicted_series.append(self.table.series_of[slot])
            self.table.remove(self.table.series_of[slot])
        self.evicted_total += len(idle)
        if len(idle):
            logger.info(
                "evicted %d series idle for more than %.0f s",
                len(idle),
                max_idle_seconds,
            )
        return len(idle)

    def _evict_least_recent(self, how_many: int, keep: Collection[int]) -> None:
        slots = self.table.used_slots()
        slots = slots[~np.isin(slots, np.fromiter(keep, dtype=np.int64))]
        if len(slots) == 0:
            return
        oldest = slots[
            np.argsort(self.table.last_seen[slots], kind="stable")[:how_many]
        ]
        for slot in oldest:
            self.evicted_series.append(self.table.series_of[slot])
            self.table.remove(self.table.series_of[slot])
        self.evicted_total += len(oldest)
        logger.warning(
            "series cap of %d reached: evicted the %d least recently seen series",
            self.settings.max_series,
            len(oldest),
        )
