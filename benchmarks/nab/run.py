"""Streaming every file of a NAB-layout corpus through the service's scorer.

Each file is one series. Its rows go through :class:`stream.state.StreamScorer`
in file order and in batches, exactly as the consumer feeds points, and row t
gets the score that the service computed when row t arrived (with
``lag_points = d`` that is the score of row t - d, detected at row t's time).
Nothing after row t is used. Rows the service rejects (a timestamp that repeats
or goes back, as at some daylight-saving changes in NAB) get the score 0, since
the service sends them to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.nab.corpus import Corpus, data_path, open_corpus
from stream.csvfile import read_points
from stream.detect import detect_points, scorer_for
from stream.errors import ModelError
from stream.model import default_model_path, load_model
from stream.points import Point

DETECTOR_NAME = "anomalybert"


def score_file(model, path: Path, **overrides: object) -> np.ndarray:
    """Return one score per data row of ``path`` as the service would have known it."""
    series = path.stem
    points = [
        Point(series, seconds, value)
        for _line, _raw, seconds, value in read_points(path)
    ]
    scorer = scorer_for(model, **overrides)
    detection = detect_points(model, points, series=series, scorer=scorer)
    scores = np.zeros(len(points))
    for scored in detection.points:
        if scored.input_index >= 0:
            scores[scored.input_index] = scored.score
    return scores


def _score_one(args: tuple[str, str, str, dict[str, object]]) -> tuple[str, np.ndarray]:
    model_path, root, name, overrides = args
    model = load_model(model_path)
    return name, score_file(model, data_path(root, name), **overrides)


def run_corpus(
    model_path: str | Path,
    root: str | Path,
    names: Iterable[str],
    overrides: dict[str, object] | None = None,
    workers: int = 2,
) -> dict[str, np.ndarray]:
    """Score every named file (``<category>/<file>.csv``) with the model at ``model_path``."""
    jobs = [(str(model_path), str(root), name, dict(overrides or {})) for name in names]
    if workers <= 1:
        return dict(map(_score_one, jobs))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(_score_one, jobs))


def load_inputs(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Path, Corpus] | None:
    """Check the ``--workers``, ``--model`` and ``--corpus`` options of a benchmark.

    Returns the model path and the corpus. On a missing or invalid model or
    corpus it prints one error line and returns None, and an invalid worker
    count exits through ``parser.error``.
    """
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    model_path = Path(args.model or default_model_path())
    try:
        load_model(model_path)
        corpus = open_corpus(args.corpus)
    except (ModelError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    return model_path, corpus
