"""Tests of the NAB v1.1 scorer and the NAB corpus helpers."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.nab import (
    PROFILES,
    Corpus,
    Counts,
    list_data_files,
    list_detectors,
    load_corpus,
    load_detector_results,
    make_data_file,
    read_data_file,
    read_results,
    read_windows,
    results_path,
    score_corpus,
    score_corpus_all_profiles,
    sweep_thresholds,
    write_results,
)
from benchmarks.nab.corpus import align_scores, parse_timestamps
from benchmarks.nab.scoring import label_rows, probationary_length, scaled_sigmoid

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO / "tests" / "data" / "nab"
FULL_CORPUS = Path(
    os.environ.get("ANOMALYBERT_NAB_CORPUS", REPO.parent / "shared" / "data" / "nab")
)
DEV_SCORES = FULL_CORPUS / "results" / "dev_scores.json"
PUBLISHED_DETECTORS = (
    "ARTime",
    "contextOSE",
    "null",
    "numenta",
    "randomCutForest",
    "windowedGaussian",
)
SCORE_KEYS = (
    "score",
    "raw",
    "threshold",
    "nullRaw",
    "perfectRaw",
    "tp",
    "fp",
    "fn",
    "tn",
)


# --- Published scores on the full development corpus ---------------------------------


@pytest.fixture(scope="module")
def full_corpus() -> Corpus:
    if not FULL_CORPUS.is_dir():
        pytest.skip(
            f"NAB corpus not found at {FULL_CORPUS}; "
            "set ANOMALYBERT_NAB_CORPUS to its folder"
        )
    return load_corpus(FULL_CORPUS)


@pytest.fixture(scope="module")
def dev_scores(full_corpus: Corpus) -> dict:
    with DEV_SCORES.open() as handle:
        return json.load(handle)


def test_dev_scores_cover_corpus(full_corpus: Corpus, dev_scores: dict) -> None:
    assert dev_scores["files"] == len(full_corpus.files)
    assert dev_scores["windows"] == full_corpus.n_windows
    assert sorted(dev_scores["scores"]) == sorted(PUBLISHED_DETECTORS)


@pytest.mark.parametrize("detector", PUBLISHED_DETECTORS)
def test_published_detector_matches_dev_scores(
    full_corpus: Corpus, dev_scores: dict, detector: str
) -> None:
    results = load_detector_results(FULL_CORPUS, detector, full_corpus)
    scores = score_corpus_all_profiles(results, full_corpus)
    for profile in PROFILES:
        expected = dev_scores["scores"][detector][profile]
        actual = scores[profile].to_dict()
        for key in SCORE_KEYS:
            assert actual[key] == pytest.approx(expected[key], abs=1e-6), (
                f"{detector} {profile} {key}"
            )


# --- Regression values on the subset in tests/data/nab --------------------------------

SUBSET_FILES = [
    "artificialNoAnomaly/art_flatline.csv",
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-3_cpm_results.csv",
    "realTraffic/speed_7578.csv",
]

# Regression values: the output of this scorer on the subset. The same scorer
# reproduces every number of results/dev_scores.json on the full corpus
# (test_published_detector_matches_dev_scores), so these values are NAB's too.
SUBSET_EXPECTED = {
    ("numenta", "standard"): {
        "score": 65.35469994212646,
        "raw": 2.1496579918977035,
        "threshold": 0.575335555563,
        "nullRaw": -7.0,
        "perfectRaw": 7.0,
        "tp": 5,
        "fp": 2,
        "fn": 390,
        "tn": 6354,
    },
    ("numenta", "reward_low_FP_rate"): {
        "score": 63.783271370697875,
        "raw": 1.9296579918977033,
        "threshold": 0.575335555563,
        "nullRaw": -7.0,
        "perfectRaw": 7.0,
        "tp": 5,
        "fp": 2,
        "fn": 390,
        "tn": 6354,
    },
    ("numenta", "reward_low_FN_rate"): {
        "score": 67.37932377094144,
        "raw": 0.14965799189770346,
        "threshold": 0.575335555563,
        "nullRaw": -14.0,
        "perfectRaw": 7.0,
        "tp": 5,
        "fp": 2,
        "fn": 390,
        "tn": 6354,
    },
    ("windowedGaussian", "standard"): {
        "score": 66.75700870586084,
        "raw": 2.3459812188205174,
        "threshold": 0.999999999997,
        "nullRaw": -7.0,
        "perfectRaw": 7.0,
        "tp": 14,
        "fp": 1,
        "fn": 381,
        "tn": 6355,
    },
    ("windowedGaussian", "reward_low_FP_rate"): {
        "score": 65.97129442014656,
        "raw": 2.2359812188205175,
        "threshold": 0.999999999997,
        "nullRaw": -7.0,
        "perfectRaw": 7.0,
        "tp": 14,
        "fp": 1,
        "fn": 381,
        "tn": 6355,
    },
    ("windowedGaussian", "reward_low_FN_rate"): {
        "score": 68.3141962800977,
        "raw": 0.34598121882051736,
        "threshold": 0.999999999997,
        "nullRaw": -14.0,
        "perfectRaw": 7.0,
        "tp": 14,
        "fp": 1,
        "fn": 381,
        "tn": 6355,
    },
}

# Per-file raw scores of numenta with the standard profile at its optimised threshold.
SUBSET_NUMENTA_FILE_RAW = {
    "artificialNoAnomaly/art_flatline.csv": 0.0,
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv": -2.0,
    "realAdExchange/exchange-3_cpm_results.csv": 0.862098587352162,
    "realTraffic/speed_7578.csv": 3.2875594045455414,
}


@pytest.fixture(scope="module")
def subset_corpus() -> Corpus:
    return load_corpus(SUBSET)


def test_subset_layout() -> None:
    assert list_data_files(SUBSET) == SUBSET_FILES
    assert list_detectors(SUBSET) == ["numenta", "windowedGaussian"]
    assert sorted(read_windows(SUBSET)) == SUBSET_FILES
    assert read_windows(SUBSET)["artificialNoAnomaly/art_flatline.csv"] == []


@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian"])
def test_subset_scores(subset_corpus: Corpus, detector: str) -> None:
    results = load_detector_results(SUBSET, detector, subset_corpus)
    scores = score_corpus_all_profiles(results, subset_corpus)
    for profile in PROFILES:
        actual = scores[profile].to_dict()
        expected = SUBSET_EXPECTED[(detector, profile)]
        for key in SCORE_KEYS:
            assert actual[key] == pytest.approx(expected[key], abs=1e-9), (
                f"{detector} {profile} {key}"
            )


def test_subset_breakdown_sums_to_total(subset_corpus: Corpus) -> None:
    results = load_detector_results(SUBSET, "numenta", subset_corpus)
    result = score_corpus(results, subset_corpus, "standard")

    for name, expected_raw in SUBSET_NUMENTA_FILE_RAW.items():
        assert result.files[name].raw_score == pytest.approx(expected_raw, abs=1e-9), (
            name
        )
    assert list(result.categories) == sorted(
        name.split("/")[0] for name in SUBSET_FILES
    )
    for category, part in result.categories.items():
        assert part.raw_score == pytest.approx(
            SUBSET_NUMENTA_FILE_RAW[_subset_file(category)], abs=1e-9
        )

    assert math.fsum(part.raw_score for part in result.files.values()) == pytest.approx(
        result.raw_score, abs=1e-12
    )
    file_counts = Counts()
    for part in result.files.values():
        file_counts = file_counts + part.counts
    assert file_counts == result.counts
    assert (
        sum(part.windows for part in result.files.values()) == subset_corpus.n_windows
    )
    assert result.files["realTraffic/speed_7578.csv"].detected_windows == 4
    assert (
        result.files[
            "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
        ].detected_windows
        == 0
    )


def _subset_file(category: str) -> str:
    (name,) = [name for name in SUBSET_FILES if name.startswith(category + "/")]
    return name


def test_fixed_threshold_matches_optimised(subset_corpus: Corpus) -> None:
    results = load_detector_results(SUBSET, "numenta", subset_corpus)
    optimised = score_corpus(results, subset_corpus, "standard")
    fixed = score_corpus(
        results, subset_corpus, "standard", threshold=optimised.threshold
    )
    assert fixed.raw_score == optimised.raw_score
    assert fixed.counts == optimised.counts

    stricter = score_corpus(results, subset_corpus, "standard", threshold=1.1)
    assert stricter.raw_score == -subset_corpus.n_windows
    assert stricter.score == 0.0


# --- Hand-computed single-file cases --------------------------------------------------
#
# One file of 60 rows, one minute apart, with one window over rows 20..29 (w = 10).
# The probationary period is min(floor(0.15 * 60), 750) = 9 rows, so rows 9..59 are
# scored: 10 in the window and 41 outside. Standard profile: A_TP = 1, A_FP = 0.11,
# A_FN = 1. sigma(y) = 2 / (1 + exp(5 y)) - 1, sigma(-1) = 0.9866142981514305.
#
# - left edge, row 20: y = -(29 - 20 + 1) / 10 = -1, weight = sigma(-1) / sigma(-1) = 1.
# - right edge, row 29: y = -1 / 10, weight = sigma(-0.1) / sigma(-1)
#   = 0.24491866240370913 / 0.9866142981514305 = 0.24824154977542992.
# - rows 22 and 25: only the earliest counts, y = -(29 - 22 + 1) / 10 = -0.8,
#   weight = sigma(-0.8) / sigma(-1) = 0.9771068409226045.
# - row 12, before the window: -A_FP = -0.11, plus the missed window -A_FN = -1.
# - row 32, after the window: y = (32 - 29) / (10 - 1) = 1/3,
#   weight = 0.11 * sigma(1/3) = 0.11 * -0.6822617902381698 = -0.07504879692619866,
#   plus -1 for the missed window.
# - row 56: y = (56 - 29) / 9 = 3 exactly, where the formula still applies:
#   0.11 * sigma(3) = 0.11 * -0.9999993881955461 = -0.10999993270151007, plus -1.
# - row 58: y = 29 / 9 > 3, so sigma = -1 and the weight is -0.11, plus -1.
# - row 5 (probation) and row 20: row 5 counts for nothing, raw = 1.

HAND_ROWS = 60
HAND_WINDOW = (20, 29)

HAND_CASES = {
    # name: (detected rows, raw score, (tp, fp, fn, tn))
    "left_edge": ([20], 1.0, (1, 0, 9, 41)),
    "right_edge": ([29], 0.24824154977542992, (1, 0, 9, 41)),
    "earliest_of_two": ([25, 22], 0.9771068409226045, (2, 0, 8, 41)),
    "before_window": ([12], -1.11, (0, 1, 10, 40)),
    "after_window": ([32], -1.0750487969261986, (0, 1, 10, 40)),
    "three_widths_after": ([56], -1.10999993270151007, (0, 1, 10, 40)),
    "far_after_window": ([58], -1.11, (0, 1, 10, 40)),
    "probation_ignored": ([5, 20], 1.0, (1, 0, 9, 41)),
    "no_detection": ([], -1.0, (0, 0, 10, 41)),
}


def _minute_timestamps(n_rows: int) -> np.ndarray:
    return np.datetime64("2015-01-01T00:00:00", "us") + np.arange(
        n_rows
    ) * np.timedelta64(60, "s")


def _single_file_corpus(n_rows: int, windows: list[tuple[int, int]]) -> Corpus:
    timestamps = _minute_timestamps(n_rows)
    data_file = make_data_file(
        "synthetic/file.csv",
        timestamps,
        [(timestamps[first], timestamps[last]) for first, last in windows],
    )
    return Corpus({data_file.name: data_file})


@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_hand_computed_raw_score(case: str) -> None:
    detected_rows, expected_raw, expected_counts = HAND_CASES[case]
    corpus = _single_file_corpus(HAND_ROWS, [HAND_WINDOW])
    scores = np.zeros(HAND_ROWS)
    scores[detected_rows] = 1.0
    results = {"synthetic/file.csv": scores}

    result = score_corpus(results, corpus, "standard", threshold=1.0)
    assert result.raw_score == pytest.approx(expected_raw, abs=1e-12)
    counts = result.counts
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == expected_counts

    # The lowest candidate threshold >= 1.0 detects exactly the rows scored 1.0.
    sweep = sweep_thresholds(results, corpus, "standard")
    index = np.flatnonzero(sweep.thresholds >= 1.0)[-1]
    assert sweep.raw_scores[index] == pytest.approx(expected_raw, abs=1e-12)
    assert sweep.counts_at(index) == counts


def test_hand_constants() -> None:
    assert probationary_length(HAND_ROWS) == 9
    assert probationary_length(10_000) == 750
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.9866142981514305, abs=1e-15)
    assert float(scaled_sigmoid(3.0)) == pytest.approx(-0.9999993881955461, abs=1e-15)
    assert float(scaled_sigmoid(3.0 + 1e-9)) == -1.0


def test_optimised_threshold_prefers_no_detection() -> None:
    # A single false positive lowers the raw score, so 1.1 (nothing detected) wins.
    corpus = _single_file_corpus(HAND_ROWS, [HAND_WINDOW])
    scores = np.zeros(HAND_ROWS)
    scores[40] = 0.9
    result = score_corpus({"synthetic/file.csv": scores}, corpus, "standard")
    assert result.threshold == 1.1
    assert result.raw_score == -1.0
    assert result.null_raw_score == -1.0
    assert result.perfect_raw_score == 1.0
    assert result.score == 0.0


def test_optimised_threshold_ties_go_high() -> None:
    # Rows 20 and 25 score 0.8 and 0.6. At 0.6 row 25 is a later detection in an
    # already detected window, which adds nothing, so 0.8 and 0.6 tie and 0.8 wins.
    corpus = _single_file_corpus(HAND_ROWS, [HAND_WINDOW])
    scores = np.zeros(HAND_ROWS)
    scores[20] = 0.8
    scores[25] = 0.6
    result = score_corpus({"synthetic/file.csv": scores}, corpus, "standard")
    assert result.threshold == 0.8
    assert result.raw_score == 1.0
    assert result.score == 100.0


def test_window_inside_probation_not_scored() -> None:
    # Window rows 2..4 lie inside the 9-row probationary period, which is never
    # scored, so missing that window costs nothing. The perfect score counts it.
    corpus = _single_file_corpus(HAND_ROWS, [(2, 4), HAND_WINDOW])
    scores = np.zeros(HAND_ROWS)
    scores[20] = 1.0
    result = score_corpus(
        {"synthetic/file.csv": scores}, corpus, "standard", threshold=1.0
    )
    assert result.raw_score == 1.0
    assert result.files["synthetic/file.csv"].windows == 1
    assert result.null_raw_score == -1.0
    assert result.perfect_raw_score == 2.0


def test_corpus_without_windows() -> None:
    # With no window the perfect and null raw scores are both 0, so the normalised
    # score is undefined, but the raw score and threshold are still defined.
    corpus = _single_file_corpus(HAND_ROWS, [])
    scores = np.zeros(HAND_ROWS)
    scores[40] = 0.7
    result = score_corpus({"synthetic/file.csv": scores}, corpus, "standard")
    assert result.threshold == 1.1
    assert result.raw_score == 0.0
    assert math.isnan(result.score)
    fixed = score_corpus(
        {"synthetic/file.csv": scores}, corpus, "standard", threshold=0.5
    )
    assert fixed.raw_score == pytest.approx(-0.11, abs=1e-15)
    assert fixed.counts.fp == 1


# --- Fast sweep against a direct O(T x N) implementation ------------------------------


def _reference_sigma(y: float) -> float:
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def _reference_file_score(
    scores: list[float],
    windows: list[tuple[int, int]],
    threshold: float,
    weights: tuple[float, float, float],
) -> tuple[float, list[int]]:
    """Score one file directly from NAB's rules, with windows as (first, last) rows."""
    tp_weight, fp_weight, fn_weight = weights
    n_rows = len(scores)
    probation = min(math.floor(0.15 * n_rows), 750)
    raw = 0.0
    counts = [0, 0, 0, 0]  # tp, fp, fn, tn
    for first, last in windows:
        scored_rows = range(max(first, probation), last + 1)
        if len(scored_rows) == 0:
            continue
        hits = [i for i in scored_rows if scores[i] >= threshold]
        counts[0] += len(hits)
        counts[2] += len(scored_rows) - len(hits)
        if hits:
            width = last - first + 1
            raw += (
                tp_weight
                * _reference_sigma(-(last - min(hits) + 1) / width)
                / _reference_sigma(-1.0)
            )
        else:
            raw -= fn_weight
    for i in range(probation, n_rows):
        if any(first <= i <= last for first, last in windows):
            continue
        if scores[i] < threshold:
            counts[3] += 1
            continue
        counts[1] += 1
        ended = [(first, last) for first, last in windows if last < i]
        if not ended:
            raw -= fp_weight
            continue
        first, last = ended[-1]
        width = last - first + 1
        y = math.inf if width == 1 else (i - last) / (width - 1)
        raw += fp_weight * _reference_sigma(y)
    return raw, counts


