"""Read and write corpora and detector results in the layout of the Numenta
Anomaly Benchmark (NAB v1.1).

A corpus folder contains:

- ``data/<category>/<name>.csv``: ``timestamp,value`` rows, in time order except
  where a clock change repeats or steps back timestamps.
- ``labels/combined_windows.json``: for each ``<category>/<name>.csv``, a list of
  anomaly windows ``[start, end]`` as timestamps, inclusive at both ends.
- ``results/<detector>/<category>/<detector>_<name>.csv``: one
  ``timestamp,anomaly_score`` row per data row.

Files are named by their path relative to ``data/``, such as
``"realTraffic/speed_7578.csv"``, which is also their key in
``combined_windows.json``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# NAB's development files, where a checkout keeps them beside the repository.
# Without them there, the benchmarks need --corpus.
DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
DATA_DIR = "data"
RESULTS_DIR = "results"
WINDOWS_FILE = "labels/combined_windows.json"
TIMESTAMP_COLUMN = "timestamp"
VALUE_COLUMN = "value"
SCORE_COLUMN = "anomaly_score"

# NAB writes window bounds with microseconds ("2014-04-10 07:15:00.000000") and
# data rows without them, so both are parsed to one datetime64 unit.
TIMESTAMP_DTYPE = "datetime64[us]"


def parse_timestamps(values: Iterable[str]) -> np.ndarray:
    """Parse timestamps such as "2014-04-10 07:15:00[.000000]" to datetime64[us]."""
    return np.array(list(values), dtype=TIMESTAMP_DTYPE)


def category_of(name: str) -> str:
    """Return the category of a file name such as ``"realTraffic/speed_7578.csv"``."""
    category, _, base = name.partition("/")
    if not base:
        raise ValueError(
            f"invalid NAB file name {name!r}: expected '<category>/<name>.csv'"
        )
    return category


def list_data_files(root: str | Path) -> list[str]:
    """List the data files of a corpus as sorted ``<category>/<name>.csv`` names."""
    data_dir = Path(root) / DATA_DIR
    if not data_dir.is_dir():
        raise FileNotFoundError(f"NAB data folder not found: {data_dir}")
    return sorted(
        path.relative_to(data_dir).as_posix() for path in data_dir.glob("*/*.csv")
    )


def iter_timestamp_rows(path: str | Path, column: str) -> Iterator[tuple[str, float]]:
    """Stream ``(timestamp, number)`` pairs from the named columns of a CSV file.

    The header must contain ``timestamp`` and ``column``. Other columns are ignored,
    so NAB's own results files, which add ``value``, ``label`` and per-profile
    columns, can be read too.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if TIMESTAMP_COLUMN not in header or column not in header:
            raise ValueError(
                f"invalid header {header!r} in {path}: expected the columns "
                f"{TIMESTAMP_COLUMN} and {column}"
            )
        timestamp_index = header.index(TIMESTAMP_COLUMN)
        number_index = header.index(column)
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{line_number}: expected {len(header)} columns, "
                    f"got {len(row)}"
                )
            try:
                number = float(row[number_index])
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: invalid number {row[number_index]!r}"
                ) from None
            yield row[timestamp_index], number


def _read_columns(path: str | Path, column: str) -> tuple[list[str], np.ndarray]:
    timestamps: list[str] = []
    numbers: list[float] = []
    for timestamp, number in iter_timestamp_rows(path, column):
        timestamps.append(timestamp)
        numbers.append(number)
    return timestamps, np.array(numbers, dtype=np.float64)


