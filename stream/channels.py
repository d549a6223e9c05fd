"""Coarse and seasonal alert channels of the ``record`` calibration.

The point channel's window covers 16 points, 80 minutes at a 5-minute interval:
too short to tell a slow change or a broken daily pattern from noise. These
channels give the same model and the same record rule a slower view.

Every ``coarse_points`` points of a series form a block, and the block's mean
value becomes one point of a coarse series. When the point that completes a
block arrives:

* Coarse channel. The window of the last ``window_size`` block means (padded
  with the first one, as point windows are) is normalised like a point window,
  with its own scale over the normaliser's horizon in blocks, and scored
  by the model. Its signal is the newest position's score times its normalised
  deviation, as in the point channel.
* Seasonal channel. The block's end time falls into one of ``season_buckets``
  equal parts of the UTC day. Its residual is the distance between the block
  mean and the last block mean of the same bucket (the same hour of an earlier
  day, usually the day before), divided by the running mean residual over the
  same horizon.

Each signal gets its own record, decaying over ``horizon_points //
coarse_points`` blocks, and its alert is ``x / (x + record)``. The point that
completes a block takes the largest of its point alert and the two channel
alerts. Both channels stay silent during the point warm-up and during their
first ``warmup_points // coarse_points`` blocks (the seasonal channel:
residuals), so channels that start afresh on a restored series do not alert
on an empty record.

Per series the channels keep the block sum and the newest block mean as
float64. The last ``window_size`` block means and one mean per bucket are
float32 offsets from the newest mean, and seven smaller scalars follow: 204
bytes with a 16-point window and 24 buckets.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from stream.calibration import CalibrationSpec
from stream.model import NormalisationSpec
from stream.normalise import normalise_windows

SEASON_SECONDS = 86_400.0
# The records never fall below this, as in the point channel.
RECORD_FLOOR = 1e-6
# Block means are stored as float32 offsets from the newest block mean (float64),
# so a series far from 0 keeps the precision of its changes. Offsets beyond this
# are clipped, which keeps values up to the accepted 1e300 finite.
# NOTE: a series whose block means change by more than this from one block to
# the next gets clipped coarse windows, and its coarse alerts sit near 0.5.
OFFSET_LIMIT = 1e38
SIGNAL_LIMIT = 1e30
# coarse_points, buckets, block sum, newest block mean, block points, blocks,
# coarse scale, coarse record, seasonal scale, seasonal residual count,
# seasonal record
_HEAD = struct.Struct("<qqddqqdddqd")
_INT32_MAX = 2**31 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ChannelTable:
    """Per-slot state of the coarse and seasonal channels."""

    def __init__(
        self, window_size: int, coarse_points: int, buckets: int, capacity: int
    ) -> None:
        self.window_size = window_size
        self.coarse_points = coarse_points
        self.buckets = buckets
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        # The block sum and the newest mean keep float64 precision; the means
        # and buckets are float32 offsets from the newest mean.
        self.block_sum = np.zeros(capacity)
        self.base = np.zeros(capacity)
        self.block_points = np.zeros(capacity, dtype=np.int32)
        self.blocks = np.zeros(capacity, dtype=np.int32)
        self.means = np.zeros((capacity, self.window_size), dtype=np.float32)
        self.scale = np.zeros(capacity, dtype=np.float32)
        self.record = np.zeros(capacity, dtype=np.float32)
        # NaN marks an empty bucket. reset() writes it when a slot is taken;
        # slots never taken stay zero pages that use no memory.
        self.season = np.zeros((capacity, self.buckets), dtype=np.float32)
        self.season_scale = np.zeros(capacity, dtype=np.float32)
        self.season_count = np.zeros(capacity, dtype=np.int32)
        self.season_record = np.zeros(capacity, dtype=np.float32)

    _ARRAYS = (
        "block_sum base block_points blocks means scale record season "
        "season_scale season_count season_record"
    ).split()

    def grow(self, capacity: int) -> None:
        old = {name: getattr(self, name) for name in self._ARRAYS}
        previous = len(self.block_sum)
        self._allocate(capacity)
        for name, array in old.items():
            getattr(self, name)[:previous] = array

    def reset(self, slot: int) -> None:
        for name in self._ARRAYS:
            getattr(self, name)[slot] = 0
        self.season[slot] = np.nan

    @property
    def state_size(self) -> int:
        return _HEAD.size + 4 * (self.window_size + self.buckets)

    def export_state(self, slot: int) -> bytes:
        head = _HEAD.pack(
            self.coarse_points,
            self.buckets,
            float(self.block_sum[slot]),
            float(self.base[slot]),
            int(self.block_points[slot]),
            int(self.blocks[slot]),
            float(self.scale[slot]),
            float(self.record[slot]),
            float(self.season_scale[slot]),
            int(self.season_count[slot]),
            float(self.season_record[slot]),
        )
        arrays = np.concatenate([self.means[slot], self.season[slot]])
        return head + arrays.astype("<f4").tobytes()

    def decode_state(self, data: bytes) -> tuple | None:
        """Check :meth:`export_state` bytes for :meth:`import_state`.

        Returns None for state written with other channel settings (or none),
        which the series drops. Raises ValueError for values that the channels
        could not have written.
        """
        if len(data) != self.state_size:
            return None
        head = _HEAD.unpack(data[: _HEAD.size])
        if head[:2] != (self.coarse_points, self.buckets):
            return None
        _, _, block_sum, base, block_points, blocks = head[:6]
        scale, record, season_scale, season_count, season_record = head[6:]
        arrays = np.frombuffer(data, dtype="<f4", offset=_HEAD.size)
        means, season = arrays[: self.window_size], arrays[self.window_size :]
        problems = []
        if not 0 <= block_points < self.coarse_points:
            problems.append(f"block points {block_points}")
        for name, count in (("blocks", blocks), ("residual count", season_count)):
            if not 0 <= count <= _INT32_MAX:
                problems.append(f"{name} {count}")
        for name, value in (("block sum", block_sum), ("newest mean", base)):
            if not np.isfinite(value):
                problems.append(f"{name} {value!r}")
        for name, value in (
            ("coarse scale", scale),
            ("coarse record", record),
            ("seasonal scale", season_scale),
            ("seasonal record", season_record),
        ):
            if not 0.0 <= value <= _FLOAT32_MAX:
                problems.append(f"{name} {value!r}")
        if not np.isfinite(means).all() or np.isinf(season).any():
            problems.append("non-finite block means")
        if problems:
            raise ValueError("invalid channel state: " + ", ".join(problems))
        return head[2:], means, season

    def import_state(self, slot: int, decoded: tuple | None) -> None:
        """Set a slot from :meth:`decode_state` output; None starts afresh."""
        if decoded is None:
            self.reset(slot)
            return
        scalars, means, season = decoded
        (
            self.block_sum[slot],
            self.base[slot],
            self.block_points[slot],
            self.blocks[slot],
            self.scale[slot],
            self.record[slot],
            self.season_scale[slot],
            self.season_count[slot],
            self.season_record[slot],
        ) = scalars
        self.means[slot] = means
        self.season[slot] = season

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copy every array, for :meth:`restore`."""
        return {name: getattr(self, name).copy() for name in self._ARRAYS}

    def restore(self, snapshot: dict[str, np.ndarray]) -> None:
        for name, array in snapshot.items():
            setattr(self, name, array)


