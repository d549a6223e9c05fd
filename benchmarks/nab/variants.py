"""``python -m benchmarks.nab.variants``: NAB scores of alert-score variants.

It covers the point channel of the alert score; ``benchmarks.nab.channels``
covers the coarse and seasonal channels. The model's window scores do not
depend on how they are aggregated and calibrated, so they are computed once
per file (through the service's scorer) and each variant (lag_points, calibration settings) is then applied to them with
the service's own aggregation and calibration functions. The winning variant is
written into the model metadata and confirmed with ``python -m benchmarks.nab``,
which runs the service's code path end to end.

``--leave-one-category-out`` shows how much choosing the settings on these
files flatters the score: for each category it chooses the variant and the
per-profile thresholds on the other categories, then scores the held-out
category with them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import help_description
from benchmarks.nab.corpus import DEFAULT_CORPUS, Corpus, data_path, load_corpus
from benchmarks.nab.scoring import PROFILES, score_corpus, score_corpus_all_profiles
from stream.calibration import (
    CalibrationSpec,
    calibrate_sequence,
    record_alerts_sequence,
)
from stream.csvfile import read_points
from stream.detect import detect_points, scorer_for
from stream.model import default_model_path, load_model
from stream.points import Point


class _RecordingModel:
    """Wraps a model and keeps every window and window score, in call order."""

    def __init__(self, model) -> None:
        self._model = model
        self.metadata = model.metadata
        self.inputs: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def score(self, windows: np.ndarray) -> np.ndarray:
        scores = self._model.score(windows)
        self.inputs.append(np.array(windows))
        self.outputs.append(scores)
        return scores


@dataclass(frozen=True)
class FileScores:
    """Model inputs and outputs on one file's accepted rows, one row per point."""

    scores: np.ndarray  # (n, window) window scores
    inputs: np.ndarray  # (n, window) normalised windows (the model inputs)
    values: np.ndarray  # (n,) raw values
    rows: np.ndarray  # (n,) row index of each point in the file


def window_scores(model_path: str, path: Path) -> FileScores:
    """Stream one file through the service's scorer and keep the model's windows."""
    recording = _RecordingModel(load_model(model_path))
    points = [Point(path.stem, s, v) for _l, _r, s, v in read_points(path)]
    # Point channel only: the coarse channel's windows would join the recording.
    scorer = scorer_for(recording, lag_points=0, calibration={"coarse_points": 0})
    detection = detect_points(recording, points, series=path.stem, scorer=scorer)
    rows = np.array([p.input_index for p in detection.points], dtype=np.int64)
    values = np.array([p.value for p in detection.points])
    return FileScores(
        np.concatenate(recording.outputs),
        np.concatenate(recording.inputs),
        values,
        rows,
    )


def alert_scores(
    file: FileScores, n_rows: int, lag: int, spec: CalibrationSpec
) -> np.ndarray:
    """Aggregate with ``lag`` and calibrate, as the scorer does; one score per row."""
    scores = file.scores
    k, w = scores.shape
    raw = np.zeros(k)
    for u in range(lag + 1):
        raw[u:] += scores[: k - u, w - 1 - lag + u] if u else scores[:, w - 1 - lag]
    # The first points of a series have fewer real windows than lag + 1.
    raw = raw / (lag + 1)
    valid = np.arange(k) >= lag
    out = np.zeros(n_rows)
    if spec.method == "record":
        # The lagged point of the window ending at row i is row i - lag, at
        # position w - 1 - lag of that window.
        deviation = file.inputs[valid, w - 1 - lag].astype(np.float64)
        value = file.values[: k - lag]
        alerts, *_ = record_alerts_sequence(
            spec, raw[valid], deviation, value, 1, 0.0, 0.0, 0.0
        )
    else:
        alerts, *_ = calibrate_sequence(spec, raw[valid], 1, 0.0, 0.0, 0.0)
    # Row i - lag's score becomes known when row i arrives; NAB gets it at row i.
    out[file.rows[valid]] = alerts
    return out


