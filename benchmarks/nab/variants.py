"""``python -m benchmarks.nab.variants``: NAB scores of alert-score variants.

The model's window scores do not depend on how they are aggregated and
calibrated, so they are computed once per file (through the service's scorer)
and each variant (lag_points, calibration settings) is then applied to them with
the service's own aggregation and calibration functions. The winning variant is
written into the model metadata and confirmed with ``python -m benchmarks.nab``,
which runs the service's code path end to end.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.nab.corpus import data_path, load_corpus
from benchmarks.nab.scoring import score_corpus_all_profiles
from stream.calibration import CalibrationSpec, calibrate_sequence
from stream.csvfile import read_points
from stream.detect import detect_points, scorer_for
from stream.model import default_model_path, load_model
from stream.points import Point

REPO = Path(__file__).resolve().parents[2]


class _RecordingModel:
    """Wraps a model and keeps every window score it returns, in call order."""

    def __init__(self, model) -> None:
        self._model = model
        self.metadata = model.metadata
        self.outputs: list[np.ndarray] = []

    def score(self, windows: np.ndarray) -> np.ndarray:
        scores = self._model.score(windows)
        self.outputs.append(scores)
        return scores


def window_scores(model_path: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return each accepted row's window scores ``(n, window)`` and the accepted row indices."""
    recording = _RecordingModel(load_model(model_path))
    points = [Point(path.stem, s, v) for _l, _r, s, v in read_points(path)]
    scorer = scorer_for(recording, lag_points=0)
    detection = detect_points(recording, points, series=path.stem, scorer=scorer)
    rows = np.array([p.input_index for p in detection.points], dtype=np.int64)
    return np.concatenate(recording.outputs), rows


def alert_scores(
    scores: np.ndarray, rows: np.ndarray, n_rows: int, lag: int, spec: CalibrationSpec
) -> np.ndarray:
    """Aggregate with ``lag`` and calibrate, as the scorer does; one score per row."""
    k, w = scores.shape
    raw = np.zeros(k)
    for u in range(lag + 1):
        raw[u:] += scores[: k - u, w - 1 - lag + u] if u else scores[:, w - 1 - lag]
    # The first points of a series have fewer real windows than lag + 1.
    raw = raw / (lag + 1)
    valid = np.arange(k) >= lag
    out = np.zeros(n_rows)
    alerts, *_ = calibrate_sequence(spec, raw[valid], 1, 0.0, 0.0, 0.0)
    out[rows[valid]] = alerts
    return out


def _job(args: tuple[str, str, str]) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    model_path, root, name = args
    return name, window_scores(model_path, data_path(root, name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab.variants", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "data" / "nab"
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--lags", default="0,3,7,15")
    parser.add_argument("--horizons", default="500,2000,8000")
    parser.add_argument("--shorts", default="1,5,10")
    parser.add_argument("--min-stds", default="0.005,0.02")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    model_path = str(args.model or default_model_path())
    corpus = load_corpus(args.corpus)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        cache = dict(
            pool.map(_job, [(model_path, str(args.corpus), n) for n in corpus.names])
        )

    def evaluate(lag: int, spec: CalibrationSpec) -> dict[str, float]:
        results = {
            name: alert_scores(
                cache[name][0], cache[name][1], corpus.files[name].n_rows, lag, spec
            )
            for name in corpus.names
        }
        return {
            p: s.score for p, s in score_corpus_all_profiles(results, corpus).items()
        }

    print(
        "| lag | calibration | horizon | short | min_std | standard | low FP | low FN |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for lag in (int(x) for x in args.lags.split(",")):
        none = evaluate(lag, CalibrationSpec())
        print(
            f"| {lag} | none | | | | {none['standard']:.1f} | {none['reward_low_FP_rate']:.1f} | {none['reward_low_FN_rate']:.1f} |",
            flush=True,
        )
        grid = itertools.product(
            (int(x) for x in args.horizons.split(",")),
            (int(x) for x in args.shorts.split(",")),
            (float(x) for x in args.min_stds.split(",")),
        )
        for horizon, short, min_std in grid:
            spec = CalibrationSpec("likelihood", horizon, short, args.warmup, min_std)
            s = evaluate(lag, spec)
            print(
                f"| {lag} | likelihood | {horizon} | {short} | {min_std} | {s['standard']:.1f} | {s['reward_low_FP_rate']:.1f} | {s['reward_low_FN_rate']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
