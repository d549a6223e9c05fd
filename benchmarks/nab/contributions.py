"""``python -m benchmarks.nab.contributions``: what the model adds to each alert channel.

Scores a NAB-layout corpus with the service's scorer four times: as the service
runs, and with the model's window score replaced by 1 in the point channel, in
the coarse channel, or in both. A channel's signal is the window score times
the normalised deviation of its newest value, so with a score of 1 the signal
is the deviation alone. The differences between the rows are what the model
contributes. The seasonal channel and the range rule use no model and stay as
they are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np

import stream.state
from benchmarks import help_description
from benchmarks.nab.corpus import DEFAULT_CORPUS, data_path
from benchmarks.nab.run import load_inputs, score_file
from benchmarks.nab.scoring import PROFILES, score_corpus_all_profiles
from stream.channels import channel_alerts
from stream.model import WindowModel, load_model

# Variant name -> (model in the point channel, model in the coarse channel).
VARIANTS = {
    "model in the point and coarse channels (as the service runs)": (True, True),
    "deviation alone in the coarse channel": (True, False),
    "deviation alone in the point channel": (False, True),
    "deviation alone in both (no model)": (False, False),
}


def _ones(windows: np.ndarray) -> np.ndarray:
    return np.ones(windows.shape, dtype=np.float32)


class _PointScoreOverride:
    """A model whose window scores are 1, with the wrapped model's metadata."""

    def __init__(self, model: WindowModel) -> None:
        self.metadata = model.metadata
        self.score = _ones


def _channel_alerts_with(score: Callable[[np.ndarray], np.ndarray]):
    def patched(table, spec, normalisation, _model_score, *rest):
        return channel_alerts(table, spec, normalisation, score, *rest)

    return patched


def _score_one(args: tuple[str, str, str, bool, bool]) -> tuple[str, np.ndarray]:
    model_path, root, name, point_model, coarse_model = args
    model = load_model(model_path)
    coarse_score = model.score if coarse_model else _ones
    point = model if point_model else _PointScoreOverride(model)
    # The scorer passes its own model's score to the channels, so the patch
    # replaces that argument with the coarse channel's scorer.
    with mock.patch.object(
        stream.state, "channel_alerts", _channel_alerts_with(coarse_score)
    ):
        return name, score_file(point, data_path(root, name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab.contributions",
        description=help_description(__doc__),
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="NAB-layout folder with data/ and labels/ "
        "(default: ../shared/data/nab beside the repository)",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="model.onnx.json (default: committed)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes scoring files in parallel"
    )
    args = parser.parse_args(argv)

    inputs = load_inputs(parser, args)
    if inputs is None:
        return 2
    model_path, corpus = inputs
    print("| variant | standard | low FP | low FN |")
    print("|---|---|---|---|")
    for variant, (point_model, coarse_model) in VARIANTS.items():
        jobs = [
            (str(model_path), str(args.corpus), name, point_model, coarse_model)
            for name in corpus.names
        ]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = dict(pool.map(_score_one, jobs))
        scores = score_corpus_all_profiles(results, corpus)
        cells = " | ".join(f"{scores[p].score:.1f}" for p in PROFILES)
        print(f"| {variant} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
