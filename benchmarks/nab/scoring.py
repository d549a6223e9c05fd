"""Scoring of the Numenta Anomaly Benchmark (NAB v1.1).

A row is a detection when its anomaly score is >= the threshold. The first
``min(floor(0.15 * n_rows), 750)`` rows of a file (the probationary period) are
never scored. After it:

- A window (rows l..r, width w = r - l + 1) scores its earliest detection i with
  ``A_TP * sigma(-(r - i + 1) / w) / sigma(-1)``, or ``-A_FN`` without one.
- A detection after a window scores ``A_FP * sigma((i - r') / (w' - 1))``, where r'
  and w' are the right edge and width of the last window that ended before row i.
- A detection before the first window of its file scores ``-A_FP``.

The scaled sigmoid is ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and -1 for ``y > 3``.
One threshold per profile is chosen for the whole corpus from 1.1 and every
distinct score after a probationary period. It is the one with the highest summed
raw score, and ties go to the highest threshold. The reported score is
``100 * (raw - raw_null) / (raw_perfect - raw_null)``, where raw_perfect is
``A_TP * n_windows`` and raw_null is the raw score of a detector that outputs 0.5
on every row, put through the same threshold choice.

The confusion counts follow NAB's, so they count rows after the probationary
period, not windows. ``tp`` is the number of detections inside windows (every one, not
only the earliest of each window), ``fn`` the in-window rows that are not
detections, ``fp`` the detections outside windows and ``tn`` the remaining rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from benchmarks.nab.corpus import Corpus, DataFile

PROBATION_FRACTION = 0.15
# NAB caps the probationary period at 15 % of a 5000-row file.
MAX_PROBATION_ROWS = 750
# The first candidate threshold, which no score in [0, 1] reaches.
NO_DETECTION_THRESHOLD = 1.1
NULL_DETECTOR_SCORE = 0.5


@dataclass(frozen=True)
class Profile:
    """The NAB weights of true positives, false positives and false negatives."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": Profile(
        "reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0
    ),
    "reward_low_FN_rate": Profile(
        "reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0
    ),
}


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """Compute NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1``, or -1 for ``y > 3``.

    At exactly ``y = 3`` the formula still applies and gives -0.99999939. Only this
    way are NAB v1.1's published scores of the windowedGaussian detector
    reproduced: with -1 at ``y = 3`` its raw score differs by 6.7e-8.
    """
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, value)


def probationary_length(n_rows: int) -> int:
    """Return the number of leading rows of a file that are never scored."""
    return min(math.floor(PROBATION_FRACTION * n_rows), MAX_PROBATION_ROWS)


def _resolve_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown NAB profile {profile!r}: expected one of {sorted(PROFILES)}"
        ) from None


@dataclass(frozen=True, eq=False)
class RowLabels:
    """Per-row labelling of one file, independent of the profile.

    ``window`` is the index of the window containing each row, or -1 outside all
    windows. ``inside_factor`` (for in-window rows) is ``sigma(y) / sigma(-1)`` and
    ``outside_factor`` (for the other rows) is ``sigma(y)``, or -1 before the first
    window, so a detection's weight is ``A_TP * inside_factor`` or
    ``A_FP * outside_factor``. ``window_rows`` contains the first and last row of
    each window.
    """

    n_rows: int
    probation: int
    window: np.ndarray
    inside_factor: np.ndarray
    outside_factor: np.ndarray
    window_rows: np.ndarray

    def weights(self, profile: Profile) -> np.ndarray:
        """Return the weight each row would add as a detection under ``profile``."""
        return np.where(
            self.window >= 0,
            profile.tp_weight * self.inside_factor,
            profile.fp_weight * self.outside_factor,
        )

    @property
    def scored_windows(self) -> np.ndarray:
        """Boolean mask of windows that have rows after the probationary period."""
        return self.window_rows[:, 1] >= self.probation


