"""Labelled series for fine-tuning: ``timestamp,value,label`` CSV files and NAB folders.

A CSV file needs a header with ``timestamp``, ``value`` and ``label`` columns (any
order and case, other columns ignored). A label is 0, 1 or an anomaly probability
in between. Timestamps are epoch seconds or ISO 8601, and one without an offset is
UTC, as the streaming service reads them.

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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.errors import TrainingInputError

NAB_DATA_DIR = "data"
NAB_WINDOWS_FILE = "labels/combined_windows.json"
# The streaming service rejects larger values (stream.points.MAX_ABS_VALUE).
MAX_ABS_VALUE = 1e300


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


def parse_timestamp(text: str) -> float:
    """Convert epoch seconds or an ISO 8601 string to epoch seconds (naive means UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text)  # raises ValueError when invalid
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _open_csv(path: Path):
    try:
        return path.open("r", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise TrainingInputError(f"data file not found: {path}") from None
    except OSError as exc:
        raise TrainingInputError(f"cannot open {path}: {exc.strerror}") from None


def read_rows(
    path: Path, columns: tuple[str, ...]
) -> tuple[list[float], list[list[str]]]:
    """Read the timestamp and the named columns of every non-blank row.

    Returns (epoch seconds, [column values as text for each requested column]).
    Raises TrainingInputError naming the file and line of the first problem.
    """
    timestamps: list[float] = []
    cells: list[list[str]] = [[] for _ in columns]
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
                raw = row[timestamp_index]
                try:
                    timestamps.append(parse_timestamp(raw))
                except (ValueError, OverflowError):
                    raise TrainingInputError(
                        f"{path}: line {reader.line_num}: invalid timestamp {raw!r}; "
                        "expected ISO 8601 such as '2014-04-10 07:15:00' or epoch seconds"
                    ) from None
                for target, index in zip(cells, indices, strict=True):
                    target.append(row[index].strip())
        except UnicodeDecodeError:
            raise TrainingInputError(
                f"{path} is not UTF-8 text; save it as UTF-8 CSV"
            ) from None
        except csv.Error as exc:
            raise TrainingInputError(f"{path}: line {reader.line_num}: {exc}") from None
    if not timestamps:
        raise TrainingInputError(f"{path} has a header but no data rows")
    return timestamps, cells


def _numbers(path: Path, column: str, texts: list[str]) -> np.ndarray:
    values = np.empty(len(texts))
    for row, text in enumerate(texts):
        try:
            values[row] = float(text)
        except ValueError:
            raise TrainingInputError(
                f"{path}: data row {row + 1}: invalid {column} {text!r}; expected a number"
            ) from None
    return values


def _check_values(path: Path, values: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > MAX_ABS_VALUE))
    if bad.size:
        row = int(bad[0])
        raise TrainingInputError(
            f"{path}: data row {row + 1}: value {float(values[row])!r} is not finite or beyond "
            f"+-{MAX_ABS_VALUE:g}; remove or correct the row"
        )


def _check_labels(path: Path, labels: np.ndarray) -> None:
    bad = np.flatnonzero(~((labels >= 0.0) & (labels <= 1.0)))
    if bad.size:
        row = int(bad[0])
        raise TrainingInputError(
            f"{path}: data row {row + 1}: label {float(labels[row])!r} is not in [0, 1]; "
            "use 0, 1 or an anomaly probability"
        )


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
    timestamps, (value_texts, label_texts) = read_rows(path, ("value", "label"))
    values = _numbers(path, "value", value_texts)
    labels = _numbers(path, "label", label_texts)
    _check_values(path, values)
    _check_labels(path, labels)
    return _build(name or path.name, path, timestamps, values, labels)


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
        timestamps, (value_texts,) = read_rows(path, ("value",))
        values = _numbers(path, "value", value_texts)
        _check_values(path, values)
        stamps = np.asarray(timestamps)
        labels = np.zeros(stamps.size)
        for start, end in windows[name]:
            try:
                low, high = parse_timestamp(start), parse_timestamp(end)
            except ValueError:
                raise TrainingInputError(
                    f"invalid window [{start!r}, {end!r}] for {name} in {windows_path}"
                ) from None
            labels[(stamps >= low) & (stamps <= high)] = 1.0
        files.append(_build(name, path, timestamps, values, labels))
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
