"""Tests of reading ``timestamp,value`` CSV files."""

from __future__ import annotations

import pytest

from stream.csvfile import read_points
from stream.errors import InputFileError

# 2014-04-10 07:15:00 UTC
APRIL_10 = 1397114100.0


def write(tmp_path, content: bytes, name: str = "input.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"timestamp,value\n2014-04-10 07:15:00,1.5\n2014-04-10 07:20:00,-2\n",
            [(2, "2014-04-10 07:15:00", APRIL_10, 1.5), (3, "2014-04-10 07:20:00", APRIL_10 + 300, -2.0)],
        ),
        # byte-order mark and Windows line ends
        (
            b"\xef\xbb\xbftimestamp,value\r\n1397114100,1\r\n1397114400,2\r\n",
            [(2, "1397114100", APRIL_10, 1.0), (3, "1397114400", APRIL_10 + 300, 2.0)],
        ),
        # blank and whitespace-only lines are skipped but still counted
        (
            b"\n\ntimestamp,value\n\n1397114100,1\n , \n\n1397114400,2\n\n",
            [(5, "1397114100", APRIL_10, 1.0), (8, "1397114400", APRIL_10 + 300, 2.0)],
        ),
        # column order, case, spaces, quotes and extra columns
        (
            b'note, Value ,TIMESTAMP,unit\n"a, b","3.5"," 2014-04-10 07:15:00 ",kW\nx,4,1397114400,kW,extra\n',
            [(2, "2014-04-10 07:15:00", APRIL_10, 3.5), (3, "1397114400", APRIL_10 + 300, 4.0)],
        ),
        # a quoted field across two lines: the row ends on line 3
        (
            b'timestamp,value,note\n1397114100,1,"first\nsecond"\n1397114400,2,\n',
            [(3, "1397114100", APRIL_10, 1.0), (4, "1397114400", APRIL_10 + 300, 2.0)],
        ),
        # no line end after the last row
        (b"timestamp,value\n1397114100,7", [(2, "1397114100", APRIL_10, 7.0)]),
    ],
)  # fmt: skip
def test_read_valid(tmp_path, content, expected):
    assert list(read_points(write(tmp_path, content))) == expected


def test_order_and_duplicates_kept(tmp_path):
    # Ordering is the scorer's job, so the reader yields every valid row.
    path = write(tmp_path, b"timestamp,value\n20,1\n10,2\n10,3\n")
    assert [row[2] for row in read_points(path)] == [20.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b"\n \n,\n", "is empty"),
        (b"timestamp,value\n", "has a header but no data rows"),
        (b"timestamp,value\n\n\n", "has a header but no data rows"),
        (b"time,val\n1,2\n", "line 1: invalid header 'time,val'"),
        (b"\n\ntimestamp\n1\n", "line 3: invalid header 'timestamp'"),
        (b"1397114100,1.5\n1397114400,2\n", "line 1: invalid header"),
        (b"timestamp,value\n1,2\n3\n", "line 3: expected 2 columns, found 1"),
        (b"timestamp,value\n1,2\n\nyesterday,3\n", "line 4: invalid timestamp 'yesterday'"),
        (b"timestamp,value\n1,2\n2,abc\n", "line 3: invalid value 'abc'"),
        (b"timestamp,value\n1,2\n2,\n", "line 3: invalid value ''"),
        (b"timestamp,value\n1,2\n2,nan\n", "line 3: invalid value 'nan'"),
        (b"timestamp,value\n1,2\n2,-inf\n", "line 3: invalid value '-inf'"),
        (b"timestamp,value\n1e20,2\n", "line 2: timestamp '1e20' is outside years 1 to 9999"),
        (b"timestamp,value\n1,2\n2,\xff\n", "is not UTF-8 text"),
        (b"\xff\xfetimestamp,value\n", "is not UTF-8 text"),
    ],
)  # fmt: skip
def test_read_rejected(tmp_path, content, fragment):
    path = write(tmp_path, content)
    with pytest.raises(InputFileError) as caught:
        list(read_points(path))
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="input file not found"):
        list(read_points(tmp_path / "absent.csv"))


def test_directory(tmp_path):
    with pytest.raises(InputFileError, match="is a directory"):
        list(read_points(tmp_path))


def test_rows_before_error_yielded(tmp_path):
    path = write(tmp_path, b"timestamp,value\n1,1\n2,2\n3,x\n")
    rows = read_points(path)
    assert next(rows)[0] == 2
    assert next(rows)[0] == 3
    with pytest.raises(InputFileError, match="line 4"):
        next(rows)
