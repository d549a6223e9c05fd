"""Scoring with several ONNX Runtime sessions gives the same scores as with one."""

from __future__ import annotations

import numpy as np
import pytest
from model_factory import write_model

from stream.detect import scorer_for
from stream.errors import ModelError
from stream.model import default_model_path, load_model
from stream.points import Point


@pytest.fixture(scope="module")
def models():
    path = default_model_path()
    return load_model(path), load_model(path, sessions=2), load_model(path, sessions=3)


def windows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.arcsinh(rng.normal(0, 2, (n, 16))).astype(np.float32)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 600, 2000])
def test_sessions_score_identically(models, n):
    one, two, three = models
    expected = one.score(windows(n))
    assert np.array_equal(two.score(windows(n)), expected)
    assert np.array_equal(three.score(windows(n)), expected)


def test_sessions_count(models):
    one, two, three = models
    assert one.sessions == 1
    assert two.sessions == 2
    assert three.sessions == 3


def test_sessions_below_one_rejected():
    with pytest.raises(ValueError, match="sessions=0"):
        load_model(default_model_path(), sessions=0)


def test_scorer_with_two_sessions_identical(models):
    one, two, _ = models
    rng = np.random.default_rng(5)
    points = [
        Point(f"s{k % 7}", 1000.0 + 60 * (k // 7), float(np.sin(k / 9) + rng.normal()))
        for k in range(3000)
    ]
    results = []
    for model in (one, two):
        scorer = scorer_for(model)
        scored = []
        for start in range(0, len(points), 1000):
            scored += scorer.process(points[start : start + 1000]).scored
        results.append(
            [(p.series, p.timestamp, p.window_score, p.score) for p in scored]
        )
    assert len(results[0]) == 3000
    assert results[1] == results[0]


def test_missing_file_names_no_option(tmp_path):
    # `anomalybert detect` takes --model, the consumer ANOMALYBERT_MODEL_PATH and
    # the Python API a path argument, so the message names none of them.
    path = write_model(tmp_path / "model")
    (path.parent / "model.onnx").unlink()
    with pytest.raises(ModelError) as raised:
        load_model(path)
    message = str(raised.value)
    assert "model file not found" in message
    assert "pass the path of another model.onnx.json" in message
    assert "--model" not in message
    assert "ANOMALYBERT_MODEL_PATH" not in message
