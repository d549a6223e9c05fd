"""The committed model: ONNX Runtime against PyTorch, file layout and metadata."""

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx.external_data_helper import uses_external_data  # noqa: E402

from training.config import ModelConfig, NormalisationConfig  # noqa: E402
from training.export import load_checkpoint, sha256_file  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
ONNX_PATH = MODELS / "model.onnx"
CHECKPOINT_PATH = MODELS / "model.npz"
METADATA_PATH = MODELS / "model.onnx.json"


@pytest.fixture(scope="module")
def metadata():
    return json.loads(METADATA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def torch_model():
    return load_checkpoint(CHECKPOINT_PATH)


@pytest.mark.parametrize("batch", [1, 64])
def test_onnx_matches_torch(session, torch_model, batch):
    rng = np.random.default_rng(batch)
    # Normalised inputs are asinh-compressed, so |z| rarely exceeds 5.
    x = rng.normal(0.0, 2.0, size=(batch, 16)).astype(np.float32)
    onnx_scores = session.run(["scores"], {"input": x})[0]
    with torch.no_grad():
        torch_scores = torch_model(torch.from_numpy(x)).numpy()
    assert onnx_scores.shape == (batch, 16)
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=0, atol=1e-5)


def test_onnx_matches_torch_on_flat_and_spike(session, torch_model):
    x = np.zeros((2, 16), dtype=np.float32)
    x[1, -1] = 4.0
    onnx_scores = session.run(["scores"], {"input": x})[0]
    with torch.no_grad():
        torch_scores = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=0, atol=1e-5)


def test_onnx_has_no_external_data():
    model = onnx.load(str(ONNX_PATH), load_external_data=False)
    assert model.graph.initializer
    assert not [t.name for t in model.graph.initializer if uses_external_data(t)]
    assert not list(MODELS.glob("*.data"))
    assert not list(MODELS.glob("*.onnx_data"))


def test_onnx_interface(session, metadata):
    (model_input,) = session.get_inputs()
    (model_output,) = session.get_outputs()
    assert model_input.name == metadata["onnx"]["input"] == "input"
    assert model_output.name == metadata["onnx"]["output"] == "scores"
    assert model_input.type == "tensor(float)"
    # The batch axis is symbolic; the window axis is fixed.
    assert isinstance(model_input.shape[0], str)
    assert model_input.shape[1] == 16


def test_onnx_opset_is_pinned(metadata):
    model = onnx.load(str(ONNX_PATH), load_external_data=False)
    default_domain = [
        o.version for o in model.opset_import if o.domain in ("", "ai.onnx")
    ]
    assert default_domain == [metadata["onnx"]["opset"]] == [17]


def test_metadata_sha256_matches(metadata):
    digest = sha256_file(ONNX_PATH)
    assert metadata["model_sha256"] == digest
    assert metadata["model_version"].endswith("+" + digest[:8])
    assert metadata["onnx"]["file"] == ONNX_PATH.name


def test_metadata_config_matches_checkpoint(metadata, torch_model):
    assert metadata["config"] == {
        f.name: getattr(torch_model.config, f.name) for f in fields(ModelConfig)
    }
    assert metadata["normalisation"] == {
        f.name: getattr(NormalisationConfig(), f.name)
        for f in fields(NormalisationConfig)
    }


def test_metadata_sections(metadata):
    assert metadata["format_version"] == 1
    assert metadata["onnx"]["dynamic_batch"] is True
    assert 0.0 < metadata["alert"]["threshold"] < 1.0
    assert metadata["alert"]["threshold_method"]
    validation = metadata["training"]["validation"]
    assert 0.0 < validation["average_precision"] <= 1.0
    assert len(validation["per_scenario"]) == 8
    assert metadata["training"]["imbalance"]