def _reference_sweep(
    files: list[tuple[list[float], list[tuple[int, int]]]],
    weights: tuple[float, float, float],
):
    candidates = {1.1}
    for scores, _ in files:
        probation = min(math.floor(0.15 * len(scores)), 750)
        candidates.update(scores[probation:])
    rows = []
    for threshold in sorted(candidates, reverse=True):
        raw = 0.0
        counts = [0, 0, 0, 0]
        for scores, windows in files:
            file_raw, file_counts = _reference_file_score(
                scores, windows, threshold, weights
            )
            raw += file_raw
            counts = [a + b for a, b in zip(counts, file_counts, strict=True)]
        rows.append((threshold, raw, counts))
    return rows


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(int(rng.integers(1, 4))):
        n_rows = int(rng.integers(8, 60))
        if rng.random() < 0.7:
            # Few levels, so many rows share a score.
            scores = rng.integers(0, 6, n_rows) / 5.0
        else:
            scores = np.round(rng.random(n_rows), 2)
        windows = []
        row = int(rng.integers(0, 10))
        while row < n_rows and rng.random() < 0.75:
            width = int(rng.integers(1, 8))
            last = min(row + width - 1, n_rows - 1)
            windows.append((row, last))
            row = last + 1 + int(rng.integers(1, 12))
        files.append((scores.tolist(), windows))
    return files


