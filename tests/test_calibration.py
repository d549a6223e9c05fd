"""Tests of the "likelihood" calibration of raw window scores into alert scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from model_factory import WINDOW, write_model

from stream.calibration import CalibrationSpec, calibrate
from stream.detect import scorer_for
from stream.errors import ModelError
from stream.model import load_model
from stream.points import Point

SPEC = CalibrationSpec(
    method="likelihood",
    horizon_points=100,
    short_points=10,
    warmup_points=20,
    min_std=0.01,
)

# With the short average equal to the long mean, z = 0 and the tail is 1/2, so
# the alert is -log10(0.5) / 10.
ALERT_AT_MEAN = math.log10(2) / 10
# Upper tail of the standard normal distribution at z = 2 (from a normal table).
TAIL_AT_2 = 0.0227501319


def run(spec: CalibrationSpec, raw_scores) -> np.ndarray:
    """Calibrate the raw scores of one series one at a time; return the alerts."""
    mean = np.zeros(1)
    var = np.zeros(1)
    short = np.zeros(1)
    alerts = []
    for n, raw in enumerate(raw_scores, start=1):
        alert, mean, var, short = calibrate(
            spec, np.array([raw]), np.array([float(n)]), mean, var, short
        )
        alerts.append(float(alert[0]))
    return np.array(alerts)


def test_none_passes_through():
    raw = np.array([0.2, -1.0, 7.5])
    mean, var, short = np.ones(3), np.ones(3) * 2, np.ones(3) * 3
    alert, new_mean, new_var, new_short = calibrate(
        CalibrationSpec(), raw, np.ones(3), mean, var, short
    )
    assert alert.tolist() == [0.2, -1.0, 7.5]
    assert new_mean.tolist() == [1.0, 1.0, 1.0]
    assert new_var.tolist() == [2.0, 2.0, 2.0]
    assert new_short.tolist() == [3.0, 3.0, 3.0]


def test_warmup_gives_zero():
    raw = [0.1] * 10 + [5.0] * 10 + [0.1] * 10
    alerts = run(SPEC, raw)
    assert alerts[:20].tolist() == [0.0] * 20
    assert alerts[20] > 0.0


def test_constant_score_low_alert():
    alerts = run(SPEC, [0.2] * 500)
    assert alerts[20:] == pytest.approx([ALERT_AT_MEAN] * 480, rel=1e-9)


def test_jump_alert_by_hand():
    # After 1000 points of 0.1 the mean is 0.1 and the variance 0, so the std is
    # min_std = 0.01. A raw score of 0.3 moves the short average to
    # 0.9 * 0.1 + 0.1 * 0.3 = 0.12, which is z = 2.
    alerts = run(SPEC, [0.1] * 1000 + [0.3])
    assert alerts[-1] == pytest.approx(-math.log10(TAIL_AT_2) / 10, rel=1e-6)


def test_jump_after_stable_run_high():
    spec = CalibrationSpec(method="likelihood", warmup_points=20)
    rng = np.random.default_rng(3)
    stable = 0.1 + rng.normal(0.0, 0.01, 3000)
    alerts = run(spec, np.concatenate([stable, [0.6] * 5]))
    assert alerts[100:3000].max() < 0.2
    assert alerts[-4] > 0.5
    assert alerts[-3:].tolist() == [1.0, 1.0, 1.0]


def test_alert_capped_at_one():
    alerts = run(SPEC, [0.1] * 100 + [1e6])
    assert alerts[-1] == 1.0


def test_drop_gives_no_alert():
    alerts = run(SPEC, [0.5] * 100 + [-10.0] * 5)
    assert alerts[-5:].max() < 0.01


def test_causal():
    rng = np.random.default_rng(5)
    prefix = rng.normal(0.2, 0.05, 200)
    calm = run(SPEC, np.concatenate([prefix, [0.2] * 20]))
    jump = run(SPEC, np.concatenate([prefix, [3.0] * 20]))
    assert calm[:200].tolist() == jump[:200].tolist()
    assert jump[200] > calm[200]


def test_series_calibrated_independently():
    rng = np.random.default_rng(9)
    raws = [rng.normal(0.2, 0.05, 300), rng.normal(-1.0, 0.5, 300), [0.3] * 300]
    mean = np.zeros(3)
    var = np.zeros(3)
    short = np.zeros(3)
    together = []
    for n in range(300):
        raw = np.array([series[n] for series in raws])
        alert, mean, var, short = calibrate(
            SPEC, raw, np.full(3, n + 1.0), mean, var, short
        )
        together.append(alert)
    together = np.array(together)
    for k, series in enumerate(raws):
        assert together[:, k].tolist() == run(SPEC, series).tolist()


def test_statistics_running_mean():
    # Within the horizon the mean and variance are the running mean and the
    # population variance of the scores seen.
    raw = [1.0, 2.0, 3.0, 6.0]
    mean = np.zeros(1)
    var = np.zeros(1)
    short = np.zeros(1)
    for n, value in enumerate(raw, start=1):
        _, mean, var, short = calibrate(
            SPEC, np.array([value]), np.array([float(n)]), mean, var, short
        )
    assert mean[0] == pytest.approx(3.0, rel=1e-12)
    assert var[0] == pytest.approx(3.5, rel=1e-12)


def test_spec_from_empty_metadata():
    assert CalibrationSpec.from_metadata({}) == CalibrationSpec()


def test_spec_from_metadata():
    spec = CalibrationSpec.from_metadata(
        {"method": "likelihood", "warmup_points": 5, "min_std": 0.5, "note": "x"}
    )
    assert spec == CalibrationSpec(method="likelihood", warmup_points=5, min_std=0.5)


def test_spec_unknown_method():
    with pytest.raises(ModelError, match="'zscore'"):
        CalibrationSpec.from_metadata({"method": "zscore"})


# Inside the scorer: a model with input_gain=1 and position scores 0 makes the raw
# score of a point its normalised value, 0 for every point of a constant series.


@pytest.fixture(scope="module")
def likelihood_model(tmp_path_factory):
    path = write_model(
        tmp_path_factory.mktemp("likelihood"),
        np.zeros(WINDOW),
        input_gain=1.0,
        threshold=0.5,
        calibration={"method": "likelihood", "warmup_points": 20},
    )
    return load_model(path)


def test_scorer_constant_series(likelihood_model):
    scorer = scorer_for(likelihood_model)
    result = scorer.process([Point("s", float(t), 4.0) for t in range(100)])
    scores = [p.score for p in result.scored]
    assert [p.window_score for p in result.scored] == [0.0] * 100
    assert scores[:20] == [0.0] * 20
    assert scores[20:] == pytest.approx([ALERT_AT_MEAN] * 80, rel=1e-9)


def test_scorer_jump_after_constant(likelihood_model):
    scorer = scorer_for(likelihood_model)
    result = scorer.process(
        [Point("s", float(t), 4.0 if t < 300 else 5.0) for t in range(301)]
    )
    last = result.scored[-1]
    # The constant run leaves a variance of 0 (std min_std) and a scale at the
    # floor, so the jump is far in the tail and the alert is capped at 1.
    assert last.score == 1.0
    assert last.publish


def test_scorer_level_shift(likelihood_model):
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.normal(10.0, 1.0, 400), [1e6] * 6])
    scorer = scorer_for(likelihood_model)
    points = [Point("s", float(t), float(v)) for t, v in enumerate(values)]
    scores = np.array([p.score for p in scorer.process(points).scored])
    shifted = scores[400:]
    assert shifted.min() > scores[50:400].max()
    assert np.all(np.diff(shifted) > 0)
