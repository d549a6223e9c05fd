"""The model-contribution benchmark: each switch changes only its own channel."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.nab.contributions import _score_one, main
from benchmarks.nab.corpus import data_path
from benchmarks.nab.run import score_file
from stream.model import default_model_path, load_model

SUBSET = Path(__file__).resolve().parent / "data" / "nab"
FILE = "realTraffic/speed_7578.csv"


@pytest.fixture(scope="module")
def service_scores() -> np.ndarray:
    model = load_model(default_model_path())
    return score_file(model, data_path(SUBSET, FILE))


def variant(point_model: bool, coarse_model: bool) -> np.ndarray:
    name, scores = _score_one(
        (str(default_model_path()), str(SUBSET), FILE, point_model, coarse_model)
    )
    assert name == FILE
    return scores


def test_model_everywhere_matches_service(service_scores):
    np.testing.assert_array_equal(variant(True, True), service_scores)


def test_point_switch_changes_scores(service_scores):
    assert not np.array_equal(variant(False, True), service_scores)


def test_coarse_switch_changes_only_block_ends(service_scores):
    scores = variant(True, False)
    changed = np.flatnonzero(scores != service_scores)
    assert changed.size > 0
    # The coarse channel raises alerts only at the point that completes a block
    # of coarse_points points.
    coarse_points = load_model(default_model_path()).metadata.alert.calibration[
        "coarse_points"
    ]
    assert np.all((changed + 1) % coarse_points == 0)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "no data/ folder"),
        ("empty", "contains no .csv data files"),
        ("no labels", "labels/combined_windows.json"),
    ],
)
def test_cli_rejects_bad_corpus(tmp_path, capsys, layout, message):
    corpus = tmp_path / "corpus"
    if layout != "missing":
        (corpus / "data" / "category").mkdir(parents=True)
    if layout == "no labels":
        (corpus / "data" / "category" / "a.csv").write_text("timestamp,value\n")
    assert main(["--corpus", str(corpus)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert str(corpus) in error


def test_cli_rejects_missing_model(tmp_path, capsys):
    missing = tmp_path / "model.onnx.json"
    assert main(["--corpus", str(SUBSET), "--model", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