def label_rows(data_file: DataFile) -> RowLabels:
    """Match a file's rows to its windows by timestamp, inclusive, and weight them.

    Raises ValueError for a window that contains no row, whose rows are not
    contiguous (possible where timestamps go back in time) or that overlaps the
    previous window.
    """
    timestamps = data_file.timestamps
    n_rows = len(timestamps)
    window_rows = np.empty((len(data_file.windows), 2), dtype=np.int64)
    for k, (start, end) in enumerate(data_file.windows):
        matched = np.flatnonzero((timestamps >= start) & (timestamps <= end))
        if len(matched) == 0:
            raise ValueError(
                f"{data_file.name}: window ({start}, {end}) contains no row"
            )
        first, last = int(matched[0]), int(matched[-1])
        if last - first + 1 != len(matched):
            raise ValueError(
                f"{data_file.name}: the rows of window ({start}, {end}) "
                "are not contiguous"
            )
        if k > 0 and first <= window_rows[k - 1, 1]:
            raise ValueError(
                f"{data_file.name}: window ({start}, {end}) "
                "overlaps the previous window"
            )
        window_rows[k] = (first, last)

    rows = np.arange(n_rows)
    window = np.full(n_rows, -1, dtype=np.int64)
    inside_factor = np.zeros(n_rows)
    # Rows before the first window keep -1: a detection there costs the full A_FP.
    outside_factor = np.full(n_rows, -1.0)
    max_true_positive = float(scaled_sigmoid(-1.0))
    for k, (first, last) in enumerate(window_rows):
        width = last - first + 1
        inside = slice(first, last + 1)
        window[inside] = k
        inside_factor[inside] = (
            scaled_sigmoid(-(last - rows[inside] + 1) / width) / max_true_positive
        )

        following_end = window_rows[k + 1, 0] if k + 1 < len(window_rows) else n_rows
        after = slice(last + 1, following_end)
        if width > 1:
            outside_factor[after] = scaled_sigmoid((rows[after] - last) / (width - 1))
        else:
            # NOTE: NAB's formula divides by (w' - 1), which is undefined after a
            # one-row window. The limit of y there is +infinity, so the weight is
            # the full -A_FP.
            outside_factor[after] = -1.0

    return RowLabels(
        n_rows=n_rows,
        probation=probationary_length(n_rows),
        window=window,
        inside_factor=inside_factor,
        outside_factor=outside_factor,
        window_rows=window_rows,
    )


