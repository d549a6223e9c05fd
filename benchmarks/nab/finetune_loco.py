"""``python -m benchmarks.nab.finetune_loco``: does fine-tuning on NAB help on unseen data?

Leave one category out: for each category of the corpus, the committed model is
fine-tuned on the files of the other categories, with label 1 inside their anomaly
windows. Then both the base and the fine-tuned model score the left-out category
with NAB's scorer.

Each model streams every file through the service's scorer (``run_corpus``). Its
threshold is the one NAB's method picks on the training categories alone (the
highest summed raw score over their files), and it is applied unchanged to the
left-out category. The same procedure runs for the base model, so both see the
left-out category only at scoring time. As an upper bound the table also gives each
model's score with the threshold optimised on the left-out category itself.

Writes a table into the ``finetune`` section of docs/benchmarks.md. The committed
model is never replaced: fine-tuned models go to a temporary folder unless
``--keep-models`` names one.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import help_description
from benchmarks.nab.__main__ import DEFAULT_CORPUS, REPO
from benchmarks.nab.corpus import Corpus, load_corpus
from benchmarks.nab.report import category_score, replace_section
from benchmarks.nab.run import run_corpus
from benchmarks.nab.scoring import PROFILES, null_raw_score, score_corpus
from stream.model import default_model_path, load_metadata

PROFILE = "standard"


@dataclass(frozen=True)
class HeldOutScore:
    """One model's result on the left-out category."""

    threshold: float  # chosen on the training categories
    raw: float  # raw NAB score of the category at that threshold
    score: float  # the raw score normalised to the category's windows
    detected: int  # windows with a detection
    false_positive_rows: int
    best_threshold: float  # optimised on the left-out category itself
    best_score: float

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in vars(self).items()
        }


def held_out_score(
    results: dict[str, np.ndarray],
    corpus: Corpus,
    category: str,
    profile: str = PROFILE,
) -> HeldOutScore:
    """Score ``category`` at the threshold chosen on every other category."""
    train_names = [n for n, f in corpus.files.items() if f.category != category]
    test_names = [n for n, f in corpus.files.items() if f.category == category]
    train_corpus, test_corpus = corpus.subset(train_names), corpus.subset(test_names)
    threshold = score_corpus(results, train_corpus, profile).threshold
    held = score_corpus(results, test_corpus, profile, threshold=threshold)
    best = score_corpus(results, test_corpus, profile)
    windows = test_corpus.n_windows
    return HeldOutScore(
        threshold=threshold,
        raw=held.raw_score,
        score=category_score(profile, held.raw_score, windows),
        detected=held.categories[category].detected_windows,
        false_positive_rows=held.counts.fp,
        best_threshold=best.threshold,
        best_score=category_score(profile, best.raw_score, windows),
    )


def loco_corpus_score(
    raw_by_category: dict[str, float], corpus: Corpus, profile: str
) -> float:
    """Normalise the summed held-out raw scores of some categories like a NAB
    corpus score of their files."""
    corpus = corpus.subset(
        n for n, f in corpus.files.items() if f.category in raw_by_category
    )
    weights = PROFILES[profile]
    null = null_raw_score(corpus, profile)
    perfect = weights.tp_weight * corpus.n_windows
    return 100.0 * (math.fsum(raw_by_category.values()) - null) / (perfect - null)


