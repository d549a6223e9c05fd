"""The ensemble builder of the NAB benchmark: one ONNX graph, the members' mean."""

import json

import numpy as np
import pytest
from model_factory import write_model

pytest.importorskip("onnx")

from benchmarks.nab.ensemble import build_ensemble, main  # noqa: E402
from stream.model import load_model  # noqa: E402


def windows() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)


def test_ensemble_scores_are_member_mean(tmp_path):
    first = write_model(tmp_path / "a", np.full(16, 0.2), input_gain=0.1)
    second = write_model(tmp_path / "b", np.linspace(0.0, 0.6, 16), input_gain=-0.3)
    path = build_ensemble([first, second], tmp_path / "mean")

    x = windows()
    expected = (load_model(first).score(x) + load_model(second).score(x)) / 2
    np.testing.assert_allclose(load_model(path).score(x), expected, atol=1e-6)


def test_ensemble_metadata_names_members(tmp_path):
    first = write_model(tmp_path / "a", threshold=0.4)
    second = write_model(tmp_path / "b", np.full(16, 0.3))
    path = build_ensemble([first, second], tmp_path / "mean")
    metadata = json.loads(path.read_text())
    members = [m["model_version"] for m in metadata["ensemble"]["members"]]
    assert members == [
        load_model(first).metadata.model_version,
        load_model(second).metadata.model_version,
    ]
    assert metadata["alert"]["threshold"] == 0.4
    assert "checkpoint_file" not in metadata["onnx"]
    assert load_model(path).metadata.model_sha256 == metadata["model_sha256"]


def test_ensemble_rejects_one_model(tmp_path, capsys):
    first = write_model(tmp_path / "a")
    with pytest.raises(ValueError, match="at least two models"):
        build_ensemble([first], tmp_path / "mean")
    assert main([str(first), "--output-dir", str(tmp_path / "mean")]) == 2
    assert "at least two models" in capsys.readouterr().err


def test_ensemble_rejects_other_normalisation(tmp_path):
    first = write_model(tmp_path / "a")
    second = write_model(tmp_path / "b")
    metadata = json.loads(second.read_text())
    metadata["normalisation"]["horizon_points"] = 500
    second.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="normalisation"):
        build_ensemble([first, second], tmp_path / "mean")
    assert not (tmp_path / "mean").exists()


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"lag_points": 3}, "alert.lag_points=3"),
        (
            {"calibration": {"method": "record", "horizon_points": 500}},
            "alert.calibration",
        ),
    ],
)
def test_ensemble_rejects_other_alert_settings(tmp_path, change, name):
    first = write_model(tmp_path / "a")
    second = write_model(tmp_path / "b")
    metadata = json.loads(second.read_text())
    metadata["alert"].update(change)
    second.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=name):
        build_ensemble([first, second], tmp_path / "mean")
    assert not (tmp_path / "mean").exists()


def test_ensemble_cli_reports_missing_model(tmp_path, capsys):
    first = write_model(tmp_path / "a")
    missing = tmp_path / "missing" / "model.onnx.json"
    assert main([str(first), str(missing), "--output-dir", str(tmp_path / "m")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_ensemble_cli_reports_unwritable_output(tmp_path, capsys):
    first = write_model(tmp_path / "a")
    second = write_model(tmp_path / "b")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main([str(first), str(second), "--output-dir", str(blocker)]) == 2
    assert "cannot write the ensemble" in capsys.readouterr().err


def test_ensemble_rejects_same_model_twice(tmp_path):
    first = write_model(tmp_path / "a")
    again = tmp_path / "a" / ".." / "a" / "model.onnx.json"
    with pytest.raises(ValueError, match="pass each member once"):
        build_ensemble([first, again], tmp_path / "mean")


def test_ensemble_keeps_members_intact(tmp_path):
    first = write_model(tmp_path / "a")
    second = write_model(tmp_path / "b", np.full(16, 0.3))
    before = (tmp_path / "b" / "model.onnx").read_bytes()
    with pytest.raises(ValueError, match="would overwrite"):
        build_ensemble([first, second], tmp_path / "b")
    assert (tmp_path / "b" / "model.onnx").read_bytes() == before