@dataclass(frozen=True)
class Counts:
    """NAB's confusion counts: rows after the probationary period, not windows."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.tn + other.tn,
        )


@dataclass(frozen=True)
class PartScore:
    """The raw score and counts of one file or one category at a fixed threshold.

    ``windows`` counts the windows with rows after the probationary period and
    ``detected_windows`` those among them with a detection.
    """

    name: str
    raw_score: float
    counts: Counts
    windows: int
    detected_windows: int


@dataclass(frozen=True)
class CorpusScore:
    """The NAB score of one detector on a corpus for one profile.

    ``score`` is NaN when the perfect and null raw scores are equal, as in a corpus
    without windows.
    """

    profile: str
    threshold: float
    score: float
    raw_score: float
    null_raw_score: float
    perfect_raw_score: float
    counts: Counts
    files: dict[str, PartScore]
    categories: dict[str, PartScore]

    def to_dict(self) -> dict[str, float | int]:
        """Return the totals with the keys NAB uses in its score summaries."""
        return {
            "score": self.score,
            "raw": self.raw_score,
            "threshold": self.threshold,
            "nullRaw": self.null_raw_score,
            "perfectRaw": self.perfect_raw_score,
            "tp": self.counts.tp,
            "fp": self.counts.fp,
            "fn": self.counts.fn,
            "tn": self.counts.tn,
        }


@dataclass(frozen=True, eq=False)
class ThresholdSweep:
    """Raw scores and counts of a corpus at each candidate threshold, highest first."""

    thresholds: np.ndarray
    raw_scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def best_index(self) -> int:
        """Return the index of the highest raw score, the highest threshold on ties."""
        # np.argmax returns the first maximum, and thresholds are in descending order.
        return int(np.argmax(self.raw_scores))

    def counts_at(self, index: int) -> Counts:
        return Counts(
            int(self.tp[index]),
            int(self.fp[index]),
            int(self.fn[index]),
            int(self.tn[index]),
        )


def _check_scores(name: str, scores: np.ndarray, n_rows: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n_rows,):
        raise ValueError(
            f"{name}: {scores.shape} scores for {n_rows} rows, "
            "expected one score per row"
        )
    invalid = np.flatnonzero(~((scores >= 0.0) & (scores <= 1.0)))
    if len(invalid):
        row = int(invalid[0])
        raise ValueError(
            f"{name}: anomaly score {scores[row]} at row {row} is not in [0, 1]"
        )
    return scores


def _labels_for(
    corpus: Corpus, labels: Mapping[str, RowLabels] | None
) -> dict[str, RowLabels]:
    if labels is not None:
        return dict(labels)
    return {name: label_rows(data_file) for name, data_file in corpus.files.items()}


@dataclass(frozen=True, eq=False)
class _ScoredRows:
    """The rows after the probationary periods of all files, concatenated in order."""

    scores: np.ndarray
    weights: np.ndarray
    # Index of the containing window, numbered across files in row order, or -1.
    window: np.ndarray
    scored_windows: int


def _concatenate_scored_rows(
    results: Mapping[str, np.ndarray],
    corpus: Corpus,
    profile: Profile,
    labels: Mapping[str, RowLabels],
) -> _ScoredRows:
    score_parts = [np.empty(0)]
    weight_parts = [np.empty(0)]
    window_parts = [np.empty(0, dtype=np.int64)]
    window_offset = 0
    scored_windows = 0
    for name, data_file in corpus.files.items():
        file_labels = labels[name]
        scores = _check_scores(name, results[name], data_file.n_rows)
        scored = slice(file_labels.probation, None)
        score_parts.append(scores[scored])
        weight_parts.append(file_labels.weights(profile)[scored])
        local_window = file_labels.window[scored]
        window_parts.append(
            np.where(local_window >= 0, local_window + window_offset, -1)
        )
        window_offset += len(file_labels.window_rows)
        scored_windows += int(np.count_nonzero(file_labels.scored_windows))
    return _ScoredRows(
        scores=np.concatenate(score_parts),
        weights=np.concatenate(weight_parts),
        window=np.concatenate(window_parts),
        scored_windows=scored_windows,
    )


def _window_increments(
    order: np.ndarray,
    sorted_window: np.ndarray,
    weights: np.ndarray,
    fn_weight: float,
    increments: np.ndarray,
) -> None:
    """Store in ``increments`` the raw score change of each in-window sweep step.

    A window contributes the weight of its earliest detection so far, or -A_FN
    before any. Each window's rows are contiguous in the concatenated arrays, and
    windows are numbered in that order. The in-window steps of the sweep are grouped
    by window, stably so that sweep order is kept inside each group. The earliest
    detection so far is then a running minimum of row position that restarts at
    each group. With key = window * stride - position and stride > every position,
    each key of a window exceeds every key of the windows before it, so one running
    maximum over the keys gives all the per-window running minima.
    """
    sweep_positions = np.flatnonzero(sorted_window >= 0)
    if len(sweep_positions) == 0:
        return
    group_order = np.argsort(sorted_window[sweep_positions], kind="stable")
    grouped_sweep_positions = sweep_positions[group_order]
    grouped_window = sorted_window[grouped_sweep_positions]
    grouped_row = order[grouped_sweep_positions]
    stride = len(order) + 1
    keys = grouped_window * stride - grouped_row
    earliest_row = grouped_window * stride - np.maximum.accumulate(keys)

    best_weight = weights[earliest_row]
    previous_best = np.empty_like(best_weight)
    previous_best[1:] = best_weight[:-1]
    first_of_window = np.ones(len(grouped_window), dtype=bool)
    first_of_window[1:] = grouped_window[1:] != grouped_window[:-1]
    previous_best[first_of_window] = -fn_weight
    increments[grouped_sweep_positions] = best_weight - previous_best


def sweep_thresholds(
    results: Mapping[str, np.ndarray],
    corpus: Corpus,
    profile: str | Profile,
    labels: Mapping[str, RowLabels] | None = None,
) -> ThresholdSweep:
    """Compute the corpus raw score and counts at every candidate threshold.

    The candidates are 1.1 and every distinct score after a probationary period.
    The sweep sorts the scored rows of all files by score, highest first, so
    lowering the threshold past a score adds that score's rows as detections. An
    out-of-window detection adds its weight. An in-window detection adds the rise
    of its window's earliest detection weight, which is zero unless the row is
    earlier than every detection already in the window. Cost: O(N log N) for N
    scored rows.
    """
    profile = _resolve_profile(profile)
    labels = _labels_for(corpus, labels)
    rows = _concatenate_scored_rows(results, corpus, profile, labels)
    n_scored = len(rows.scores)
    total_inside = int(np.count_nonzero(rows.window >= 0))
    total_outside = n_scored - total_inside

    order = np.argsort(-rows.scores, kind="stable")
    sorted_scores = rows.scores[order]
    sorted_window = rows.window[order]
    inside = sorted_window >= 0
    increments = np.where(inside, 0.0, rows.weights[order])
    _window_increments(
        order, sorted_window, rows.weights, profile.fn_weight, increments
    )

    # Rows with equal scores become detections together, so only the last row of
    # each run of equal scores closes a candidate threshold.
    run_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    if n_scored == 0:
        run_ends = run_ends[:0]
    base_raw = -profile.fn_weight * rows.scored_windows
    tp = np.concatenate(([0], np.cumsum(inside)[run_ends]))
    fp = np.concatenate(([0], run_ends + 1)) - tp
    return ThresholdSweep(
        thresholds=np.concatenate(([NO_DETECTION_THRESHOLD], sorted_scores[run_ends])),
        raw_scores=base_raw + np.concatenate(([0.0], np.cumsum(increments)[run_ends])),
        tp=tp,
        fp=fp,
        fn=total_inside - tp,
        tn=total_outside - fp,
    )


def score_file(
    name: str,
    scores: np.ndarray,
    file_labels: RowLabels,
    profile: str | Profile,
    threshold: float,
) -> PartScore:
    """Compute the raw score and counts of one file at a fixed threshold."""
    profile = _resolve_profile(profile)
    scores = _check_scores(name, scores, file_labels.n_rows)
    detected = scores >= threshold
    detected[: file_labels.probation] = False
    window = file_labels.window
    scored = np.arange(file_labels.n_rows) >= file_labels.probation
    inside = window >= 0
    weights = file_labels.weights(profile)

    outside_detected = detected & ~inside
    raw_parts = [float(np.sum(weights[outside_detected]))]

    # np.unique returns each window's first occurrence in row order, which is its
    # earliest detection and, because weights fall across a window, its best one.
    inside_detected_rows = np.flatnonzero(detected & inside)
    detected_windows, first_positions = np.unique(
        window[inside_detected_rows], return_index=True
    )
    raw_parts.extend(weights[inside_detected_rows[first_positions]].tolist())
    n_windows = int(np.count_nonzero(file_labels.scored_windows))
    raw_parts.append(-profile.fn_weight * (n_windows - len(detected_windows)))

    counts = Counts(
        tp=int(np.count_nonzero(detected & inside)),
        fp=int(np.count_nonzero(outside_detected)),
        fn=int(np.count_nonzero(scored & inside & ~detected)),
        tn=int(np.count_nonzero(scored & ~inside & ~detected)),
    )
    return PartScore(
        name=name,
        raw_score=math.fsum(raw_parts),
        counts=counts,
        windows=n_windows,
        detected_windows=len(detected_windows),
    )


def _sum_parts(name: str, parts: list[PartScore]) -> PartScore:
    counts = Counts()
    for part in parts:
        counts = counts + part.counts
    return PartScore(
        name=name,
        raw_score=math.fsum(part.raw_score for part in parts),
        counts=counts,
        windows=sum(part.windows for part in parts),
        detected_windows=sum(part.detected_windows for part in parts),
    )


def null_raw_score(
    corpus: Corpus,
    profile: str | Profile,
    labels: Mapping[str, RowLabels] | None = None,
) -> float:
    """Return the optimised raw score of a detector that outputs 0.5 on each row."""
    labels = _labels_for(corpus, labels)
    constant = {
        name: np.full(data_file.n_rows, NULL_DETECTOR_SCORE)
        for name, data_file in corpus.files.items()
    }
    sweep = sweep_thresholds(constant, corpus, profile, labels)
    return float(sweep.raw_scores[sweep.best_index()])


def score_corpus(
    results: Mapping[str, np.ndarray],
    corpus: Corpus,
    profile: str | Profile = "standard",
    threshold: float | None = None,
    labels: Mapping[str, RowLabels] | None = None,
) -> CorpusScore:
    """Score a detector's results on a corpus with NAB's rules for one profile.

    ``results`` maps each file name of ``corpus`` to one score in [0, 1] per row.
    Without ``threshold`` the threshold is optimised over the whole corpus. A given
    ``threshold`` is applied as it is, which scores held-out files with a threshold
    chosen on other files. ``labels`` may pass precomputed ``label_rows`` output to
    save recomputing it across profiles.
    """
    profile = _resolve_profile(profile)
    missing = [name for name in corpus.files if name not in results]
    if missing:
        raise ValueError(
            f"results are missing for {len(missing)} corpus files, first {missing[0]}"
        )
    labels = _labels_for(corpus, labels)

    if threshold is None:
        sweep = sweep_thresholds(results, corpus, profile, labels)
        threshold = float(sweep.thresholds[sweep.best_index()])

    files = {
        name: score_file(name, results[name], labels[name], profile, threshold)
        for name in corpus.files
    }
    by_category: dict[str, list[PartScore]] = {}
    for name, part in files.items():
        by_category.setdefault(corpus.files[name].category, []).append(part)
    categories = {
        category: _sum_parts(category, parts)
        for category, parts in sorted(by_category.items())
    }
    total = _sum_parts("total", list(files.values()))

    null_raw = null_raw_score(corpus, profile, labels)
    # NOTE: NAB's perfect score counts every window, so one that lies wholly inside
    # a probationary period, where it can never be detected, keeps a corpus below
    # 100. NAB's own corpus has no such window.
    perfect_raw = profile.tp_weight * corpus.n_windows
    if perfect_raw == null_raw:
        score = math.nan
    else:
        score = 100.0 * (total.raw_score - null_raw) / (perfect_raw - null_raw)
    return CorpusScore(
        profile=profile.name,
        threshold=threshold,
        score=score,
        raw_score=total.raw_score,
        null_raw_score=null_raw,
        perfect_raw_score=perfect_raw,
        counts=total.counts,
        files=files,
        categories=categories,
    )


def score_corpus_all_profiles(
    results: Mapping[str, np.ndarray], corpus: Corpus
) -> dict[str, CorpusScore]:
    """Score a detector's results with each of NAB's three profiles."""
    labels = _labels_for(corpus, None)
    return {
        name: score_corpus(results, corpus, name, labels=labels) for name in PROFILES
    }
