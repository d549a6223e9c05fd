"""Reading ``timestamp,value`` CSV files one row at a time."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from stream.errors import InputFileError, InvalidPointError
from stream.points import parse_timestamp, parse_value

# Error messages quote at most this many characters of an invalid row, because a
# row can be megabytes long.
MAX_QUOTED_ROW_CHARS = 80


def read_points(path: str | Path) -> Iterator[tuple[int, str, float, float]]:
    """Yield ``(line_number, raw_timestamp, epoch_seconds, value)`` for each data row.

    The header must name a ``timestamp`` and a ``value`` column (any order, any
    case; other columns are ignored). Blank lines are skipped; a byte-order mark
    and Windows line ends are accepted. The file is streamed, never loaded whole.
    Raises :class:`InputFileError` naming the line of the first invalid row.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path} is a directory; pass a CSV file")
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputFileError(f"input file not found: {path}") from None
    except OSError as exc:
        raise InputFileError(f"cannot open {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = _first_nonblank(reader)
            if header is None:
                raise InputFileError(
                    f"{path} is empty; expected a header 'timestamp,value' and data rows"
                )
            columns = [name.strip().lower() for name in header]
            if "timestamp" not in columns or "value" not in columns:
                raise InputFileError(
                    f"{path}: line {reader.line_num}: invalid header {','.join(header)!r}; "
                    "expected columns 'timestamp' and 'value'"
                )
            ts_col = columns.index("timestamp")
            value_col = columns.index("value")
            width = max(ts_col, value_col) + 1
            rows = 0
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                line = reader.line_num
                if len(row) < width:
                    raise InputFileError(
                        f"{path}: line {line}: expected {len(columns)} columns, "
                        f"found {len(row)}: {_row_excerpt(row)}"
                    )
                raw_ts = row[ts_col].strip()
                try:
                    seconds = parse_timestamp(raw_ts)
                    value = parse_value(row[value_col].strip())
                except InvalidPointError as exc:
                    raise InputFileError(f"{path}: line {line}: {exc}") from None
                rows += 1
                yield line, raw_ts, seconds, value
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"{path} is not UTF-8 text (byte {exc.start} of a read block); save it "
                "as UTF-8 CSV"
            ) from None
        except csv.Error as exc:
            raise InputFileError(f"{path}: line {reader.line_num}: {exc}") from None
    if rows == 0:
        raise InputFileError(f"{path} has a header but no data rows")


def _first_nonblank(reader: Iterator[list[str]]) -> list[str] | None:
    for row in reader:
        if row and any(cell.strip() for cell in row):
            return row
    return None


def _row_excerpt(row: list[str]) -> str:
    """Quote the row's fields joined with commas, cut to MAX_QUOTED_ROW_CHARS."""
    text = ",".join(row)
    if len(text) <= MAX_QUOTED_ROW_CHARS:
        return repr(text)
    return f"{text[:MAX_QUOTED_ROW_CHARS]!r}... ({len(text)} characters in all)"
