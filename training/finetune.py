"""Fine-tune an exported model on the user's labelled series and export the result.

    anomalybert finetune --base models/model.onnx.json --data DIR|FILE --output-dir DIR

Training starts from the PyTorch weights in the base model's ``model.npz`` (loaded
with ``allow_pickle=False``). Windows are normalised exactly as in the base
training, by ``training.normalise`` with the base metadata's normalisation
settings. Whole series are held out for validation, and the epoch with the best
validation average precision is exported as a new ``model.onnx``, ``model.npz``
and ``model.onnx.json``. The metadata records the parent model, the data files and
the settings. Needs the ``train`` extra.

The new model keeps the parent's alert settings (lag, calibration). Only where the
alert score is the raw newest-position window score (no calibration, lag 0) is the
threshold chosen anew, for the best F1 on the validation series.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from training.config import NormalisationConfig
from training.errors import TrainingInputError
from training.export import (
    CHECKPOINT_FILE,
    METADATA_FILE,
    ONNX_FILE,
    ExportError,
    check_parity,
    export_model,
    load_checkpoint,
    sha256_file,
)
from training.labelled import LabelledFile
from training.metrics import average_precision, best_f1_threshold
from training.model import WindowScorer, weighted_bce_with_logits
from training.normalise import normalise_with_config
from training.output import prepare_output_dir
from training.train import predict_logits

logger = logging.getLogger(__name__)

FREEZE_CHOICES = ("none", "encoder")
# Validation scores every held-out window with a label and at most this many
# others, weighted so that the metrics estimate those of the full set. With fewer
# unlabelled windows every window is scored and the metrics are exact.
CHECK_MAX_NEGATIVES = 10_000


@dataclass(frozen=True)
class FinetuneSettings:
    """Optimisation and data settings of one fine-tuning run."""

    epochs: int = 3
    # "encoder" trains only the scoring head (head.*). The value embedding, the
    # encoder layers and the final LayerNorm keep the base weights and run
    # without dropout.
    freeze: str = "none"
    learning_rate: float = 3e-4  # peak; a third of the base training's 1e-3
    min_learning_rate: float = 3e-5  # end of the cosine schedule
    lr_warmup_steps: int = 10
    windows_per_epoch: int = 8192  # drawn with replacement when the data has fewer
    batch_size: int = 256
    weight_decay: float = 0.01
    grad_clip_norm: float = 1.0
    # Whole series held out for validation: this share, at least one.
    validation_fraction: float = 0.2
    # Share of each epoch's windows that contain a point with a label above 0.
    positive_window_fraction: float = 0.5
    pos_weight: float = 2.0  # weight of the positive term of the loss
    positive_label_threshold: float = 0.5  # label that counts as anomalous in AP/F1
    # Windows ending before this point of a series are neither trained on nor
    # validated. None takes the base model's alert.warmup_points.
    warmup_points: int | None = None
    seed: int = 0
    num_threads: int = 1
    eval_batch_size: int = 4096

    def check(self) -> None:
        """Raise TrainingInputError for a setting outside its range."""
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs {self.epochs} (must be 1 or more)")
        if self.freeze not in FREEZE_CHOICES:
            problems.append(f"freeze {self.freeze!r} (must be 'encoder' or 'none')")
        if not self.learning_rate > 0 or self.min_learning_rate < 0:
            problems.append(
                f"learning rates {self.learning_rate}, {self.min_learning_rate} "
                "(peak must be > 0, minimum >= 0)"
            )
        if self.batch_size < 1 or self.windows_per_epoch < self.batch_size:
            problems.append(
                f"batch_size {self.batch_size} and windows_per_epoch "
                f"{self.windows_per_epoch} (need 1 <= batch_size <= windows_per_epoch)"
            )
        if not 0 < self.validation_fraction < 1:
            problems.append(
                f"validation_fraction {self.validation_fraction} (must be in (0, 1))"
            )
        if not 0 <= self.positive_window_fraction <= 1:
            problems.append(
                f"positive_window_fraction {self.positive_window_fraction} "
                "(must be in [0, 1])"
            )
        if self.warmup_points is not None and self.warmup_points < 0:
            problems.append(f"warmup_points {self.warmup_points} (must be >= 0)")
        if problems:
            raise TrainingInputError(
                "invalid fine-tuning setting: " + "; ".join(problems)
            )


@dataclass(frozen=True, eq=False)
class BaseModel:
    """The model fine-tuning starts from."""

    metadata_path: Path
    metadata: dict
    model: WindowScorer
    normalisation: NormalisationConfig

    @property
    def window_size(self) -> int:
        return self.model.config.window_size


@dataclass
class FinetuneResult:
    """Output folder, validation metrics before and after, and the split of one run."""

    output_dir: Path
    parent_version: str
    before: dict  # validation metrics of the base model
    after: dict  # validation metrics of the exported model
    threshold: float
    best_epoch: int
    history: list[dict]
    train_files: list[str]
    validation_files: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def metadata_path(self) -> Path:
        return self.output_dir / METADATA_FILE


def load_base(path: Path | str) -> BaseModel:
    """Load the base model's metadata and its PyTorch checkpoint (``model.npz``).

    ``path`` is a ``model.onnx.json``, a ``model.onnx`` or the folder that contains
    them. Checks that the ONNX file matches the metadata's model_sha256 and that
    the checkpoint computes the same scores. Raises TrainingInputError when any of
    the three files is missing or they do not match.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METADATA_FILE
    elif path.suffix == ".onnx":
        path = path.with_name(path.name + ".json")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingInputError(
            f"base model metadata not found: {path}; pass --base with the path of a "
            "model.onnx.json"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingInputError(
            f"base model metadata {path} is not readable JSON ({exc}); restore it"
        ) from None

    onnx_section = metadata.get("onnx") or {}
    checkpoint = path.parent / str(onnx_section.get("checkpoint_file", CHECKPOINT_FILE))
    onnx_path = path.parent / str(onnx_section.get("file", ONNX_FILE))
    if not checkpoint.is_file():
        raise TrainingInputError(
            f"base model checkpoint not found: {checkpoint}; fine-tuning starts from "
            f"the PyTorch weights in {CHECKPOINT_FILE} next to {path.name}, so copy "
            "the model.npz that was exported with this model there"
        )
    try:
        model = load_checkpoint(checkpoint)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        RuntimeError,
        zipfile.BadZipFile,
    ) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise TrainingInputError(
            f"cannot load the base checkpoint {checkpoint} ({reason}); restore the "
            "model.npz exported with this model"
        ) from None
    if not onnx_path.is_file():
        raise TrainingInputError(
            f"base model file not found: {onnx_path}; fine-tuning checks the "
            f"checkpoint against it and records its sha256 as the parent's, so copy "
            f"the {onnx_path.name} exported with this model there"
        )
    if sha256_file(onnx_path) != metadata.get("model_sha256"):
        raise TrainingInputError(
            f"{onnx_path} does not match the model_sha256 in {path}; restore the "
            "model files together"
        )
    try:
        check_parity(model, onnx_path)
    except ExportError:
        raise TrainingInputError(
            f"{checkpoint} does not compute the same scores as {onnx_path}; the "
            "checkpoint belongs to another model, so restore the files together"
        ) from None
    try:
        normalisation = NormalisationConfig(**metadata["normalisation"])
    except (KeyError, TypeError) as exc:
        raise TrainingInputError(
            f"base model metadata {path} has no usable normalisation section ({exc}); "
            "re-export the base model"
        ) from None
    return BaseModel(path, metadata, model, normalisation)


