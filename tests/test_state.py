"""Tests of the streaming scorer: aggregation, batching, rejections, episodes, eviction."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from model_factory import WINDOW, write_model

from stream.detect import detect, scorer_for
from stream.model import load_model
from stream.points import (
    REASON_DUPLICATE_TIMESTAMP,
    REASON_NON_FINITE_VALUE,
    REASON_OUT_OF_ORDER,
    Point,
)

# Position j of every window scores 0.01 * j, so a point with lag d, averaged
# over its d + 1 windows at positions 15, 14, ..., 15 - d, scores
# 0.01 * (15 + 15 - d) / 2 = 0.01 * (15 - d / 2).
RAMP = np.linspace(0.0, 0.15, WINDOW)


@pytest.fixture(scope="module")
def ramp_model(tmp_path_factory):
    path = write_model(tmp_path_factory.mktemp("ramp"), RAMP, threshold=1.0)
    return load_model(path)


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory):
    """A model whose window scores are its inputs: scores show the normalisation."""
    path = write_model(
        tmp_path_factory.mktemp("echo"),
        np.zeros(WINDOW),
        input_gain=1.0,
        threshold=0.5,
    )
    return load_model(path)


CALIBRATIONS = {
    "likelihood": (
        0.05,
        {
            "method": "likelihood",
            "horizon_points": 50,
            "short_points": 4,
            "warmup_points": 10,
        },
    ),
    "record": (
        0.6,
        {
            "method": "record",
            "horizon_points": 50,
            "warmup_points": 10,
            "range_tolerance": 0.05,
        },
    ),
    "record with channels": (
        0.6,
        {
            "method": "record",
            "horizon_points": 50,
            "warmup_points": 10,
            "range_tolerance": 0.05,
            "coarse_points": 4,
            "season_buckets": 24,
        },
    ),
}


@pytest.fixture(scope="module", params=sorted(CALIBRATIONS))
def calibrated_model(request, tmp_path_factory):
    threshold, calibration = CALIBRATIONS[request.param]
    path = write_model(
        tmp_path_factory.mktemp("calibrated"),
        np.linspace(-0.2, 0.3, WINDOW),
        input_gain=0.7,
        threshold=threshold,
        lag_points=5,
        calibration=calibration,
    )
    return load_model(path)


def wavy_series(seed: int, length: int) -> np.ndarray:
    """A seasonal series with noise and a few spikes, different for every seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    values = (1 + seed % 7) * np.sin(0.3 * t + seed) + rng.normal(0, 0.2, length)
    values[rng.integers(0, length, 3)] += 5.0
    return values + 10.0 * seed


def fields(points):
    return [
        (
            p.series,
            p.timestamp,
            p.value,
            p.window_score,
            p.score,
            p.is_anomaly,
            p.publish,
        )
        for p in points
    ]


def feed(scorer, values, series="s", start=0.0):
    scored = []
    for t, value in enumerate(values):
        scored.extend(scorer.process([Point(series, start + t, value)]).scored)
    return scored


# Aggregation


@pytest.mark.parametrize(("lag", "expected"), [(0, 0.15), (3, 0.135), (15, 0.075)])
def test_lag_mean_of_windows(ramp_model, lag, expected):
    scorer = scorer_for(ramp_model, lag_points=lag)
    scored = feed(scorer, [float(v % 5) for v in range(40)])
    assert len(scored) == 40 - lag
    assert [p.window_score for p in scored] == pytest.approx(
        [expected] * (40 - lag), rel=1e-6
    )


@pytest.mark.parametrize("lag", [0, 3, 15])
def test_lagged_point_alignment(ramp_model, lag):
    values = [float(v * v) for v in range(30)]
    scored = feed(scorer_for(ramp_model, lag_points=lag), values, start=100.0)
    assert [p.timestamp for p in scored] == [100.0 + t for t in range(30 - lag)]
    assert [p.value for p in scored] == values[: 30 - lag]


