"""Loading the exported ONNX model and its metadata, and batched inference."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import ModelError

logger = logging.getLogger(__name__)

SUPPORTED_FORMAT_VERSION = 1
SUPPORTED_NORMALISATION = "window_median_ew_mad_asinh"

# Larger batches are split into chunks of this many windows. On 2-core AMD EPYC
# and Intel Xeon VMs, ONNX Runtime scored 10 to 15 % more windows per second at
# batch 64 than at 256, whose activations no longer fit in the L2 cache
# (python -m benchmarks.throughput).
DEFAULT_MAX_BATCH_WINDOWS = 64


def default_model_path() -> Path:
    """Return the path of the metadata of the model committed in ``models/``."""
    repo_models = Path(__file__).resolve().parent.parent / "models" / "model.onnx.json"
    if repo_models.exists():
        return repo_models
    return Path(str(resources.files("stream").joinpath("models/model.onnx.json")))


@dataclass(frozen=True)
class NormalisationSpec:
    """Settings of the normalisation that turns raw values into model inputs (``stream.normalise``)."""

    method: str
    horizon_points: int
    eps_rel: float
    eps_abs: float


@dataclass(frozen=True)
class AlertSpec:
    """Settings that turn window scores into the alert score compared with the threshold."""

    threshold: float
    threshold_method: str
    lag_points: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelMetadata:
    """The contents of ``model.onnx.json`` that inference depends on."""

    path: Path
    onnx_path: Path
    model_version: str
    model_sha256: str
    window_size: int
    input_name: str
    output_name: str
    normalisation: NormalisationSpec
    alert: AlertSpec
    raw: dict[str, Any]


def _require(mapping: dict[str, Any], key: str, path: Path) -> Any:
    if key not in mapping:
        raise ModelError(
            f"model metadata {path} has no {key!r} field; re-export the model"
        )
    return mapping[key]


def load_metadata(path: str | Path) -> ModelMetadata:
    """Read ``model.onnx.json`` (or the metadata beside a ``model.onnx`` path)."""
    path = Path(path)
    if path.suffix == ".onnx":
        path = path.with_name(path.name + ".json")
    if not path.is_file():
        raise ModelError(
            f"model metadata not found: {path}; pass the path of a model.onnx.json "
            "written by the training export"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"model metadata {path} is not readable JSON ({exc}); restore the file "
            "or re-export the model"
        ) from exc
    if not isinstance(raw, dict):
        raise ModelError(f"model metadata {path} must be a JSON object")

    version = raw.get("format_version")
    if version != SUPPORTED_FORMAT_VERSION:
        raise ModelError(
            f"model metadata {path} has format_version {version!r}; this version of "
            f"anomalybert reads format_version {SUPPORTED_FORMAT_VERSION}"
        )
    onnx_section = _require(raw, "onnx", path)
    config = _require(raw, "config", path)
    norm = _require(raw, "normalisation", path)
    alert = _require(raw, "alert", path)
    if norm.get("method") != SUPPORTED_NORMALISATION:
        raise ModelError(
            f"model metadata {path} uses normalisation {norm.get('method')!r}; "
            f"only {SUPPORTED_NORMALISATION!r} is implemented"
        )
    window_size = int(_require(config, "window_size", path))
    lag_points = int(alert.get("lag_points", 0))
    if not 0 <= lag_points < window_size:
        raise ModelError(
            f"model metadata {path}: alert.lag_points={lag_points} must be between 0 "
            f"and {window_size - 1}"
        )
    return ModelMetadata(
        path=path,
        onnx_path=path.parent / str(onnx_section.get("file", "model.onnx")),
        model_version=str(_require(raw, "model_version", path)),
        model_sha256=str(_require(raw, "model_sha256", path)).lower(),
        window_size=window_size,
        input_name=str(onnx_section.get("input", "input")),
        output_name=str(onnx_section.get("output", "scores")),
        normalisation=NormalisationSpec(
            method=norm["method"],
            horizon_points=int(norm["horizon_points"]),
            eps_rel=float(norm["eps_rel"]),
            eps_abs=float(norm["eps_abs"]),
        ),
        alert=AlertSpec(
            threshold=float(_require(alert, "threshold", path)),
            threshold_method=str(alert.get("threshold_method", "")),
            lag_points=lag_points,
            calibration=dict(alert.get("calibration") or {}),
        ),
        raw=raw,
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checked_model(metadata: ModelMetadata) -> bytes:
    """Read the ONNX file once and check its SHA-256 against the metadata.

    The sessions are built from the returned bytes, not from the path, so a file
    replaced after the check (a hot reload, say) is never loaded unchecked.
    Raises :class:`ModelError` for a missing, unreadable or mismatched file, and
    for a model that keeps tensors in external data files, which the SHA-256
    does not cover.
    """
    onnx_path = metadata.onnx_path
    if not onnx_path.is_file():
        raise ModelError(
            f"model file not found: {onnx_path} (named by {metadata.path}); "
            "restore it beside the metadata, or pass the path of another "
            "model.onnx.json"
        )
    try:
        model_bytes = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read model file {onnx_path}: {exc.strerror}; restore it or "
            "fix its permissions"
        ) from exc
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != metadata.model_sha256:
        raise ModelError(
            f"checksum mismatch for {onnx_path}: SHA-256 is {actual}, but "
            f"{metadata.path} expects {metadata.model_sha256}; the file is corrupt or "
            "belongs to another model, so re-export or restore both files together"
        )
    try:
        external = find_external_tensor(model_bytes)
    except ValueError as exc:
        raise ModelError(
            f"could not load {onnx_path}: it is not a valid ONNX model ({exc}); "
            "re-export it"
        ) from exc
    if external is not None:
        name, location = external
        raise ModelError(
            f"model file {onnx_path} keeps tensor {name!r} in the external data "
            f"file {location!r}, which the SHA-256 in {metadata.path} does not "
            "cover; re-export the model with every tensor inside the .onnx file"
        )
    return model_bytes


# The ONNX messages (field numbers of onnx.proto, checked with onnx 1.23) that can
# contain a TensorProto, directly or through a subgraph, function or attribute.
_ONNX_CHILD_MESSAGES: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 25: "FunctionProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "FunctionProto": {7: "NodeProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",
        6: "GraphProto",
        10: "TensorProto",
        11: "GraphProto",
        22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
}
_TENSOR_NAME = 8
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_DATA_LOCATION_EXTERNAL = 1


def find_external_tensor(model_bytes: bytes) -> tuple[str, str] | None:
    """Return ``(tensor name, location)`` of a tensor kept outside the file, if any.

    Walks the serialised ``ModelProto`` with a small protobuf wire-format reader,
    so it needs no ``onnx`` package. Returns None when every tensor is inside.
    Raises ValueError for bytes that are not a valid protobuf message.
    """
    pending = [("ModelProto", memoryview(model_bytes))]
    while pending:
        message_type, data = pending.pop()
        if message_type == "TensorProto":
            found = _external_tensor(data)
            if found is not None:
                return found
            continue
        children = _ONNX_CHILD_MESSAGES[message_type]
        for number, value in _protobuf_fields(data):
            if number in children and isinstance(value, memoryview):
                pending.append((children[number], value))
    return None


def _external_tensor(data: memoryview) -> tuple[str, str] | None:
    name = ""
    location = ""
    external = False
    for number, value in _protobuf_fields(data):
        if number == _TENSOR_NAME and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif number == _TENSOR_DATA_LOCATION and value == _DATA_LOCATION_EXTERNAL:
            external = True
        elif number == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            external = True
            entry = {
                key: bytes(text).decode("utf-8", "replace")
                for key, text in _protobuf_fields(value)
                if isinstance(text, memoryview)
            }
            if entry.get(1) == "location":
                location = entry.get(2, "")
    return (name, location) if external else None


def _protobuf_fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """Yield ``(field number, value)`` of one protobuf message.

    Varints come back as int and length-delimited fields as memoryview slices.
    Fixed-width fields yield 0, because no field read here has that type.
    """
    position = 0
    end = len(data)
    while position < end:
        key, position = _read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _read_varint(data, position)
            yield number, value
        elif wire_type == 2:
            length, position = _read_varint(data, position)
            if position + length > end:
                raise ValueError(f"field {number} runs past the end of its message")
            yield number, data[position : position + length]
            position += length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
            if position > end:
                raise ValueError(f"field {number} runs past the end of its message")
            yield number, 0
        else:
            raise ValueError(f"field {number} has unsupported wire type {wire_type}")


def _read_varint(data: memoryview, position: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise ValueError("a varint runs past the end of its message")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
    raise ValueError("a varint is longer than 10 bytes")


class WindowModel:
    """The ONNX model: scores ``(n, window_size)`` windows in batches.

    Build it with :func:`load_model`; the constructor does no I/O. With more than
    one session, the chunks of a large call are shared out among the sessions and
    scored in parallel threads (ONNX Runtime releases the GIL while it runs).
    ONNX Runtime's CPU kernels score each window of a batch on its own, so the
    scores do not depend on the chunking. tests/test_model_sessions.py checks
    this for the shipped model.
    """

    def __init__(
        self,
        metadata: ModelMetadata,
        session: Any,
        max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
        *,
        more_sessions: Sequence[Any] = (),
    ) -> None:
        self.metadata = metadata
        self._session = session
        self._max_batch = max_batch_windows
        self._more_sessions = list(more_sessions)
        self._pool: ThreadPoolExecutor | None = None
        if self._more_sessions:
            self._pool = ThreadPoolExecutor(
                max_workers=len(self._more_sessions), thread_name_prefix="onnx"
            )

    @property
    def sessions(self) -> int:
        return 1 + len(self._more_sessions)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Score normalised windows ``(n, window_size)`` float32; returns ``(n, window_size)``."""
        n = windows.shape[0]
        if n == 0:
            return np.empty((0, self.metadata.window_size), dtype=np.float32)
        if n <= self._max_batch:
            return self._run(self._session, windows)
        starts = range(0, n, self._max_batch)
        if self._pool is None:
            parts = [
                self._run(self._session, windows[start : start + self._max_batch])
                for start in starts
            ]
            return np.concatenate(parts)
        # With k sessions, session j scores chunks j, j + k, j + 2k and so on.
        # The calling thread runs session 0.
        sessions = [self._session, *self._more_sessions]
        scores = np.empty((n, self.metadata.window_size), dtype=np.float32)
        chunks = [windows[start : start + self._max_batch] for start in starts]

        def run_share(j: int) -> None:
            for i in range(j, len(chunks), len(sessions)):
                start = i * self._max_batch
                scores[start : start + len(chunks[i])] = self._run(
                    sessions[j], chunks[i]
                )

        futures = [
            self._pool.submit(run_share, j)
            for j in range(1, min(len(sessions), len(chunks)))
        ]
        run_share(0)
        for future in futures:
            future.result()
        return scores

    def _run(self, session: Any, windows: np.ndarray) -> np.ndarray:
        feeds = {
            self.metadata.input_name: np.ascontiguousarray(windows, dtype=np.float32)
        }
        return session.run([self.metadata.output_name], feeds)[0]