@pytest.mark.parametrize("seed", range(40))
def test_sweep_matches_reference(seed: int) -> None:
    files = _random_case(seed)
    timestamps = [_minute_timestamps(len(scores)) for scores, _ in files]
    data_files = [
        make_data_file(
            f"synthetic/file{k}.csv",
            stamps,
            [(stamps[a], stamps[b]) for a, b in windows],
        )
        for k, ((_, windows), stamps) in enumerate(zip(files, timestamps, strict=True))
    ]
    corpus = Corpus({data_file.name: data_file for data_file in data_files})
    results = {
        data_file.name: np.array(scores)
        for data_file, (scores, _) in zip(data_files, files, strict=True)
    }

    for profile in PROFILES.values():
        weights = (profile.tp_weight, profile.fp_weight, profile.fn_weight)
        expected = _reference_sweep(files, weights)
        sweep = sweep_thresholds(results, corpus, profile)

        assert sweep.thresholds.tolist() == [
            threshold for threshold, _, _ in expected
        ], profile.name
        np.testing.assert_allclose(
            sweep.raw_scores, [raw for _, raw, _ in expected], rtol=0, atol=1e-9
        )
        for key, column in zip(("tp", "fp", "fn", "tn"), range(4), strict=True):
            assert getattr(sweep, key).tolist() == [
                counts[column] for _, _, counts in expected
            ], key

        best_raw = max(raw for _, raw, _ in expected)
        expected_threshold = next(
            threshold for threshold, raw, _ in expected if raw >= best_raw - 1e-9
        )
        result = score_corpus(results, corpus, profile)
        assert result.threshold == expected_threshold, profile.name
        assert result.raw_score == pytest.approx(best_raw, abs=1e-9)