def window_label_shares(corpus: Corpus, root: Path) -> tuple[float, float | None]:
    """Measure how NAB's window labels sit on the rows.

    Returns (share of rows inside a window, share of in-window rows that come
    before the window's labelled anomaly timestamp). The second is None without
    ``labels/combined_labels.json``.
    """
    inside = before = 0
    anomalies = None
    labels_path = root / "labels" / "combined_labels.json"
    if labels_path.is_file():
        anomalies = json.loads(labels_path.read_text())
    for name, data_file in corpus.files.items():
        stamps = data_file.timestamps
        marks = np.array(
            sorted(anomalies.get(name, [])) if anomalies else [], dtype="datetime64[us]"
        )
        for start, end in data_file.windows:
            in_window = (stamps >= start) & (stamps <= end)
            inside += int(np.count_nonzero(in_window))
            if anomalies is None:
                continue
            marks_here = marks[(marks >= start) & (marks <= end)]
            if marks_here.size:
                before += int(np.count_nonzero(in_window & (stamps < marks_here[0])))
    return inside / corpus.n_rows, (before / inside if anomalies and inside else None)


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| left-out category | files | windows | base | fine-tuned "
        "| base detected / FP rows | fine-tuned detected / FP rows "
        "| base, own threshold | fine-tuned, own threshold "
        "| validation AP base → fine-tuned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base, tuned = row["base"], row["finetuned"]
        lines.append(
            f"| {row['category']} | {row['files']} | {row['windows']} "
            f"| {_cell(base.score)} | {_cell(tuned.score)} "
            f"| {base.detected} / {base.false_positive_rows} "
            f"| {tuned.detected} / {tuned.false_positive_rows} "
            f"| {_cell(base.best_score)} | {_cell(tuned.best_score)} "
            f"| {row['ap_before']:.3f} → {row['ap_after']:.3f} |"
        )
    return lines


def _verdict(rows: list[dict], totals: dict[str, float]) -> str:
    scored = [r for r in rows if not math.isnan(r["base"].score)]
    better = sum(r["finetuned"].score > r["base"].score + 0.05 for r in scored)
    worse = sum(r["finetuned"].score < r["base"].score - 0.05 for r in scored)
    same = len(scored) - better - worse
    return (
        f"Fine-tuning raised the held-out score in {better} of the {len(scored)} "
        f"categories with windows, lowered it in {worse} and left it unchanged in "
        f"{same}. Summed over the left-out categories and normalised like a corpus "
        f"score ({PROFILE} profile), the base model scores {totals['base']:.1f} and "
        f"the fine-tuned models {totals['finetuned']:.1f}."
    )


@dataclass(frozen=True)
class RunInfo:
    """Facts about the run that the report prints besides the scores."""

    command: str
    base_version: str
    calibration: str
    lag_points: int
    settings: object  # training.finetune.FinetuneSettings
    n_files: int
    n_categories: int
    inside_share: float
    before_share: float | None
    finetune_seconds: list[float]
    elapsed_seconds: float
    workers: int


