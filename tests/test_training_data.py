"""Windowing of labelled series and the sampling of training epochs."""

import numpy as np
import pytest

from training.config import NormalisationConfig
from training.data import (
    build_validation_set,
    build_window_pool,
    generate_dataset,
    sample_epoch,
    series_windows,
    validation_subsample,
)
from training.normalise import normalise_series
from training.scenarios import SCENARIOS

NORMALISATION = NormalisationConfig()


@pytest.fixture(scope="module")
def series():
    return generate_dataset(11, 16, 1000, 1200)


def test_series_windows_align_labels(series):
    item = series[2]
    inputs, targets = series_windows(item, NORMALISATION, 16)
    assert inputs.shape == (item.values.size, 16)
    assert targets.shape == (item.values.size, 16)
    np.testing.assert_array_equal(inputs, normalise_series(item.values))
    # The newest position of window t carries the label of point t.
    np.testing.assert_array_equal(targets[:, -1], item.labels)
    # Window 0 is padded with the first label.
    assert np.all(targets[0] == item.labels[0])
    np.testing.assert_array_equal(targets[40], item.labels[25:41])


def test_pool_windows_never_mix_series(series):
    pair = series[:2]
    pool = build_window_pool(pair, NORMALISATION, 16, 1.0, np.random.default_rng(0))
    first_length = pair[0].values.size
    assert len(pool) == first_length + pair[1].values.size
    # The second series starts with its own padded window, not a mix of both.
    np.testing.assert_array_equal(
        pool.inputs[first_length], normalise_series(pair[1].values)[0]
    )
    assert np.all(pool.inputs[first_length] == 0.0)
    assert np.all(pool.scenario[:first_length] == SCENARIOS.index(pair[0].scenario))
    assert np.all(pool.scenario[first_length:] == SCENARIOS.index(pair[1].scenario))


def test_pool_keeps_every_labelled_window(series):
    pool = build_window_pool(series, NORMALISATION, 16, 0.1, np.random.default_rng(1))
    n_labelled = sum(
        int((series_windows(s, NORMALISATION, 16)[1].max(axis=1) > 0).sum())
        for s in series
    )
    assert int(pool.positive.sum()) == n_labelled
    assert np.all(pool.targets[pool.positive].max(axis=1) > 0)
    assert np.all(pool.targets[~pool.positive] == 0)


def test_sample_epoch_balances_positives(series):
    pool = build_window_pool(series, NORMALISATION, 16, 0.1, np.random.default_rng(2))
    indices = sample_epoch(pool, 8000, 0.5, np.random.default_rng(3))
    assert indices.size == 8000
    assert pool.positive[indices].sum() == 4000
    per_scenario = np.bincount(
        pool.scenario[indices][pool.positive[indices]], minlength=8
    )
    assert per_scenario.max() - per_scenario.min() <= 1


def test_sample_epoch_reproducible(series):
    pool = build_window_pool(series, NORMALISATION, 16, 0.1, np.random.default_rng(2))
    first = sample_epoch(pool, 1000, 0.5, np.random.default_rng(9))
    second = sample_epoch(pool, 1000, 0.5, np.random.default_rng(9))
    np.testing.assert_array_equal(first, second)


def test_validation_subsample_weights(series):
    validation = build_validation_set(series, NORMALISATION, 16)
    indices, weights = validation_subsample(validation, 0.25, np.random.default_rng(4))
    labelled = validation.targets.max(axis=1) > 0
    assert np.all(np.isin(np.flatnonzero(labelled), indices))
    assert np.all(weights[labelled[indices]] == 1.0)
    assert np.all(weights[~labelled[indices]] == 4.0)
    # The weights estimate the full number of points to within a few percent.
    assert weights.sum() == pytest.approx(validation.inputs.shape[0], rel=0.05)
