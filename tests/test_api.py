"""Tests of the Python API (``stream.api``) against the service's scorer."""

from __future__ import annotations

import doctest
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from model_factory import WINDOW, write_model

import stream
import stream.api
from stream.api import Detector, to_epoch_seconds
from stream.decode import MAX_SERIES_CHARS, REASON_INVALID_SERIES
from stream.detect import detect, scorer_for
from stream.errors import InvalidPointError, ModelError
from stream.model import load_model
from stream.points import (
    REASON_DUPLICATE_TIMESTAMP,
    REASON_INVALID_TIMESTAMP,
    REASON_INVALID_VALUE,
    REASON_NON_FINITE_VALUE,
    REASON_TIMESTAMP_OUT_OF_RANGE,
    REASON_VALUE_OUT_OF_RANGE,
    Point,
)

START = 1_700_000_000
STEP = 300


def synthetic_series(n=600, spike=450, seed=0):
    rng = np.random.default_rng(seed)
    timestamps = [START + STEP * i for i in range(n)]
    values = 20 + 3 * np.sin(2 * np.pi * np.arange(n) / 96) + rng.normal(0, 0.3, n)
    values[spike] += 6
    return timestamps, values.tolist()


@pytest.fixture(scope="module")
def detector():
    return Detector.load()


def test_detector_importable_from_package():
    assert stream.Detector is Detector


def test_doctest_examples_pass():
    failures, attempted = doctest.testmod(stream.api, verbose=False)
    assert attempted > 0
    assert failures == 0


def test_detect_equals_stream_detect(detector):
    timestamps, values = synthetic_series()
    result = detector.detect(timestamps, values, top_n=5)
    expected = detect(load_model(), timestamps, values)
    assert result.points == expected.points
    assert result.top == expected.top(5)
    assert result.threshold == expected.threshold
    assert result.model_version == expected.model_version
    assert result.anomalies == [p for p in expected.points if p.is_anomaly]


def test_detect_top_n_length(detector):
    timestamps, values = synthetic_series()
    assert len(detector.detect(timestamps, values, top_n=3).top) == 3
    assert detector.detect(timestamps, values, top_n=0).top == []


def test_detect_accepts_timestamp_types(detector):
    timestamps, values = synthetic_series(n=200, spike=150)
    expected = detector.detect(timestamps, values).points
    as_datetimes = [datetime.fromtimestamp(t, tz=UTC) for t in timestamps]
    as_strings = [d.strftime("%Y-%m-%d %H:%M:%S") for d in as_datetimes]
    as_numpy = np.array(timestamps, dtype="datetime64[s]")
    for variant in (as_datetimes, as_strings, list(as_numpy), np.array(timestamps)):
        assert detector.detect(variant, values).points == expected


def test_detect_lists_rejected_points(detector):
    timestamps, values = synthetic_series(n=200, spike=150)
    timestamps[50] = timestamps[49]
    values[60] = math.nan
    result = detector.detect(timestamps, values)
    assert [r.input_index for r in result.rejected] == [50, 60]
    assert [r.reason for r in result.rejected] == [
        REASON_DUPLICATE_TIMESTAMP,
        REASON_NON_FINITE_VALUE,
    ]
    assert len(result.points) == 198


def test_detect_rejects_length_mismatch(detector):
    with pytest.raises(ValueError, match="differ in length"):
        detector.detect([START, START + 60], [1.0])


def test_stream_equals_scorer_point_by_point(detector):
    timestamps, values = synthetic_series()
    live = detector.stream()
    scorer = scorer_for(load_model())
    for t, v in zip(timestamps, values, strict=True):
        got = live.update("a", t, v)
        expected = scorer.process([Point("a", float(t), float(v))]).scored
        assert got == expected


