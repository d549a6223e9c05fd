"""Tiny hand-made ONNX models with metadata, for tests that need known scores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

WINDOW = 16


def write_model(
    directory: Path,
    position_scores: np.ndarray | None = None,
    input_gain: float = 0.0,
    threshold: float = 0.5,
    lag_points: int = 0,
    calibration: dict | None = None,
) -> Path:
    """Write ``model.onnx`` + ``model.onnx.json`` computing ``sigmoid``-free scores.

    scores[b, j] = input_gain * input[b, j] + position_scores[j], so with
    ``input_gain=0`` every window gives position j the score position_scores[j].
    """
    import onnx
    from onnx import TensorProto, helper

    if position_scores is None:
        position_scores = np.linspace(0.0, 0.15, WINDOW)
    gain = helper.make_tensor("gain", TensorProto.FLOAT, [1], [input_gain])
    bias = helper.make_tensor(
        "bias",
        TensorProto.FLOAT,
        [WINDOW],
        np.asarray(position_scores, dtype=np.float32).tolist(),
    )
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input", "gain"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["scores"]),
        ],
        "position_scores",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", WINDOW])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", WINDOW])],
        initializer=[gain, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / "model.onnx"
    onnx.save(model, onnx_path)
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    metadata = {
        "format_version": 1,
        "model_version": "test+" + sha[:8],
        "model_sha256": sha,
        "onnx": {
            "file": "model.onnx",
            "opset": 17,
            "input": "input",
            "output": "scores",
            "dynamic_batch": True,
        },
        "config": {"window_size": WINDOW},
        "normalisation": {
            "method": "window_median_ew_mad_asinh",
            "horizon_points": 1000,
            "eps_rel": 1e-6,
            "eps_abs": 1e-9,
            "padding": "repeat_first",
        },
        "alert": {
            "threshold": threshold,
            "threshold_method": "fixed for tests",
            "lag_points": lag_points,
            "calibration": calibration or {"method": "none"},
        },
    }
    meta_path = directory / "model.onnx.json"
    meta_path.write_text(json.dumps(metadata, indent=2))
    return meta_path