def render(rows: list[dict], totals: dict[str, float], info: RunInfo) -> str:
    """Write the markdown body of the finetune section."""
    settings = info.settings
    positive_rate = float(np.mean([row["positive_rate"] for row in rows]))
    helped = totals["finetuned"] > totals["base"] + 1.0
    lead = (
        "Fine-tuning raised the summed score, but read it with the label caveat"
        if helped
        else "Why fine-tuning on NAB's windows does not help"
    )
    ap_before = float(np.nanmean([row["ap_before"] for row in rows]))
    ap_after = float(np.nanmean([row["ap_after"] for row in rows]))
    before = (
        f" and {100 * info.before_share:.0f} % of the in-window rows come before the "
        "window's labelled anomaly timestamp (labels/combined_labels.json)"
        if info.before_share is not None
        else ""
    )
    lines = [
        "## Fine-tuning on NAB, leave one category out",
        "",
        f"Command: `{info.command}`",
        "",
        f"Corpus: the {info.n_files} NAB development files, {info.n_categories} "
        f"categories. For each category the committed model {info.base_version} "
        f"(alert calibration {info.calibration}, lag_points {info.lag_points}) is "
        f"fine-tuned on the files of the other {info.n_categories - 1} categories, "
        "with label 1 inside their anomaly windows. Settings: "
        f"{settings.epochs} epochs of {settings.windows_per_epoch} windows, "
        f"freeze {settings.freeze}, seed {settings.seed}, and "
        f"{100 * settings.validation_fraction:.0f} % of the training files held out "
        "for validation. The fine-tuned model keeps the base model's alert "
        f"calibration. The left-out category is scored with NAB's scorer ({PROFILE} "
        "profile).",
        "",
        "Thresholds: each model's threshold is chosen by NAB's method on the "
        "training categories only and applied unchanged to the left-out one. The "
        'base model gets the same procedure. The two "own threshold" columns '
        "instead optimise the threshold on the left-out category itself, an upper "
        "bound, because a deployment cannot choose its threshold on data it has not "
        "seen. Scores are normalised per category "
        "as in the NAB section: 0 is no detection, and 100 is every window detected "
        "at its first row without false positives. A category without windows has "
        "no score, only false-positive rows. The last column is the per-point "
        "average precision on the held-out files of the training categories.",
        "",
        *_table(rows),
        "",
        _verdict(rows, totals),
        "",
        f"{lead}: a window covers {100 * info.inside_share:.1f} % of the "
        f"rows{before}. The model sees only "
        "the last 16 points, so it cannot tell the rows before an anomaly from "
        "normal ones, and those positive labels give it nothing to learn. On the "
        "held-out training files the per-point average precision moved from "
        f"{ap_before:.3f} to {ap_after:.3f} on average, against a positive rate of "
        f"{positive_rate:.3f}, about the average precision of random scores. "
        "NAB's score counts only the first detection in each window and the false "
        "positives, so a better ranking of the rows inside windows need not raise "
        "it. The committed model stays the default.",
        "",
        f"Each fine-tune took {min(info.finetune_seconds):.0f} to "
        f"{max(info.finetune_seconds):.0f} s on one thread. The whole run took "
        f"{info.elapsed_seconds / 60:.0f} min with {info.workers} scoring processes "
        f"on {platform.machine()} ({platform.processor() or 'unknown CPU'}), a "
        "machine shared with other jobs.",
    ]
    return "\n".join(lines)


def run_fold(
    category: str,
    corpus: Corpus,
    args: argparse.Namespace,
    settings,
    base_results: dict[str, np.ndarray],
    models_root: Path,
    log,
) -> tuple[dict, float]:
    """Fine-tune without ``category``, score it; return (table row, fine-tune seconds)."""
    from training.finetune import finetune
    from training.labelled import read_nab_folder

    log(f"== leaving out {category}")
    train_names = [n for n, f in corpus.files.items() if f.category != category]
    started = time.perf_counter()
    result = finetune(
        default_model_path(),
        read_nab_folder(args.corpus, train_names),
        models_root / category,
        settings,
        report=log,
        data_sources=[str(args.corpus)],
    )
    seconds = time.perf_counter() - started
    tuned_results = run_corpus(
        result.metadata_path, args.corpus, corpus.names, workers=args.workers
    )
    files = [f for f in corpus.files.values() if f.category == category]
    row = {
        "category": category,
        "files": len(files),
        "windows": sum(len(f.windows) for f in files),
        "base": held_out_score(base_results, corpus, category),
        "finetuned": held_out_score(tuned_results, corpus, category),
        "ap_before": result.before["average_precision"],
        "ap_after": result.after["average_precision"],
        "positive_rate": result.after["positive_rate"],
        "best_epoch": result.best_epoch,
    }
    log(
        f"{category}: base {_cell(row['base'].score)}, fine-tuned "
        f"{_cell(row['finetuned'].score)} ({PROFILE} profile, held-out threshold)"
    )
    return row, seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab.finetune_loco",
        description=help_description(__doc__),
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="NAB-layout folder (default: the NAB development files)",
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="fine-tuning epochs (default: 3)"
    )
    parser.add_argument(
        "--windows-per-epoch",
        type=int,
        default=8192,
        help="training windows per epoch (default: 8192)",
    )
    parser.add_argument(
        "--freeze",
        choices=("none", "encoder"),
        default="none",
        help="'encoder' trains only the head (default: none)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="fine-tuning seed (default: 0)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes scoring files in parallel"
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=None,
        help="leave out only these categories (default: each in turn)",
    )
    parser.add_argument(
        "--keep-models",
        type=Path,
        default=None,
        help="folder to keep the fine-tuned models in, one subfolder per category",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="markdown file whose finetune section is rewritten ('-' for none)",
    )
    return parser