def test_stream_matches_batched_scores(detector):
    timestamps, values = synthetic_series()
    live = detector.stream()
    scored = [
        p
        for t, v in zip(timestamps, values, strict=True)
        for p in live.update("a", t, v)
    ]
    batched = detector.detect(timestamps, values).points
    assert [p.timestamp for p in scored] == [p.timestamp for p in batched]
    np.testing.assert_allclose(
        [p.score for p in scored], [p.score for p in batched], rtol=0, atol=1e-6
    )
    assert [p.is_anomaly for p in scored] == [p.is_anomaly for p in batched]


def test_stream_keeps_series_apart(detector):
    timestamps, values = synthetic_series(n=300, spike=250)
    together = detector.stream()
    alone = detector.stream()
    for i, (t, v) in enumerate(zip(timestamps, values, strict=True)):
        together.update("other", t, 100.0 + (i % 7))
        assert together.update("a", t, v) == alone.update("a", t, v)


def test_stream_rejects_repeated_timestamp(detector):
    live = detector.stream()
    live.update("a", START, 1.0)
    live.update("a", START + 60, 2.0)
    with pytest.raises(InvalidPointError) as raised:
        live.update("a", START + 60, 3.0)
    assert raised.value.reason == REASON_DUPLICATE_TIMESTAMP
    reference = detector.stream()
    reference.update("a", START, 1.0)
    reference.update("a", START + 60, 2.0)
    assert live.update("a", START + 120, 4.0) == reference.update("a", START + 120, 4.0)


def test_stream_with_lag_returns_earlier_points(tmp_path):
    lag = 3
    model_path = write_model(tmp_path, np.linspace(0.0, 0.5, WINDOW), lag_points=lag)
    live = Detector.load(model_path).stream()
    scorer = scorer_for(load_model(model_path))
    for i in range(20):
        got = live.update("a", START + i, float(i % 4))
        expected = scorer.process([Point("a", float(START + i), float(i % 4))]).scored
        assert got == expected
        if i < lag:
            assert got == []
        else:
            assert [p.timestamp for p in got] == [START + i - lag]
    assert [p.timestamp for p in live.flush()] == [START + 17, START + 18, START + 19]


def test_overrides_apply(tmp_path):
    model_path = write_model(tmp_path, threshold=0.5)
    detector = Detector.load(model_path, threshold=0.01, lag_points=2)
    assert detector.threshold == 0.01
    assert detector.lag_points == 2
    assert detector.stream().threshold == 0.01


def test_load_missing_model(tmp_path):
    with pytest.raises(ModelError, match="model metadata not found"):
        Detector.load(tmp_path / "model.onnx.json")


def test_to_epoch_seconds_variants():
    expected = 1_397_114_100.0
    assert to_epoch_seconds(expected) == expected
    assert to_epoch_seconds("2014-04-10 07:15:00") == expected
    assert to_epoch_seconds("2014-04-10T09:15:00+02:00") == expected
    assert to_epoch_seconds(datetime(2014, 4, 10, 7, 15)) == expected
    assert to_epoch_seconds(np.datetime64("2014-04-10T07:15:00")) == expected
    with pytest.raises(InvalidPointError):
        to_epoch_seconds(np.datetime64("NaT"))
    with pytest.raises(InvalidPointError):
        to_epoch_seconds("yesterday")


@pytest.mark.parametrize(
    ("value", "reason", "fragment"),
    [
        ("abc", REASON_INVALID_VALUE, "invalid value 'abc': expected a number"),
        (None, REASON_INVALID_VALUE, "invalid value None: expected a number"),
        (True, REASON_INVALID_VALUE, "invalid value True: expected a number"),
        ([1.0], REASON_INVALID_VALUE, "invalid value [1.0]: expected a number"),
        ("", REASON_INVALID_VALUE, "invalid value ''"),
        (float("nan"), REASON_NON_FINITE_VALUE, "value nan is not finite"),
        (np.float64("-inf"), REASON_NON_FINITE_VALUE, "value -inf is not finite"),
        (1e301, REASON_VALUE_OUT_OF_RANGE, "value 1e+301 is beyond"),
    ],
)
def test_stream_rejects_invalid_value(detector, value, reason, fragment):
    live = detector.stream()
    live.update("a", START, 1.0)
    with pytest.raises(InvalidPointError) as raised:
        live.update("a", START + 60, value)
    assert raised.value.reason == reason
    assert fragment in str(raised.value)
    reference = detector.stream()
    reference.update("a", START, 1.0)
    assert live.update("a", START + 60, 2.0) == reference.update("a", START + 60, 2.0)