@pytest.mark.parametrize(
    ("lag", "length", "expected"),
    [
        # Every point of a long series: d full windows, then the flushed tail
        # with 3, 2 and 1 windows: 0.01 * (15 + 13) / 2, (15 + 14) / 2, 15.
        (3, 6, [0.135, 0.135, 0.135, 0.14, 0.145, 0.15]),
        # Fewer points than the lag: only the real windows count.
        (15, 3, [0.14, 0.145, 0.15]),
        (3, 1, [0.15]),
        # The first 5 points have 16 windows each, the other 15 fewer.
        (15, 20, [0.075] * 5 + [0.01 * (31 - k) / 2 for k in range(15, 0, -1)]),
    ],
)
def test_flush_fewer_windows(ramp_model, lag, length, expected):
    scorer = scorer_for(ramp_model, lag_points=lag)
    scored = feed(scorer, [1.0] * length)
    flushed = scorer.flush()
    assert len(flushed) == min(lag, length)
    assert [p.window_score for p in scored + flushed] == pytest.approx(
        expected, rel=1e-6
    )
    assert [p.timestamp for p in scored + flushed] == [float(t) for t in range(length)]


def test_flush_without_lag_empty(ramp_model):
    scorer = scorer_for(ramp_model)
    feed(scorer, [1.0] * 5)
    assert scorer.flush() == []


def test_first_point_scored_alone(ramp_model):
    scorer = scorer_for(ramp_model)
    result = scorer.process([Point("s", 0.0, 3.0)])
    assert len(result.scored) == 1
    assert result.scored[0].window_score == pytest.approx(0.15, rel=1e-6)


@pytest.mark.parametrize("lag", [-1, WINDOW, WINDOW + 3])
def test_lag_out_of_range(ramp_model, lag):
    with pytest.raises(ValueError, match="lag_points"):
        scorer_for(ramp_model, lag_points=lag)


# Batching: a series scores the same however its points are grouped.


@pytest.mark.parametrize("batch_size", [1, 2, 7, 16, 100, 1000])
def test_batch_size_invariant(calibrated_model, batch_size):
    values = wavy_series(3, 300)
    expected = detect(calibrated_model, list(range(300)), values, series="s")
    scorer = scorer_for(calibrated_model)
    points = [Point("s", float(t), float(v)) for t, v in enumerate(values)]
    scored = []
    for start in range(0, len(points), batch_size):
        scored.extend(scorer.process(points[start : start + batch_size]).scored)
    scored.extend(scorer.flush())
    assert len(scored) == 300
    assert fields(scored) == fields(expected.points)


def test_calibrated_model_alerts(calibrated_model):
    # Guard for the invariance tests: the series must produce alerts, or the
    # comparisons would only compare zeros.
    values = wavy_series(3, 300)
    detection = detect(calibrated_model, list(range(300)), values, series="s")
    assert any(p.publish for p in detection.points)
    assert any(not p.is_anomaly for p in detection.points)


INTERLEAVED_SERIES = 1000
INTERLEAVED_LENGTH = 30


@pytest.fixture(scope="module")
def interleaved_alone(calibrated_model):
    """Each interleaved series scored alone: (values, scored fields) by series."""
    alone = {}
    for i in range(INTERLEAVED_SERIES):
        values = wavy_series(i, INTERLEAVED_LENGTH)
        timestamps = [1000.0 + t for t in range(INTERLEAVED_LENGTH)]
        detection = detect(calibrated_model, timestamps, values, series=f"s{i}")
        alone[f"s{i}"] = (values, fields(detection.points))
    return alone