def _command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    command = "python -m benchmarks.nab.finetune_loco"
    if args.corpus != DEFAULT_CORPUS:
        command += f" --corpus {args.corpus}"
    defaults = parser.parse_args([])
    for option in ("epochs", "windows_per_epoch", "freeze", "seed", "categories"):
        value = getattr(args, option)
        if value != getattr(defaults, option):
            shown = " ".join(value) if isinstance(value, list) else value
            command += f" --{option.replace('_', '-')} {shown}"
    return command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.corpus / "data").is_dir():
        print(
            f"error: {args.corpus} is not a NAB-layout corpus (no data/ folder); pass --corpus",
            file=sys.stderr,
        )
        return 2
    try:
        from training.finetune import FinetuneSettings
    except ImportError as exc:
        print(
            f"error: fine-tuning needs the [train] extra ({exc.name} is missing): "
            "pip install 'anomalybert-stream[train]'",
            file=sys.stderr,
        )
        return 2

    corpus = load_corpus(args.corpus)
    categories = sorted({f.category for f in corpus.files.values()})
    unknown = sorted(set(args.categories or ()) - set(categories))
    if unknown:
        print(
            f"error: unknown category {unknown[0]!r}; expected one of {', '.join(categories)}",
            file=sys.stderr,
        )
        return 2
    base_path = default_model_path()
    base_metadata = load_metadata(base_path)
    settings = FinetuneSettings(
        epochs=args.epochs,
        windows_per_epoch=args.windows_per_epoch,
        freeze=args.freeze,
        seed=args.seed,
    )

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    log(
        f"scoring {len(corpus.names)} files with the base model {base_metadata.model_version}"
    )
    base_results = run_corpus(
        base_path, args.corpus, corpus.names, workers=args.workers
    )

    rows, finetune_seconds = [], []
    with tempfile.TemporaryDirectory(prefix="finetune-loco-") as temporary:
        models_root = args.keep_models or Path(temporary)
        for category in args.categories or categories:
            row, seconds = run_fold(
                category, corpus, args, settings, base_results, models_root, log
            )
            rows.append(row)
            finetune_seconds.append(seconds)

    totals = {
        name: loco_corpus_score(
            {row["category"]: row[name].raw for row in rows}, corpus, PROFILE
        )
        for name in ("base", "finetuned")
    }
    inside_share, before_share = window_label_shares(corpus, args.corpus)
    info = RunInfo(
        command=_command(args, parser),
        base_version=base_metadata.model_version,
        calibration=base_metadata.alert.calibration.get("method", "none"),
        lag_points=base_metadata.alert.lag_points,
        settings=settings,
        n_files=len(corpus.names),
        n_categories=len(categories),
        inside_share=inside_share,
        before_share=before_share,
        finetune_seconds=finetune_seconds,
        elapsed_seconds=time.perf_counter() - started,
        workers=args.workers,
    )
    body = render(rows, totals, info)
    print(body)
    summary = {
        "base_model": info.base_version,
        "settings": vars(settings),
        "profile": PROFILE,
        "totals": totals,
        "rows": [
            {
                **{k: v for k, v in row.items() if k not in ("base", "finetuned")},
                "base": row["base"].to_dict(),
                "finetuned": row["finetuned"].to_dict(),
            }
            for row in rows
        ],
    }
    print(json.dumps(summary, indent=1))
    if args.doc != Path("-"):
        replace_section(args.doc, "finetune", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