@pytest.mark.parametrize(
    ("timestamp", "reason", "fragment"),
    [
        (None, REASON_INVALID_TIMESTAMP, "invalid timestamp None"),
        ("yesterday", REASON_INVALID_TIMESTAMP, "invalid timestamp 'yesterday'"),
        (np.datetime64("NaT"), REASON_INVALID_TIMESTAMP, "NaT"),
        (
            np.datetime64("10000-01-01T00:00:00"),
            REASON_TIMESTAMP_OUT_OF_RANGE,
            "outside years 1 to 9999",
        ),
        (
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
            REASON_TIMESTAMP_OUT_OF_RANGE,
            "outside years 1 to 9999",
        ),
    ],
)
def test_stream_rejects_invalid_timestamp(detector, timestamp, reason, fragment):
    with pytest.raises(InvalidPointError) as raised:
        detector.stream().update("a", timestamp, 1.0)
    assert raised.value.reason == reason
    assert fragment in str(raised.value)


@pytest.mark.parametrize("series", [None, "", 7, "s" * (MAX_SERIES_CHARS + 1)])
def test_stream_rejects_invalid_series(detector, series):
    with pytest.raises(InvalidPointError) as raised:
        detector.stream().update(series, START, 1.0)
    assert raised.value.reason == REASON_INVALID_SERIES
    assert "invalid series" in str(raised.value)


def test_stream_accepts_numpy_and_string_values(detector):
    live = detector.stream()
    reference = detector.stream()
    for i, value in enumerate([np.float32(1.5), np.int64(2), "2.5", 3]):
        expected = reference.update("a", START + 60 * i, float(value))
        assert live.update("a", START + 60 * i, value) == expected


def test_detect_names_invalid_point(detector):
    timestamps, values = synthetic_series(n=10, spike=5)
    values[4] = "abc"
    with pytest.raises(InvalidPointError) as raised:
        detector.detect(timestamps, values)
    assert raised.value.reason == REASON_INVALID_VALUE
    assert str(raised.value).startswith("point 4: invalid value 'abc'")


def test_detect_names_invalid_timestamp(detector):
    timestamps, values = synthetic_series(n=10, spike=5)
    timestamps[7] = None
    with pytest.raises(InvalidPointError) as raised:
        detector.detect(timestamps, values)
    assert raised.value.reason == REASON_INVALID_TIMESTAMP
    assert str(raised.value).startswith("point 7: invalid timestamp None")


def test_detect_rejects_invalid_series(detector):
    timestamps, values = synthetic_series(n=10, spike=5)
    with pytest.raises(InvalidPointError, match="invalid series ''"):
        detector.detect(timestamps, values, series="")


def test_detect_accepts_float32_values(detector):
    timestamps, values = synthetic_series(n=200, spike=150)
    narrow = np.asarray(values, dtype=np.float32)
    expected = detector.detect(timestamps, [float(v) for v in narrow]).points
    assert detector.detect(timestamps, narrow).points == expected


@pytest.mark.parametrize("value", ["1_000", "١٢", "１"])
def test_stream_rejects_non_ascii_and_underscored_numbers(value):
    live = Detector.load().stream()
    with pytest.raises(InvalidPointError, match="invalid value"):
        live.update("s", 1.0, value)


def test_stream_rejects_unencodable_series():
    live = Detector.load().stream()
    with pytest.raises(InvalidPointError, match="UTF-8"):
        live.update("\ud800", 1.0, 1.0)


@pytest.mark.parametrize("threshold", [2.0, -0.1, float("nan"), True])
def test_load_rejects_threshold_outside_unit_interval(threshold):
    with pytest.raises(ValueError, match="invalid threshold"):
        Detector.load(threshold=threshold)