@pytest.mark.parametrize("initial_capacity", [1024, 8])
def test_interleaved_series_match_alone(
    calibrated_model, interleaved_alone, initial_capacity
):
    batch = [
        Point(series, 1000.0 + t, float(values[t]))
        for t in range(INTERLEAVED_LENGTH)
        for series, (values, _) in interleaved_alone.items()
    ]
    scorer = scorer_for(calibrated_model, initial_capacity=initial_capacity)
    result = scorer.process(batch)
    flushed = scorer.flush()
    by_series = defaultdict(list)
    for point in result.scored + flushed:
        by_series[point.series].append(point)

    assert result.rejected == []
    # Each series scores INTERLEAVED_LENGTH - lag points in the batch, and with
    # the coarse channel every coarse_points of them complete a coarse window.
    coarse = scorer.table.channels is not None
    lag = scorer.settings.lag_points
    blocks = (
        (INTERLEAVED_LENGTH - lag) // scorer.calibration.coarse_points if coarse else 0
    )
    assert result.windows_scored == len(batch) + INTERLEAVED_SERIES * blocks
    assert scorer.active_series == INTERLEAVED_SERIES
    for series, (_, expected) in interleaved_alone.items():
        assert fields(by_series[series]) == expected, series


def test_scored_in_arrival_order(echo_model):
    scorer = scorer_for(echo_model)
    batch = [
        Point("a", 1.0, 1.0),
        Point("b", 5.0, 2.0),
        Point("a", 2.0, 3.0),
        Point("c", 0.0, 4.0),
        Point("b", 6.0, 5.0),
    ]
    result = scorer.process(batch)
    assert [p.input_index for p in result.scored] == [0, 1, 2, 3, 4]
    assert [(p.series, p.timestamp) for p in result.scored] == [
        (p.series, p.timestamp) for p in batch
    ]


# Rejections


CLEAN = [Point("a", 1.0, 1.0), Point("a", 2.0, 2.0), Point("a", 3.0, 4.0)]
BAD = [
    (Point("a", 2.0, 9.0), REASON_DUPLICATE_TIMESTAMP),
    (Point("a", 1.5, 9.0), REASON_OUT_OF_ORDER),
    (Point("a", -100.0, 9.0), REASON_OUT_OF_ORDER),
    (Point("a", 5.0, math.nan), REASON_NON_FINITE_VALUE),
    (Point("a", 5.0, math.inf), REASON_NON_FINITE_VALUE),
    (Point("a", 5.0, -math.inf), REASON_NON_FINITE_VALUE),
]


@pytest.mark.parametrize(("bad", "reason"), BAD)
def test_reject_within_batch(echo_model, bad, reason):
    expected = scorer_for(echo_model).process(CLEAN).scored
    result = scorer_for(echo_model).process(CLEAN[:2] + [bad] + CLEAN[2:])
    assert [(r.input_index, r.reason) for r in result.rejected] == [(2, reason)]
    assert fields(result.scored) == fields(expected)
    assert [p.input_index for p in result.scored] == [0, 1, 3]


@pytest.mark.parametrize(("bad", "reason"), BAD)
def test_reject_across_batches(echo_model, bad, reason):
    expected = scorer_for(echo_model).process(CLEAN).scored
    scorer = scorer_for(echo_model)
    first = scorer.process(CLEAN[:2], now=1.0)
    snapshot = {
        name: getattr(scorer.table, name).copy()
        for name in "values times sums count scale last_seen cal_mean below".split()
    }
    rejected = scorer.process([bad], now=2.0)
    after_bad = {name: getattr(scorer.table, name).copy() for name in snapshot}
    last = scorer.process(CLEAN[2:], now=3.0)

    assert [(r.input_index, r.reason) for r in rejected.rejected] == [(0, reason)]
    assert rejected.scored == []
    for name, before in snapshot.items():
        assert np.array_equal(after_bad[name], before), name
    assert fields(first.scored + last.scored) == fields(expected)


def test_reject_message_names_series(echo_model):
    scorer = scorer_for(echo_model)
    scorer.process([Point("pump-7", 1397114100.0, 1.0)])
    result = scorer.process([Point("pump-7", 1397114000.0, 1.0)])
    message = result.rejected[0].message
    assert "'pump-7'" in message
    assert "2014-04-10T07:13:20Z" in message
    assert "2014-04-10T07:15:00Z" in message


def test_non_finite_new_series_no_slot(echo_model):
    scorer = scorer_for(echo_model)
    result = scorer.process([Point("x", 1.0, math.nan)])
    assert result.rejected[0].reason == REASON_NON_FINITE_VALUE
    assert scorer.active_series == 0