def channel_alerts(
    table: ChannelTable,
    spec: CalibrationSpec,
    normalisation: NormalisationSpec,
    score: Callable[[np.ndarray], np.ndarray],
    slots: np.ndarray,
    values: np.ndarray,
    times: np.ndarray,
    n_scored: np.ndarray,
    alert: np.ndarray,
) -> int:
    """Feed points to the channels and raise ``alert`` where a block completes.

    ``slots``, ``values``, ``times`` and ``n_scored`` describe the points in
    arrival order (a series' points in time order). ``alert`` contains their
    point alerts and is updated in place. ``score`` is the model's window scorer.
    Returns the number of coarse windows scored.
    """
    k = spec.coarse_points
    block_sum, block_points = table.block_sum, table.block_points
    # TODO: the channels add about 12 CPU µs per point (benchmarks.throughput).
    # Cumulative sums per slot would vectorise this per-point loop.
    # Blocks completed in this batch: (position among the points, slot, mean).
    completed: list[tuple[int, int, float]] = []
    for position, (slot, value) in enumerate(
        zip(slots.tolist(), values.tolist(), strict=True)
    ):
        total = float(block_sum[slot]) + value
        count = int(block_points[slot]) + 1
        if count == k:
            completed.append((position, slot, total / k))
            total, count = 0.0, 0
        block_sum[slot] = total
        block_points[slot] = count
    if not completed:
        return 0

    horizon = max(1, spec.horizon_points // k)
    scale_horizon = max(1, normalisation.horizon_points // k)
    windows = np.empty((len(completed), table.window_size), dtype=np.float32)
    residuals = np.zeros(len(completed))
    # Blocks and residuals each channel had seen at each block, for their
    # warm-ups.
    block_counts = np.zeros(len(completed), dtype=np.int64)
    residual_counts = np.zeros(len(completed), dtype=np.int64)
    for i, (position, slot, mean) in enumerate(completed):
        means = table.means[slot]
        if table.blocks[slot] == 0:
            means[:] = 0.0
        else:
            # Rebase the stored offsets on the new mean.
            shift = float(table.base[slot]) - mean
            means[:-1] = _offsets(means[1:], shift)
            means[-1] = 0.0
            table.season[slot] = _offsets(table.season[slot], shift)
        table.base[slot] = mean
        table.blocks[slot] += 1
        block_counts[i] = table.blocks[slot]
        windows[i : i + 1], table.scale[slot : slot + 1] = normalise_windows(
            means[None, :].astype(np.float64) + mean,
            table.scale[slot : slot + 1],
            table.blocks[slot : slot + 1].astype(np.float64),
            scale_horizon,
            normalisation.eps_rel,
            normalisation.eps_abs,
        )
        if table.buckets:
            residuals[i] = _seasonal_residual(
                table, slot, float(times[position]), horizon
            )
            residual_counts[i] = table.season_count[slot]

    raw = score(windows)[:, -1].astype(np.float64)
    signals = raw * np.abs(windows[:, -1].astype(np.float64))
    keep = 1.0 - 1.0 / horizon
    warm = spec.warmup_points
    # Each channel has its own warm-up, the same length in blocks as the point
    # warm-up: the seasonal channel starts a day after the series, and both
    # start afresh when restored state had none of theirs.
    warm_blocks = warm // k
    for i, (position, slot, _mean) in enumerate(completed):
        coarse = _record_alert(table.record, slot, float(signals[i]), keep)
        seasonal = _record_alert(table.season_record, slot, float(residuals[i]), keep)
        if block_counts[i] <= warm_blocks:
            coarse = 0.0
        if residual_counts[i] <= warm_blocks:
            seasonal = 0.0
        if n_scored[position] > warm:
            alert[position] = max(float(alert[position]), coarse, seasonal)
    return len(completed)


def _offsets(offsets: np.ndarray, shift: float) -> np.ndarray:
    """Add ``shift`` in float64 and clip into float32 range; NaN (an empty bucket) stays NaN."""
    return np.clip(offsets.astype(np.float64) + shift, -OFFSET_LIMIT, OFFSET_LIMIT)


def _seasonal_residual(
    table: ChannelTable, slot: int, end_time: float, horizon: int
) -> float:
    """Compare the newest block with the last one of its bucket; return the scaled residual.

    The buckets hold offsets from the newest block mean, so the newest block is 0.
    """
    bucket = int((end_time % SEASON_SECONDS) // (SEASON_SECONDS / table.buckets))
    bucket = min(bucket, table.buckets - 1)
    previous = float(table.season[slot, bucket])
    table.season[slot, bucket] = 0.0
    if np.isnan(previous):
        return 0.0
    residual = abs(previous)
    count = int(table.season_count[slot]) + 1
    table.season_count[slot] = count
    scale = float(table.season_scale[slot])
    scaled = residual / scale if count > 1 and scale > 0 else 0.0
    rate = max(1.0 / count, 1.0 / horizon)
    table.season_scale[slot] = (1.0 - rate) * scale + rate * residual
    return scaled


def _record_alert(records: np.ndarray, slot: int, signal: float, keep: float) -> float:
    # The records are float32. A residual of a value near 1e300 against a small
    # scale would overflow them to inf and silence the channel for good.
    signal = min(signal, SIGNAL_LIMIT)
    record = max(float(records[slot]), RECORD_FLOOR)
    records[slot] = max(signal, record * keep, RECORD_FLOOR)
    return signal / (signal + record)