def format_average_precision(value: float) -> str:
    """Format an average precision for reports, "n/a" where it is undefined (NaN)."""
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def labelled_windows(
    item: LabelledFile, normalisation: NormalisationConfig, window_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (inputs, targets), both (n, window_size) float32, as ``training.data``
    cuts a generated series: labels before the first point repeat the first label."""
    inputs = normalise_with_config(item.values, normalisation, window_size)
    padded = np.concatenate([np.full(window_size - 1, item.labels[0]), item.labels])
    targets = np.array(sliding_window_view(padded, window_size), dtype=np.float32)
    return inputs, targets


def has_positive(
    item: LabelledFile, warmup_points: int, positive_label_threshold: float
) -> bool:
    """Return whether the series has an anomalous label after the warm-up.

    A label is anomalous from ``positive_label_threshold`` on, as in AP and F1.
    """
    return bool((item.labels[warmup_points:] >= positive_label_threshold).any())


def check_series(
    files: Sequence[LabelledFile],
    window_size: int,
    warmup_points: int,
    positive_label_threshold: float = 0.5,
) -> list[str]:
    """Raise for unusable data and return warnings about series that add little."""
    if len(files) < 2:
        raise TrainingInputError(
            f"got {len(files)} series, need at least 2: whole series are held out for "
            "validation, so pass more files"
        )
    warnings = []
    for item in files:
        if item.points < window_size:
            raise TrainingInputError(
                f"series {item.name} has {item.points} points, fewer than the model's "
                f"window of {window_size}; remove it or add points"
            )
        if item.dropped_rows:
            warnings.append(
                f"{item.name}: dropped {item.dropped_rows} rows whose timestamp is not "
                "after the previous row's, as the streaming service would"
            )
        if item.points <= warmup_points:
            warnings.append(
                f"{item.name}: {item.points} points, all within the first "
                f"{warmup_points} (warm-up), so it adds no windows"
            )
        elif not has_positive(item, warmup_points, positive_label_threshold):
            warnings.append(
                f"{item.name}: no label of at least {positive_label_threshold:g} "
                "after the warm-up, so no point of it counts as anomalous"
            )
    if not any(has_positive(f, warmup_points, positive_label_threshold) for f in files):
        raise TrainingInputError(
            f"no series has a label of at least {positive_label_threshold:g} after "
            f"the warm-up of {warmup_points} points; label anomalous points with 1 "
            f"(or a probability of at least {positive_label_threshold:g})"
        )
    return warnings


def split_series(
    files: Sequence[LabelledFile],
    fraction: float,
    warmup_points: int,
    rng: np.random.Generator,
    positive_label_threshold: float = 0.5,
) -> tuple[list[LabelledFile], list[LabelledFile]]:
    """Hold out whole series for validation: ``fraction`` of them, at least one.

    The choice is random, but training always gets a series with a label of at
    least ``positive_label_threshold``, the label from which AP and F1 count a
    point as anomalous. Validation gets one too when at least two series have one.
    """
    n_validation = min(len(files) - 1, max(1, round(fraction * len(files))))
    order = [int(i) for i in rng.permutation(len(files))]
    validation, train = order[:n_validation], order[n_validation:]

    def positive(index: int) -> bool:
        return has_positive(files[index], warmup_points, positive_label_threshold)

    if not any(map(positive, train)):
        donor = next(i for i in validation if positive(i))
        validation[validation.index(donor)], train[0] = train[0], donor
    if not any(map(positive, validation)):
        donors = [i for i in train if positive(i)]
        if len(donors) > 1:
            train[train.index(donors[0])], validation[0] = validation[0], donors[0]
    return [files[i] for i in sorted(train)], [files[i] for i in sorted(validation)]


def _stack(
    files: Sequence[LabelledFile], base: BaseModel, warmup_points: int
) -> tuple[np.ndarray, np.ndarray]:
    inputs, targets = [], []
    for item in files:
        x, y = labelled_windows(item, base.normalisation, base.window_size)
        inputs.append(x[warmup_points:])
        targets.append(y[warmup_points:])
    w = base.window_size
    return (
        np.concatenate(inputs) if inputs else np.empty((0, w), np.float32),
        np.concatenate(targets) if targets else np.empty((0, w), np.float32),
    )


def window_losses(
    logits: np.ndarray, targets: np.ndarray, pos_weight: float
) -> np.ndarray:
    """Return the training loss of each window, averaged over its positions, (N,)."""
    logits = logits.astype(np.float64)
    log_p = -np.logaddexp(0.0, -logits)  # log sigmoid(l)
    log_not_p = -np.logaddexp(0.0, logits)  # log (1 - sigmoid(l))
    loss = -(pos_weight * targets * log_p + (1.0 - targets) * log_not_p)
    return loss.mean(axis=1)


def evaluate(
    model: WindowScorer,
    inputs: np.ndarray,
    targets: np.ndarray,
    settings: FinetuneSettings,
    weights: np.ndarray | None = None,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score validation windows; return (metrics, newest-position scores, labels).

    Metrics: the training loss over every window position and the average
    precision of the newest position's score, as in ``training.train.evaluate``.
    """
    if weights is None:
        weights = np.ones(inputs.shape[0])
    logits = predict_logits(model, inputs, settings.eval_batch_size)
    scores = 1.0 / (1.0 + np.exp(-logits[:, -1].astype(np.float64)))
    labels = targets[:, -1] >= settings.positive_label_threshold
    metrics = {
        "loss": float(
            np.average(
                window_losses(logits, targets, settings.pos_weight), weights=weights
            )
        ),
        "average_precision": average_precision(scores, labels, weights),
        "n_points": int(round(weights.sum())),
        "positive_rate": float(np.average(labels, weights=weights)),
    }
    return metrics, scores, labels


def _check_subset(
    targets: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pick validation windows for the per-epoch checks; return (indices, weights)."""
    has_label = targets.max(axis=1) > 0
    n_negative = int(np.count_nonzero(~has_label))
    keep_share = min(1.0, CHECK_MAX_NEGATIVES / max(n_negative, 1))
    keep = has_label | (rng.random(has_label.size) < keep_share)
    indices = np.flatnonzero(keep)
    return indices, np.where(has_label[indices], 1.0, 1.0 / keep_share)


def _sample_epoch(
    positive: np.ndarray, settings: FinetuneSettings, rng: np.random.Generator
) -> np.ndarray:
    """Draw shuffled window indices with the configured share of positive windows."""
    n = settings.windows_per_epoch
    positives = np.flatnonzero(positive)
    negatives = np.flatnonzero(~positive)
    n_positive = int(round(n * settings.positive_window_fraction))
    if negatives.size == 0:
        n_positive = n
    if positives.size == 0:
        n_positive = 0
    chosen = [
        rng.choice(positives, n_positive, replace=n_positive > positives.size)
        if n_positive
        else np.empty(0, dtype=np.int64),
        rng.choice(negatives, n - n_positive, replace=n - n_positive > negatives.size)
        if n - n_positive
        else np.empty(0, dtype=np.int64),
    ]
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices


def _trainable(model: WindowScorer, freeze: str) -> list[torch.nn.Parameter]:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(freeze == "none" or name.startswith("head."))
    return [p for p in model.parameters() if p.requires_grad]


def _set_train_mode(model: WindowScorer, freeze: str) -> None:
    model.train()
    if freeze == "encoder":
        # Frozen layers run as at inference, so their dropout does not perturb
        # the features the head learns from.
        for name, module in model.named_children():
            if name != "head":
                module.eval()


def _learning_rate_factor(
    step: int, total_steps: int, settings: FinetuneSettings
) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate, as a factor of the peak."""
    if step < settings.lr_warmup_steps:
        return (step + 1) / settings.lr_warmup_steps
    progress = min(
        1.0,
        (step - settings.lr_warmup_steps)
        / max(1, total_steps - settings.lr_warmup_steps),
    )
    floor = settings.min_learning_rate / settings.learning_rate
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True, eq=False)
class FitOutcome:
    """The training history and the validation result of the best epoch."""

    history: list[dict]
    best_epoch: int  # 1-based
    metrics: dict  # validation metrics of the best epoch
    scores: np.ndarray  # its newest-position scores of the validation windows


def _fit(
    model: WindowScorer,
    train_inputs: np.ndarray,
    train_targets: np.ndarray,
    check: tuple[np.ndarray, np.ndarray, np.ndarray],
    settings: FinetuneSettings,
    rng: np.random.Generator,
    report: Callable[[str], None],
) -> FitOutcome:
    """Train for settings.epochs and load the best epoch's weights into the model."""
    parameters = _trainable(model, settings.freeze)
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
    )
    steps_per_epoch = settings.windows_per_epoch // settings.batch_size
    total_steps = steps_per_epoch * settings.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, total_steps, settings)
    )
    positive = train_targets.max(axis=1) > 0
    check_inputs, check_targets, check_weights = check

    history: list[dict] = []
    best_state, best_epoch, best_key = None, 0, (-math.inf, -math.inf)
    for epoch in range(1, settings.epochs + 1):
        started = time.monotonic()
        indices = _sample_epoch(positive, settings, rng)
        _set_train_mode(model, settings.freeze)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = indices[
                step * settings.batch_size : (step + 1) * settings.batch_size
            ]
            x = torch.from_numpy(train_inputs[batch])
            y = torch.from_numpy(train_targets[batch])
            loss = weighted_bce_with_logits(
                model.forward_logits(x), y, settings.pos_weight
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            total += loss.item()
        metrics, scores, _ = evaluate(
            model, check_inputs, check_targets, settings, check_weights
        )
        train_loss = total / max(1, steps_per_epoch)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "validation_loss": metrics["loss"],
                "average_precision": metrics["average_precision"],
                "seconds": time.monotonic() - started,
            }
        )
        report(
            f"epoch {epoch}/{settings.epochs}: train loss {train_loss:.4f}, validation "
            f"loss {metrics['loss']:.4f}, "
            f"AP {format_average_precision(metrics['average_precision'])} "
            f"({time.monotonic() - started:.0f} s)"
        )
        # Highest AP wins; without positives in the checks (AP NaN) the lowest loss.
        ap = metrics["average_precision"]
        key = (-math.inf if math.isnan(ap) else ap, -metrics["loss"])
        if best_state is None or key > best_key:
            best_key, best_epoch = key, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_metrics, best_scores = metrics, scores
    model.load_state_dict(best_state)
    model.eval()
    return FitOutcome(history, best_epoch, best_metrics, best_scores)