def test_order_ignores_rejected_point(echo_model):
    # A point out of order after a rejected one is compared with the last
    # accepted point, not with the rejected one.
    scorer = scorer_for(echo_model)
    batch = [
        Point("a", 10.0, 1.0),
        Point("a", 20.0, math.nan),
        Point("a", 15.0, 2.0),
    ]
    result = scorer.process(batch)
    assert [r.input_index for r in result.rejected] == [1]
    assert [p.timestamp for p in result.scored] == [10.0, 15.0]


def test_counts_add_up(echo_model):
    rng = np.random.default_rng(7)
    points = []
    for _ in range(400):
        series = f"s{rng.integers(0, 5)}"
        timestamp = float(rng.integers(0, 100))
        value = float(rng.choice([1.0, 2.5, math.nan, math.inf, -3.0]))
        points.append(Point(series, timestamp, value))
    scorer = scorer_for(echo_model)
    result = scorer.process(points)
    rejected = {r.input_index for r in result.rejected}
    accepted = {p.input_index for p in result.scored}
    assert result.windows_scored + len(result.rejected) == len(points)
    assert len(result.scored) == result.windows_scored
    assert rejected.isdisjoint(accepted)
    assert rejected | accepted == set(range(len(points)))
    assert len(result.rejected) > 0


# Episodes. With the echo model, a value of 1 among zeros (fewer than 8 ones in
# any window, so the median stays 0) scores at least asinh(16/7) > 1.5 and a 0
# scores exactly 0, so "H" marks a point above the threshold 0.5 and "." one below.


@pytest.mark.parametrize("lag", [0, 3])
@pytest.mark.parametrize(
    ("pattern", "gap", "published"),
    [
        ("..H.H..H", 2, "..H....H"),
        ("..H.H..H", 3, "..H....."),
        ("..H.H..H", 0, "..H.H..H"),
        ("..H.H..H", 1, "..H.H..H"),
        ("..HH.HH", 1, "..H..H."),
        ("..HH.HH", 0, "..HH.HH"),
        ("..HH.HH", 16, "..H...."),
        ("......", 2, "......"),
    ],
)
@pytest.mark.parametrize("one_batch", [False, True])
def test_episode_publish(echo_model, lag, pattern, gap, published, one_batch):
    scorer = scorer_for(echo_model, lag_points=lag, episode_gap_points=gap)
    values = [1.0 if c == "H" else 0.0 for c in pattern]
    if one_batch:
        points = [Point("s", float(t), v) for t, v in enumerate(values)]
        scored = scorer.process(points).scored + scorer.flush()
    else:
        scored = feed(scorer, values) + scorer.flush()
    assert "".join("H" if p.is_anomaly else "." for p in scored) == pattern
    assert "".join("H" if p.publish else "." for p in scored) == published


def test_episode_per_series(echo_model):
    scorer = scorer_for(echo_model, episode_gap_points=16)
    scored = []
    for t, value in enumerate([0.0, 0.0, 1.0, 0.0, 1.0]):
        result = scorer.process(
            [Point("a", float(t), value), Point("b", float(t), value)]
        )
        scored.extend(result.scored)
    published = [(p.series, p.timestamp) for p in scored if p.publish]
    assert published == [("a", 2.0), ("b", 2.0)]


# Series cap and idle eviction


def test_cap_evicts_least_recent(echo_model):
    scorer = scorer_for(echo_model, max_series=3)
    for now, series in enumerate(["a", "b", "c", "a", "d"], start=1):
        scorer.process([Point(series, float(now), 1.0)], now=float(now))
    assert set(scorer.table.slot_of) == {"a", "c", "d"}
    assert scorer.evicted_total == 1


def test_cap_keeps_batch_series(echo_model):
    scorer = scorer_for(echo_model, max_series=2)
    first = scorer.process(
        [Point("a", 1.0, 5.0), Point("b", 1.0, 7.0), Point("c", 1.0, 9.0)], now=1.0
    )
    second = scorer.process([Point("a", 2.0, 5.0), Point("c", 2.0, 9.0)], now=2.0)
    assert first.rejected == []
    assert [(p.series, p.value) for p in first.scored] == [
        ("a", 5.0),
        ("b", 7.0),
        ("c", 9.0),
    ]
    # Each series contains only its own constant values, so every score is 0.
    assert [p.window_score for p in first.scored + second.scored] == [0.0] * 5