def load_model(
    path: str | Path | None = None,
    *,
    intra_op_threads: int = 1,
    max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
    sessions: int = 1,
) -> WindowModel:
    """Load a model from its metadata file, checking the SHA-256 of the ONNX file.

    One intra-op thread is the default: on small windows two single-threaded
    sessions outrun one session with two threads. ``sessions`` sessions of the
    model score the chunks of a large batch in parallel threads.
    """
    if sessions < 1:
        raise ValueError(f"sessions={sessions} must be at least 1")
    import onnxruntime as ort

    metadata = load_metadata(path if path is not None else default_model_path())
    onnx_path = metadata.onnx_path
    model_bytes = read_checked_model(metadata)
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    try:
        loaded = [
            ort.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
            for _ in range(sessions)
        ]
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several unrelated types
        # ONNX Runtime messages can span lines; the log gets one line.
        reason = " ".join(str(exc).split())
        raise ModelError(
            f"ONNX Runtime could not load {onnx_path} ({reason}); the file is not a "
            "valid model for this ONNX Runtime, so re-export it"
        ) from exc
    logger.info(
        "loaded model %s (sha256 %s) from %s",
        metadata.model_version,
        metadata.model_sha256[:12],
        onnx_path,
    )
    return WindowModel(
        metadata,
        loaded[0],
        max_batch_windows=max_batch_windows,
        more_sessions=loaded[1:],
    )
