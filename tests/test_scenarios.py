"""Synthetic scenario generation: validity, reproducibility and the series split."""

import numpy as np
import pytest

from training.data import generate_dataset, split_by_series
from training.scenarios import SCENARIOS, generate_series, label_step, write_csv

SEEDS = range(6)


def generate(scenario, seed, min_length=1000, max_length=1600):
    return generate_series(
        scenario, np.random.default_rng(seed), min_length, max_length
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_values_finite(scenario):
    for seed in SEEDS:
        series = generate(scenario, seed)
        assert series.scenario == scenario
        assert series.values.dtype == np.float64
        assert np.all(np.isfinite(series.values))
        assert 1000 <= series.values.size <= 1600


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_labels_are_probabilities(scenario):
    for seed in SEEDS:
        series = generate(scenario, seed)
        assert series.labels.shape == series.values.shape
        assert series.labels.dtype == np.float32
        assert series.labels.min() >= 0.0
        assert series.labels.max() <= 1.0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_has_rare_positives(scenario):
    labels = [generate(scenario, seed).labels for seed in SEEDS]
    with_strong_label = sum(bool(np.any(y >= 0.5)) for y in labels)
    assert with_strong_label >= len(labels) // 2
    # Anomalies stay a minority of the points.
    assert np.mean(np.concatenate(labels) > 0) < 0.5


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_reproducible_from_seed(scenario):
    first = generate(scenario, 123)
    second = generate(scenario, 123)
    other = generate(scenario, 124)
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.interval_seconds == second.interval_seconds
    assert first.start_time == second.start_time
    assert first.values.size != other.values.size or not np.array_equal(
        first.values, other.values
    )


def test_no_anomaly_during_warmup():
    for scenario in SCENARIOS:
        for seed in SEEDS:
            assert np.all(generate(scenario, seed).labels[:100] == 0)


def test_unknown_scenario_raises():
    with pytest.raises(ValueError, match="unknown scenario"):
        generate_series("earthquake", np.random.default_rng(0))


def test_too_short_length_raises():
    with pytest.raises(ValueError, match="min_length"):
        generate_series(
            "point", np.random.default_rng(0), min_length=100, max_length=200
        )


def test_timestamps_follow_interval():
    series = generate("point", 5)
    stamps = series.timestamps()
    assert stamps.size == series.values.size
    steps = np.diff(stamps).astype("timedelta64[s]").astype(int)
    assert np.all(steps == series.interval_seconds)


def test_write_csv_rows(tmp_path):
    series = generate("flat", 2)
    path = tmp_path / "flat.csv"
    write_csv(series, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,value,label"
    assert len(lines) == series.values.size + 1
    stamp, value, label = lines[1].split(",")
    assert stamp.endswith("Z")
    assert float(value) == series.values[0]
    assert float(label) == pytest.approx(series.labels[0], abs=1e-4)


def test_step_label_profile():
    labels = np.zeros(200)
    label_step(labels, 50, 0.8, 200)
    assert np.all(labels[:50] == 0)
    assert np.all(labels[50:66] == pytest.approx(0.8))
    assert np.all(np.diff(labels[66:106]) < 0)
    assert np.all(labels[106:] == 0)


def test_dataset_reproducible_from_seed():
    first = generate_dataset(3, 16, 1000, 1200)
    second = generate_dataset(3, 16, 1000, 1200)
    assert [s.scenario for s in first] == [SCENARIOS[i % 8] for i in range(16)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_split_shares_no_series():
    series = generate_dataset(4, 48, 1000, 1200)
    train, validation = split_by_series(series, 16, seed=4)
    assert len(train) == 32
    assert len(validation) == 16
    train_keys = {s.values.tobytes() for s in train}
    validation_keys = {s.values.tobytes() for s in validation}
    assert len(train_keys) == 32
    assert len(validation_keys) == 16
    assert not train_keys & validation_keys


def test_split_is_stratified_by_scenario():
    series = generate_dataset(5, 48, 1000, 1200)
    _, validation = split_by_series(series, 16, seed=5)
    counts = {name: sum(s.scenario == name for s in validation) for name in SCENARIOS}
    assert set(counts.values()) == {2}


def test_split_too_few_series_raises():
    series = generate_dataset(6, 8, 1000, 1200)
    with pytest.raises(ValueError, match="too few"):
        split_by_series(series, 8, seed=6)