def read_data_file(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a data file into timestamp strings and float64 values."""
    return _read_columns(path, VALUE_COLUMN)


def data_path(root: str | Path, name: str) -> Path:
    """Return the path of data file ``name`` (``<category>/<name>.csv``) in a corpus."""
    return Path(root) / DATA_DIR / name


def read_windows(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Read anomaly windows from a corpus folder or a ``combined_windows.json`` file.

    Returns a dict from file name to a list of ``(start, end)`` timestamp strings.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WINDOWS_FILE
    with path.open() as handle:
        raw = json.load(handle)
    windows: dict[str, list[tuple[str, str]]] = {}
    for name, pairs in raw.items():
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(
                    f"invalid window {pair!r} for {name} in {path}: "
                    "expected [start, end]"
                )
        windows[name] = [(start, end) for start, end in pairs]
    return windows


def results_path(root: str | Path, detector: str, name: str) -> Path:
    """Return ``results/<detector>/<category>/<detector>_<name>.csv`` in a corpus."""
    category = category_of(name)
    base = name.split("/", 1)[1]
    return Path(root) / RESULTS_DIR / detector / category / f"{detector}_{base}"


def write_results(
    root: str | Path,
    detector: str,
    name: str,
    timestamps: Sequence[str],
    scores: Sequence[float] | np.ndarray,
) -> Path:
    """Write a detector's scores for data file ``name`` in NAB's results layout.

    Returns the path written. Scores are written with ``repr`` precision, so
    reading the file back gives the same float64 values.
    """
    if len(timestamps) != len(scores):
        raise ValueError(
            f"{name}: {len(timestamps)} timestamps but {len(scores)} scores, "
            "expected one score per row"
        )
    path = results_path(root, detector, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow((TIMESTAMP_COLUMN, SCORE_COLUMN))
        for timestamp, score in zip(timestamps, scores, strict=True):
            writer.writerow((timestamp, repr(float(score))))
    return path


def read_results(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a results file into timestamp strings and float64 anomaly scores."""
    return _read_columns(path, SCORE_COLUMN)


def list_detectors(root: str | Path) -> list[str]:
    """List the detector folders under ``results/`` of a corpus."""
    results_dir = Path(root) / RESULTS_DIR
    if not results_dir.is_dir():
        return []
    return sorted(path.name for path in results_dir.iterdir() if path.is_dir())


@dataclass(frozen=True, eq=False)
class DataFile:
    """The timestamps and labelled anomaly windows of one corpus file."""

    name: str
    timestamps: np.ndarray
    windows: tuple[tuple[np.datetime64, np.datetime64], ...]

    @property
    def category(self) -> str:
        return category_of(self.name)

    @property
    def n_rows(self) -> int:
        return len(self.timestamps)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A set of labelled NAB files, keyed by ``<category>/<name>.csv``."""

    files: Mapping[str, DataFile]
    root: Path | None = None

    @property
    def names(self) -> list[str]:
        return list(self.files)

    @property
    def n_windows(self) -> int:
        return sum(len(data_file.windows) for data_file in self.files.values())

    @property
    def n_rows(self) -> int:
        return sum(data_file.n_rows for data_file in self.files.values())

    def subset(self, names: Iterable[str]) -> Corpus:
        """Return a corpus of the named files only."""
        return Corpus({name: self.files[name] for name in names}, self.root)


def make_data_file(
    name: str,
    timestamps: Sequence[str] | np.ndarray,
    windows: Iterable[tuple[str, str]] | Iterable[tuple[np.datetime64, np.datetime64]],
) -> DataFile:
    """Build a DataFile from timestamps and ``(start, end)`` window bounds.

    Windows are sorted by start. Timestamps need not be strictly increasing: NAB
    files repeat timestamps at daylight-saving changes and one goes back in time.
    """
    parsed = np.asarray(timestamps).astype(TIMESTAMP_DTYPE)
    if parsed.ndim != 1:
        raise ValueError(f"{name}: timestamps must be one-dimensional")
    bounds = sorted(
        (np.datetime64(start, "us"), np.datetime64(end, "us")) for start, end in windows
    )
    for start, end in bounds:
        if end < start:
            raise ValueError(f"{name}: window ({start}, {end}) ends before it starts")
    return DataFile(name=name, timestamps=parsed, windows=tuple(bounds))


def load_corpus(root: str | Path, names: Iterable[str] | None = None) -> Corpus:
    """Load the timestamps and windows of a NAB-layout corpus.

    ``names`` selects files (default: every file under ``data/``). Each selected
    file needs an entry in ``labels/combined_windows.json``, possibly an empty list.
    """
    root = Path(root)
    selected = list_data_files(root) if names is None else list(names)
    windows = read_windows(root / WINDOWS_FILE)
    files: dict[str, DataFile] = {}
    for name in selected:
        if name not in windows:
            raise ValueError(f"{name} has no entry in {root / WINDOWS_FILE}")
        timestamps = [
            timestamp
            for timestamp, _ in iter_timestamp_rows(data_path(root, name), VALUE_COLUMN)
        ]
        files[name] = make_data_file(name, timestamps, windows[name])
    return Corpus(files=files, root=root)


def open_corpus(root: str | Path) -> Corpus:
    """Load a corpus for a command line tool, with errors that name the fix.

    Raises ValueError when ``root`` has no ``data/`` folder, no data files, or no
    readable ``labels/combined_windows.json`` entry for one of them.
    """
    root = Path(root)
    if not (root / "data").is_dir():
        raise ValueError(
            f"{root} is not a NAB-layout corpus (no data/ folder); pass --corpus "
            "with a folder that holds data/ and labels/"
        )
    if not list_data_files(root):
        raise ValueError(f"{root / 'data'} contains no .csv data files; pass --corpus")
    try:
        return load_corpus(root)
    except OSError as error:
        raise ValueError(
            f"cannot read the NAB corpus {root}: {error}; "
            f"it needs {WINDOWS_FILE} and readable data files"
        ) from error


def align_scores(
    name: str,
    data_timestamps: np.ndarray,
    result_timestamps: np.ndarray,
    scores: np.ndarray,
) -> np.ndarray:
    """Reorder a results file's scores to the row order of its data file.

    Rows are matched by timestamp, the k-th occurrence of a repeated timestamp to
    the k-th occurrence. Some published NAB results files list a data file's rows
    sorted by time where the data file steps back in time.
    Raises ValueError when the two files do not have the same timestamps.
    """
    if len(result_timestamps) != len(data_timestamps):
        raise ValueError(
            f"{name}: the results have {len(result_timestamps)} rows but the data "
            f"file has {len(data_timestamps)}"
        )
    if np.array_equal(result_timestamps, data_timestamps):
        return scores
    data_order = np.argsort(data_timestamps, kind="stable")
    result_order = np.argsort(result_timestamps, kind="stable")
    mismatched = np.flatnonzero(
        data_timestamps[data_order] != result_timestamps[result_order]
    )
    if len(mismatched):
        row = int(result_order[mismatched[0]])
        raise ValueError(
            f"{name}: results row {row + 1} has timestamp {result_timestamps[row]}, "
            "which does not match the data file's timestamps"
        )
    logger.info("%s: reordered the results rows to the data file's row order", name)
    aligned = np.empty_like(scores)
    aligned[data_order] = scores[result_order]
    return aligned


def load_detector_results(
    root: str | Path, detector: str, corpus: Corpus
) -> dict[str, np.ndarray]:
    """Load a detector's scores for every file of ``corpus``, one per data row.

    Raises FileNotFoundError for a missing results file and ValueError when a
    results file's timestamps differ from the data file's.
    """
    results: dict[str, np.ndarray] = {}
    for name, data_file in corpus.files.items():
        path = results_path(root, detector, name)
        if not path.is_file():
            raise FileNotFoundError(f"results file for {name} not found: {path}")
        timestamps, scores = read_results(path)
        results[name] = align_scores(
            str(path), data_file.timestamps, parse_timestamps(timestamps), scores
        )
    return results
