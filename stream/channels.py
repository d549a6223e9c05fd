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
  With ``coarse_range_tolerance`` set, a block mean outside the range of the
  earlier block means, widened by that share of the range's width, gives the
  channel an alert of 1: the range rule of the point channel, on the coarse
  series.
* Seasonal channel. The block's end time falls into one of ``season_buckets``
  equal parts of the UTC day. Its residual is the distance between the block
  mean and the last block mean of the same bucket (the same hour of an earlier
  day, usually the day before), divided by the running mean residual over the
  same horizon.

Each signal gets its own record, decaying over ``channel_horizon_points //
coarse_points`` blocks, and its alert is ``x / (x + record)``. The point that
completes a block takes the largest of its point alert and the two channel
alerts. Both channels stay silent during the point warm-up and during their
first ``warmup_points // coarse_points`` blocks (the seasonal channel:
residuals), so channels that start afresh on a restored series do not alert
on an empty record.

Per series the channels keep the block sum and the newest block mean as
float64. The last ``window_size`` block means and one mean per bucket are
float32 offsets from the newest mean, and seven smaller scalars follow: 204
bytes with a 16-point window and 24 buckets. The range rule adds the lowest and
highest block mean as float64, 16 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from stream.batching import group_by, sequence_cutoff
from stream.calibration import CalibrationSpec, leaves_range
from stream.model import NormalisationSpec
from stream.normalise import normalise_sequence, normalise_windows
from stream.points import MAX_ABS_VALUE

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
# CPU cost in µs of one round of blocks (vectorised over slots), of one
# sequence (one slot's blocks, vectorised over time) and of each block of a
# sequence beyond what a round costs per block. Measured with a zero-cost
# model on a 2-CPU AMD EPYC VM; they decide which slots go as sequences.
ROUND_COST = 270.0
SEQUENCE_COST = 150.0
SEQUENCE_BLOCK_COST = 33.0
# coarse_points, buckets, block sum, newest block mean, block points, blocks,
# coarse scale, coarse record, seasonal scale, seasonal residual count,
# seasonal record
_HEAD = struct.Struct("<qqddqqdddqd")
# Lowest and highest block mean, present when the range rule is on.
_RANGE = struct.Struct("<dd")
_INT32_MAX = 2**31 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ChannelTable:
    """Per-slot state of the coarse and seasonal channels."""

    def __init__(
        self,
        window_size: int,
        coarse_points: int,
        buckets: int,
        capacity: int,
        coarse_range: bool = False,
    ) -> None:
        self.window_size = window_size
        self.coarse_points = coarse_points
        self.buckets = buckets
        self.coarse_range = coarse_range
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
        # Lowest and highest block mean, for the range rule.
        self.low = np.zeros(capacity)
        self.high = np.zeros(capacity)

    _ARRAYS = (
        "block_sum base block_points blocks means scale record season "
        "season_scale season_count season_record low high"
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
        size = _HEAD.size + 4 * (self.window_size + self.buckets)
        return size + (_RANGE.size if self.coarse_range else 0)

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
        data = head + arrays.astype("<f4").tobytes()
        if self.coarse_range:
            data += _RANGE.pack(float(self.low[slot]), float(self.high[slot]))
        return data

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
        end = _HEAD.size + 4 * (self.window_size + self.buckets)
        arrays = np.frombuffer(data[:end], dtype="<f4", offset=_HEAD.size)
        means, season = arrays[: self.window_size], arrays[self.window_size :]
        low, high = _RANGE.unpack(data[end:]) if self.coarse_range else (0.0, 0.0)
        problems = []
        if not 0 <= block_points < self.coarse_points:
            problems.append(f"block points {block_points}")
        for name, count in (("blocks", blocks), ("residual count", season_count)):
            if not 0 <= count <= _INT32_MAX:
                problems.append(f"{name} {count}")
        # Points beyond MAX_ABS_VALUE are rejected, which bounds what the
        # channels can hold and keeps their sums and shifts finite.
        for name, value, limit in (
            ("block sum", block_sum, self.coarse_points * MAX_ABS_VALUE),
            ("newest mean", base, MAX_ABS_VALUE),
        ):
            if not abs(value) <= limit:
                problems.append(f"{name} {value!r}")
        for name, value in (
            ("coarse scale", scale),
            ("coarse record", record),
            ("seasonal scale", season_scale),
            ("seasonal record", season_record),
        ):
            if not 0.0 <= value <= _FLOAT32_MAX:
                problems.append(f"{name} {value!r}")
        if not (np.abs(means) <= OFFSET_LIMIT).all():
            problems.append("block means beyond the offset limit")
        if (np.abs(season[~np.isnan(season)]) > OFFSET_LIMIT).any():
            problems.append("seasonal means beyond the offset limit")
        if self.coarse_range:
            problems += _range_problems(low, high, base, blocks)
        if problems:
            raise ValueError("invalid channel state: " + ", ".join(problems))
        return head[2:], means, season, (low, high)

    def import_state(self, slot: int, decoded: tuple | None) -> None:
        """Set a slot from :meth:`decode_state` output; None starts afresh."""
        if decoded is None:
            self.reset(slot)
            return
        scalars, means, season, (low, high) = decoded
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
        self.low[slot] = low
        self.high[slot] = high

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
    positions, ordinals, means = _complete_blocks(table, slots, values)
    if not len(positions):
        return 0
    k = spec.coarse_points
    completed_slots = slots[positions]
    horizon = max(1, spec.channel_horizon // k)
    scale_horizon = max(1, normalisation.horizon_points // k)
    windows = np.empty((len(positions), table.window_size), dtype=np.float32)
    residuals = np.zeros(len(positions))
    # 1 where a block mean leaves the range of the earlier ones (range rule).
    ranges = np.zeros(len(positions))
    # Blocks and residuals each channel had seen at each block, for their
    # warm-ups.
    block_counts = np.zeros(len(positions), dtype=np.int64)
    residual_counts = np.zeros(len(positions), dtype=np.int64)
    outputs = (windows, residuals, ranges, block_counts, residual_counts)

    # A slot that completes many blocks in this batch has them processed as one
    # sequence, vectorised over time. The others go in rounds, vectorised over
    # slots: round r holds each slot's (r + 1)-th block, so a slot's blocks
    # stay in time order. Both give the same results, so the split only
    # minimises the estimated cost.
    _, slot_index, slot_blocks = np.unique(
        completed_slots, return_inverse=True, return_counts=True
    )
    cutoff = sequence_cutoff(
        slot_blocks, ROUND_COST, SEQUENCE_COST, SEQUENCE_BLOCK_COST
    )
    long = slot_blocks[slot_index] > cutoff
    in_rounds, in_sequences = np.flatnonzero(~long), np.flatnonzero(long)
    rounds = group_by(ordinals[in_rounds], in_rounds)
    sequences = group_by(completed_slots[in_sequences], in_sequences)

    for members in rounds:
        round_slots = completed_slots[members]
        round_means = means[members]
        if spec.coarse_range_tolerance is not None:
            ranges[members] = _range_alerts(
                table, round_slots, round_means, spec.coarse_range_tolerance
            )
        _push_means(table, round_slots, round_means)
        block_counts[members] = table.blocks[round_slots]
        windows[members], table.scale[round_slots] = normalise_windows(
            table.means[round_slots].astype(np.float64) + round_means[:, None],
            table.scale[round_slots],
            table.blocks[round_slots].astype(np.float64),
            scale_horizon,
            normalisation.eps_rel,
            normalisation.eps_abs,
        )
        if table.buckets:
            residuals[members] = _seasonal_residuals(
                table, round_slots, times[positions[members]], horizon
            )
            residual_counts[members] = table.season_count[round_slots]
    for members in sequences:
        slot = int(completed_slots[members[0]])
        first_block = int(table.blocks[slot]) + 1
        block_windows = _push_sequence(
            table,
            slot,
            means[members],
            times[positions[members]],
            horizon,
            spec.coarse_range_tolerance,
            members,
            outputs,
        )
        windows[members], table.scale[slot] = normalise_sequence(
            block_windows,
            float(table.scale[slot]),
            first_block,
            scale_horizon,
            normalisation.eps_rel,
            normalisation.eps_abs,
            stored=np.float32,
        )

    raw = score(windows)[:, -1].astype(np.float64)
    signals = raw * np.abs(windows[:, -1].astype(np.float64))
    keep = 1.0 - 1.0 / horizon
    coarse = np.empty(len(positions))
    seasonal = np.empty(len(positions))
    for members in rounds:
        round_slots = completed_slots[members]
        coarse[members] = _record_alerts(
            table.record, round_slots, signals[members], keep
        )
        seasonal[members] = _record_alerts(
            table.season_record, round_slots, residuals[members], keep
        )
    for members in sequences:
        slot = int(completed_slots[members[0]])
        coarse[members] = _record_alert_sequence(
            table.record, slot, signals[members], keep
        )
        seasonal[members] = _record_alert_sequence(
            table.season_record, slot, residuals[members], keep
        )
    warm = spec.warmup_points
    # Each channel has its own warm-up, the same length in blocks as the point
    # warm-up: the seasonal channel starts a day after the series, and both
    # start afresh when restored state had none of theirs.
    warm_blocks = warm // k
    coarse = np.maximum(coarse, ranges)
    coarse[block_counts <= warm_blocks] = 0.0
    seasonal[residual_counts <= warm_blocks] = 0.0
    raised = np.maximum(alert[positions], np.maximum(coarse, seasonal))
    alert[positions] = np.where(n_scored[positions] > warm, raised, alert[positions])
    return len(positions)


def _range_problems(low: float, high: float, newest: float, blocks: int) -> list[str]:
    """List what is impossible in restored range rule state (empty when valid)."""
    if not (abs(low) <= MAX_ABS_VALUE and abs(high) <= MAX_ABS_VALUE):
        return [f"block mean range {low!r} to {high!r}"]
    if low > high:
        return [f"lowest block mean {low!r} above the highest {high!r}"]
    # The newest block mean is one of the means that the range covers, and a
    # slot without blocks has the range that reset() writes.
    if blocks > 0 and not low <= newest <= high:
        return [
            f"newest mean {newest!r} outside the block mean range {low!r} to {high!r}"
        ]
    if blocks == 0 and (low, high) != (0.0, 0.0):
        return [f"block mean range {low!r} to {high!r} before any block"]
    return []


def _complete_blocks(
    table: ChannelTable, slots: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add points to their slots' open blocks and return the blocks they complete.

    Returns the positions of the points that complete a block, in arrival
    order, each block's number among its slot's blocks of this batch (from
    0), and the block means.
    Each block's sum is accumulated from its first value to its last, one
    addition at a time, so batch boundaries do not change it.
    """
    k = table.coarse_points
    n = len(slots)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
    last = np.r_[starts[1:], n] - 1
    segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    segment_slots = sorted_slots[starts]
    # q: the point's place in its slot's blocks, counting the open block's points.
    q = (
        table.block_points[segment_slots].astype(np.int64)[segment]
        + np.arange(n)
        - starts[segment]
    )
    block = q // k
    # One running sum per (slot, block) of the batch. The first block of a
    # slot starts from the sum carried in, later ones from 0. Adding the
    # values column by column (a block's first value of the batch, its second,
    # ...) keeps each sum's additions in arrival order, as a loop over the
    # points would, so batch boundaries do not change the sums.
    row = np.r_[0, np.cumsum(block[last] - block[starts] + 1)[:-1]][segment] + (
        block - block[starts][segment]
    )
    row_starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    column = np.arange(n) - np.repeat(row_starts, np.diff(np.r_[row_starts, n]))
    sums = np.zeros(row[-1] + 1)
    sums[row[starts]] = table.block_sum[segment_slots]
    totals = np.empty(n)
    for members in group_by(column, np.arange(n)):
        target = row[members]
        sums[target] += sorted_values[members]
        totals[members] = sums[target]

    ends = q % k == k - 1
    table.block_sum[segment_slots] = np.where(ends[last], 0.0, totals[last])
    table.block_points[segment_slots] = (q[last] + 1) % k

    completed = np.flatnonzero(ends)
    positions = order[completed]
    by_arrival = np.argsort(positions, kind="stable")
    positions = positions[by_arrival]
    means = totals[completed][by_arrival] / k
    # 0 for a slot's first block completed in this batch, 1 for its second, ...
    ordinals = (block - block[starts][segment])[completed][by_arrival]
    return positions, ordinals, means


def _push_means(table: ChannelTable, slots: np.ndarray, means: np.ndarray) -> None:
    """Append one block mean to each of ``slots`` (distinct) and rebase their offsets."""
    fresh = table.blocks[slots] == 0
    table.means[slots[fresh]] = 0.0
    old = slots[~fresh]
    if len(old):
        shift = table.base[old] - means[~fresh]
        table.means[old, :-1] = _offsets(table.means[old, 1:], shift[:, None])
        table.means[old, -1] = 0.0
        table.season[old] = _offsets(table.season[old], shift[:, None])
    table.base[slots] = means
    table.blocks[slots] = _count_up(table.blocks[slots])


def _push_sequence(
    table: ChannelTable,
    slot: int,
    means: np.ndarray,
    end_times: np.ndarray,
    horizon: int,
    range_tolerance: float | None,
    members: np.ndarray,
    outputs: tuple[np.ndarray, ...],
) -> np.ndarray:
    """Append several block means to one slot, one after the other.

    Gives the state that :func:`_push_means` and :func:`_seasonal_residuals`
    give one block at a time, and the range alerts of :func:`_range_alerts`.
    Writes the residuals, range alerts and counts of ``outputs`` at ``members``
    and returns the blocks' windows of means (float64), not yet normalised.
    """
    _, residuals, ranges, block_counts, residual_counts = outputs
    offsets = table.means[slot].copy()
    season = table.season[slot].copy()
    base = float(table.base[slot])
    blocks = int(table.blocks[slot])
    count = int(table.season_count[slot])
    scale = float(table.season_scale[slot])
    low, high = float(table.low[slot]), float(table.high[slot])
    buckets = _buckets(end_times, table.buckets) if table.buckets else None
    windows = np.empty((len(means), table.window_size))
    for i, mean in enumerate(means.tolist()):
        if range_tolerance is not None:
            if blocks == 0:
                low = high = mean
            else:
                if leaves_range(mean, low, high, range_tolerance):
                    ranges[members[i]] = 1.0
                low, high = min(low, mean), max(high, mean)
        if blocks == 0:
            offsets[:] = 0.0
        else:
            shift = base - mean
            offsets[:-1] = _offsets(offsets[1:], shift)
            offsets[-1] = 0.0
            season[:] = _offsets(season, shift)
        base = mean
        blocks = min(blocks + 1, _INT32_MAX)
        block_counts[members[i]] = blocks
        windows[i] = offsets.astype(np.float64) + mean
        if buckets is None:
            continue
        bucket = int(buckets[i])
        previous = float(season[bucket])
        season[bucket] = 0.0
        if not np.isnan(previous):
            residual = abs(previous)
            count = min(count + 1, _INT32_MAX)
            if count > 1 and scale > 0:
                residuals[members[i]] = residual / scale
            rate = max(1.0 / count, 1.0 / horizon)
            scale = float(np.float32((1.0 - rate) * scale + rate * residual))
        residual_counts[members[i]] = count
    table.means[slot] = offsets
    table.season[slot] = season
    table.base[slot] = base
    table.blocks[slot] = blocks
    table.season_count[slot] = count
    table.season_scale[slot] = scale
    table.low[slot], table.high[slot] = low, high
    return windows


def _range_alerts(
    table: ChannelTable, slots: np.ndarray, means: np.ndarray, tolerance: float
) -> np.ndarray:
    """Apply the range rule to one new block mean of each of ``slots`` (distinct).

    Returns 1 where the mean leaves the range of the slot's earlier block
    means widened by ``tolerance`` of its width, else 0, and widens the
    ranges. Call it before :func:`_push_means` counts the block.
    """
    first = table.blocks[slots] == 0
    low, high = table.low[slots], table.high[slots]
    outside = leaves_range(means, low, high, tolerance)
    table.low[slots] = np.where(first, means, np.minimum(low, means))
    table.high[slots] = np.where(first, means, np.maximum(high, means))
    return np.where(first, 0.0, outside.astype(np.float64))


def _count_up(counts: np.ndarray) -> np.ndarray:
    """Add 1 to int32 counters, stopping at the int32 maximum instead of wrapping.

    The counters only decide warm-ups and running-mean rates, which no longer
    change long before that.
    """
    return np.minimum(counts.astype(np.int64) + 1, _INT32_MAX)


def _offsets(offsets: np.ndarray, shift: float) -> np.ndarray:
    """Add ``shift`` in float64 and clip into float32 range; NaN (an empty bucket) stays NaN."""
    return np.clip(offsets.astype(np.float64) + shift, -OFFSET_LIMIT, OFFSET_LIMIT)


def _seasonal_residuals(
    table: ChannelTable, slots: np.ndarray, end_times: np.ndarray, horizon: int
) -> np.ndarray:
    """Compare each slot's newest block with the last one of its bucket; return the scaled residuals.

    ``slots`` are distinct. The buckets hold offsets from the newest block
    mean, so the newest block is 0.
    """
    buckets = _buckets(end_times, table.buckets)
    previous = table.season[slots, buckets].astype(np.float64)
    table.season[slots, buckets] = 0.0
    seen = ~np.isnan(previous)
    slots, previous = slots[seen], previous[seen]
    residual = np.abs(previous)
    count = _count_up(table.season_count[slots])
    table.season_count[slots] = count
    scale = table.season_scale[slots].astype(np.float64)
    usable = (count > 1) & (scale > 0)
    scaled = np.zeros(len(seen))
    scaled[seen] = np.where(usable, residual / np.where(usable, scale, 1.0), 0.0)
    rate = np.maximum(1.0 / count, 1.0 / horizon)
    table.season_scale[slots] = (1.0 - rate) * scale + rate * residual
    return scaled


def _record_alerts(
    records: np.ndarray, slots: np.ndarray, signals: np.ndarray, keep: float
) -> np.ndarray:
    """Score signals of distinct ``slots`` against their records; update the records."""
    # The records are float32. A residual of a value near 1e300 against a small
    # scale would overflow them to inf and silence the channel for good.
    signals = np.minimum(signals, SIGNAL_LIMIT)
    record = np.maximum(records[slots].astype(np.float64), RECORD_FLOOR)
    records[slots] = np.maximum(np.maximum(signals, record * keep), RECORD_FLOOR)
    return signals / (signals + record)


def _record_alert_sequence(
    records: np.ndarray, slot: int, signals: np.ndarray, keep: float
) -> np.ndarray:
    """Score consecutive signals of one slot, as :func:`_record_alerts` would one at a time."""
    alerts = np.empty(len(signals))
    record = float(records[slot])
    for i, signal in enumerate(np.minimum(signals, SIGNAL_LIMIT).tolist()):
        reference = max(record, RECORD_FLOOR)
        alerts[i] = signal / (signal + reference)
        record = float(np.float32(max(signal, reference * keep, RECORD_FLOOR)))
    records[slot] = record
    return alerts


def _buckets(end_times: np.ndarray, buckets: int) -> np.ndarray:
    """Return the bucket of the UTC day that each block end time falls into."""
    width = SEASON_SECONDS / buckets
    return np.minimum(
        ((end_times % SEASON_SECONDS) // width).astype(np.int64), buckets - 1
    )