def test_sweep_scales_to_continuous_scores() -> None:
    # 40 files of 5000 rows with continuous scores: about 170,000 candidate thresholds.
    rng = np.random.default_rng(7)
    files = {}
    results = {}
    for k in range(40):
        stamps = _minute_timestamps(5000)
        starts = np.sort(rng.choice(np.arange(800, 4800, 400), size=3, replace=False))
        windows = [
            (stamps[start], stamps[start + int(rng.integers(20, 300))])
            for start in starts
        ]
        data_file = make_data_file(f"synthetic/file{k}.csv", stamps, windows)
        files[data_file.name] = data_file
        results[data_file.name] = rng.random(5000)
    corpus = Corpus(files)

    for name, profile in PROFILES.items():
        sweep = sweep_thresholds(results, corpus, profile)
        distinct = np.unique(
            np.concatenate([scores[750:] for scores in results.values()])
        )
        assert len(sweep.thresholds) == len(distinct) + 1
        best = sweep.best_index()
        result = score_corpus(results, corpus, name)
        assert result.threshold == sweep.thresholds[best]
        assert result.raw_score == pytest.approx(sweep.raw_scores[best], abs=1e-9)
        assert result.counts == sweep.counts_at(best)


# --- Corpus helpers -------------------------------------------------------------------


