"""Write labelled synthetic series from ``training.scenarios`` as CSV files.

    anomalybert generate --output-dir DIR [--scenario NAME|all] [--n-series N]
                         [--length L] [--seed S]

Each series becomes ``<scenario>_<index>.csv`` with the columns
``timestamp,value,label``, where label is the per-point anomaly probability in
[0, 1]. ``manifest.json`` records the seed, the parameters and every file.

Series ``index`` of a scenario is drawn from ``SeedSequence([seed, k, index])``,
where k is the scenario's position in ``SCENARIOS``. So a file depends only on the
seed, its scenario, its index and the length: generating one scenario alone writes
the same files as generating all of them. Needs numpy only, not the train extra.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import TrainingInputError
from training.output import prepare_output_dir
from training.scenarios import (
    EVENT_GAP_POINTS,
    SCENARIOS,
    WARMUP_POINTS,
    generate_series,
    write_csv,
)

MANIFEST_FILE = "manifest.json"
# generate_series places up to a few anomalies after the warm-up, apart from
# each other; shorter series do not leave room for them.
MIN_LENGTH = WARMUP_POINTS + 2 * EVENT_GAP_POINTS + 400
MAX_LENGTH = 1_000_000


@dataclass(frozen=True)
class GeneratedFile:
    """One written series."""

    file: str  # name inside the output directory
    scenario: str
    index: int
    points: int
    positive_points: int  # points with a label of at least 0.5


def series_rng(seed: int, scenario: str, index: int) -> np.random.Generator:
    """Return the generator of series ``index`` of ``scenario``."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, SCENARIOS.index(scenario), index])
    )


def generate_files(
    output_dir: Path | str,
    scenarios: tuple[str, ...] | list[str] = SCENARIOS,
    n_series: int = 4,
    length: int = 2000,
    seed: int = 0,
) -> list[GeneratedFile]:
    """Write ``n_series`` series of each scenario and the manifest into output_dir.

    Returns the written files in the order of the manifest. Raises
    TrainingInputError for an unknown scenario, a length outside
    [MIN_LENGTH, MAX_LENGTH], a count below 1, a negative seed, or an output
    directory that cannot be created or written to.
    """
    scenarios = tuple(scenarios)
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown or not scenarios:
        raise TrainingInputError(
            f"unknown scenario {unknown[0] if unknown else '(none)'!r}; "
            f"choose one of {', '.join(SCENARIOS)} or 'all'"
        )
    if n_series < 1:
        raise TrainingInputError(f"invalid n_series {n_series}: must be 1 or more")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise TrainingInputError(
            f"invalid length {length}: must be between {MIN_LENGTH} and {MAX_LENGTH} "
            "points, so that each series has room for its warm-up and anomalies"
        )
    if seed < 0:
        raise TrainingInputError(f"invalid seed {seed}: must be 0 or more")

    output_dir = prepare_output_dir(output_dir)

    written: list[GeneratedFile] = []
    for scenario in scenarios:
        for index in range(n_series):
            series = generate_series(
                scenario, series_rng(seed, scenario, index), length, length
            )
            name = f"{scenario}_{index:03d}.csv"
            with _write_errors(output_dir / name):
                write_csv(series, output_dir / name)
            written.append(
                GeneratedFile(
                    file=name,
                    scenario=scenario,
                    index=index,
                    points=int(series.values.size),
                    positive_points=int(np.count_nonzero(series.labels >= 0.5)),
                )
            )

    manifest = {
        "generator": "training.generate",
        "seed": seed,
        "scenarios": list(scenarios),
        "n_series_per_scenario": n_series,
        "length": length,
        "columns": ["timestamp", "value", "label"],
        "label": "per-point anomaly probability in [0, 1], written with 4 decimals",
        "seeding": "series i of scenario k uses numpy SeedSequence([seed, k, i]), "
        "k the scenario's index in training.scenarios.SCENARIOS",
        "files": [vars(item) for item in written],
    }
    manifest_path = output_dir / MANIFEST_FILE
    with _write_errors(manifest_path):
        manifest_path.write_text(
            json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
        )
    return written


@contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    """Turn an OSError from writing ``path`` into a TrainingInputError."""
    try:
        yield
    except OSError as exc:
        raise TrainingInputError(
            f"cannot write {path} ({exc.strerror or exc}); free disk space, remove "
            "what blocks the path or choose another --output-dir"
        ) from None
