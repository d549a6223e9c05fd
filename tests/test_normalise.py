"""Tests of the causal window normalisation, alone and inside the scorer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from model_factory import WINDOW, write_model

from stream.detect import scorer_for
from stream.model import load_model
from stream.normalise import normalise_windows
from stream.points import Point

EPS_REL = 1e-6
EPS_ABS = 1e-9

# asinh(16) = ln(16 + sqrt(16^2 + 1)): a point 1 away from the median of a
# window whose spread is 1/16.
ASINH_16 = math.log(16 + math.sqrt(257))


def normalise_one(
    window: list[float],
    scale_prev: float = 0.0,
    n_points: float = 1.0,
    horizon_points: int = 1000,
) -> tuple[np.ndarray, float]:
    inputs, scale = normalise_windows(
        np.array([window], dtype=np.float64),
        np.array([scale_prev]),
        np.array([n_points]),
        horizon_points,
        EPS_REL,
        EPS_ABS,
    )
    return inputs[0], float(scale[0])


def spike_window(base: float, last: float) -> list[float]:
    return [base] * (WINDOW - 1) + [last]


@pytest.mark.parametrize("level", [0.0, 7.0, -3.5, 1e12])
def test_constant_window_gives_zeros(level):
    inputs, scale = normalise_one([level] * WINDOW)
    assert inputs.tolist() == [0.0] * WINDOW
    assert scale == 0.0


def test_inputs_are_float32():
    inputs, _ = normalise_one(spike_window(0.0, 1.0))
    assert inputs.dtype == np.float32


@pytest.mark.parametrize(
    ("window", "expected_last", "expected_scale"),
    [
        # median 0, spread 1/16, so the spike is 16 spreads away
        (spike_window(0.0, 1.0), ASINH_16, 1 / 16),
        # negative values: median -5, spread 2/16
        (spike_window(-5.0, -3.0), ASINH_16, 2 / 16),
        (spike_window(-5.0, -7.0), -ASINH_16, 2 / 16),
    ],
)
def test_spike_value(window, expected_last, expected_scale):
    inputs, scale = normalise_one(window)
    assert inputs[-1] == pytest.approx(expected_last, rel=1e-6)
    assert inputs[:-1].tolist() == [0.0] * (WINDOW - 1)
    assert scale == pytest.approx(expected_scale, rel=1e-12)


@pytest.mark.parametrize(
    ("window", "expected_scale"),
    [
        # spread 1e3/16 = 62.5 is below eps_rel * |median| = 1e6
        (spike_window(1e12, 1e12 + 1e3), 62.5),
        # spread 1e-12/16 is below eps_abs = 1e-9
        (spike_window(0.0, 1e-12), 1e-12 / 16),
        # eps_rel * 1e-12 is far below eps_abs, so eps_abs applies
        (spike_window(1e-12, 2e-12), 1e-12 / 16),
    ],
)
def test_floor_applies(window, expected_scale):
    inputs, scale = normalise_one(window)
    # Each deviation is 1e-3 of its floor: 1e3 / 1e6 and 1e-12 / 1e-9.
    assert inputs[-1] == pytest.approx(math.asinh(1e-3), rel=1e-6)
    assert inputs[:-1].tolist() == [0.0] * (WINDOW - 1)
    # The stored scale is the unfloored running spread.
    assert scale == pytest.approx(expected_scale, rel=1e-9)


def test_floor_ignored_when_spread_larger():
    inputs, _ = normalise_one(spike_window(1e12, 1e12 + 1.6e8))
    # spread 1e7 is above the floor 1e6: the spike is 16 spreads away
    assert inputs[-1] == pytest.approx(ASINH_16, rel=1e-6)


def test_scale_running_mean_then_exponential():
    # Spreads 1, 2, ..., 6 with horizon 4: the first 4 scales are running means
    # (1, 1.5, 2, 2.5), then each step moves a quarter of the way:
    # 0.75 * 2.5 + 5 / 4 = 3.125 and 0.75 * 3.125 + 6 / 4 = 3.84375.
    expected = [1.0, 1.5, 2.0, 2.5, 3.125, 3.84375]
    scale = 0.0
    for n, spread in enumerate(range(1, 7), start=1):
        _, scale = normalise_one(
            spike_window(0.0, 16.0 * spread), scale, n, horizon_points=4
        )
        assert scale == pytest.approx(expected[n - 1], rel=1e-12)


def test_previous_scale_used_over_spread():
    # At n = 2 with a previous scale of 1.0 and a spread of 1/16, the scale is
    # (1.0 + 1/16) / 2 = 17/32, so the spike of 1 gives asinh(32/17).
    inputs, scale = normalise_one(spike_window(0.0, 1.0), 1.0, 2.0)
    assert scale == pytest.approx(17 / 32, rel=1e-12)
    assert inputs[-1] == pytest.approx(math.asinh(32 / 17), rel=1e-6)


def test_rows_independent():
    rows = [spike_window(0.0, 1.0), [5.0] * WINDOW, spike_window(-5.0, -7.0)]
    inputs, scales = normalise_windows(
        np.array(rows),
        np.array([0.0, 0.3, 2.0]),
        np.array([1.0, 4.0, 9.0]),
        1000,
        EPS_REL,
        EPS_ABS,
    )
    for k, row in enumerate(rows):
        alone, scale = normalise_one(
            row, [0.0, 0.3, 2.0][k], [1.0, 4.0, 9.0][k], horizon_points=1000
        )
        assert inputs[k].tolist() == alone.tolist()
        assert scales[k] == scale


# The scorer: a model with input_gain=1 and position scores 0 returns its inputs,
# so with lag 0 and no calibration the score of a point is its normalised value.


def echo_model(directory, horizon_points=None):
    path = write_model(
        directory, position_scores=np.zeros(WINDOW), input_gain=1.0, threshold=100.0
    )
    if horizon_points is not None:
        metadata = json.loads(path.read_text())
        metadata["normalisation"]["horizon_points"] = horizon_points
        path.write_text(json.dumps(metadata))
    return load_model(path)


def record_windows(model) -> list[np.ndarray]:
    """Replace ``model.score`` by a wrapper that keeps every batch it receives."""
    received: list[np.ndarray] = []
    score = model.score

    def recording(windows: np.ndarray) -> np.ndarray:
        received.append(windows.copy())
        return score(windows)

    model.score = recording
    return received


def feed(scorer, values, batch_size):
    """Process ``values`` as one series, ``batch_size`` points per call."""
    points = [Point("s", float(t), value) for t, value in enumerate(values)]
    scored = []
    for start in range(0, len(points), batch_size):
        scored.extend(scorer.process(points[start : start + batch_size]).scored)
    return scored


# One point per call, two per call, and the whole series in one call.
BATCH_SIZES = [1, 2, 100]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_scorer_one_point(tmp_path, batch_size):
    model = echo_model(tmp_path)
    received = record_windows(model)
    scored = feed(scorer_for(model), [42.0], batch_size)
    assert received[0].tolist() == [[0.0] * WINDOW]
    assert scored[0].window_score == 0.0


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_scorer_short_series_windows(tmp_path, batch_size):
    model = echo_model(tmp_path)
    received = record_windows(model)
    scored = feed(scorer_for(model), [1.0, 2.0, 4.0], batch_size)
    windows = np.concatenate(received)
    # Windows [1]*15 + [2] and [1]*14 + [2, 4] (left-padded with the first
    # value) have median 1 and spreads 1/16 and 4/16. The scales are the running
    # means (0 + 1/16) / 2 = 1/32 and (0 + 1/16 + 4/16) / 3 = 5/48.
    assert windows[0].tolist() == [0.0] * WINDOW
    assert windows[1][:-1].tolist() == [0.0] * (WINDOW - 1)
    assert windows[1][-1] == pytest.approx(math.asinh(32.0), rel=1e-6)
    assert windows[2][:-2].tolist() == [0.0] * (WINDOW - 2)
    assert windows[2][-2] == pytest.approx(math.asinh(1 / (5 / 48)), rel=1e-6)
    assert windows[2][-1] == pytest.approx(math.asinh(3 / (5 / 48)), rel=1e-6)
    assert [p.window_score for p in scored] == pytest.approx(
        [0.0, math.asinh(32.0), math.asinh(28.8)], rel=1e-6
    )


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_scorer_constant_series(tmp_path, batch_size):
    model = echo_model(tmp_path)
    received = record_windows(model)
    scored = feed(scorer_for(model), [3.25] * 40, batch_size)
    assert np.concatenate(received).tolist() == [[0.0] * WINDOW] * 40
    assert [p.window_score for p in scored] == [0.0] * 40


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_scorer_spike_after_constant(tmp_path, batch_size):
    model = echo_model(tmp_path)
    received = record_windows(model)
    scored = feed(scorer_for(model), [10.0] * 19 + [26.0], batch_size)
    # The first 19 spreads are 0 and the 20th is 16/16 = 1, so the scale is the
    # running mean 1/20 and the spike is 16 / 0.05 = 320 scales away.
    last = np.concatenate(received)[-1]
    assert last[:-1].tolist() == [0.0] * (WINDOW - 1)
    assert last[-1] == pytest.approx(math.asinh(320.0), rel=1e-6)
    assert scored[-1].window_score == pytest.approx(math.asinh(320.0), rel=1e-6)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_scorer_scale_with_short_horizon(tmp_path, batch_size):
    model = echo_model(tmp_path, horizon_points=4)
    scorer = scorer_for(model)
    scored = feed(scorer, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0], batch_size)
    # Values 0, 1, 1, 1, 1, 1 put k ones in the window (median 0) after point
    # k + 1, so the spreads are 0, 1, 2, 3, 4, 5 sixteenths. In sixteenths the
    # scales are running means 0, 0.5, 1, 1.5 for four points, then
    # 0.75 * 1.5 + 4 / 4 = 2.125 and 0.75 * 2.125 + 5 / 4 = 2.84375. Each new
    # 1 is 16 / scale scales away from the median.
    expected = [0.0] + [
        math.asinh(16 / scale) for scale in (0.5, 1.0, 1.5, 2.125, 2.84375)
    ]
    slot = scorer.table.slot_of["s"]
    assert [p.window_score for p in scored] == pytest.approx(expected, rel=1e-6)
    assert scorer.table.scale[slot] * 16 == pytest.approx(2.84375, rel=1e-12)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_scorer_large_magnitude_floor(tmp_path, batch_size):
    model = echo_model(tmp_path)
    scored = feed(scorer_for(model), [1e12] * 15 + [1e12 + 1e3], batch_size)
    # The scale (1e3/16 / 16 points) is far below the floor 1e-6 * 1e12 = 1e6.
    assert scored[-1].window_score == pytest.approx(math.asinh(1e-3), rel=1e-6)