def _file_record(
    item: LabelledFile, role: str, warmup_points: int, positive_label_threshold: float
) -> dict:
    digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
    positive = item.labels[warmup_points:] >= positive_label_threshold
    return {
        "name": item.name,
        "path": str(item.path),
        "sha256": digest,
        "role": role,
        "points": item.points,
        "positive_points": int(np.count_nonzero(positive)),
        "dropped_rows": item.dropped_rows,
    }


def _json_safe(value):
    """Round floats to 6 decimals for the metadata; NaN becomes null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def _alert_section(
    parent: dict,
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    settings: FinetuneSettings,
    warmup_points: int,
) -> dict:
    """Build the new model's alert settings: the parent's, with a new threshold
    where the validation scores are the alert score."""
    section = {**parent, "score_position": "newest", "warmup_points": warmup_points}
    for key in (
        "validation_f1",
        "validation_precision",
        "validation_recall",
        "validation_window_threshold",
    ):
        section.pop(key, None)
    calibration = (parent.get("calibration") or {}).get("method", "none")
    lag_points = int(parent.get("lag_points", 0))

    if not labels.any():
        section["threshold_method"] = (
            "Copied from the parent model, because no validation label reaches "
            f"{settings.positive_label_threshold}."
        )
        return section
    choice = best_f1_threshold(scores, labels, weights)
    section.update(
        validation_f1=choice.f1,
        validation_precision=choice.precision,
        validation_recall=choice.recall,
    )

    if calibration != "none" or lag_points != 0:
        # The service compares the calibrated or lagged score of a whole series
        # with the threshold, and window-level validation does not compute it.
        section["validation_window_threshold"] = choice.threshold
        section["threshold_method"] = (
            f"Copied from the parent model, because the alert score is the "
            f"{calibration!r} calibration of the window scores with lag_points "
            f"{lag_points}, which validation on windows does not compute. The "
            "validation_* fields describe the newest-position window score at "
            "validation_window_threshold, the one that maximises F1 on the "
            "fine-tuning validation series."
        )
        return section
    section["threshold"] = choice.threshold
    section["threshold_method"] = (
        "The score of the newest window position that maximises F1 over every point "
        f"of the fine-tuning validation series from point {warmup_points} on. Points "
        f"with a label of at least {settings.positive_label_threshold} count as "
        "anomalous. An alert is raised when score >= threshold."
    )
    return section


def finetune(
    base_path: Path | str,
    files: Sequence[LabelledFile],
    output_dir: Path | str,
    settings: FinetuneSettings | None = None,
    report: Callable[[str], None] | None = None,
    data_sources: Sequence[str] = (),
) -> FinetuneResult:
    """Fine-tune the base model on ``files`` and export it into ``output_dir``.

    ``report`` receives one progress line per step (default: the module logger).
    ``data_sources`` are the paths the user passed, written into the metadata.
    Raises TrainingInputError for unusable settings, data, base model or output
    directory, all before training starts.
    """
    settings = settings or FinetuneSettings()
    settings.check()
    report = report or logger.info
    started = time.monotonic()
    base = load_base(base_path)
    output_dir = Path(output_dir)
    if output_dir.resolve() == base.metadata_path.parent.resolve():
        raise TrainingInputError(
            f"output directory {output_dir} contains the base model, which would be "
            "overwritten; choose another --output-dir"
        )
    output_dir = prepare_output_dir(output_dir)
    alert = base.metadata.get("alert") or {}
    warmup_points = (
        settings.warmup_points
        if settings.warmup_points is not None
        else int(alert.get("warmup_points", 0))
    )
    warnings = check_series(
        files, base.window_size, warmup_points, settings.positive_label_threshold
    )
    for warning in warnings:
        report(f"warning: {warning}")

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.num_threads)
    split_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 1]))
    sampling_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 2]))
    train_files, validation_files = split_series(
        files,
        settings.validation_fraction,
        warmup_points,
        split_rng,
        settings.positive_label_threshold,
    )
    train_inputs, train_targets = _stack(train_files, base, warmup_points)
    validation_inputs, validation_targets = _stack(
        validation_files, base, warmup_points
    )
    if train_inputs.shape[0] == 0 or validation_inputs.shape[0] == 0:
        raise TrainingInputError(
            f"no windows after the warm-up of {warmup_points} points in the "
            f"{'training' if train_inputs.shape[0] == 0 else 'validation'} series; pass "
            "longer series or lower --warmup-points"
        )
    report(
        f"{len(train_files)} training series ({train_inputs.shape[0]} windows), "
        f"{len(validation_files)} validation series ({validation_inputs.shape[0]} windows)"
    )

    model = base.model
    check_indices, check_weights = _check_subset(validation_targets, sampling_rng)
    check = (
        validation_inputs[check_indices],
        validation_targets[check_indices],
        check_weights,
    )
    before, _, labels = evaluate(model, *check[:2], settings, check_weights)
    if not labels.any():
        warnings.append(
            "the validation series have no label of at least "
            f"{settings.positive_label_threshold:g} after the warm-up, so average "
            "precision is undefined and the epoch with the lowest validation loss is "
            "kept; pass at least two series with such labels so that validation "
            "gets one"
        )
        report(f"warning: {warnings[-1]}")
    report(
        f"base model: validation loss {before['loss']:.4f}, "
        f"AP {format_average_precision(before['average_precision'])}"
    )
    train_started = time.monotonic()
    outcome = _fit(
        model, train_inputs, train_targets, check, settings, sampling_rng, report
    )
    train_seconds = time.monotonic() - train_started
    after = outcome.metrics
    if after["average_precision"] < before["average_precision"]:
        warnings.append(
            f"validation AP fell from {before['average_precision']:.4f} to "
            f"{after['average_precision']:.4f}; the base model may suit this data better"
        )
        report(f"warning: {warnings[-1]}")

    alert_section = _alert_section(
        alert, outcome.scores, labels, check_weights, settings, warmup_points
    )
    if alert_section["threshold"] == alert.get("threshold"):
        warnings.append(
            f"kept the parent's threshold {alert_section['threshold']:.4f}: "
            f"{alert_section['threshold_method']}"
        )
        report(f"warning: {warnings[-1]}")

    training = {
        "method": "finetune",
        "parent_model": {
            "model_version": base.metadata.get("model_version"),
            "model_sha256": base.metadata.get("model_sha256"),
            "metadata_file": str(base.metadata_path),
        },
        "data": {
            "sources": [str(source) for source in data_sources],
            "label_rule": "labels as read: CSV label column, or 1 inside NAB windows",
            "files": [
                _file_record(f, role, warmup_points, settings.positive_label_threshold)
                for role, group in (
                    ("train", train_files),
                    ("validation", validation_files),
                )
                for f in group
            ],
        },
        "settings": {**asdict(settings), "warmup_points": warmup_points},
        "n_parameters": model.count_parameters(),
        "n_trained_parameters": sum(
            p.numel() for p in model.parameters() if p.requires_grad
        ),
        "n_training_windows": int(train_inputs.shape[0]),
        "n_validation_windows": int(validation_inputs.shape[0]),
        "best_epoch": outcome.best_epoch,
        "selection": "epoch with the highest validation average precision"
        if labels.any()
        else "epoch with the lowest validation loss, because the validation "
        "series have no anomalous label and average precision is undefined",
        "validation_windows_scored": int(check_indices.size),
        "history": outcome.history,
        "validation_before": before,
        "validation": after,
        "warnings": warnings,
        "duration_seconds": time.monotonic() - started,
        "timing_seconds": {"training": train_seconds},
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
    }
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    export_model(
        model, output_dir, base.normalisation, alert_section, _json_safe(training)
    )
    return FinetuneResult(
        output_dir=output_dir,
        parent_version=str(base.metadata.get("model_version")),
        before=before,
        after=after,
        threshold=float(alert_section["threshold"]),
        best_epoch=outcome.best_epoch,
        history=outcome.history,
        train_files=[f.name for f in train_files],
        validation_files=[f.name for f in validation_files],
        warnings=warnings,
    )