def leave_one_category_out(
    corpus: Corpus, results_by_variant: dict[str, dict[str, np.ndarray]]
) -> list[str]:
    """Choose the variant and thresholds on six categories, score the seventh.

    Returns markdown table lines. Per held-out category it shows the variant
    chosen by the standard score on the others, per profile the held-out score
    at the threshold chosen on the others, and that standard threshold. The
    last row pools the held-out raw scores of every category into one
    normalised score per profile.
    """
    categories = sorted({f.category for f in corpus.files.values()})
    lines = [
        "| held-out category | variant chosen on the others | standard | low FP "
        "| low FN | standard threshold |",
        "|---|---|---|---|---|---|",
    ]
    pooled = dict.fromkeys(PROFILES, 0.0)
    for held_out in categories:
        train = corpus.subset(
            n for n, f in corpus.files.items() if f.category != held_out
        )
        test = corpus.subset(
            n for n, f in corpus.files.items() if f.category == held_out
        )
        fitted = {}
        for variant, results in results_by_variant.items():
            on_train = {n: results[n] for n in train.names}
            fitted[variant] = {p: score_corpus(on_train, train, p) for p in PROFILES}
        chosen = max(fitted, key=lambda v: fitted[v]["standard"].score)
        cells = []
        for profile in PROFILES:
            held = score_corpus(
                {n: results_by_variant[chosen][n] for n in test.names},
                test,
                profile,
                threshold=fitted[chosen][profile].threshold,
            )
            pooled[profile] += held.raw_score
            if test.n_windows:
                cells.append(f"{held.score:.1f}")
            else:
                cells.append(f"raw {held.raw_score:.2f}")
        cells.append(f"{fitted[chosen]['standard'].threshold:.3f}")
        lines.append(f"| {held_out} | {chosen} | " + " | ".join(cells) + " |")
    cells = []
    for profile, raw in pooled.items():
        # A detector that outputs 0.5 everywhere (NAB's null detector) detects
        # nothing at its best threshold, so its raw score is -A_FN per window.
        null = -PROFILES[profile].fn_weight * corpus.n_windows
        perfect = PROFILES[profile].tp_weight * corpus.n_windows
        cells.append(f"{100.0 * (raw - null) / (perfect - null):.1f}")
    lines.append("| all, pooled held-out raw scores | | " + " | ".join(cells) + " | |")
    return lines


def _job(args: tuple[str, str, str]) -> tuple[str, FileScores]:
    model_path, root, name = args
    return name, window_scores(model_path, data_path(root, name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab.variants", description=help_description(__doc__)
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--methods", default="likelihood,record")
    parser.add_argument("--lags", default="0,3,7,15")
    parser.add_argument(
        "--horizons", default="500,2000,8000", help="horizon_points values, in points"
    )
    parser.add_argument("--shorts", default="1,5,10", help="likelihood short_points")
    parser.add_argument("--min-stds", default="0.005,0.02", help="likelihood min_std")
    parser.add_argument(
        "--tolerances", default="0,0.05,0.1", help="record range_tolerance values"
    )
    parser.add_argument("--warmup", type=int, default=200, help="warmup_points")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--leave-one-category-out",
        action="store_true",
        help="also choose the variant on six categories and score the seventh",
    )
    args = parser.parse_args(argv)

    model_path = str(args.model or default_model_path())
    corpus = load_corpus(args.corpus)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        cache = dict(
            pool.map(_job, [(model_path, str(args.corpus), n) for n in corpus.names])
        )

    def floats(text: str) -> list[float]:
        return [float(x) for x in text.split(",")]

    variants: list[tuple[str, int, CalibrationSpec]] = []
    methods = args.methods.split(",")
    for lag in (int(x) for x in args.lags.split(",")):
        variants.append((f"lag {lag}, none", lag, CalibrationSpec()))
        for horizon in (int(x) for x in args.horizons.split(",")):
            if "likelihood" in methods:
                for short, min_std in itertools.product(
                    floats(args.shorts), floats(args.min_stds)
                ):
                    spec = CalibrationSpec(
                        "likelihood", horizon, int(short), args.warmup, min_std
                    )
                    name = f"lag {lag}, likelihood {horizon}/{int(short)}/{min_std}"
                    variants.append((name, lag, spec))
            if "record" in methods:
                for tolerance in floats(args.tolerances):
                    spec = CalibrationSpec(
                        "record",
                        horizon,
                        warmup_points=args.warmup,
                        range_tolerance=tolerance,
                    )
                    name = f"lag {lag}, record {horizon}/{tolerance}"
                    variants.append((name, lag, spec))

    print("| variant | standard | low FP | low FN |")
    print("|---|---|---|---|")
    results_by_variant = {}
    for name, lag, spec in variants:
        results = {
            file: alert_scores(cache[file], corpus.files[file].n_rows, lag, spec)
            for file in corpus.names
        }
        results_by_variant[name] = results
        scores = score_corpus_all_profiles(results, corpus)
        print(
            f"| {name} | "
            + " | ".join(f"{scores[p].score:.1f}" for p in PROFILES)
            + " |",
            flush=True,
        )
    if args.leave_one_category_out:
        print()
        print("\n".join(leave_one_category_out(corpus, results_by_variant)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
