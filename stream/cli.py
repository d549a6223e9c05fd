"""The ``anomalybert`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from stream.errors import TRAIN_EXTRA_INSTALL_COMMAND, AnomalyBertError
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
        help="also write a PNG of the series with the top anomalies marked to "
        "this path, which must end in .png",
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

    # The train command has no options of its own, because main() hands every
    # argument after "train", --help included, to training.train's parser.
    train = commands.add_parser(
        "train",
        help="train a model on synthetic series (needs the [train] extra); "
        "'anomalybert train --help' lists its options",
        add_help=False,
    )
    train.set_defaults(handler=_run_train, train_args=[])
    _add_generate_parser(commands)
    _add_finetune_parser(commands)
    return parser


def _add_generate_parser(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate",
        help="write labelled synthetic series as timestamp,value,label CSV files",
    )

    generate.add_argument(
        "--output-dir", required=True, type=Path, help="directory for the CSV files"
    )
    generate.add_argument(
        "--scenario",
        default="all",
        help="scenario to generate, or 'all' (default: all)",
    )
    generate.add_argument(
        "--n-series",
        type=_positive_int,
        default=4,
        help="series per scenario (default: 4)",
    )
    generate.add_argument(
        "--length",
        type=_positive_int,
        default=2000,
        help="points per series (default: 2000)",
    )
    generate.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; the same seed writes the same files (default: 0)",
    )
    generate.set_defaults(handler=_run_generate)


def _add_finetune_parser(commands: argparse._SubParsersAction) -> None:
    finetune = commands.add_parser(
        "finetune",
        help="fine-tune a model on labelled series (needs the [train] extra)",
    )

    finetune.add_argument(
        "--base",
        type=Path,
        default=None,
        help="model.onnx.json to start from; its model.npz must be beside it "
        "(default: the committed model)",
    )
    finetune.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        help="timestamp,value,label CSV file, folder of such files, or NAB-layout "
        "folder; repeat for more",
    )
    finetune.add_argument(
        "--output-dir",
        required=True,
        type=Path,
        help="directory for the new model.onnx, model.onnx.json and model.npz",
    )

    finetune.add_argument(
        "--epochs", type=_positive_int, default=3, help="training epochs (default: 3)"
    )
    finetune.add_argument(
        "--freeze",
        choices=("encoder", "none"),
        default="none",
        help="'encoder' trains only the scoring head (default: none)",
    )
    finetune.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=3e-4,
        help="peak learning rate (default: 0.0003)",
    )
    finetune.add_argument(
        "--windows-per-epoch",
        type=_positive_int,
        default=8192,
        help="training windows drawn per epoch (default: 8192)",
    )
    finetune.add_argument(
        "--validation-fraction",
        type=_positive_float,
        default=0.2,
        help="share of the series held out for validation, at least one (default: 0.2)",
    )
    finetune.add_argument(
        "--warmup-points",
        type=int,
        default=None,
        help="leading points of each series not trained on or validated "
        "(default: the base model's alert.warmup_points)",
    )
    finetune.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )

    finetune.set_defaults(handler=_run_finetune)


def _run_detect(args: argparse.Namespace) -> int:
    from stream.detect import detect_file
    from stream.model import load_model

    if args.plot is not None:
        from stream.plot import check_plot_path

        check_plot_path(args.plot)
    model = load_model(args.model)
    # The plot needs the whole series; the tables need only the top N.
    detection, lines = detect_file(
        model, args.input, top_n=args.top_n, keep_points=args.plot is not None
    )
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
            "points_scored": detection.points_scored,
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
            f"{args.input}: {detection.points_scored} points scored, threshold {detection.threshold:.3f}"
        )
        print(
            f"{'rank':>4}  {'timestamp':<20}  {'value':>17}  {'score':>7}  {'window':>7}"
        )
        for rank, p in enumerate(top, start=1):
            flag = " *" if p.is_anomaly else ""
            print(
                f"{rank:>4}  {format_timestamp(p.timestamp):<20}  {p.value:>17.12g}  {p.score:>7.4f}  {p.window_score:>7.4f}{flag}"
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
            f"run {TRAIN_EXTRA_INSTALL_COMMAND} in the repository root"
        ) from None
    return int(train_main(args.train_args, prog="anomalybert train") or 0)


def _run_generate(args: argparse.Namespace) -> int:
    from training.errors import TrainingInputError
    from training.generate import MANIFEST_FILE, generate_files
    from training.scenarios import SCENARIOS

    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    try:
        written = generate_files(
            args.output_dir, scenarios, args.n_series, args.length, args.seed
        )
    except TrainingInputError as exc:
        raise AnomalyBertError(str(exc)) from None
    print(
        f"wrote {len(written)} series and {MANIFEST_FILE} to {args.output_dir}",
        file=sys.stderr,
    )
    return 0


def _run_finetune(args: argparse.Namespace) -> int:
    try:
        from training.errors import TrainingInputError
        from training.finetune import (
            FinetuneSettings,
            finetune,
            format_average_precision,
        )
        from training.labelled import load_labelled_data
    except ImportError as exc:
        raise AnomalyBertError(
            f"fine-tuning needs the [train] extra ({exc.name} is missing): "
            f"run {TRAIN_EXTRA_INSTALL_COMMAND} in the repository root"
        ) from None
    from stream.model import default_model_path

    base = args.base or default_model_path()

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        settings = FinetuneSettings(
            epochs=args.epochs,
            freeze=args.freeze,
            learning_rate=args.learning_rate,
            min_learning_rate=args.learning_rate / 10,
            windows_per_epoch=args.windows_per_epoch,
            validation_fraction=args.validation_fraction,
            warmup_points=args.warmup_points,
            seed=args.seed,
        )
        settings.check()
        files = load_labelled_data(args.data)
        result = finetune(
            base, files, args.output_dir, settings, report, [str(p) for p in args.data]
        )
    except TrainingInputError as exc:
        raise AnomalyBertError(str(exc)) from None

    print(
        f"fine-tuned {result.parent_version} on {len(result.train_files)} series, "
        f"validated on {len(result.validation_files)} (best epoch {result.best_epoch})"
    )
    print(f"{'validation':<14}  {'loss':>8}  {'AP':>6}")
    for label, metrics in (("before (base)", result.before), ("after", result.after)):
        average_precision = format_average_precision(metrics["average_precision"])
        print(f"{label:<14}  {metrics['loss']:>8.4f}  {average_precision:>6}")
    print(f"threshold {result.threshold:.4f}")
    print(f"wrote {result.metadata_path} with model.onnx and model.npz")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "train":
        # "anomalybert train -- --epochs 1" means the same as without "--".
        args.train_args = unknown[1:] if unknown[:1] == ["--"] else unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