def test_results_round_trip(tmp_path: Path) -> None:
    name = "realTraffic/speed_7578.csv"
    timestamps, values = read_data_file(SUBSET / "data" / name)
    scores = np.linspace(0.0, 1.0, len(timestamps)) / 3.0

    path = write_results(tmp_path, "mydetector", name, timestamps, scores)

    assert (
        path
        == tmp_path
        / "results"
        / "mydetector"
        / "realTraffic"
        / "mydetector_speed_7578.csv"
    )
    assert path == results_path(tmp_path, "mydetector", name)
    assert path.read_text().splitlines()[0] == "timestamp,anomaly_score"
    read_timestamps, read_scores = read_results(path)
    assert read_timestamps == timestamps
    assert np.array_equal(read_scores, scores)
    assert len(values) == len(timestamps)


def test_load_results_rejects_wrong_timestamps(
    tmp_path: Path, subset_corpus: Corpus
) -> None:
    name = "realTraffic/speed_7578.csv"
    corpus = subset_corpus.subset([name])
    timestamps, _ = read_data_file(SUBSET / "data" / name)
    write_results(
        tmp_path,
        "shifted",
        name,
        ["2000-01-01 00:00:00"] + timestamps[1:],
        np.zeros(len(timestamps)),
    )
    with pytest.raises(ValueError, match="does not match"):
        load_detector_results(tmp_path, "shifted", corpus)

    write_results(
        tmp_path, "short", name, timestamps[:-1], np.zeros(len(timestamps) - 1)
    )
    with pytest.raises(ValueError, match="rows but the data file has"):
        load_detector_results(tmp_path, "short", corpus)

    with pytest.raises(FileNotFoundError):
        load_detector_results(tmp_path, "absent", corpus)


