"""Labelled datasets, the split by series, and the windows the model trains on.

Every series is generated from its own child of one ``numpy.random.SeedSequence``,
so a dataset is reproducible from its seed. The split into training and validation
is made on whole series before any windowing, and each window is cut from a single
series, so no validation point is ever seen in training.
"""

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from training.config import NormalisationConfig
from training.normalise import normalise_with_config
from training.scenarios import SCENARIOS, LabelledSeries, generate_series


def generate_dataset(
    seed: int,
    n_series: int,
    min_length: int = 1000,
    max_length: int = 4000,
    scenarios: tuple[str, ...] = SCENARIOS,
) -> list[LabelledSeries]:
    """Generate n_series series, cycling through the scenarios in order."""
    children = np.random.SeedSequence(seed).spawn(n_series)
    return [
        generate_series(
            scenarios[i % len(scenarios)],
            np.random.default_rng(children[i]),
            min_length,
            max_length,
        )
        for i in range(n_series)
    ]


def split_by_series(
    series: list[LabelledSeries], n_validation: int, seed: int
) -> tuple[list[LabelledSeries], list[LabelledSeries]]:
    """Split whole series into (train, validation), stratified by scenario.

    Each scenario gives an equal share of the n_validation series (the remainder goes
    to the first scenarios). Raises ValueError when a scenario has too few series to
    keep at least one for training.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    by_scenario: dict[str, list[int]] = {}
    for index, item in enumerate(series):
        by_scenario.setdefault(item.scenario, []).append(index)

    validation_indices: set[int] = set()
    names = sorted(by_scenario, key=SCENARIOS.index)
    for rank, name in enumerate(names):
        indices = by_scenario[name]
        share = n_validation // len(names) + (
            1 if rank < n_validation % len(names) else 0
        )
        if share >= len(indices):
            raise ValueError(
                f"scenario {name!r} has {len(indices)} series, too few to hold out "
                f"{share} for validation; raise the number of series"
            )
        chosen = rng.choice(len(indices), size=share, replace=False)
        validation_indices.update(indices[i] for i in chosen)

    train = [s for i, s in enumerate(series) if i not in validation_indices]
    validation = [s for i, s in enumerate(series) if i in validation_indices]
    return train, validation


def series_windows(
    series: LabelledSeries, normalisation: NormalisationConfig, window_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one series into the windows that end at each of its points.

    Returns (inputs, targets), both (n, window_size) float32: the normalised window
    and the labels of its points. Labels before the first point repeat the first
    label, as the values do.
    """
    inputs = normalise_with_config(series.values, normalisation, window_size)
    padded = np.concatenate([np.full(window_size - 1, series.labels[0]), series.labels])
    targets = np.array(sliding_window_view(padded, window_size), dtype=np.float32)
    return inputs, targets


@dataclass(frozen=True)
class WindowPool:
    """Training windows, split by whether any point of the window is labelled."""

    inputs: np.ndarray  # (N, window) float32
    targets: np.ndarray  # (N, window) float32
    positive: np.ndarray  # (N,) bool, True when some target is > 0
    scenario: np.ndarray  # (N,) int, index into SCENARIOS

    def __len__(self) -> int:
        return self.positive.size


def build_window_pool(
    series: list[LabelledSeries],
    normalisation: NormalisationConfig,
    window_size: int,
    negative_keep_probability: float,
    rng: np.random.Generator,
    warmup_points: int = 0,
) -> WindowPool:
    """Keep every window that contains a labelled point and a random share of the rest.

    All-normal windows far outnumber the others; dropping most of them here bounds
    memory, and ``sample_epoch`` rebalances the two kinds for each epoch. Windows
    ending before point ``warmup_points`` of a series are left out.
    """
    inputs, targets, positive, scenario = [], [], [], []
    for item in series:
        x, y = series_windows(item, normalisation, window_size)
        x, y = x[warmup_points:], y[warmup_points:]
        has_label = y.max(axis=1) > 0
        keep = has_label | (rng.random(has_label.size) < negative_keep_probability)
        inputs.append(x[keep])
        targets.append(y[keep])
        positive.append(has_label[keep])
        scenario.append(np.full(int(keep.sum()), SCENARIOS.index(item.scenario)))
    return WindowPool(
        inputs=np.concatenate(inputs),
        targets=np.concatenate(targets),
        positive=np.concatenate(positive),
        scenario=np.concatenate(scenario),
    )


def sample_epoch(
    pool: WindowPool, n_windows: int, positive_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw shuffled pool indices for one epoch with the given share of positive windows.

    The positive windows are split evenly over the scenarios, because a flat segment
    of 400 points yields 400 of them and a spike only 16. Each group is drawn without
    replacement while it lasts, then with replacement.
    """
    negative = np.flatnonzero(~pool.positive)
    groups = [
        np.flatnonzero(pool.positive & (pool.scenario == code))
        for code in np.unique(pool.scenario[pool.positive])
    ]
    n_positive = int(round(n_windows * positive_fraction)) if groups else 0
    if negative.size == 0:
        n_positive = n_windows
    chosen = [_draw(rng, negative, n_windows - n_positive)]
    for rank, group in enumerate(groups):
        share = n_positive // len(groups) + (
            1 if rank < n_positive % len(groups) else 0
        )
        chosen.append(_draw(rng, group, share))
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices


def _draw(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    if count == 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(candidates, size=count, replace=count > candidates.size)


@dataclass(frozen=True)
class ValidationSet:
    """Every point of the validation series, scored at the newest window position."""

    inputs: np.ndarray  # (N, window) float32, the window ending at each point
    targets: np.ndarray  # (N, window) float32, labels of the window's points
    scenario: np.ndarray  # (N,) int, index into SCENARIOS
    series_index: np.ndarray  # (N,) int, index of the series in the validation list

    def labels(self) -> np.ndarray:
        """Return the label of each window's newest point, (N,)."""
        return self.targets[:, -1]


def build_validation_set(
    series: list[LabelledSeries],
    normalisation: NormalisationConfig,
    window_size: int,
    warmup_points: int = 0,
) -> ValidationSet:
    """Collect the windows ending at every point from ``warmup_points`` on."""
    inputs, targets, scenario, series_index = [], [], [], []
    for index, item in enumerate(series):
        x, y = series_windows(item, normalisation, window_size)
        x, y = x[warmup_points:], y[warmup_points:]
        inputs.append(x)
        targets.append(y)
        scenario.append(np.full(x.shape[0], SCENARIOS.index(item.scenario)))
        series_index.append(np.full(x.shape[0], index))
    return ValidationSet(
        inputs=np.concatenate(inputs),
        targets=np.concatenate(targets),
        scenario=np.concatenate(scenario),
        series_index=np.concatenate(series_index),
    )


def validation_subsample(
    validation: ValidationSet, negative_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Choose points for a cheaper validation: all windows with a labelled point,
    and a random share of the rest.

    Returns (indices, weights); a kept all-normal window has weight
    1 / negative_fraction, so weighted metrics estimate those of the full set.
    """
    has_label = validation.targets.max(axis=1) > 0
    keep = has_label | (rng.random(has_label.size) < negative_fraction)
    indices = np.flatnonzero(keep)
    weights = np.where(has_label[indices], 1.0, 1.0 / negative_fraction)
    return indices, weights
