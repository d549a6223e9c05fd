"""Labelled series for fine-tuning: ``timestamp,value,label`` CSV files and NAB folders.

A CSV file needs a header with ``timestamp``, ``value`` and ``label`` columns (any
order and case, other columns ignored). A label is 0, 1 or an anomaly probability
in between. Timestamps and values are parsed by the streaming service's own
functions in ``stream.points``. So timestamps are epoch seconds or ISO 8601, one
without an offset is UTC, and a row that the service rejects, such as one with an
infinite timestamp or value, is an error here.

A NAB-layout folder contains ``data/<category>/<name>.csv`` with ``timestamp,value``
rows and ``labels/combined_windows.json``. A row is labelled 1 when its timestamp
lies inside one of its file's windows (bounds inclusive) and 0 otherwise.

The streaming service rejects a point whose timestamp is not after the previous
one of its series, so such rows are dropped here too. Training then cuts the same
windows as the service scores.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.errors import InvalidPointError
from stream.points import parse_timestamp, parse_value
from training.errors import TrainingInputError

NAB_DATA_DIR = "data"
NAB_WINDOWS_FILE = "labels/combined_windows.json"


@dataclass(frozen=True, eq=False)
class LabelledFile:
    """One series read for fine-tuning, in row order."""

    name: str  # the file name, or <category>/<name>.csv in a NAB folder
    path: Path
    values: np.ndarray  # (n,) float64
    labels: np.ndarray  # (n,) float32 in [0, 1]
    dropped_rows: int  # rows whose timestamp was not after the previous row's

    @property
    def points(self) -> int:
        return int(self.values.size)


def _open_csv(path: Path):
    try:
        return path.open("r", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise TrainingInputError(f"data file not found: {path}") from None
    except OSError as exc:
        raise TrainingInputError(f"cannot open {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Rows:
    """The non-blank data rows of a CSV file, as ``read_rows`` returns them."""

    timestamps: list[float]  # epoch seconds
    cells: list[list[str]]  # the text of each requested column, one list per column
    lines: list[int]  # the file line number of each row, for error messages


def read_rows(path: Path, columns: tuple[str, ...]) -> Rows:
    """Read the timestamp and the named columns of every non-blank row.

    Parses timestamps with the streaming service's
    ``stream.points.parse_timestamp``. Raises TrainingInputError naming the file
    and line of the first problem.
    """
    timestamps: list[float] = []
    cells: list[list[str]] = [[] for _ in columns]
    lines: list[int] = []
    with _open_csv(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next((row for row in reader if any(c.strip() for c in row)), None)
            if header is None:
                raise TrainingInputError(
                    f"{path} is empty; expected a header "
                    f"'timestamp,{','.join(columns)}' and data rows"
                )
            names = [name.strip().lower() for name in header]
            for required in ("timestamp", *columns):
                if required not in names:
                    hint = (
                        "add a label column with 0/1 or an anomaly probability per "
                        "row, or pass a NAB-layout folder with labels/combined_windows.json"
                        if required == "label"
                        else f"add a {required!r} column"
                    )
                    raise TrainingInputError(
                        f"{path}: no {required!r} column in the header "
                        f"{','.join(header)!r}; {hint}"
                    )
            timestamp_index = names.index("timestamp")
            indices = [names.index(name) for name in columns]
            width = max(timestamp_index, *indices) + 1
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) < width:
                    raise TrainingInputError(
                        f"{path}: line {reader.line_num}: expected {len(names)} "
                        f"columns, found {len(row)}"
                    )
                try:
                    timestamps.append(parse_timestamp(row[timestamp_index].strip()))
                except InvalidPointError as exc:
                    raise TrainingInputError(
                        f"{path}: line {reader.line_num}: {exc}"
                    ) from None
                for target, index in zip(cells, indices, strict=True):
                    target.append(row[index].strip())
                lines.append(reader.line_num)
        except UnicodeDecodeError:
            raise TrainingInputError(
                f"{path} is not UTF-8 text; save it as UTF-8 CSV"
            ) from None
        except csv.Error as exc:
            raise TrainingInputError(f"{path}: line {reader.line_num}: {exc}") from None
    if not timestamps:
        raise TrainingInputError(f"{path} has a header but no data rows")
    return Rows(timestamps, cells, lines)


def _values(path: Path, texts: list[str], lines: list[int]) -> np.ndarray:
    """Parse values as the streaming service does (``stream.points.parse_value``)."""
    values = np.empty(len(texts))
    for row, (text, line) in enumerate(zip(texts, lines, strict=True)):
        try:
            values[row] = parse_value(text)
        except InvalidPointError as exc:
            raise TrainingInputError(f"{path}: line {line}: {exc}") from None
    return values


def _labels(path: Path, texts: list[str], lines: list[int]) -> np.ndarray:
    labels = np.empty(len(texts))
    for row, (text, line) in enumerate(zip(texts, lines, strict=True)):
        try:
            label = float(text)
        except ValueError:
            raise TrainingInputError(
                f"{path}: line {line}: invalid label {text!r}; expected 0, 1 or an "
                "anomaly probability in between"
            ) from None
        if not 0.0 <= label <= 1.0:
            raise TrainingInputError(
                f"{path}: line {line}: label {label!r} is not in [0, 1]; "
                "use 0, 1 or an anomaly probability"
            )
        labels[row] = label
    return labels


def _in_order(timestamps: list[float]) -> np.ndarray:
    """Mark the rows the service accepts: each timestamp after the last accepted one."""
    keep = np.zeros(len(timestamps), dtype=bool)
    last = -math.inf
    for row, stamp in enumerate(timestamps):
        if stamp > last:
            keep[row] = True
            last = stamp
    return keep


def _build(
    name: str,
    path: Path,
    timestamps: list[float],
    values: np.ndarray,
    labels: np.ndarray,
) -> LabelledFile:
    keep = _in_order(timestamps)
    return LabelledFile(
        name=name,
        path=path,
        values=values[keep],
        labels=labels[keep].astype(np.float32),
        dropped_rows=int(keep.size - np.count_nonzero(keep)),
    )


def read_labelled_csv(path: Path | str, name: str | None = None) -> LabelledFile:
    """Read one ``timestamp,value,label`` file."""
    path = Path(path)
    rows = read_rows(path, ("value", "label"))
    value_texts, label_texts = rows.cells
    values = _values(path, value_texts, rows.lines)
    labels = _labels(path, label_texts, rows.lines)
    return _build(name or path.name, path, rows.timestamps, values, labels)


def is_nab_folder(path: Path) -> bool:
    return (path / NAB_DATA_DIR).is_dir() and (path / NAB_WINDOWS_FILE).is_file()


def read_nab_folder(
    root: Path | str, names: Iterable[str] | None = None
) -> list[LabelledFile]:
    """Read the files of a NAB-layout folder with labels from their windows.

    ``names`` selects files as ``<category>/<name>.csv`` (default: every file under
    ``data/``). Each needs an entry in ``labels/combined_windows.json``.
    """
    root = Path(root)
    windows_path = root / NAB_WINDOWS_FILE
    try:
        windows = json.loads(windows_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingInputError(
            f"cannot read the NAB windows {windows_path} ({exc}); restore the file"
        ) from None
    data_dir = root / NAB_DATA_DIR
    if names is None:
        names = sorted(
            p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv")
        )
    files = []
    for name in names:
        if name not in windows:
            raise TrainingInputError(
                f"{name} has no entry in {windows_path}; add one (an empty list when "
                "the file has no anomaly)"
            )
        path = data_dir / name
        rows = read_rows(path, ("value",))
        (value_texts,) = rows.cells
        values = _values(path, value_texts, rows.lines)
        stamps = np.asarray(rows.timestamps)
        labels = np.zeros(stamps.size)
        for start, end in windows[name]:
            try:
                low, high = parse_timestamp(start), parse_timestamp(end)
            except InvalidPointError as exc:
                raise TrainingInputError(
                    f"invalid window [{start!r}, {end!r}] for {name} in "
                    f"{windows_path} ({exc}); correct the window's bounds"
                ) from None
            labels[(stamps >= low) & (stamps <= high)] = 1.0
        files.append(_build(name, path, rows.timestamps, values, labels))
    if not files:
        raise TrainingInputError(f"no data files under {data_dir}/<category>/*.csv")
    return files


def load_labelled_data(paths: Iterable[Path | str]) -> list[LabelledFile]:
    """Read every series named by ``paths``: CSV files, NAB folders or folders of CSVs.

    A folder that is not in NAB layout contributes its ``*.csv`` files (not those
    of subfolders), in name order.
    """
    files: list[LabelledFile] = []
    for path in map(Path, paths):
        if path.is_dir():
            if is_nab_folder(path):
                files.extend(read_nab_folder(path))
                continue
            csv_files = sorted(path.glob("*.csv"))
            if not csv_files:
                raise TrainingInputError(
                    f"no .csv files in {path}; pass timestamp,value,label CSV files or "
                    "a NAB-layout folder (data/ and labels/combined_windows.json)"
                )
            files.extend(read_labelled_csv(p) for p in csv_files)
        elif path.exists():
            files.append(read_labelled_csv(path))
        else:
            raise TrainingInputError(f"data path not found: {path}")
    names = [f.name for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        # Names identify the series in the model metadata, so they must differ.
        files = [
            LabelledFile(str(f.path), f.path, f.values, f.labels, f.dropped_rows)
            for f in files
        ]
    return files
