"""The ``anomalybert`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from stream.errors import AnomalyBertError
from stream.points import format_timestamp

logger = logging.getLogger("anomalybert")


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a whole number"
        ) from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid value {number}: must be 1 or more")
    return number


def _positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a number"
        ) from None
    if not number > 0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text}: must be greater than 0"
        )
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalybert",
        description="Find anomalies in time series with a small transformer (ONNX Runtime).",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at debug level"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    detect = commands.add_parser(
        "detect", help="score a timestamp,value CSV file and print the top anomalies"
    )
    detect.add_argument(
        "--input",
        required=True,
        type=Path,
        help="CSV file with a timestamp,value header",
    )
    detect.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model.onnx.json to use (default: the committed model)",
    )
    detect.add_argument(
        "--top-n",
        type=_positive_int,
        default=10,
        help="how many points to list (default: 10)",
    )
    detect.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="output format (default: table)",
    )
    detect.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also write a PNG of the series with the top anomalies marked",
    )
    detect.set_defaults(handler=_run_detect)

    replay = commands.add_parser(
        "replay", help="produce a CSV file's points to a Kafka topic"
    )
    replay.add_argument(
        "--input",
        required=True,
        type=Path,
        help="CSV file with a timestamp,value header",
    )
    replay.add_argument(
        "--series",
        default=None,
        help="series id used as the message key (default: the file name)",
    )
    replay.add_argument(
        "--topic", default="points", help="topic to produce to (default: points)"
    )
    replay.add_argument(
        "--bootstrap-servers",
        default="localhost:9092",
        help="Kafka bootstrap servers (default: localhost:9092)",
    )
    replay.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="points per second (default: as fast as possible)",
    )
    replay.set_defaults(handler=_run_replay)

    train = commands.add_parser("train", help="train a model (needs the [train] extra)")
    train.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="arguments passed to python -m training.train",
    )
    train.set_defaults(handler=_run_train)
    return parser


def _run_detect(args: argparse.Namespace) -> int:
    from stream.detect import detect_file
    from stream.model import load_model

    model = load_model(args.model)
    detection, lines = detect_file(model, args.input)
    for rejection in detection.rejected[:20]:
        print(
            f"warning: line {lines[rejection.input_index]}: skipped: {rejection.message}",
            file=sys.stderr,
        )
    if len(detection.rejected) > 20:
        print(
            f"warning: skipped {len(detection.rejected)} rows in all", file=sys.stderr
        )
    top = detection.top(args.top_n)

    if args.format == "json":
        document = {
            "input": str(args.input),
            "model_version": detection.model_version,
            "threshold": detection.threshold,
            "points_scored": len(detection.points),
            "points_rejected": len(detection.rejected),
            "anomalies": [
                {
                    "rank": rank,
                    "timestamp": format_timestamp(p.timestamp),
                    "value": p.value,
                    "score": p.score,
                    "window_score": p.window_score,
                    "above_threshold": p.is_anomaly,
                }
                for rank, p in enumerate(top, start=1)
            ],
        }
        print(json.dumps(document, indent=2, allow_nan=False))
    elif args.format == "csv":
        print("rank,timestamp,value,score,window_score")
        for rank, p in enumerate(top, start=1):
            print(
                f"{rank},{format_timestamp(p.timestamp)},{p.value!r},{p.score:.6f},{p.window_score:.6f}"
            )
    else:
        print(
            f"{args.input}: {len(detection.points)} points scored, threshold {detection.threshold:.3f}"
        )
        print(
            f"{'rank':>4}  {'timestamp':<20}  {'value':>14}  {'score':>7}  {'window':>7}"
        )
        for rank, p in enumerate(top, start=1):
            flag = " *" if p.is_anomaly else ""
            print(
                f"{rank:>4}  {format_timestamp(p.timestamp):<20}  {p.value:>14.6g}  {p.score:>7.4f}  {p.window_score:>7.4f}{flag}"
            )
        print("* score at or above the threshold")

    if args.plot is not None:
        from stream.plot import plot_detection

        plot_detection(detection, top, args.plot, title=str(args.input))
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    import asyncio

    from stream.replay import replay_file

    count = asyncio.run(
        replay_file(
            args.input,
            series=args.series or args.input.stem,
            topic=args.topic,
            bootstrap_servers=args.bootstrap_servers,
            rate=args.rate,
        )
    )
    print(f"produced {count} points of {args.input} to {args.topic}", file=sys.stderr)
    return 0


def _run_train(args: argparse.Namespace) -> int:
    try:
        from training.train import main as train_main
    except ImportError as exc:
        raise AnomalyBertError(
            f"training needs the [train] extra ({exc.name} is missing): "
            "pip install 'anomalybert-stream[train]'"
        ) from None
    return int(train_main(args.train_args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except AnomalyBertError as exc:
        print(f"anomalybert {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