def test_cap_keeps_batch_sequences(echo_model):
    scorer = scorer_for(echo_model, max_series=2)
    batch = [
        Point(series, float(t), value)
        for series, value in (("a", 5.0), ("b", 7.0), ("c", 9.0))
        for t in range(6)
    ]
    result = scorer.process(batch, now=1.0)
    assert result.rejected == []
    assert [p.value for p in result.scored] == [5.0] * 6 + [7.0] * 6 + [9.0] * 6
    assert [p.window_score for p in result.scored] == [0.0] * 18


def test_cap_restored_after_overflow(echo_model):
    scorer = scorer_for(echo_model, max_series=2)
    scorer.process(
        [Point("a", 1.0, 5.0), Point("b", 1.0, 7.0), Point("c", 1.0, 9.0)], now=1.0
    )
    scorer.process([Point("c", 2.0, 9.0)], now=2.0)
    scorer.process([Point("d", 3.0, 1.0)], now=3.0)
    assert set(scorer.table.slot_of) == {"c", "d"}
    assert scorer.active_series == 2


def test_evict_idle(echo_model):
    scorer = scorer_for(echo_model)
    scorer.process([Point("a", 1.0, 1.0)], now=0.0)
    # Idle for exactly max_idle_seconds is not yet idle.
    scorer.process([Point("b", 1.0, 1.0)], now=50.0)
    scorer.process([Point("c", 1.0, 1.0)], now=70.0)
    assert scorer.evict_idle(now=100.0, max_idle_seconds=50.0) == 1
    assert set(scorer.table.slot_of) == {"b", "c"}
    assert scorer.evicted_total == 1
    assert scorer.evict_idle(now=100.0, max_idle_seconds=50.0) == 0


def test_evict_idle_empty(echo_model):
    assert scorer_for(echo_model).evict_idle(now=100.0, max_idle_seconds=1.0) == 0


@pytest.mark.parametrize("evict", ["idle", "cap"])
def test_reappearing_series_fresh(echo_model, evict):
    scorer = scorer_for(echo_model, max_series=2, lag_points=2)
    feed(scorer, [0.0] * 20, series="a")
    if evict == "idle":
        scorer.evict_idle(now=10.0, max_idle_seconds=1.0)
    else:
        scorer.process([Point("b", 1.0, 1.0)], now=1.0)
        scorer.process([Point("c", 1.0, 1.0)], now=2.0)
    assert "a" not in scorer.table.slot_of
    # An earlier timestamp is accepted and the first points wait for their
    # lag again, as for a new series.
    first = scorer.process([Point("a", 0.5, 500.0)], now=20.0)
    later = feed(scorer, [500.0, 500.0], series="a", start=1.0)
    assert first.rejected == []
    assert first.scored == []
    assert [p.window_score for p in later] == [0.0]
    assert [p.timestamp for p in later] == [0.5]


def test_state_export_import_resumes(calibrated_model):
    values = wavy_series(5, 200)
    points = [Point("s", float(t), float(v)) for t, v in enumerate(values)]
    whole = scorer_for(calibrated_model)
    expected = whole.process(points).scored

    first = scorer_for(calibrated_model)
    scored = first.process(points[:120]).scored
    state = first.table.export_state("s")
    second = scorer_for(calibrated_model)
    second.table.import_state("s", state, now=0.0)
    scored += second.process(points[120:]).scored

    assert fields(scored) == fields(expected)


def test_state_import_rejects_old_format(calibrated_model):
    scorer = scorer_for(calibrated_model)
    scorer.process([Point("s", 0.0, 1.0)])
    state = bytearray(scorer.table.export_state("s"))
    state[0] = 1
    with pytest.raises(ValueError, match="format"):
        scorer.table.import_state("s", bytes(state), now=0.0)
