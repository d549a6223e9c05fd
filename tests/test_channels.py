"""The coarse and seasonal channels of the record calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stream.channels
from stream.calibration import CalibrationSpec
from stream.channels import ChannelTable, channel_alerts
from stream.detect import scorer_for
from stream.errors import ModelError
from stream.model import NormalisationSpec, default_model_path, load_model
from stream.points import Point

DAY = 86_400.0
STEP = 300.0  # seconds between points: 288 points a day
NORMALISATION = NormalisationSpec("window_median_ew_mad_asinh", 1000, 1e-6, 1e-9)


@pytest.fixture(scope="module")
def model():
    return load_model(default_model_path())


def daily_series(days: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.arange(days * 288) * STEP
    values = 10 + 5 * np.sin(2 * np.pi * times / DAY) + rng.normal(0, 0.2, len(times))
    return times, values


def series_points(times, values) -> list[Point]:
    return [Point("s", float(t), float(v)) for t, v in zip(times, values, strict=True)]


def alerts(model, times, values, **calibration) -> np.ndarray:
    scorer = scorer_for(model, calibration=calibration)
    points = series_points(times, values)
    scored = []
    for start in range(0, len(points), 500):
        scored.extend(scorer.process(points[start : start + 500]).scored)
    return np.array([p.score for p in scored])


def test_weaker_daily_swing_needs_the_channels(model):
    # Day 9 swings half as far. It starts and ends at the daily mean, so no
    # point leaves the series' range or jumps, and the point channel's 16
    # points (80 minutes) look like any other stretch of a sine.
    times, values = daily_series(10)
    day9 = slice(8 * 288, 9 * 288)
    values[day9] = 10 + 0.5 * (values[day9] - 10)
    threshold = model.metadata.alert.threshold
    without = alerts(model, times, values, coarse_points=0)
    with_channels = alerts(model, times, values, coarse_points=12, season_buckets=24)

    assert without[day9].max() < threshold
    assert with_channels[day9].max() >= threshold
    # Before the change both agree that the daily pattern is normal.
    assert with_channels[: 8 * 288].max() < threshold


def test_coarse_range_rule_flags_shift_inside_point_range(model):
    # Points spread over 10 +- 3. The shifted hour stays inside that range, so
    # the point channel's range rule keeps quiet, but its block means (about
    # 12) leave the range of the earlier block means (about 10 +- 1.3).
    rng = np.random.default_rng(8)
    times = np.arange(4 * 288) * STEP
    values = 10 + rng.uniform(-3, 3, len(times))
    shifted = slice(3 * 288, 3 * 288 + 60)
    values[shifted] = 12 + rng.uniform(-0.8, 0.8, 60)
    channels = {"coarse_points": 12, "season_buckets": 0}
    with_rule = alerts(model, times, values, **channels, coarse_range_tolerance=0.15)
    without = alerts(model, times, values, **channels, coarse_range_tolerance=None)

    assert values[shifted].max() < values[: shifted.start].max()
    assert values[shifted].min() > values[: shifted.start].min()
    # The first block of the shifted hour ends at point 3 * 288 + 12.
    assert with_rule[shifted.start + 11] == 1.0
    assert without[shifted].max() < model.metadata.alert.threshold


def test_channels_only_raise_alerts_at_block_ends(model):
    times, values = daily_series(3, seed=1)
    values[500] += 30.0
    without = alerts(model, times, values, coarse_points=0)
    with_channels = alerts(model, times, values, coarse_points=12, season_buckets=24)
    changed = np.flatnonzero(with_channels != without)
    assert len(changed) > 0
    # Point n (1-based) completes a block when n is a multiple of 12.
    assert np.all((changed + 1) % 12 == 0)
    assert np.all(with_channels >= without)


@pytest.mark.parametrize("batch", [1, 7, 288])
def test_channel_alerts_do_not_depend_on_batching(model, batch):
    times, values = daily_series(3, seed=2)
    values[700:760] += 3.0
    points = series_points(times, values)
    settings = {"coarse_points": 12, "season_buckets": 24, "warmup_points": 50}
    whole = scorer_for(model, calibration=settings).process(points).scored
    scorer = scorer_for(model, calibration=settings)
    parts = []
    for start in range(0, len(points), batch):
        parts.extend(scorer.process(points[start : start + batch]).scored)
    assert [p.score for p in parts] == [p.score for p in whole]
    assert max(p.score for p in whole) >= model.metadata.alert.threshold


def test_seasonal_residual_uses_same_hour_yesterday():
    spec = CalibrationSpec("record", 2000, warmup_points=0, coarse_points=2)
    table = ChannelTable(16, 2, 24, capacity=1)
    table.reset(0)  # as SeriesTable does when a series takes the slot
    seen = []

    def score(windows):
        seen.append(windows.copy())
        return np.zeros_like(windows)

    def feed(times, values):
        alert = np.zeros(len(values))
        channel_alerts(
            table,
            spec,
            NORMALISATION,
            score,
            np.zeros(len(values), dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            np.asarray(times, dtype=np.float64),
            np.full(len(values), 10),
            alert,
        )
        return alert

    # Blocks ending at 10:30 on day 0 and on day 1 fall into bucket 10.
    # Buckets hold offsets from the newest block mean (table.base).
    feed([10 * 3600, 10.5 * 3600], [1.0, 3.0])
    assert table.base[0] == 2.0
    assert table.season[0, 10] == 0.0
    assert table.season_count[0] == 0
    feed([DAY + 10 * 3600, DAY + 10.5 * 3600], [5.0, 7.0])
    assert table.base[0] == 6.0
    assert table.season[0, 10] == 0.0
    assert table.season_count[0] == 1
    assert table.season_scale[0] == pytest.approx(4.0)
    # The first residual only starts the scale; the second is scaled by it.
    feed([2 * DAY + 10 * 3600, 2 * DAY + 10.5 * 3600], [4.0, 4.0])
    assert table.season_count[0] == 2
    assert table.season_scale[0] == pytest.approx(3.0)
    assert len(seen) == 3
    assert table.blocks[0] == 3


def test_block_means_survive_batch_boundaries():
    spec = CalibrationSpec("record", 2000, warmup_points=0, coarse_points=3)
    table = ChannelTable(16, 3, 0, capacity=2)
    windows = []

    def score(batch):
        windows.extend(batch.tolist())
        return np.zeros_like(batch)

    def feed(slots, values):
        channel_alerts(
            table,
            spec,
            NORMALISATION,
            score,
            np.asarray(slots, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            np.zeros(len(values)),
            np.full(len(values), 10),
            np.zeros(len(values)),
        )

    feed([0, 1, 0], [1.0, 10.0, 2.0])
    assert table.blocks.tolist() == [0, 0]
    feed([0, 1, 1], [6.0, 20.0, 30.0])
    assert table.blocks.tolist() == [1, 1]
    assert table.base.tolist() == [3.0, 20.0]
    assert table.means[:, -1].tolist() == [0.0, 0.0]
    assert len(windows) == 2


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    coarse_points=st.sampled_from([2, 3, 12]),
    cuts=st.lists(st.integers(1, 399), max_size=12),
    range_tolerance=st.sampled_from([None, 0.0, 0.15]),
)
def test_many_series_do_not_depend_on_batching(
    seed, coarse_points, cuts, range_tolerance
):
    # Several series, interleaved at random, in one batch and cut into
    # batches at random: the blocks of a batch go through rounds over the
    # series or, for a series with many blocks in the batch, one sequence.
    rng = np.random.default_rng(seed)
    n = 400
    slots = rng.integers(0, 4, n)
    slots[rng.random(n) < 0.5] = 0  # series 0 completes many blocks per batch
    values = rng.normal(0, 1, n) * rng.choice([0.01, 1.0, 1e6], 4)[slots]
    times = np.empty(n)
    for slot in range(4):
        mine = slots == slot
        times[mine] = np.cumsum(rng.choice([300.0, 3600.0], mine.sum()))
    n_scored = np.empty(n, dtype=np.int64)
    for slot in range(4):
        n_scored[slots == slot] = np.arange(1, (slots == slot).sum() + 1)
    spec = CalibrationSpec(
        "record",
        120,
        warmup_points=6,
        coarse_points=coarse_points,
        season_buckets=24,
        coarse_range_tolerance=range_tolerance,
    )

    point_alerts = rng.uniform(0, 0.5, n)

    def run(bounds):
        table = ChannelTable(
            16, coarse_points, 24, capacity=4, coarse_range=range_tolerance is not None
        )
        for slot in range(4):
            table.reset(slot)
        alert = point_alerts.copy()
        for start, stop in itertools.pairwise(bounds):
            part = alert[start:stop]
            channel_alerts(
                table,
                spec,
                NORMALISATION,
                lambda windows: 1.0 / (1.0 + np.exp(-windows)),
                slots[start:stop],
                values[start:stop],
                times[start:stop],
                n_scored[start:stop],
                part,
            )
            alert[start:stop] = part
        return alert, table.snapshot()

    whole, whole_state = run([0, n])
    parts, parts_state = run(sorted({0, n, *cuts}))
    np.testing.assert_array_equal(parts, whole)
    for name, array in whole_state.items():
        np.testing.assert_array_equal(parts_state[name], array, err_msg=name)
    assert (whole > point_alerts).any()


@pytest.mark.parametrize(
    ("round_cost", "sequence_cost"),
    [(1.0, 1e9), (1e9, 1.0)],
    ids=["rounds only", "sequences only"],
)
def test_block_routing_keeps_alerts(model, monkeypatch, round_cost, sequence_cost):
    # Four series interleaved: one point per batch leaves a single block per
    # batch, and a batch of 700 points completes many blocks per series.
    points = []
    for seed in range(4):
        times, values = daily_series(2, seed=seed)
        values[300 + 40 * seed : 320 + 40 * seed] += 6.0
        points += [
            Point(f"s{seed}", float(t), float(v))
            for t, v in zip(times, values, strict=True)
        ]
    points.sort(key=lambda p: p.timestamp)
    calibration = {"coarse_points": 3, "season_buckets": 24}

    def scores(batch):
        scorer = scorer_for(model, calibration=calibration)
        scored = []
        for start in range(0, len(points), batch):
            scored.extend(scorer.process(points[start : start + batch]).scored)
        return [(p.series, p.timestamp, p.score) for p in scored]

    expected = scores(1)
    monkeypatch.setattr(stream.channels, "ROUND_COST", round_cost)
    monkeypatch.setattr(stream.channels, "SEQUENCE_COST", sequence_cost)
    assert scores(700) == expected


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_extreme_values_keep_alerts_finite(model):
    times, values = daily_series(3, seed=3)
    values[300:340] = 1e300
    values[340:380] = -1e300
    values[380:400] = 1e-300
    scores = alerts(model, times, values, coarse_points=12, season_buckets=24)
    assert np.isfinite(scores).all()
    assert scores.min() >= 0.0
    assert scores.max() <= 1.0
    # Two days later the series scores normal points low again.
    assert scores[-100:].max() < model.metadata.alert.threshold


def test_offsets_keep_large_value_precision():
    # Without the relative floor, the normalised coarse windows of a series and
    # of the same series shifted by 1e9 must match: float32 alone resolves 1e9
    # only to 64.
    spec = CalibrationSpec("record", 2000, warmup_points=0, coarse_points=4)
    normalisation = NormalisationSpec("window_median_ew_mad_asinh", 1000, 0.0, 1e-9)
    times, values = daily_series(1, seed=5)

    def coarse_windows(offset: float) -> np.ndarray:
        table = ChannelTable(16, 4, 24, capacity=1)
        table.reset(0)
        windows = []

        def score(batch):
            windows.append(batch.copy())
            return np.zeros_like(batch)

        channel_alerts(
            table,
            spec,
            normalisation,
            score,
            np.zeros(len(values), dtype=np.int64),
            values + offset,
            times,
            np.full(len(values), 10),
            np.zeros(len(values)),
        )
        return np.concatenate(windows)

    np.testing.assert_allclose(coarse_windows(1e9), coarse_windows(0.0), atol=1e-4)


CHANNELS = {"coarse_points": 12, "season_buckets": 24}


def test_format_two_state_restores_fresh_channels(model):
    times, values = daily_series(6)
    points = series_points(times, values)
    cut = 4 * 288
    plain = scorer_for(model, calibration={"coarse_points": 0})
    plain.process(points[:cut])
    old_format = bytearray(plain.table.export_state("s"))
    old_format[0] = 2

    scorer = scorer_for(model, calibration=CHANNELS)
    scorer.process(points[:100])
    scorer.table.import_state("s", bytes(old_format), now=0.0)
    slot = scorer.table.slot_of["s"]
    assert scorer.table.count[slot] == cut
    assert scorer.table.channels.blocks[slot] == 0
    assert np.isnan(scorer.table.channels.season[slot]).all()
    # The channels start afresh with their own warm-up, so the calm series
    # raises no alert from an empty record.
    resumed = scorer.process(points[cut:]).scored
    threshold = model.metadata.alert.threshold
    assert max(p.score for p in resumed) < threshold


def test_other_channel_settings_dropped(model):
    times, values = daily_series(2)
    points = series_points(times, values)
    writer = scorer_for(model, calibration=CHANNELS)
    writer.process(points[:307])
    state = writer.table.export_state("s")
    reader = scorer_for(model, calibration={"coarse_points": 6, "season_buckets": 24})
    reader.table.import_state("s", state, now=0.0)
    slot = reader.table.slot_of["s"]
    assert reader.table.count[slot] == 307
    assert reader.table.channels.block_points[slot] == 0
    assert reader.table.channels.blocks[slot] == 0


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (32, "<q", 12, "block points 12"),
        (40, "<q", 2**31, "blocks 2147483648"),
        (56, "<d", 1e300, "coarse record"),
        (72, "<q", -1, "residual count -1"),
        (16, "<d", float("nan"), "block sum nan"),
        (16, "<d", 1e305, "block sum 1e\\+305"),
        (24, "<d", -1e301, "newest mean -1e\\+301"),
        (88, "<f", 3e38, "block means beyond the offset limit"),
        (88 + 4 * 16, "<f", -3e38, "seasonal means beyond the offset limit"),
        (88 + 4 * 40, "<d", float("nan"), "block mean range nan"),
        (88 + 4 * 40 + 8, "<d", -1e301, "block mean range"),
        (88 + 4 * 40, "<d", 1e300, "lowest block mean 1e\\+300 above the highest"),
    ],
)
def test_invalid_channel_state_rejected(model, offset, fmt, value, message):
    import struct

    times, values = daily_series(1)
    points = series_points(times, values)
    scorer = scorer_for(model, calibration=CHANNELS)
    scorer.process(points[:100])
    state = bytearray(scorer.table.export_state("s"))
    channel_start = len(state) - scorer.table.channels.state_size
    struct.pack_into(fmt, state, channel_start + offset, value)

    other = scorer_for(model, calibration=CHANNELS)
    with pytest.raises(ValueError, match=message):
        other.table.import_state("s", bytes(state), now=0.0)
    assert "s" not in other.table.slot_of


@pytest.mark.parametrize(
    ("round_cost", "sequence_cost"),
    [(1.0, 1e9), (1e9, 1.0)],
    ids=["rounds", "sequences"],
)
def test_counters_stop_at_the_int32_maximum(
    model, monkeypatch, round_cost, sequence_cost
):
    import struct

    times, values = daily_series(3, seed=7)
    points = series_points(times, values)
    writer = scorer_for(model, calibration=CHANNELS)
    writer.process(points[:400])
    state = bytearray(writer.table.export_state("s"))
    channel_start = len(state) - writer.table.channels.state_size
    struct.pack_into("<q", state, channel_start + 40, 2**31 - 2)
    struct.pack_into("<q", state, channel_start + 72, 2**31 - 2)

    def resume(round_cost, sequence_cost):
        monkeypatch.setattr(stream.channels, "ROUND_COST", round_cost)
        monkeypatch.setattr(stream.channels, "SEQUENCE_COST", sequence_cost)
        reader = scorer_for(model, calibration=CHANNELS)
        reader.table.import_state("s", bytes(state), now=0.0)
        scored = reader.process(points[400:]).scored
        return reader, [p.score for p in scored]

    reader, scores = resume(round_cost, sequence_cost)
    slot = reader.table.slot_of["s"]
    assert reader.table.channels.blocks[slot] == 2**31 - 1
    assert reader.table.channels.season_count[slot] == 2**31 - 1
    assert np.isfinite(scores).all()
    # Both ways of processing the blocks agree, and the saturated state
    # exports and imports again.
    _, other_scores = resume(sequence_cost, round_cost)
    assert scores == other_scores
    again = scorer_for(model, calibration=CHANNELS)
    again.table.import_state("s", reader.table.export_state("s"), now=0.0)
    assert again.table.channels.blocks[again.table.slot_of["s"]] == 2**31 - 1


def test_range_rule_state_restores(model):
    times, values = daily_series(3, seed=9)
    points = series_points(times, values)
    cut = 2 * 288 + 5
    straight = scorer_for(model, calibration=CHANNELS)
    expected = straight.process(points).scored[cut:]
    writer = scorer_for(model, calibration=CHANNELS)
    writer.process(points[:cut])
    state = writer.table.export_state("s")
    reader = scorer_for(model, calibration=CHANNELS)
    reader.table.import_state("s", state, now=0.0)
    slot = reader.table.slot_of["s"]
    block_means = values[: (cut // 12) * 12].reshape(-1, 12).mean(axis=1)

    assert reader.table.channels.coarse_range
    assert reader.table.channels.low[slot] == pytest.approx(block_means.min())
    assert reader.table.channels.high[slot] == pytest.approx(block_means.max())
    resumed = reader.process(points[cut:]).scored
    assert [p.score for p in resumed] == [p.score for p in expected]


@pytest.mark.parametrize(
    ("blocks", "newest", "low", "high", "message"),
    [
        (5, 9.7, -5.0, -4.0, "newest mean 9.7 outside the block mean range"),
        (0, 0.0, 1.0, 2.0, "block mean range 1.0 to 2.0 before any block"),
    ],
)
def test_range_state_must_match_block_means(model, blocks, newest, low, high, message):
    import struct

    scorer = scorer_for(model, calibration=CHANNELS)
    channels = scorer.table.channels
    state = bytearray(channels.export_state(0))
    struct.pack_into("<d", state, 24, newest)
    struct.pack_into("<q", state, 40, blocks)
    struct.pack_into("<dd", state, len(state) - 16, low, high)
    with pytest.raises(ValueError, match=message):
        channels.decode_state(bytes(state))


def test_state_without_range_restores_fresh_channels(model):
    times, values = daily_series(2)
    points = series_points(times, values)
    writer = scorer_for(model, calibration={**CHANNELS, "coarse_range_tolerance": None})
    writer.process(points[:307])
    reader = scorer_for(model, calibration={**CHANNELS, "coarse_range_tolerance": 0.1})
    reader.table.import_state("s", writer.table.export_state("s"), now=0.0)
    slot = reader.table.slot_of["s"]
    assert reader.table.count[slot] == 307
    assert reader.table.channels.blocks[slot] == 0


def test_flush_keeps_later_scores(model):
    times, values = daily_series(3, seed=6)
    points = series_points(times, values)
    straight = scorer_for(model, lag_points=5, calibration=CHANNELS)
    expected = straight.process(points).scored
    flushed = scorer_for(model, lag_points=5, calibration=CHANNELS)
    scored = flushed.process(points[:1003]).scored
    flushed.flush()
    scored += flushed.process(points[1003:]).scored
    assert [p.score for p in scored] == [p.score for p in expected]
    assert [p.publish for p in scored] == [p.publish for p in expected]


def test_reload_refuses_other_channel_settings(model, tmp_path):
    import json
    import shutil

    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(default_model_path().parent / name, tmp_path / name)
    metadata = json.loads((tmp_path / "model.onnx.json").read_text())
    metadata["alert"]["calibration"]["coarse_points"] = 24
    (tmp_path / "model.onnx.json").write_text(json.dumps(metadata))
    other = load_model(tmp_path / "model.onnx.json")
    scorer = scorer_for(model, calibration={"coarse_points": 12})
    with pytest.raises(ValueError, match="coarse or seasonal channels"):
        scorer.replace_model(other)


def test_reload_refuses_switching_range_rule(model, tmp_path):
    import json
    import shutil

    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(default_model_path().parent / name, tmp_path / name)
    metadata = json.loads((tmp_path / "model.onnx.json").read_text())
    metadata["alert"]["calibration"]["coarse_range_tolerance"] = None
    (tmp_path / "model.onnx.json").write_text(json.dumps(metadata))
    other = load_model(tmp_path / "model.onnx.json")
    scorer = scorer_for(model, calibration={"coarse_range_tolerance": 0.15})
    with pytest.raises(ValueError, match="coarse or seasonal channels"):
        scorer.replace_model(other)
    # Another tolerance keeps the state's layout, so it is accepted.
    metadata["alert"]["calibration"]["coarse_range_tolerance"] = 0.3
    (tmp_path / "model.onnx.json").write_text(json.dumps(metadata))
    scorer.replace_model(load_model(tmp_path / "model.onnx.json"))
    assert scorer.calibration.coarse_range_tolerance == 0.3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("coarse_points", 1),
        ("coarse_points", -12),
        ("coarse_points", 2.5),
        ("season_buckets", 5000),
        ("season_buckets", True),
        ("horizon_points", 0),
        ("warmup_points", -1),
        ("range_tolerance", -0.1),
        ("range_tolerance", float("inf")),
        ("coarse_range_tolerance", -0.1),
        ("coarse_range_tolerance", "0.1"),
        ("coarse_range_tolerance", float("nan")),
        ("channel_horizon_points", 0),
        ("channel_horizon_points", 2.5),
        ("channel_horizon_points", 10**400),
        ("horizon_points", 10**10),
        ("warmup_points", 10**400),
        ("coarse_range_tolerance", 10**400),
        ("min_std", 10**400),
    ],
)
def test_invalid_channel_settings_name_the_value(name, value):
    with pytest.raises(ModelError, match=f"{name}={value!r}"):
        CalibrationSpec.from_metadata({"method": "record", name: value})


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
        min_size=1,
        max_size=80,
    )
)
def test_any_finite_values_give_alerts_in_range(model, values):
    times = np.arange(len(values)) * STEP
    scores = alerts(
        model,
        times,
        np.array(values),
        coarse_points=2,
        season_buckets=24,
        warmup_points=0,
    )
    assert np.isfinite(scores).all()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
