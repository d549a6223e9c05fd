"""``python -m benchmarks.nab.channels``: NAB scores with and without the slow channels.

Runs the service's scorer on every file of a NAB-layout corpus once per
setting of the ``record`` calibration: the coarse and seasonal channels
(``coarse_points`` and ``season_buckets``, see ``stream.channels``), the
point channel's record horizon (``horizon_points``) and the coarse channel's
range rule (``coarse_range_tolerance``). Settings not given keep the model's
values. It prints the three profile scores of each setting and, with
``--leave-one-category-out``, chooses the setting and the thresholds on six
categories and scores the seventh with them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from benchmarks import help_description
from benchmarks.nab.corpus import DEFAULT_CORPUS
from benchmarks.nab.run import load_inputs, run_corpus
from benchmarks.nab.scoring import PROFILES, score_corpus_all_profiles
from benchmarks.nab.variants import leave_one_category_out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _tolerances(text: str) -> list[float | None]:
    return [None if x == "off" else float(x) for x in text.split(",")]


def _cell(value: object) -> str:
    return "off" if value is None else str(value)


def _label(setting: dict[str, object]) -> str:
    return " / ".join(f"{name} {_cell(value)}" for name, value in setting.items())


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
    parser.add_argument(
        "--point-horizons",
        default=None,
        help="record horizons of the point channel to try, in points "
        "(default: the model's horizon_points). The coarse and seasonal "
        "channels follow it when the model sets no channel_horizon_points",
    )
    parser.add_argument(
        "--coarse-range-tolerances",
        default=None,
        help="tolerances of the coarse channel's range rule to try, as shares of "
        "the range's width, or 'off' (default: the model's)",
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
    try:
        horizons = None if args.point_horizons is None else _ints(args.point_horizons)
        tolerances = (
            None
            if args.coarse_range_tolerances is None
            else _tolerances(args.coarse_range_tolerances)
        )
        coarse_points = _ints(args.coarse_points)
        season_buckets = _ints(args.season_buckets)
    except ValueError as exc:
        parser.error(f"invalid list of settings: {exc}; use comma-separated numbers")
    # Only the options given vary; the others keep the model's values.
    varied = {}
    if horizons is not None:
        varied["horizon_points"] = horizons
    if tolerances is not None:
        varied["coarse_range_tolerance"] = tolerances
    settings = []
    for coarse in coarse_points:
        for buckets in season_buckets if coarse else [0]:
            for values in itertools.product(*varied.values()):
                setting = {"coarse_points": coarse, "season_buckets": buckets}
                setting.update(zip(varied, values, strict=True))
                settings.append(setting)

    names = list(settings[0])
    print("| " + " | ".join(names) + " | standard | low FP | low FN |")
    print("|---" * (len(names) + 3) + "|")
    results_by_setting = {}
    for setting in settings:
        overrides = {"calibration": setting}
        results = run_corpus(
            model_path, args.corpus, corpus.names, overrides, args.workers
        )
        results_by_setting[_label(setting)] = results
        scores = score_corpus_all_profiles(results, corpus)
        cells = [_cell(value) for value in setting.values()]
        cells += [f"{scores[p].score:.2f}" for p in PROFILES]
        print("| " + " | ".join(cells) + " |", flush=True)
    if args.leave_one_category_out:
        print()
        print("\n".join(leave_one_category_out(corpus, results_by_setting)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
