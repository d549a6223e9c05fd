"""Loading the ONNX model, and scoring with several ONNX Runtime sessions."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from model_factory import WINDOW, write_model
from onnx import numpy_helper

from stream.detect import scorer_for
from stream.errors import ModelError
from stream.model import (
    default_model_path,
    find_external_tensor,
    load_metadata,
    load_model,
)
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


# --- Loading and checking the ONNX file -------------------------------------------


def rewrite_checksum(metadata_path: Path, onnx_name: str = "model.onnx") -> None:
    metadata = json.loads(metadata_path.read_text())
    onnx_bytes = (metadata_path.parent / onnx_name).read_bytes()
    metadata["onnx"]["file"] = onnx_name
    metadata["model_sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
    metadata_path.write_text(json.dumps(metadata))


def test_file_swapped_during_load_ignored(tmp_path, monkeypatch):
    """A model.onnx replaced after the checksum check is not what gets loaded."""
    checked = write_model(tmp_path / "checked", np.zeros(WINDOW))
    other = write_model(tmp_path / "other", np.ones(WINDOW))
    real_session = ort.InferenceSession

    def swap_then_load(*args, **kwargs):
        shutil.copyfile(other.parent / "model.onnx", checked.parent / "model.onnx")
        return real_session(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", swap_then_load)
    model = load_model(checked)
    scores = model.score(np.zeros((1, WINDOW), dtype=np.float32))
    assert np.array_equal(scores, np.zeros((1, WINDOW), dtype=np.float32))


def save_with_external_data(metadata_path: Path, *, in_attribute: bool) -> None:
    """Re-save the model with its tensors in ``weights.bin`` beside ``ext.onnx``."""
    model = onnx.load(metadata_path.parent / "model.onnx")
    if in_attribute:
        # Move the bias into a Constant node, whose tensor is a node attribute.
        bias = model.graph.initializer.pop()
        constant = onnx.helper.make_node("Constant", [], [bias.name], value=bias)
        model.graph.node.insert(0, constant)
    for tensor in model.graph.initializer:
        tensor.CopyFrom(
            numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name)
        )
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                array = numpy_helper.to_array(attribute.t)
                attribute.t.CopyFrom(numpy_helper.from_array(array, attribute.t.name))
    onnx.external_data_helper.convert_model_to_external_data(
        model,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
        convert_attribute=True,
    )
    onnx.save_model(model, metadata_path.parent / "ext.onnx")
    assert (metadata_path.parent / "weights.bin").stat().st_size > 0
    rewrite_checksum(metadata_path, "ext.onnx")


@pytest.mark.parametrize(
    "in_attribute", [False, True], ids=["initializer", "attribute"]
)
def test_external_data_rejected(tmp_path, in_attribute):
    path = write_model(tmp_path / "model", np.ones(WINDOW))
    save_with_external_data(path, in_attribute=in_attribute)
    with pytest.raises(ModelError) as raised:
        load_model(path)
    message = str(raised.value)
    assert "ext.onnx" in message
    assert "external data file 'weights.bin'" in message
    assert "re-export the model with every tensor inside the .onnx file" in message


def test_committed_model_has_no_external_data():
    metadata = load_metadata(default_model_path())
    assert find_external_tensor(metadata.onnx_path.read_bytes()) is None


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


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x08\x07this is not an ONNX model", "unsupported wire type"),
        (b"\x3a\x7f\x00", "runs past the end"),
        (b"\x08\xff", "varint runs past the end"),
    ],
)
def test_invalid_protobuf_rejected(tmp_path, content, fragment):
    path = write_model(tmp_path / "model")
    (path.parent / "model.onnx").write_bytes(content)
    rewrite_checksum(path)
    with pytest.raises(ModelError, match=fragment) as raised:
        load_model(path)
    assert "could not load" in str(raised.value)


def test_threshold_applies_to_alert_score(models):
    """The threshold is compared with the calibrated score, not the window score."""
    one, _, _ = models
    threshold = one.metadata.alert.threshold
    assert one.metadata.alert.calibration["method"] != "none"
    rng = np.random.default_rng(3)
    points = [
        Point("s", 1000.0 + 60 * k, float(np.sin(k / 9) + 0.1 * rng.normal()))
        for k in range(400)
    ]
    scored = scorer_for(one).process(points).scored
    assert all(p.is_anomaly == (p.score >= threshold) for p in scored)
    assert any(p.window_score >= threshold and not p.is_anomaly for p in scored)
    readme = (default_model_path().parent / "README.md").read_text()
    text = " ".join(readme.split())
    assert "an alert when its alert score is at least `alert.threshold`" in text
    assert "when that score is at least `alert.threshold`" not in text
