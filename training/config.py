"""Configuration of the model, the input normalisation and the training run.

All three dataclasses are frozen and are written field by field into the model
metadata (``model.onnx.json``), so a committed model records how it was built.
"""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the transformer that scores one window of normalised values."""

    window_size: int = 16  # points per window, the newest point last
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128  # hidden width of each encoder layer's feed-forward block
    head_hidden: int = 32  # hidden width of the per-position scoring MLP
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NormalisationConfig:
    """Per-series causal normalisation of each window (see ``training.normalise``)."""

    method: str = "window_median_ew_mad_asinh"
    # H: the scale is the running mean of d_t for H points, then an EW mean.
    horizon_points: int = 1000
    eps_rel: float = 1e-6  # scale floor relative to |window median|
    eps_abs: float = 1e-9  # absolute scale floor
    # Points before the start of a series take the series' first value.
    padding: str = "repeat_first"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Data generation, sampling and optimisation settings of one training run.

    The defaults are sized to finish in about 8 to 10 minutes on one thread of a
    shared 2-core machine, data generation and export included. Each trained model
    records its measured duration in its metadata.
    """

    seed: int = 0
    n_train_series: int = 1200  # split evenly over the scenarios
    n_validation_series: int = 64  # whole series, never windowed into training
    min_length: int = 1000  # points per generated series
    max_length: int = 4000
    epochs: int = 5
    windows_per_epoch: int = 64_000  # drawn afresh from the window pool each epoch
    batch_size: int = 256
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4  # end of the cosine schedule
    lr_warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip_norm: float = 1.0
    # Imbalance: windows containing a labelled point are oversampled to this share
    # of each epoch, and positive elements are weighted by pos_weight in the loss.
    positive_window_fraction: float = 0.5
    # Share of the all-normal training windows kept in the pool.
    negative_keep_probability: float = 0.15
    pos_weight: float = 2.0
    # A point counts as anomalous for average precision, F1 and the threshold when
    # its label probability is at least this value.
    positive_label_threshold: float = 0.5
    # Points at the start of each series that are neither trained on nor validated.
    # Their windows repeat the first value (t < 15) or are scaled by a mean of few
    # deviations, so they can look flat or spiky. The streaming service should not
    # alert on them either (written as alert.warmup_points in the metadata).
    warmup_points: int = 100
    # Share of normal validation points scored during training-time validation;
    # the final validation of the best checkpoint scores every point.
    validation_negative_fraction: float = 0.1
    # One thread, because on 2 cores shared with other processes 2 threads measured
    # about 3x slower than one (0.8 against 2.5 batches/s). On idle cores 2 threads
    # are about 20% faster.
    num_threads: int = 1
    eval_batch_size: int = 4096

    def to_dict(self) -> dict:
        return asdict(self)


# One line of --help per TrainConfig field, for ``python -m training.train``.
TRAIN_OPTION_HELP: dict[str, str] = {
    "seed": "seed of data generation, the split, sampling and initialisation",
    "n_train_series": "synthetic training series, split evenly over the scenarios",
    "n_validation_series": "whole synthetic series held out for validation",
    "min_length": "shortest generated series, in points",
    "max_length": "longest generated series, in points",
    "epochs": "epochs, each of --windows-per-epoch freshly drawn windows",
    "windows_per_epoch": "training windows drawn per epoch",
    "batch_size": "windows per optimiser step",
    "learning_rate": "peak AdamW learning rate",
    "min_learning_rate": "learning rate at the end of the cosine schedule",
    "lr_warmup_steps": "steps of linear learning-rate warm-up",
    "weight_decay": "AdamW weight decay",
    "grad_clip_norm": "largest gradient norm; larger gradients are scaled down",
    "positive_window_fraction": "share of each epoch's windows that hold a labelled point",
    "negative_keep_probability": "share of all-normal windows kept in the pool",
    "pos_weight": "loss weight of positive elements",
    "positive_label_threshold": "label probability from which a point counts as anomalous in the metrics",
    "warmup_points": "points at the start of each series neither trained on nor validated",
    "validation_negative_fraction": "share of normal points scored in the per-epoch validation",
    "num_threads": "torch threads",
    "eval_batch_size": "windows per batch when validating",
}
