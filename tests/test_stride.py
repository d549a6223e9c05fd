"""Tests of the scorer's stride: only every k-th window of a series is scored."""

from __future__ import annotations

import numpy as np
import pytest
from model_factory import WINDOW, write_model

from stream.detect import scorer_for
from stream.model import load_model
from stream.points import Point

# Position j of every window scores RAMP[j] whatever the input.
RAMP = np.linspace(0.0, 0.15, WINDOW).astype(np.float32)


@pytest.fixture(scope="module")
def ramp_model(tmp_path_factory):
    path = write_model(tmp_path_factory.mktemp("ramp"), RAMP, threshold=1.0)
    return load_model(path)


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory):
    """Window scores follow the normalised inputs, so they differ point by point."""
    path = write_model(
        tmp_path_factory.mktemp("echo"),
        np.linspace(-0.2, 0.3, WINDOW),
        input_gain=0.7,
        threshold=0.5,
    )
    return load_model(path)


def wavy_series(seed: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    values = (1 + seed % 5) * np.sin(0.3 * t + seed) + rng.normal(0, 0.2, length)
    values[rng.integers(0, length, 3)] += 5.0
    return values + 10.0 * seed


def fields(points):
    return [
        (p.series, p.timestamp, p.value, p.window_score, p.score, p.publish)
        for p in points
    ]


def expected_ramp_score(point: int, lag: int, stride: int, newest: int) -> float:
    """Mean of RAMP over the scored windows that end at points point..point + lag.

    Points and windows are numbered from 1. The window ending at point c is
    scored when c is a multiple of ``stride``, or when a flush scores the newest
    window for a point still waiting for its last windows.
    """
    last = min(point + lag, newest)
    scores = [
        float(RAMP[WINDOW - 1 - (c - point)])
        for c in range(point, last + 1)
        if c % stride == 0 or (c == newest and last < point + lag)
    ]
    return sum(scores) / len(scores)


@pytest.mark.parametrize("length", [5, 61])
@pytest.mark.parametrize("stride", [2, 3, 4, 16])
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_stride_ramp_scores(ramp_model, stride, batch_size, length):
    scorer = scorer_for(ramp_model, stride=stride)
    lag = scorer.settings.lag_points
    points = [Point("s", 1000.0 + t, float(t % 7)) for t in range(length)]
    scored = []
    for start in range(0, length, batch_size):
        scored.extend(scorer.process(points[start : start + batch_size]).scored)
    scored.extend(scorer.flush())
    assert [p.timestamp for p in scored] == [p.timestamp for p in points]
    for number, point in enumerate(scored, start=1):
        expected = expected_ramp_score(number, lag, stride, newest=length)
        assert point.window_score == pytest.approx(expected, abs=1e-7), number


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_stride_windows_scored(ramp_model, stride):
    scorer = scorer_for(ramp_model, stride=stride)
    points = [Point("s", float(t), 1.0) for t in range(240)]
    windows = sum(
        scorer.process(points[start : start + 7]).windows_scored
        for start in range(0, 240, 7)
    )
    assert windows == 240 // stride


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("batch_size", [1, 3, 16, 100, 1000])
def test_stride_batch_size_invariant(echo_model, stride, batch_size):
    values = wavy_series(3, 300)
    points = [Point("s", float(t), float(v)) for t, v in enumerate(values)]
    whole = scorer_for(echo_model, stride=stride)
    expected = whole.process(points).scored + whole.flush()
    scorer = scorer_for(echo_model, stride=stride)
    scored = []
    for start in range(0, len(points), batch_size):
        scored.extend(scorer.process(points[start : start + batch_size]).scored)
    scored.extend(scorer.flush())
    assert len(scored) == 300
    assert fields(scored) == fields(expected)


def test_stride_interleaved_series_alone(echo_model):
    """Series interleaved in shared batches score as each series scored alone."""
    series = {f"s{i}": wavy_series(i, 40) for i in range(30)}
    scorer = scorer_for(echo_model, stride=3)
    alone = {}
    for name, values in series.items():
        single = scorer_for(echo_model, stride=3)
        points = [Point(name, float(t), float(v)) for t, v in enumerate(values)]
        alone[name] = fields(single.process(points).scored + single.flush())
    interleaved = [
        Point(name, float(t), float(values[t]))
        for t in range(40)
        for name, values in series.items()
    ]
    scored = []
    for start in range(0, len(interleaved), 97):
        scored.extend(scorer.process(interleaved[start : start + 97]).scored)
    scored.extend(scorer.flush())
    for name in series:
        assert fields(p for p in scored if p.series == name) == alone[name], name


def test_stride_one_unchanged(echo_model):
    values = wavy_series(1, 200)
    points = [Point("s", float(t), float(v)) for t, v in enumerate(values)]
    default = scorer_for(echo_model)
    strided = scorer_for(echo_model, stride=1)
    assert fields(strided.process(points).scored) == fields(
        default.process(points).scored
    )


def test_stride_raises_lag(ramp_model):
    assert scorer_for(ramp_model, stride=4).settings.lag_points == 3


def test_stride_keeps_larger_lag(ramp_model):
    assert scorer_for(ramp_model, stride=2, lag_points=5).settings.lag_points == 5


@pytest.mark.parametrize("stride", [0, -1, WINDOW + 1])
def test_stride_out_of_range(ramp_model, stride):
    with pytest.raises(ValueError, match="stride"):
        scorer_for(ramp_model, stride=stride)


def test_stride_state_round_trip(echo_model):
    """A series moved to another scorer by its exported state scores as if it stayed."""
    values = wavy_series(2, 100)
    points = [Point("s", float(t), float(v)) for t, v in enumerate(values)]
    reference = scorer_for(echo_model, stride=3)
    expected = reference.process(points).scored
    first = scorer_for(echo_model, stride=3)
    scored = first.process(points[:47]).scored
    second = scorer_for(echo_model, stride=3)
    second.table.import_state("s", first.table.export_state("s"), now=0.0)
    scored += second.process(points[47:]).scored
    assert fields(scored) == fields(expected)
