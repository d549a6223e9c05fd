"""A tiny end-to-end training run into a temporary directory."""

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import training.train  # noqa: E402
from stream.calibration import CalibrationSpec  # noqa: E402
from stream.cli import main as cli_main  # noqa: E402
from training.config import TRAIN_OPTION_HELP, TrainConfig  # noqa: E402
from training.export import load_checkpoint, sha256_file  # noqa: E402
from training.scenarios import SCENARIOS  # noqa: E402
from training.train import main, train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

TINY = TrainConfig(
    seed=3,
    n_train_series=16,
    n_validation_series=8,
    min_length=700,
    max_length=800,
    epochs=2,
    windows_per_epoch=512,
    batch_size=128,
    lr_warmup_steps=2,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("model")
    path = train(TINY, output_dir, progress=False)
    return output_dir, path


def test_smoke_writes_all_files(trained):
    output_dir, path = trained
    assert path == output_dir / "model.onnx"
    assert sorted(p.name for p in output_dir.iterdir()) == [
        "model.npz",
        "model.onnx",
        "model.onnx.json",
    ]


def test_smoke_metadata_content(trained):
    output_dir, path = trained
    metadata = json.loads((output_dir / "model.onnx.json").read_text())
    assert metadata["format_version"] == 1
    assert metadata["model_sha256"] == sha256_file(path)
    assert metadata["model_version"].endswith("+" + metadata["model_sha256"][:8])
    assert metadata["onnx"]["opset"] == 17
    assert metadata["onnx"]["dynamic_batch"] is True
    assert metadata["normalisation"]["method"] == "window_median_ew_mad_asinh"
    assert 0.0 <= metadata["alert"]["threshold"] <= 1.0
    assert metadata["alert"]["threshold_method"]
    training = metadata["training"]
    assert training["seed"] == 3
    assert training["train_config"]["epochs"] == 2
    assert training["scenarios"] == list(SCENARIOS)
    assert len(training["history"]) == 2
    assert set(training["validation"]["per_scenario"]) == set(SCENARIOS)
    assert training["duration_seconds"] > 0
    assert metadata["created_at"].endswith("Z")


def test_smoke_alert_settings_match_service(trained):
    output_dir, _ = trained
    metadata = json.loads((output_dir / "model.onnx.json").read_text())
    committed = json.loads((REPO / "models" / "model.onnx.json").read_text())
    alert = metadata["alert"]
    assert alert["calibration"] == committed["alert"]["calibration"]
    assert alert["threshold"] == committed["alert"]["threshold"]
    assert alert["score_position"] == "newest"
    assert 0.0 <= alert["validation_f1"] <= 1.0
    spec = CalibrationSpec.from_metadata(alert["calibration"])
    assert spec.method == "record"
    assert spec.coarse_points == 12
    assert spec.season_buckets == 24


def test_smoke_model_loads_and_scores(trained):
    output_dir, path = trained
    model = load_checkpoint(output_dir / "model.npz")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    scores = session.run(["scores"], {"input": x})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert scores.shape == (3, 16)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_smoke_same_seed_same_weights(trained, tmp_path):
    output_dir, _ = trained
    train(TINY, tmp_path, progress=False)
    with (
        np.load(output_dir / "model.npz", allow_pickle=False) as first,
        np.load(tmp_path / "model.npz", allow_pickle=False) as second,
    ):
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_cli_runs_with_overrides(tmp_path):
    arguments = (
        "--no-progress --seed 4 --n-train-series 16 --n-validation-series 8 "
        "--min-length 700 --max-length 700 --epochs 1 --windows-per-epoch 256 "
        "--batch-size 128"
    ).split()
    main(["--output-dir", str(tmp_path), *arguments])
    metadata = json.loads((tmp_path / "model.onnx.json").read_text())
    assert metadata["training"]["seed"] == 4
    assert metadata["training"]["train_config"]["windows_per_epoch"] == 256


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("--epochs 0", "--epochs must be at least 1, got 0"),
        ("--n-validation-series 0", "--n-validation-series must be at least 1"),
        ("--n-train-series 3", "--n-train-series must be at least 8"),
        ("--min-length 5000", "<= --min-length <= --max-length, got 5000 and 4000"),
        ("--min-length 100 --max-length 200", "got 100 and 200"),
    ],
)
def test_cli_rejects_invalid_settings(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output-dir", str(tmp_path), *arguments.split()])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()


def test_cli_help_describes_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "TrainConfig" not in text
    for field in dataclasses.fields(TrainConfig):
        described = " ".join(TRAIN_OPTION_HELP[field.name].split())
        assert f"{described} (default: {field.default})" in text


def test_anomalybert_train_passes_options(tmp_path):
    arguments = (
        "--no-progress --seed 5 --n-train-series 16 --n-validation-series 8 "
        "--min-length 700 --max-length 700 --epochs 1 --windows-per-epoch 256 "
        "--batch-size 128"
    ).split()
    code = cli_main(["train", "--output-dir", str(tmp_path), *arguments])
    assert code == 0
    metadata = json.loads((tmp_path / "model.onnx.json").read_text())
    assert metadata["training"]["seed"] == 5
    assert metadata["training"]["train_config"]["epochs"] == 1


@pytest.mark.parametrize("separator", [[], ["--"]], ids=["plain", "separator"])
def test_anomalybert_train_checks_options(tmp_path, capsys, separator):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", *separator, "--output-dir", str(tmp_path), "--epochs", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "anomalybert train: error: --epochs must be at least 1, got 0" in err
    assert not (tmp_path / "model.onnx").exists()


def test_anomalybert_train_rejects_unknown_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--epoch-count", "1"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --epoch-count 1" in capsys.readouterr().err


def test_anomalybert_train_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: anomalybert train")
    for field in dataclasses.fields(TrainConfig):
        assert f"--{field.name.replace('_', '-')}" in out


def test_anomalybert_help_points_to_train_help(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "anomalybert train --help" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "target", ["model.csv", "model.csv/sub"], ids=["file", "under-file"]
)
def test_train_checks_output_dir_first(tmp_path, capsys, monkeypatch, target):
    (tmp_path / "model.csv").write_text("not a directory\n")

    def fail(*args, **kwargs):
        raise AssertionError("training started before the output directory check")

    monkeypatch.setattr(training.train, "prepare_data", fail)
    with pytest.raises(SystemExit) as exit_info:
        main(["--output-dir", str(tmp_path / target)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.train: error: ")
    assert "exists and is not a directory; choose another --output-dir" in err
    assert len(err.strip().splitlines()) == 1


def test_training_logs_ap_per_scenario(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="training")
    train(TINY, tmp_path, progress=False)
    lines = [
        r.getMessage() for r in caplog.records if "AP per scenario" in r.getMessage()
    ]
    assert len(lines) == TINY.epochs
    for scenario in SCENARIOS:
        assert f"{scenario} " in lines[-1]
