"""Tests of fine-tuning: reading labelled data, a tiny run, the exported model, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import training.finetune  # noqa: E402
from benchmarks.nab.corpus import Corpus, make_data_file  # noqa: E402
from benchmarks.nab.finetune_loco import (  # noqa: E402
    held_out_score,
    loco_corpus_score,
)
from stream.cli import main  # noqa: E402
from stream.model import default_model_path, load_model  # noqa: E402
from training.config import NormalisationConfig  # noqa: E402
from training.data import series_windows  # noqa: E402
from training.errors import TrainingInputError  # noqa: E402
from training.export import sha256_file  # noqa: E402
from training.finetune import (  # noqa: E402
    FinetuneSettings,
    check_series,
    finetune,
    labelled_windows,
    load_base,
    split_series,
)
from training.generate import generate_files  # noqa: E402
from training.labelled import (  # noqa: E402
    LabelledFile,
    load_labelled_data,
    read_nab_folder,
)
from training.scenarios import generate_series  # noqa: E402

pytestmark = pytest.mark.torch

BASE = default_model_path()
TINY = FinetuneSettings(
    epochs=1, windows_per_epoch=256, batch_size=128, lr_warmup_steps=1, seed=1
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("series")
    generate_files(directory, ("point", "noise_burst", "flat"), 2, 700, seed=3)
    return directory


@pytest.fixture(scope="module")
def tuned(data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("tuned")
    lines = []
    result = finetune(
        BASE,
        load_labelled_data([data_dir]),
        output_dir,
        TINY,
        report=lines.append,
        data_sources=[str(data_dir)],
    )
    return output_dir, result, lines


def write_labelled(path, labels, values=None, header="timestamp,value,label"):
    values = np.sin(np.arange(len(labels)) / 5.0) if values is None else values
    rows = [header]
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        rows.append(f"{1_700_000_000 + 60 * i},{value},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_finetune_writes_loadable_model(tuned):
    output_dir, result, _ = tuned
    assert sorted(p.name for p in output_dir.iterdir()) == [
        "model.npz",
        "model.onnx",
        "model.onnx.json",
    ]
    model = load_model(output_dir / "model.onnx.json")
    windows = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    scores = model.score(windows)
    assert scores.shape == (4, 16)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_finetune_metadata_records_parent(tuned):
    output_dir, result, _ = tuned
    parent = json.loads(BASE.read_text())
    metadata = json.loads((output_dir / "model.onnx.json").read_text())
    training = metadata["training"]
    assert training["method"] == "finetune"
    assert training["parent_model"]["model_version"] == parent["model_version"]
    assert training["parent_model"]["model_sha256"] == parent["model_sha256"]
    assert metadata["model_sha256"] == sha256_file(output_dir / "model.onnx")
    assert metadata["model_sha256"] != parent["model_sha256"]
    assert metadata["normalisation"] == parent["normalisation"]
    assert result.parent_version == parent["model_version"]


def test_finetune_metadata_records_data_and_settings(tuned, data_dir):
    output_dir, result, _ = tuned
    training = json.loads((output_dir / "model.onnx.json").read_text())["training"]
    files = training["data"]["files"]
    assert len(files) == 6
    assert {f["role"] for f in files} == {"train", "validation"}
    assert sorted(f["name"] for f in files if f["role"] == "validation") == sorted(
        result.validation_files
    )
    first = next(f for f in files if f["name"] == "point_000.csv")
    assert first["sha256"] == sha256_file(data_dir / "point_000.csv")
    assert training["data"]["sources"] == [str(data_dir)]
    assert training["settings"]["epochs"] == 1
    assert training["settings"]["windows_per_epoch"] == 256
    assert training["settings"]["warmup_points"] == 100
    assert len(training["history"]) == 1


def test_finetune_reports_before_and_after(tuned):
    _, result, lines = tuned
    for metrics in (result.before, result.after):
        assert metrics["loss"] > 0
        assert 0 <= metrics["average_precision"] <= 1
    assert any(line.startswith("base model: validation loss") for line in lines)
    assert any(line.startswith("epoch 1/1:") for line in lines)
    assert 0 <= result.threshold <= 1


def test_finetune_same_seed_same_weights(tuned, data_dir, tmp_path):
    output_dir, _, _ = tuned
    finetune(BASE, load_labelled_data([data_dir]), tmp_path, TINY, report=print)
    with (
        np.load(output_dir / "model.npz", allow_pickle=False) as first,
        np.load(tmp_path / "model.npz", allow_pickle=False) as second,
    ):
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_freeze_encoder_changes_only_head(data_dir, tmp_path):
    settings = FinetuneSettings(
        epochs=1, windows_per_epoch=256, batch_size=128, freeze="encoder", seed=1
    )
    finetune(BASE, load_labelled_data([data_dir]), tmp_path, settings, report=print)
    with (
        np.load(BASE.with_name("model.npz"), allow_pickle=False) as base,
        np.load(tmp_path / "model.npz", allow_pickle=False) as tuned,
    ):
        head = [name for name in base.files if name.startswith("head.")]
        assert head
        for name in base.files:
            if name.startswith("head."):
                continue
            np.testing.assert_array_equal(base[name], tuned[name], err_msg=name)
        assert any(not np.array_equal(base[name], tuned[name]) for name in head)
    training = json.loads((tmp_path / "model.onnx.json").read_text())["training"]
    assert training["settings"]["freeze"] == "encoder"
    assert 0 < training["n_trained_parameters"] < training["n_parameters"]


def copy_base(directory, alert_changes):
    """Copy the committed model into ``directory`` with changed alert settings."""
    directory.mkdir()
    for name in ("model.onnx", "model.npz"):
        shutil.copy(BASE.with_name(name), directory / name)
    metadata = json.loads(BASE.read_text())
    metadata["alert"].update(alert_changes)
    metadata["alert"] = {k: v for k, v in metadata["alert"].items() if v is not None}
    path = directory / "model.onnx.json"
    path.write_text(json.dumps(metadata))
    return path


def test_finetune_keeps_calibrated_threshold(data_dir, tmp_path):
    calibration = {"method": "likelihood", "horizon_points": 500}
    base = copy_base(
        tmp_path / "base",
        {"threshold": 0.42, "calibration": calibration, "lag_points": 1},
    )
    finetune(base, load_labelled_data([data_dir]), tmp_path / "out", TINY)
    alert = json.loads((tmp_path / "out" / "model.onnx.json").read_text())["alert"]
    assert alert["threshold"] == 0.42
    assert alert["calibration"] == calibration
    assert alert["lag_points"] == 1
    assert "Copied from the parent" in alert["threshold_method"]
    assert 0 <= alert["validation_window_threshold"] <= 1
    assert (
        load_model(tmp_path / "out" / "model.onnx.json").metadata.alert.lag_points == 1
    )


def test_finetune_chooses_raw_threshold(data_dir, tmp_path):
    base = copy_base(
        tmp_path / "base", {"threshold": 0.42, "calibration": None, "lag_points": None}
    )
    result = finetune(base, load_labelled_data([data_dir]), tmp_path / "out", TINY)
    alert = json.loads((tmp_path / "out" / "model.onnx.json").read_text())["alert"]
    assert alert["threshold"] != 0.42
    assert alert["threshold"] == result.threshold
    assert "calibration" not in alert
    assert "maximises F1" in alert["threshold_method"]
    assert 0 < alert["validation_f1"] <= 1


def test_windows_match_training_normalisation():
    series = generate_series("point", np.random.default_rng(0), 700, 700)
    item = LabelledFile("s.csv", None, series.values, series.labels, 0)
    config = NormalisationConfig()
    inputs, targets = labelled_windows(item, config, 16)
    expected_inputs, expected_targets = series_windows(series, config, 16)
    np.testing.assert_array_equal(inputs, expected_inputs)
    np.testing.assert_array_equal(targets, expected_targets)


def test_split_keeps_positives_on_both_sides():
    labels = np.zeros(200, dtype=np.float32)
    positive = labels.copy()
    positive[150] = 1.0
    files = [
        LabelledFile(f"{i}.csv", None, np.zeros(200), positive if i < 2 else labels, 0)
        for i in range(10)
    ]
    for seed in range(20):
        train, validation = split_series(files, 0.2, 100, np.random.default_rng(seed))
        assert len(validation) == 2
        assert len(train) == 8
        assert any(f.labels.any() for f in train), seed
        assert any(f.labels.any() for f in validation), seed


def test_read_labelled_csv_drops_unordered_rows(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "Value,Timestamp,label\n1.0,2024-01-01T00:00:00Z,0\n2.0,2024-01-01 00:01:00,1\n"
        "3.0,2024-01-01T00:01:00Z,0\n4.0,1704067320,0.5\n"
    )
    (item,) = load_labelled_data([path])
    assert item.name == "s.csv"
    np.testing.assert_array_equal(item.values, [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(item.labels, [0.0, 1.0, 0.5])
    assert item.dropped_rows == 1


def test_read_nab_folder_labels_windows(tmp_path):
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    stamps = [f"2014-04-10 00:{minute:02d}:00" for minute in range(10)]
    rows = ["timestamp,value"] + [f"{s},{i}" for i, s in enumerate(stamps)]
    (data / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels").mkdir()
    windows = {
        "cat/a.csv": [["2014-04-10 00:03:00.000000", "2014-04-10 00:05:00.000000"]]
    }
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (item,) = read_nab_folder(tmp_path)
    assert item.name == "cat/a.csv"
    np.testing.assert_array_equal(item.labels, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    assert load_labelled_data([tmp_path])[0].name == "cat/a.csv"


def test_read_rejects_missing_label_column(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n1,2.0\n2,3.0\n")
    with pytest.raises(TrainingInputError, match="no 'label' column"):
        load_labelled_data([path])


def test_read_rejects_label_out_of_range(tmp_path):
    path = write_labelled(tmp_path / "s.csv", [0.0, 1.5, 0.0])
    with pytest.raises(TrainingInputError, match=r"label 1.5 is not in \[0, 1\]"):
        load_labelled_data([path])


def test_read_rejects_empty_folder(tmp_path):
    with pytest.raises(TrainingInputError, match="no .csv files"):
        load_labelled_data([tmp_path])


def test_finetune_rejects_no_positives(tmp_path):
    paths = [write_labelled(tmp_path / f"{i}.csv", [0] * 300) for i in range(3)]
    with pytest.raises(
        TrainingInputError, match="no series has a label of at least 0.5"
    ):
        finetune(BASE, load_labelled_data(paths), tmp_path / "out", TINY)


def test_finetune_rejects_short_series(tmp_path):
    labels = [0] * 300
    labels[200] = 1
    paths = [
        write_labelled(tmp_path / "long.csv", labels),
        write_labelled(tmp_path / "other.csv", labels),
        write_labelled(tmp_path / "short.csv", [0] * 10),
    ]
    with pytest.raises(TrainingInputError, match="short.csv has 10 points, fewer"):
        finetune(BASE, load_labelled_data(paths), tmp_path / "out", TINY)


def test_finetune_rejects_single_series(tmp_path):
    labels = [0] * 300
    labels[200] = 1
    path = write_labelled(tmp_path / "only.csv", labels)
    with pytest.raises(TrainingInputError, match="need at least 2"):
        finetune(BASE, load_labelled_data([path]), tmp_path / "out", TINY)


def test_finetune_rejects_missing_checkpoint(tmp_path, data_dir):
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(BASE.with_name(name), base_dir / name)
    with pytest.raises(TrainingInputError, match="base model checkpoint not found"):
        load_base(base_dir / "model.onnx.json")


def test_finetune_rejects_base_folder_as_output(tmp_path, data_dir):
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    for name in ("model.onnx", "model.onnx.json", "model.npz"):
        shutil.copy(BASE.with_name(name), base_dir / name)
    with pytest.raises(TrainingInputError, match="contains the base model"):
        finetune(base_dir, load_labelled_data([data_dir]), base_dir, TINY)


def test_cli_finetune_missing_checkpoint_exits_2(tmp_path, data_dir, capsys):
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(BASE.with_name(name), tmp_path / name)
    code = main(
        [
            "finetune",
            "--base",
            str(tmp_path / "model.onnx.json"),
            "--data",
            str(data_dir),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        "anomalybert finetune: error: base model checkpoint not found"
    )
    assert len(err.strip().splitlines()) == 1


def test_cli_finetune_missing_label_exits_2(tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n1,2.0\n2,3.0\n")
    code = main(["finetune", "--data", str(path), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no 'label' column" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_finetune_prints_metrics(tmp_path, data_dir, capsys):
    code = main(
        [
            "finetune",
            "--data",
            str(data_dir),
            "--output-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--windows-per-epoch",
            "256",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "before (base)" in out
    assert "after" in out
    assert (tmp_path / "model.onnx.json").is_file()


def two_category_corpus():
    stamps = np.datetime64("2020-01-01T00:00") + np.arange(100) * np.timedelta64(5, "m")
    window = (str(stamps[60]), str(stamps[69]))
    files = {n: make_data_file(n, stamps, [window]) for n in ("A/a.csv", "B/b.csv")}
    return Corpus(files)


def test_loco_threshold_from_other_category():
    corpus = two_category_corpus()
    a = np.full(100, 0.1)
    a[60] = 0.9
    b = np.full(100, 0.1)
    b[60] = 0.8
    b[30] = 0.95  # a false positive before the window
    results = {"A/a.csv": a, "B/b.csv": b}

    held_out = held_out_score(results, corpus, "B")
    assert held_out.threshold == 0.9  # chosen on A, misses B's window
    assert held_out.detected == 0
    assert held_out.false_positive_rows == 1
    assert held_out.raw == pytest.approx(-1.11)
    assert held_out.best_threshold == 0.8
    assert held_out.best_score == pytest.approx(94.5)

    other = held_out_score(results, corpus, "A")
    assert other.threshold == 0.8
    assert other.score == pytest.approx(100.0)


def test_loco_corpus_score_uses_folded_files():
    corpus = two_category_corpus()
    # One category with one window: the null raw score is -1 and the perfect +1.
    assert loco_corpus_score({"B": 1.0}, corpus, "standard") == pytest.approx(100.0)
    assert loco_corpus_score({"B": -1.0}, corpus, "standard") == pytest.approx(0.0)


def fail_if_training_starts(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started before the output directory check")

    monkeypatch.setattr(training.finetune, "_fit", fail)


@pytest.mark.parametrize(
    "target", ["out.csv", "out.csv/sub"], ids=["file", "under-file"]
)
def test_finetune_checks_output_dir_first(tmp_path, data_dir, monkeypatch, target):
    (tmp_path / "out.csv").write_text("not a directory\n")
    fail_if_training_starts(monkeypatch)
    with pytest.raises(TrainingInputError, match="exists and is not a directory"):
        finetune(BASE, load_labelled_data([data_dir]), tmp_path / target, TINY)


def test_cli_finetune_file_output_dir_exits_2(tmp_path, data_dir, capsys, monkeypatch):
    target = tmp_path / "existing_file.csv"
    target.write_text("not a directory\n")
    fail_if_training_starts(monkeypatch)
    code = main(["finetune", "--data", str(data_dir), "--output-dir", str(target)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"anomalybert finetune: error: output directory {target} exists and is not "
        "a directory; choose another --output-dir"
    )
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("inf", "epoch seconds must be finite"),
        ("nan", "epoch seconds must be finite"),
        ("-1e20", "is outside years 1 to 9999"),
    ],
)
def test_read_rejects_invalid_epoch_timestamps(tmp_path, stamp, reason):
    path = tmp_path / "s.csv"
    rows = [f"{1_700_000_000 + 60 * i},{float(i)},0" for i in range(6)]
    rows[3] = f"{stamp},1.0,0"
    path.write_text("timestamp,value,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(TrainingInputError) as error:
        load_labelled_data([path])
    message = str(error.value)
    assert message.startswith(f"{path}: line 5: ")
    assert repr(stamp) in message
    assert reason in message


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("1700000060,abc,0", r"line 4: invalid value 'abc'"),
        ("1700000060,inf,0", r"line 4: invalid value 'inf'"),
        ("1700000060,1e301,0", r"line 4: invalid value '1e301'"),
        ("1700000060,1.0,2", r"line 4: label 2.0 is not in \[0, 1\]"),
        ("1700000060,1.0,x", r"line 4: invalid label 'x'"),
    ],
    ids=["value", "infinite-value", "large-value", "label-range", "label-text"],
)
def test_read_errors_name_file_line(tmp_path, bad_row, message):
    path = tmp_path / "s.csv"
    # The blank line 3 counts, as it does in detect's line numbers.
    path.write_text(f"timestamp,value,label\n1700000000,0.5,0\n\n{bad_row}\n")
    with pytest.raises(TrainingInputError, match=message):
        load_labelled_data([path])


def test_read_nab_folder_rejects_infinite_window(tmp_path):
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    (data / "a.csv").write_text("timestamp,value\n1700000000,1\n1700000060,2\n")
    (tmp_path / "labels").mkdir()
    windows = {"cat/a.csv": [["1700000000", "inf"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    with pytest.raises(
        TrainingInputError, match=r"invalid window \['1700000000', 'inf'\]"
    ):
        read_nab_folder(tmp_path)


def test_check_series_rejects_low_labels_only():
    labels = np.zeros(300, dtype=np.float32)
    labels[200:210] = 0.3
    files = [LabelledFile(f"{i}.csv", None, np.zeros(300), labels, 0) for i in range(3)]
    with pytest.raises(TrainingInputError, match="label of at least 0.5"):
        check_series(files, 16, 100)


def test_split_counts_labels_from_threshold():
    low = np.zeros(200, dtype=np.float32)
    low[150] = 0.3
    high = np.zeros(200, dtype=np.float32)
    high[150] = 1.0
    files = [
        LabelledFile("high_0.csv", None, np.zeros(200), high, 0),
        LabelledFile("low_0.csv", None, np.zeros(200), low, 0),
        LabelledFile("low_1.csv", None, np.zeros(200), low, 0),
        LabelledFile("high_1.csv", None, np.zeros(200), high, 0),
    ]
    for seed in range(20):
        train, validation = split_series(files, 0.2, 100, np.random.default_rng(seed))
        assert any(f.name.startswith("high") for f in train), seed
        assert any(f.name.startswith("high") for f in validation), seed


def test_cli_finetune_explains_missing_validation_positives(tmp_path, capsys):
    labels = [0.0] * 400
    labels[300:305] = [1.0] * 5
    positive = write_labelled(tmp_path / "positive.csv", labels)
    # A label above 0 but below 0.5 does not count as anomalous in validation.
    weak = write_labelled(tmp_path / "weak.csv", [0.0] * 300 + [0.3] * 5 + [0.0] * 95)
    code = main(
        [
            "finetune",
            "--data",
            str(positive),
            "--data",
            str(weak),
            "--output-dir",
            str(tmp_path / "out"),
            "--epochs",
            "1",
            "--windows-per-epoch",
            "256",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "nan" not in captured.out
    assert "nan" not in captured.err
    assert "n/a" in captured.out
    assert (
        "the validation series have no label of at least 0.5 after the warm-up, so "
        "average precision is undefined" in captured.err
    )


def test_load_base_rejects_missing_onnx(tmp_path):
    for name in ("model.npz", "model.onnx.json"):
        shutil.copy(BASE.with_name(name), tmp_path / name)
    with pytest.raises(
        TrainingInputError, match="base model file not found: .*model.onnx;"
    ):
        load_base(tmp_path / "model.onnx.json")
