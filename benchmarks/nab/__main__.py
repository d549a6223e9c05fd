"""``python -m benchmarks.nab``: score the model on a NAB-layout corpus and report.

Streams every file through the service's scorer, writes the results in NAB's
layout, scores them and the published detectors' results with the same scorer,
and prints (and writes into docs/benchmarks.md) the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import help_description
from benchmarks.nab.corpus import (
    DEFAULT_CORPUS,
    data_path,
    list_detectors,
    load_detector_results,
    read_data_file,
    write_results,
)
from benchmarks.nab.report import (
    category_table,
    plot_files,
    replace_section,
    scores_table,
)
from benchmarks.nab.run import DETECTOR_NAME, load_inputs, run_corpus
from benchmarks.nab.scoring import score_corpus_all_profiles
from stream.model import load_metadata

REPO = Path(__file__).resolve().parents[2]
PLOT_FILES = (
    "realKnownCause/machine_temperature_system_failure.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "realTweets/Twitter_volume_AAPL.csv",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab", description=help_description(__doc__)
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="NAB-layout folder with data/, labels/ and results/ (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model.onnx.json (default: the committed model)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=REPO / "results" / "nab",
        help="NAB-layout folder for this project's results: the files go to "
        "DIR/results/anomalybert/<category>/ (default: results/nab)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="Markdown file whose NAB section is rewritten ('-' for none; "
        "default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes scoring files in parallel"
    )
    parser.add_argument(
        "--lag-points", type=int, default=None, help="override the model's lag_points"
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=1,
        help="score only the window that ends at every STRIDE-th point, as "
        "ANOMALYBERT_STRIDE does (default 1: every window)",
    )
    args = parser.parse_args(argv)
    if args.lag_points is not None and args.lag_points < 0:
        parser.error(f"--lag-points must be 0 or more, got {args.lag_points}")
    inputs = load_inputs(parser, args)
    if inputs is None:
        return 2
    model_path, corpus = inputs
    metadata = load_metadata(model_path)
    if not 1 <= args.stride <= metadata.window_size:
        parser.error(
            f"--stride must be between 1 and the window size {metadata.window_size}, "
            f"got {args.stride}"
        )
    overrides: dict[str, int] = {"stride": args.stride}
    if args.lag_points is not None:
        overrides["lag_points"] = args.lag_points

    started = time.perf_counter()
    ours = run_corpus(
        model_path, args.corpus, corpus.names, overrides, workers=args.workers
    )
    elapsed = time.perf_counter() - started
    for name, scores in ours.items():
        write_results(
            args.results_dir,
            DETECTOR_NAME,
            name,
            read_data_file(data_path(args.corpus, name))[0],
            scores,
        )

    all_scores = {DETECTOR_NAME: score_corpus_all_profiles(ours, corpus)}
    for detector in list_detectors(args.corpus):
        if detector == "null":
            continue
        all_scores[detector] = score_corpus_all_profiles(
            load_detector_results(args.corpus, detector, corpus), corpus
        )

    mine = all_scores[DETECTOR_NAME]
    command = "python -m benchmarks.nab --corpus " + str(
        args.corpus if args.corpus != DEFAULT_CORPUS else "DIR"
    )
    # The scorer raises lag_points to at least stride - 1, so the report does too.
    lag_points = max(
        overrides.get("lag_points", metadata.alert.lag_points), args.stride - 1
    )
    stride_note = ""
    if args.model is not None:
        command += f" --model {args.model}"
    if args.lag_points is not None:
        command += f" --lag-points {args.lag_points}"
    if args.stride != 1:
        command += f" --stride {args.stride}"
        stride_note = f", stride {args.stride}"
    lines = [
        "## NAB (Numenta Anomaly Benchmark v1.1)",
        "",
        f"Command: `{command}`"
        + (
            ", where DIR holds the NAB v1.1 development files (data/, labels/, results/)."
            if args.corpus == DEFAULT_CORPUS
            else ""
        ),
        "",
        f"Corpus: {len(corpus.names)} files, {corpus.n_rows:,} rows, {corpus.n_windows} windows. "
        f"Model {metadata.model_version}, lag_points {lag_points}{stride_note}, "
        f"calibration {metadata.alert.calibration.get('method', 'none')}. "
        f"Scoring took {elapsed:.0f} s with {args.workers} worker processes on {platform.machine()} "
        f"({_cpu_model()}, {os.cpu_count()} cores).",
        "",
        "Every detector is scored by this project's scorer on the same files, with one threshold "
        "per profile optimised over the whole corpus (NAB's method).",
        "",
        *scores_table(all_scores, DETECTOR_NAME),
        "",
        "Thresholds chosen for this project's scores: "
        + ", ".join(f"{p} {s.threshold:.4f}" for p, s in mine.items()),
        "",
        "Per category, at those thresholds:",
        "",
        *category_table(mine, corpus),
    ]
    present = [name for name in PLOT_FILES if name in corpus.files]
    if present and args.doc != Path("-"):
        values = {
            name: read_data_file(data_path(args.corpus, name))[1] for name in present
        }
        image = args.doc.parent / "img" / "nab-detections.png"
        plot_files(corpus, values, ours, mine["standard"].threshold, present, image)
        lines += ["", f"![detections on four NAB files](img/{image.name})"]
    body = "\n".join(lines)
    print(body)
    print(json.dumps({p: s.to_dict() for p, s in mine.items()}, indent=1))
    if args.doc != Path("-"):
        replace_section(args.doc, "nab", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
