"""``python -m benchmarks.nab.channels``: NAB scores with and without the slow channels.

Runs the service's scorer on every file of a NAB-layout corpus once per
setting of the coarse and seasonal channels (``coarse_points`` and
``season_buckets`` of the ``record`` calibration, see ``stream.channels``),
with the model's other settings unchanged. It prints the three profile scores
of each setting and, with ``--leave-one-category-out``, chooses the setting
and the thresholds on six categories and scores the seventh with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import help_description
from benchmarks.nab.corpus import DEFAULT_CORPUS
from benchmarks.nab.run import load_inputs, run_corpus
from benchmarks.nab.scoring import PROFILES, score_corpus_all_profiles
from benchmarks.nab.variants import leave_one_category_out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab.channels", description=help_description(__doc__)
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument(
        "--coarse-points",
        default="0,12,24,48",
        help="block sizes to try, in points (0: no coarse or seasonal channel)",
    )
    parser.add_argument(
        "--season-buckets",
        default="0,24",
        help="buckets per day of the seasonal channel to try (0: none)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--leave-one-category-out",
        action="store_true",
        help="also choose the setting on six categories and score the seventh",
    )
    args = parser.parse_args(argv)

    inputs = load_inputs(parser, args)
    if inputs is None:
        return 2
    model_path, corpus = inputs
    settings = []
    for coarse in _ints(args.coarse_points):
        for buckets in _ints(args.season_buckets) if coarse else [0]:
            settings.append((coarse, buckets))

    print("| coarse_points | season_buckets | standard | low FP | low FN |")
    print("|---|---|---|---|---|")
    results_by_setting = {}
    for coarse, buckets in settings:
        overrides = {
            "calibration": {"coarse_points": coarse, "season_buckets": buckets}
        }
        results = run_corpus(
            model_path, args.corpus, corpus.names, overrides, args.workers
        )
        results_by_setting[f"coarse {coarse} / buckets {buckets}"] = results
        scores = score_corpus_all_profiles(results, corpus)
        cells = " | ".join(f"{scores[p].score:.1f}" for p in PROFILES)
        print(f"| {coarse} | {buckets} | {cells} |", flush=True)
    if args.leave_one_category_out:
        print()
        print("\n".join(leave_one_category_out(corpus, results_by_setting)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
