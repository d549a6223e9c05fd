"""Tests of ``anomalybert generate``: files, manifest, reproducibility and errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from stream.cli import main
from stream.csvfile import read_points
from training.errors import TrainingInputError
from training.generate import MANIFEST_FILE, MIN_LENGTH, generate_files
from training.scenarios import SCENARIOS

LENGTH = 700


def read_rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("generated")
    written = generate_files(directory, SCENARIOS, n_series=2, length=LENGTH, seed=5)
    return directory, written


def test_generate_writes_one_file_per_series(generated):
    directory, written = generated
    expected = sorted(f"{s}_{i:03d}.csv" for s in SCENARIOS for i in range(2))
    assert sorted(p.name for p in directory.glob("*.csv")) == expected
    assert sorted(item.file for item in written) == expected


def test_generate_columns_and_labels(generated):
    directory, _ = generated
    for path in directory.glob("*.csv"):
        rows = read_rows(path)
        assert list(rows[0]) == ["timestamp", "value", "label"], path.name
        assert len(rows) == LENGTH, path.name
        labels = np.array([float(row["label"]) for row in rows])
        values = np.array([float(row["value"]) for row in rows])
        assert labels.min() >= 0.0, path.name
        assert labels.max() <= 1.0, path.name
        assert np.isfinite(values).all(), path.name


def test_generate_every_scenario_has_anomalies(generated):
    directory, _ = generated
    for scenario in SCENARIOS:
        labels = [
            float(row["label"])
            for path in directory.glob(f"{scenario}_*.csv")
            for row in read_rows(path)
        ]
        assert max(labels) > 0.0, scenario


def test_generate_manifest(generated):
    directory, written = generated
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    assert manifest["seed"] == 5
    assert manifest["length"] == LENGTH
    assert manifest["n_series_per_scenario"] == 2
    assert manifest["scenarios"] == list(SCENARIOS)
    assert [f["file"] for f in manifest["files"]] == [w.file for w in written]
    assert all(f["points"] == LENGTH for f in manifest["files"])


def test_generate_same_seed_same_bytes(generated, tmp_path):
    directory, _ = generated
    generate_files(tmp_path, SCENARIOS, n_series=2, length=LENGTH, seed=5)
    for path in directory.glob("*"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_generate_other_seed_other_values(generated, tmp_path):
    directory, _ = generated
    generate_files(tmp_path, ("point",), n_series=1, length=LENGTH, seed=6)
    name = "point_000.csv"
    assert (tmp_path / name).read_bytes() != (directory / name).read_bytes()


def test_generate_one_scenario_matches_all(generated, tmp_path):
    directory, _ = generated
    generate_files(tmp_path, ("flat",), n_series=2, length=LENGTH, seed=5)
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [
        "flat_000.csv",
        "flat_001.csv",
    ]
    for name in ("flat_000.csv", "flat_001.csv"):
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes()


def test_generated_files_read_by_detect(generated):
    directory, _ = generated
    rows = list(read_points(directory / "point_000.csv"))
    assert len(rows) == LENGTH
    seconds = [row[2] for row in rows]
    assert all(b > a for a, b in zip(seconds, seconds[1:], strict=False))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"scenarios": ("spikes",)}, "unknown scenario 'spikes'"),
        ({"length": MIN_LENGTH - 1}, f"invalid length {MIN_LENGTH - 1}"),
        ({"n_series": 0}, "invalid n_series 0"),
        ({"seed": -1}, "invalid seed -1"),
    ],
)
def test_generate_rejects_invalid_arguments(tmp_path, arguments, message):
    options = {"scenarios": SCENARIOS, "n_series": 1, "length": LENGTH, "seed": 0}
    with pytest.raises(TrainingInputError, match=message):
        generate_files(tmp_path, **{**options, **arguments})


def test_cli_generate_writes_files(tmp_path, capsys):
    code = main(
        [
            "generate",
            "--output-dir",
            str(tmp_path),
            "--scenario",
            "noise_burst",
            "--n-series",
            "3",
            "--length",
            str(LENGTH),
            "--seed",
            "2",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        MANIFEST_FILE,
        "noise_burst_000.csv",
        "noise_burst_001.csv",
        "noise_burst_002.csv",
    ]
    assert "wrote 3 series" in capsys.readouterr().err


def test_cli_generate_error_exits_2(tmp_path, capsys):
    code = main(["generate", "--output-dir", str(tmp_path), "--scenario", "spikes"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("anomalybert generate: error: unknown scenario 'spikes'")
    assert len(err.strip().splitlines()) == 1


def test_generate_needs_no_torch():
    code = (
        "import sys, training.generate, stream.cli; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("file.csv", "output directory {target} exists and is not a directory"),
        (
            "file.csv/sub",
            "cannot create output directory {target}: {parent} exists and is not "
            "a directory",
        ),
    ],
    ids=["file", "under-file"],
)
def test_cli_generate_rejects_file_output_dir(tmp_path, capsys, target, message):
    (tmp_path / "file.csv").write_text("timestamp,value\n")
    target_path = tmp_path / target
    code = main(["generate", "--output-dir", str(target_path), "--n-series", "1"])
    err = capsys.readouterr().err
    assert code == 2
    expected = message.format(target=target_path, parent=tmp_path / "file.csv")
    assert err.startswith(f"anomalybert generate: error: {expected}")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux's /proc")
def test_cli_generate_unwritable_output_dir_exits_2(capsys):
    # Nothing can be created under /proc, not even by root.
    target = "/proc/anomalybert-generate-test"
    code = main(["generate", "--output-dir", target, "--n-series", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"anomalybert generate: error: cannot create or write to output directory {target}"
    )
    assert len(err.strip().splitlines()) == 1


def test_cli_generate_rejects_unknown_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--output-dir", str(tmp_path), "--epochs", "1"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --epochs 1" in capsys.readouterr().err


def test_generate_write_error_names_file(tmp_path):
    # A directory in place of the first series' file makes its open() fail.
    (tmp_path / "point_000.csv").mkdir()
    with pytest.raises(TrainingInputError, match="cannot write .*point_000.csv"):
        generate_files(tmp_path, ("point",), n_series=1, length=LENGTH)
