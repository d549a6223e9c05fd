"""Tests of reading ``timestamp,value`` CSV files and of ``anomalybert detect`` on them."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import stream.detect
from stream.cli import main
from stream.csvfile import read_points
from stream.detect import MAX_KEPT_REJECTIONS, detect_file, detect_points
from stream.errors import InputFileError
from stream.model import default_model_path, load_model
from stream.points import Point

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


@pytest.mark.parametrize(
    ("header", "row", "echoed"),
    [
        # at the limit the whole row is echoed
        ("timestamp,value", "x" * 80, repr("x" * 80)),
        ("timestamp,value", "x" * 81, repr("x" * 80) + "... (81 characters in all)"),
        # one field within csv's default field size limit of 131072 characters
        ("timestamp,value", "x" * 100_000, repr("x" * 80) + "... (100000 characters in all)"),
        # several fields, as joined with commas
        ("note,timestamp,value", "a" * 70 + "," + "b" * 70, repr("a" * 70 + "," + "b" * 9) + "... (141 characters in all)"),
    ],
    ids=["80-chars", "81-chars", "100000-chars", "two-fields"],
)  # fmt: skip
def test_short_row_echo_cut(tmp_path, header, row, echoed):
    path = write(tmp_path, f"{header}\n1,2,3\n{row}\n".encode())
    with pytest.raises(InputFileError) as caught:
        list(read_points(path))
    message = str(caught.value)
    columns = len(header.split(","))
    found = len(row.split(","))
    assert f"line 3: expected {columns} columns, found {found}: " in message
    assert message.endswith(f"found {found}: {echoed}")
    assert len(message) < len(str(path)) + 160


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


# --- anomalybert detect on whole files ----------------------------------------------

NAB_DATA = Path(__file__).parent / "data" / "nab" / "data"
NAB_FILES = [
    NAB_DATA / "artificialNoAnomaly" / "art_flatline.csv",
    NAB_DATA / "realTraffic" / "speed_7578.csv",
    NAB_DATA / "realAdExchange" / "exchange-3_cpm_results.csv",
]


def detect_file_in_memory(model, path, **_options):
    """Score a CSV file keeping every scored point and line number in lists.

    This was the implementation of ``stream.detect.detect_file`` before it
    streamed the file, and it is the reference for the printed output. It
    ignores the options that bound what the streaming version keeps.
    """
    path = Path(path)
    lines = []

    def points():
        for line, _raw, seconds, value in read_points(path):
            lines.append(line)
            yield Point(path.stem, seconds, value)

    return detect_points(model, points(), series=path.stem), lines


def disordered_file(tmp_path) -> Path:
    """Write a file with 30 repeated or earlier timestamps among 300 rows."""
    rows = ["timestamp,value"]
    for i in range(300):
        rows.append(f"{1397114100 + 300 * i},{10 + (i % 7) + (40 if i == 250 else 0)}")
    for i in range(30):
        rows.insert(100 + 3 * i, f"{1397114100 + 300 * i},1")
    path = tmp_path / "disordered.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def run_detect(capsys, *args) -> tuple[int, str, str]:
    code = main(["detect", "--model", str(default_model_path()), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("output_format", ["table", "json", "csv"])
@pytest.mark.parametrize("top_n", ["1", "10", "5000"])
@pytest.mark.parametrize("name", [path.stem for path in NAB_FILES] + ["disordered"])
def test_detect_output_unchanged(
    tmp_path, capsys, monkeypatch, name, top_n, output_format
):
    """Streaming detect_file prints what the in-memory implementation printed."""
    paths = {path.stem: path for path in NAB_FILES}
    path = paths[name] if name in paths else disordered_file(tmp_path)
    args = ["--input", str(path), "--format", output_format, "--top-n", top_n]
    streamed = run_detect(capsys, *args)
    monkeypatch.setattr(stream.detect, "detect_file", detect_file_in_memory)
    expected = run_detect(capsys, *args)
    assert streamed[0] == expected[0] == 0
    assert streamed[1] == expected[1]
    assert streamed[2] == expected[2]
    if name == "disordered":
        assert "warning: skipped 30 rows in all" in streamed[2]


def test_detect_plot_unchanged(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    path = NAB_FILES[1]
    streamed_plot = tmp_path / "streamed.png"
    expected_plot = tmp_path / "expected.png"
    run_detect(capsys, "--input", str(path), "--plot", str(streamed_plot))
    monkeypatch.setattr(stream.detect, "detect_file", detect_file_in_memory)
    run_detect(capsys, "--input", str(path), "--plot", str(expected_plot))
    assert streamed_plot.read_bytes() == expected_plot.read_bytes()


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.mark.parametrize("name", ["speed_7578", "disordered"])
def test_detect_file_equals_in_memory(tmp_path, model, name):
    path = NAB_FILES[1] if name == "speed_7578" else disordered_file(tmp_path)
    expected, expected_lines = detect_file_in_memory(model, path)
    streamed, lines = detect_file(model, path)
    assert list(streamed.points) == expected.points
    assert streamed.points_scored == len(expected.points)
    assert len(streamed.rejected) == len(expected.rejected)
    assert list(streamed.rejected) == expected.rejected
    assert lines == {
        r.input_index: expected_lines[r.input_index] for r in expected.rejected
    }
    for n in (0, 1, 7, 100, len(expected.points) + 1):
        assert streamed.top(n) == expected.top(n)
        bounded, _ = detect_file(model, path, top_n=n, keep_points=False)
        assert bounded.points is None
        assert bounded.points_scored == len(expected.points)
        assert bounded.top(n) == expected.top(n)


def test_detect_file_counts_unkept_rejections(tmp_path, model):
    rows = ["timestamp,value", "1397114100,1"]
    rows += ["1397114000,2"] * (MAX_KEPT_REJECTIONS + 50)
    path = tmp_path / "backwards.csv"
    path.write_text("\n".join(rows) + "\n")
    detection, lines = detect_file(model, path)
    assert len(detection.rejected) == MAX_KEPT_REJECTIONS + 50
    assert len(detection.rejected[:20]) == 20
    assert (
        detection.rejected[MAX_KEPT_REJECTIONS - 1].input_index == MAX_KEPT_REJECTIONS
    )
    assert sorted(lines) == list(range(1, MAX_KEPT_REJECTIONS + 1))
    assert lines[1] == 3
    with pytest.raises(IndexError, match="counted but not kept"):
        detection.rejected[MAX_KEPT_REJECTIONS]
    with pytest.raises(IndexError, match="counted but not kept"):
        detection.rejected[:]


def test_detect_file_without_points_needs_top_n(model):
    with pytest.raises(ValueError, match="needs top_n"):
        detect_file(model, NAB_FILES[1], keep_points=False)
    detection, _ = detect_file(model, NAB_FILES[1], top_n=5, keep_points=False)
    assert len(detection.top(5)) == 5
    with pytest.raises(ValueError, match="pass top_n=6 or keep_points=True"):
        detection.top(6)


def write_series(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    values = 10 + np.sin(np.arange(rows) / 50) + 0.1 * rng.normal(size=rows)
    lines = ["timestamp,value"]
    lines += [f"{1397114100 + 300 * i},{v:.4f}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def peak_bytes(function, *args, **kwargs) -> int:
    tracemalloc.start()
    try:
        function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_detect_file_memory_per_row(tmp_path, model):
    """Peak memory grows by a few bytes a row, not by a ScoredPoint object."""
    small = write_series(tmp_path / "small.csv", 2_000)
    large = write_series(tmp_path / "large.csv", 10_000)
    extra_rows = 8_000
    detect_file(model, small)  # allocates what the first run of a model needs
    # The first options are what `anomalybert detect` passes.
    for options, max_bytes_per_row in (
        ({}, 80),
        ({"top_n": 10, "keep_points": False}, 10),
    ):
        growth = peak_bytes(detect_file, model, large, **options) - peak_bytes(
            detect_file, model, small, **options
        )
        assert growth / extra_rows < max_bytes_per_row, options


@pytest.mark.parametrize("plot", [False, True])
def test_cli_keeps_points_only_for_plot(tmp_path, capsys, monkeypatch, plot):
    if plot:
        pytest.importorskip("matplotlib")
    options = {}
    real_detect_file = stream.detect.detect_file

    def spy(model, path, **kwargs):
        options.update(kwargs)
        return real_detect_file(model, path, **kwargs)

    monkeypatch.setattr(stream.detect, "detect_file", spy)
    args = ["--input", str(NAB_FILES[1]), "--top-n", "7"]
    if plot:
        args += ["--plot", str(tmp_path / "plot.png")]
    assert run_detect(capsys, *args)[0] == 0
    assert options == {"top_n": 7, "keep_points": plot}


# Pieces of CSV files: good rows, odd spellings, and bytes that break parsing.
CSV_PIECES = [
    "timestamp,value\n",
    "timestamp,value\r\n",
    "\ufefftimestamp,value\n",
    "time,val\n",
    "1397114100,12.5\n",
    "2014-04-10 07:15:00,1.0\r\n",
    '"2014-04-10 07:20:00","3.5"\n',
    "\n",
    "   \n",
    "1397114400,nan\n",
    "1397114700,1_000\n",
    "1397114100,2.0\n",
    "1397115000,1e400\n",
    "x,y,z\n",
    '"unterminated\n',
    "1397115300;4.0\n",
    "\x00\n",
    "1397115600,-7\n",
]


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(CSV_PIECES), max_size=30),
    tail=st.binary(max_size=40),
)
@example(
    pieces=["\ufefftimestamp,value\n", "1397114100,12.5\n", "\n", "1397114100,2.0\n"],
    tail=b"",
)
def test_any_file_scores_or_names_the_problem(tmp_path_factory, pieces, tail):
    # Any file either scores or raises InputFileError with its name; the rows
    # the scorer rejects are counted, never raised.
    path = tmp_path_factory.mktemp("csv") / "input.csv"
    path.write_bytes("".join(pieces).encode("utf-8") + tail)
    model = load_model(default_model_path())
    try:
        detection, _lines = detect_file(model, path, top_n=3, keep_points=False)
    except InputFileError as error:
        assert str(path) in str(error)
        return
    assert len(detection.top(3)) == min(3, detection.points_scored)
    if not tail:
        # Every data row was valid: it was scored or rejected as a repeat.
        text = "".join(pieces).replace("\ufeff", "")
        rows = [line for line in text.splitlines() if line.strip()]
        assert detection.points_scored + len(detection.rejected) == len(rows) - 1