def test_align_scores_reorders_by_timestamp() -> None:
    # The data file steps back in time at row 2, and the results list rows sorted.
    data_timestamps = parse_timestamps(
        [
            "2014-01-07 01:50:00",
            "2014-01-07 02:55:00",
            "2014-01-07 02:00:00",
            "2014-01-07 03:00:00",
        ]
    )
    result_timestamps = np.sort(data_timestamps)
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    aligned = align_scores("file.csv", data_timestamps, result_timestamps, scores)
    assert aligned.tolist() == [0.1, 0.3, 0.2, 0.4]


def test_label_rows_rejects_bad_windows() -> None:
    timestamps = _minute_timestamps(20)
    empty = make_data_file(
        "a/empty.csv", timestamps, [("2016-01-01 00:00:00", "2016-01-02 00:00:00")]
    )
    with pytest.raises(ValueError, match="contains no row"):
        label_rows(empty)

    overlapping = make_data_file(
        "a/overlap.csv",
        timestamps,
        [(timestamps[2], timestamps[6]), (timestamps[5], timestamps[9])],
    )
    with pytest.raises(ValueError, match="overlaps"):
        label_rows(overlapping)


def test_score_rejects_invalid_scores() -> None:
    corpus = _single_file_corpus(HAND_ROWS, [HAND_WINDOW])
    scores = np.zeros(HAND_ROWS)
    scores[30] = np.nan
    with pytest.raises(ValueError, match="not in \\[0, 1\\]"):
        score_corpus({"synthetic/file.csv": scores}, corpus)
    with pytest.raises(ValueError, match="missing"):
        score_corpus({}, corpus)
    with pytest.raises(ValueError, match="unknown NAB profile"):
        score_corpus({"synthetic/file.csv": np.zeros(HAND_ROWS)}, corpus, "strict")


def test_read_results_ignores_extra_columns(tmp_path: Path) -> None:
    # NAB's own results files carry value, label and per-profile score columns.
    wide = tmp_path / "wide.csv"
    wide.write_text(
        "timestamp,value,anomaly_score,label\n"
        "2014-01-01 00:00:00,3.5,0.25,0\n"
        "2014-01-01 00:05:00,4.0,0.75,1\n"
    )
    timestamps, scores = read_results(wide)
    assert timestamps == ["2014-01-01 00:00:00", "2014-01-01 00:05:00"]
    assert scores.tolist() == [0.25, 0.75]

    no_scores = tmp_path / "no_scores.csv"
    no_scores.write_text("timestamp,value\n2014-01-01 00:00:00,3.5\n")
    with pytest.raises(ValueError, match="expected the columns timestamp and"):
        read_results(no_scores)
