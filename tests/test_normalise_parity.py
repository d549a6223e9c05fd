"""The streaming normaliser and the training normaliser give the same model inputs."""

from __future__ import annotations

import numpy as np
import pytest
from model_factory import write_model

from stream.detect import detect_points, scorer_for
from stream.model import load_model
from stream.points import Point
from training.normalise import normalise_series


class RecordingModel:
    """Passes windows to a model and keeps every window it was given."""

    def __init__(self, model) -> None:
        self._model = model
        self.metadata = model.metadata
        self.windows: list[np.ndarray] = []

    def score(self, windows: np.ndarray) -> np.ndarray:
        self.windows.append(windows.copy())
        return self._model.score(windows)


def series_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    n = 1500
    walk = np.cumsum(rng.normal(size=n))
    spiky = np.sin(np.arange(n) / 20) + rng.normal(0, 0.05, n)
    spiky[[200, 700, 1300]] += [8, -12, 30]
    step = np.where(np.arange(n) < 800, 10.0, 25.0) + rng.normal(0, 0.3, n)
    flat_then_noise = np.concatenate(
        [np.full(600, 3.0), 3.0 + rng.normal(0, 1, n - 600)]
    )
    return {
        "walk": walk,
        "spiky": spiky,
        "step": step,
        "flat_then_noise": flat_then_noise,
        "large": 1e9 + rng.normal(0, 1e3, n),
        "short": rng.normal(size=9),
    }


@pytest.mark.parametrize("name", list(series_cases()))
@pytest.mark.parametrize("batch_points", [1, 7, 512])
def test_stream_matches_training(tmp_path, name, batch_points):
    values = series_cases()[name]
    recording = RecordingModel(load_model(write_model(tmp_path / "model")))
    scorer = scorer_for(recording)
    points = [Point(name, float(i), float(v)) for i, v in enumerate(values)]
    for start in range(0, len(points), batch_points):
        scorer.process(points[start : start + batch_points])
    streamed = np.concatenate(recording.windows)

    spec = recording.metadata.normalisation
    expected = normalise_series(values, spec.horizon_points, spec.eps_rel, spec.eps_abs)
    assert streamed.shape == expected.shape
    assert np.allclose(streamed, expected, rtol=0, atol=1e-6)


def test_detect_points_uses_same_windows(tmp_path):
    values = series_cases()["spiky"]
    recording = RecordingModel(load_model(write_model(tmp_path / "model")))
    points = [Point("s", float(i), float(v)) for i, v in enumerate(values)]
    detect_points(recording, points, series="s", scorer=scorer_for(recording))
    spec = recording.metadata.normalisation
    expected = normalise_series(values, spec.horizon_points, spec.eps_rel, spec.eps_abs)
    assert np.allclose(np.concatenate(recording.windows), expected, rtol=0, atol=1e-6)
