"""Export of a trained model: ONNX graph, numpy checkpoint and metadata.

``model.onnx`` contains its weights (no external data file), so it can be copied
alone. ``model.npz`` contains the state_dict as plain arrays and the model
configuration as a JSON string, and loads with ``allow_pickle=False``.
``model.onnx.json`` describes the model for the streaming service.
"""

import hashlib
import json
import os
import warnings
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx.external_data_helper import uses_external_data

from training.config import ModelConfig, NormalisationConfig
from training.model import WindowScorer

FORMAT_VERSION = 1
MODEL_VERSION = "1.0.0"  # the sha256 prefix of model.onnx is appended as "+<8 hex>"
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "scores"
ONNX_FILE = "model.onnx"
CHECKPOINT_FILE = "model.npz"
METADATA_FILE = "model.onnx.json"
CONFIG_KEY = "__model_config__"  # npz entry holding ModelConfig as JSON
PARITY_TOLERANCE = 1e-5  # max |ONNX Runtime - PyTorch| accepted on export


class ExportError(RuntimeError):
    """The exported model is not self-contained or disagrees with PyTorch."""


def export_onnx(model: WindowScorer, path: Path | str, opset: int = ONNX_OPSET) -> None:
    """Write the model as one self-contained ONNX file with a dynamic batch axis."""
    model = model.eval()
    example = torch.zeros(2, model.config.window_size)  # (batch, window)
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # torch >= 2.9 marks the TorchScript exporter as deprecated. It is used on
        # purpose because it embeds the weights in the file. Its tracer warns about
        # shape checks inside nn.MultiheadAttention, which hold for every batch size
        # (the parity check below runs batch sizes 1 and 64).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    os.replace(temporary, path)
    check_self_contained(path)


def check_self_contained(path: Path | str) -> None:
    """Raise ExportError if any tensor of the ONNX file lives in an external file."""
    graph = onnx.load(str(path), load_external_data=False).graph
    external = [t.name for t in graph.initializer if uses_external_data(t)]
    if external:
        raise ExportError(
            f"{path} stores {len(external)} tensors externally, e.g. {external[0]!r}"
        )


def check_parity(model: WindowScorer, path: Path | str, batch_sizes=(1, 64)) -> float:
    """Compare ONNX Runtime with PyTorch on random windows; return the max difference.

    Raises ExportError when the difference exceeds PARITY_TOLERANCE.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    model = model.eval()
    for batch in batch_sizes:
        x = rng.normal(0.0, 2.0, (batch, model.config.window_size)).astype(np.float32)
        expected = _torch_scores(model, x)
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(actual - expected).max()))
    if worst > PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX Runtime and PyTorch differ by {worst:.3g} (> {PARITY_TOLERANCE}) on {path}"
        )
    return worst


def _torch_scores(model: WindowScorer, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def save_checkpoint(model: WindowScorer, path: Path | str) -> None:
    """Save the state_dict as numpy arrays plus the ModelConfig as JSON, without pickle."""
    arrays = {
        name: tensor.detach().cpu().numpy()
        for name, tensor in model.state_dict().items()
    }
    arrays[CONFIG_KEY] = np.array(json.dumps(model.config.to_dict()))
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)


def load_checkpoint(path: Path | str) -> WindowScorer:
    """Rebuild the model from a ``save_checkpoint`` file, in eval mode."""
    with np.load(path, allow_pickle=False) as archive:
        config_fields = json.loads(str(archive[CONFIG_KEY]))
        known = {f.name for f in fields(ModelConfig)}
        unknown = set(config_fields) - known
        if unknown:
            raise ValueError(
                f"{path} has unknown model config fields {sorted(unknown)}"
            )
        config = ModelConfig(**config_fields)
        state = {
            name: torch.from_numpy(archive[name].copy())
            for name in archive.files
            if name != CONFIG_KEY
        }
    model = WindowScorer(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_metadata(
    model: WindowScorer,
    model_sha256: str,
    normalisation: NormalisationConfig,
    alert: dict,
    training: dict,
) -> dict:
    """Assemble the content of ``model.onnx.json``."""
    return {
        "format_version": FORMAT_VERSION,
        "model_version": f"{MODEL_VERSION}+{model_sha256[:8]}",
        "model_sha256": model_sha256,
        "onnx": {
            "file": ONNX_FILE,
            "opset": ONNX_OPSET,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "dynamic_batch": True,
            "input_shape": ["batch", model.config.window_size],
            "output_shape": ["batch", model.config.window_size],
            "input_dtype": "float32",
            "checkpoint_file": CHECKPOINT_FILE,
        },
        "config": model.config.to_dict(),
        "normalisation": normalisation.to_dict(),
        "alert": alert,
        "training": training,
        "created_at": datetime.now(UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
    }


def export_model(
    model: WindowScorer,
    output_dir: Path | str,
    normalisation: NormalisationConfig,
    alert: dict,
    training: dict,
) -> Path:
    """Write model.onnx, model.npz and model.onnx.json into output_dir.

    Checks that the ONNX file is self-contained and matches PyTorch before writing
    the metadata. Returns the path of model.onnx.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()

    onnx_path = output_dir / ONNX_FILE
    export_onnx(model, onnx_path)
    parity = check_parity(model, onnx_path)
    save_checkpoint(model, output_dir / CHECKPOINT_FILE)

    training = {**training, "export_parity_max_abs_diff": parity}
    metadata = build_metadata(
        model, sha256_file(onnx_path), normalisation, alert, training
    )
    metadata_path = output_dir / METADATA_FILE
    temporary = metadata_path.with_name(metadata_path.name + ".tmp")
    temporary.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, metadata_path)
    return onnx_path
