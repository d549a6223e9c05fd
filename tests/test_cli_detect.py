"""Tests of ``anomalybert detect``: output formats, accepted input and errors."""

from __future__ import annotations

import csv
import io
import json
import socket

import numpy as np
import pytest
from model_factory import WINDOW, write_model

from stream.cli import main

ROWS = 40
SPIKE_ROW = 30
# 2014-04-10 07:15:00 plus 30 steps of 5 minutes
SPIKE_TIME = "2014-04-10T09:45:00Z"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ERROR_PREFIX = "anomalybert detect: error:"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A model whose score of a point is its normalised value (threshold 1)."""
    return write_model(
        tmp_path_factory.mktemp("model"),
        np.zeros(WINDOW),
        input_gain=1.0,
        threshold=1.0,
    )


def series_rows() -> list[tuple[str, float]]:
    rows = []
    for i in range(ROWS):
        minutes = 15 + 5 * i
        stamp = f"2014-04-10 {7 + minutes // 60:02d}:{minutes % 60:02d}:00"
        value = 50.0 if i == SPIKE_ROW else 10.0 + 0.1 * (i % 3)
        rows.append((stamp, value))
    return rows


def write_csv(tmp_path, rows=None, name="input.csv"):
    rows = series_rows() if rows is None else rows
    lines = ["timestamp,value"] + [f"{stamp},{value}" for stamp, value in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def run_detect(model_path, *args):
    return main(["detect", "--model", str(model_path), *args])


def test_table_output(tmp_path, model_path, capsys):
    path = write_csv(tmp_path)
    code = run_detect(model_path, "--input", str(path), "--top-n", "3")
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == f"{path}: {ROWS} points scored, threshold 1.000"
    assert lines[1].split() == ["rank", "timestamp", "value", "score", "window"]
    assert len(lines) == 2 + 3 + 1
    assert lines[2].split()[:3] == ["1", SPIKE_TIME, "50"]
    assert lines[2].endswith(" *")
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]
    assert lines[-1] == "* score at or above the threshold"


def test_table_prints_large_values_in_full(tmp_path, model_path, capsys):
    rows = [(stamp, 46_141_000.0 + value) for stamp, value in series_rows()]
    path = write_csv(tmp_path, rows)
    assert run_detect(model_path, "--input", str(path), "--top-n", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:3] == ["1", SPIKE_TIME, "46141050"]


def test_json_output(tmp_path, model_path, capsys):
    path = write_csv(tmp_path)
    code = run_detect(model_path, "--input", str(path), "--format", "json")
    document = json.loads(capsys.readouterr().out)
    top = document["anomalies"][0]
    assert code == 0
    assert document["input"] == str(path)
    assert document["points_scored"] == ROWS
    assert document["points_rejected"] == 0
    assert document["threshold"] == 1.0
    assert len(document["anomalies"]) == 10
    assert [a["rank"] for a in document["anomalies"]] == list(range(1, 11))
    assert top["timestamp"] == SPIKE_TIME
    assert top["value"] == 50.0
    assert isinstance(top["score"], float)
    assert top["score"] > 1.0
    assert top["score"] == top["window_score"]
    assert top["above_threshold"] is True
    for anomaly in document["anomalies"]:
        assert anomaly["above_threshold"] == (anomaly["score"] >= 1.0)


def test_json_scores_descending(tmp_path, model_path, capsys):
    path = write_csv(tmp_path)
    run_detect(model_path, "--input", str(path), "--format", "json", "--top-n", "40")
    scores = [a["score"] for a in json.loads(capsys.readouterr().out)["anomalies"]]
    assert len(scores) == ROWS
    assert scores == sorted(scores, reverse=True)


def test_csv_output(tmp_path, model_path, capsys):
    path = write_csv(tmp_path)
    code = run_detect(
        model_path, "--input", str(path), "--format", "csv", "--top-n", "2"
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 0
    assert list(rows[0]) == ["rank", "timestamp", "value", "score", "window_score"]
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert rows[0]["timestamp"] == SPIKE_TIME
    assert float(rows[0]["value"]) == 50.0
    assert float(rows[0]["score"]) > 1.0


def test_plot_written(tmp_path, model_path, capsys):
    path = write_csv(tmp_path)
    plot = tmp_path / "plot.png"
    code = run_detect(model_path, "--input", str(path), "--plot", str(plot))
    assert code == 0
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert f"wrote {plot}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "points"),
    [
        (b"\xef\xbb\xbftimestamp,value\n1397114100,1\n1397114400,2\n", 2),
        (b"timestamp,value\r\n1397114100,1\r\n1397114400,2\r\n", 2),
        (b"\ntimestamp,value\n\n1397114100,1\n\n\n1397114400,2\n\n", 2),
        (b'"timestamp","value"\n"1397114100","1"\n"2014-04-10 07:20:00","2"\n', 2),
        (
            b"id,timestamp,unit,value,note\n1,1397114100,kW,1,a\n2,1397114400,kW,2,b\n",
            2,
        ),
    ],
)
def test_input_variants_accepted(tmp_path, model_path, capsys, content, points):
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    code = run_detect(model_path, "--input", str(path), "--format", "json")
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["points_scored"] == points
    assert captured.err == ""


def test_disordered_rows_skipped(tmp_path, model_path, capsys):
    rows = series_rows()
    # Data row k is on line k + 2: line 7 repeats line 6 and line 10 goes back.
    rows.insert(5, rows[4])
    rows.insert(8, ("2014-04-10 07:00:00", 1.0))
    path = write_csv(tmp_path, rows)
    code = run_detect(model_path, "--input", str(path), "--format", "json")
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    document = json.loads(captured.out)
    assert code == 0
    assert document["points_scored"] == ROWS
    assert document["points_rejected"] == 2
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: line 7: skipped:")
    assert warnings[1].startswith("warning: line 10: skipped:")
    assert "2014-04-10T07:00:00Z" in warnings[1]


def test_many_skipped_rows_summarised(tmp_path, model_path, capsys):
    rows = [(str(1397114100 + 300 * i), 1.0) for i in range(5)]
    rows += [(str(1397114100), 2.0)] * 25
    path = write_csv(tmp_path, rows)
    code = run_detect(model_path, "--input", str(path))
    warnings = capsys.readouterr().err.splitlines()
    assert code == 0
    assert len(warnings) == 21
    assert warnings[0].startswith("warning: line 7: skipped:")
    assert warnings[19].startswith("warning: line 26: skipped:")
    assert warnings[20] == "warning: skipped 25 rows in all"


GOOD_HEAD = b"timestamp,value\n1397114100,1\n1397114400,2\n"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b"timestamp,value\n", "has a header but no data rows"),
        (b"time,value\n1397114100,1\n", "line 1: invalid header"),
        (GOOD_HEAD + b"1397114700,abc\n", "line 4: invalid value 'abc'"),
        (GOOD_HEAD + b"\n\nnot a time,3\n", "line 6: invalid timestamp"),
        (GOOD_HEAD + b"1397114700\n", "line 4: expected 2 columns"),
        (GOOD_HEAD + b"1397114700,nan\n", "line 4: invalid value 'nan'"),
        (GOOD_HEAD + b"1397114700,inf\n", "line 4: invalid value 'inf'"),
        (GOOD_HEAD + b"1397114700,\xe9\n", "is not UTF-8 text"),
    ],
)
def test_bad_file_exits_2(tmp_path, model_path, capsys, content, fragment):
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    code = run_detect(model_path, "--input", str(path))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(f"{ERROR_PREFIX} {path}")
    assert captured.err.count("\n") == 1
    assert fragment in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("target", "fragment"),
    [("absent.csv", "input file not found"), (".", "is a directory")],
)
def test_bad_path_exits_2(tmp_path, model_path, capsys, target, fragment):
    code = run_detect(model_path, "--input", str(tmp_path / target))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(ERROR_PREFIX)
    assert captured.err.count("\n") == 1
    assert fragment in captured.err


def test_missing_model_exits_2(tmp_path, capsys):
    path = write_csv(tmp_path)
    code = run_detect(tmp_path / "absent.onnx.json", "--input", str(path))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"{ERROR_PREFIX} model metadata not found")


@pytest.mark.parametrize("top_n", ["0", "-1", "x", "1.5"])
def test_bad_top_n(tmp_path, model_path, capsys, top_n):
    path = write_csv(tmp_path)
    with pytest.raises(SystemExit) as caught:
        run_detect(model_path, "--input", str(path), "--top-n", top_n)
    assert caught.value.code == 2
    assert "--top-n" in capsys.readouterr().err


def test_missing_input_option(model_path, capsys):
    with pytest.raises(SystemExit) as caught:
        run_detect(model_path)
    assert caught.value.code == 2
    assert "--input" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("plot.txt", "the plot is a PNG image, so give a path ending in .png"),
        ("plot.pdf", "the plot is a PNG image, so give a path ending in .png"),
        ("plot", "the plot is a PNG image, so give a path ending in .png"),
        ("folder.png", "is a directory"),
        ("missing/plot.png", "directory {tmp}/missing does not exist"),
    ],
    ids=["txt", "pdf", "no-suffix", "directory", "missing-parent"],
)
def test_plot_bad_path_exits_2_before_table(
    tmp_path, model_path, capsys, target, fragment
):
    path = write_csv(tmp_path)
    (tmp_path / "folder.png").mkdir()
    plot = tmp_path / target
    code = run_detect(model_path, "--input", str(path), "--plot", str(plot))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(f"{ERROR_PREFIX} invalid --plot path {plot}")
    assert fragment.format(tmp=tmp_path) in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "input.csv"]


def test_plot_upper_case_suffix_written(tmp_path, model_path, capsys):
    path = write_csv(tmp_path)
    plot = tmp_path / "plot.PNG"
    code = run_detect(model_path, "--input", str(path), "--plot", str(plot))
    assert code == 0
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert f"wrote {plot}" in capsys.readouterr().err


def test_replay_checks_file_before_connecting(tmp_path, capsys):
    # Nothing listens on the bootstrap address: the bad row must be found
    # before the replay tries to connect or send a point.
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,value\n1,1.0\n2,2.0\n3,oops\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status = main(
        ["replay", "--input", str(path), "--bootstrap-servers", f"127.0.0.1:{port}"]
    )
    error = capsys.readouterr().err
    assert status == 2
    assert "line 4" in error
    assert "cannot connect" not in error
