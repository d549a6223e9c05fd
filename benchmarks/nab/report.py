"""The NAB report: our scores next to the published detectors', per category, plots."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from benchmarks.nab.corpus import Corpus
from benchmarks.nab.scoring import PROFILES, CorpusScore

PROFILE_LABELS = {
    "standard": "standard",
    "reward_low_FP_rate": "low FP",
    "reward_low_FN_rate": "low FN",
}


def category_score(profile: str, raw: float, windows: int) -> float:
    """Normalise a category's raw score against its own null and perfect scores."""
    weights = PROFILES[profile]
    if windows == 0:
        return math.nan
    null = -weights.fn_weight * windows
    perfect = weights.tp_weight * windows
    return 100.0 * (raw - null) / (perfect - null)


def scores_table(
    all_scores: Mapping[str, Mapping[str, CorpusScore]], ours: str
) -> list[str]:
    """Markdown rows: one detector per row, the three profile scores per column."""
    lines = ["| detector | standard | low FP | low FN |", "|---|---|---|---|"]
    ranked = sorted(all_scores.items(), key=lambda item: -item[1]["standard"].score)
    for detector, by_profile in ranked:
        name = f"**{detector}** (this project)" if detector == ours else detector
        cells = " | ".join(f"{by_profile[p].score:.1f}" for p in PROFILES)
        lines.append(f"| {name} | {cells} |")
    return lines


def category_table(scores: Mapping[str, CorpusScore], corpus: Corpus) -> list[str]:
    """Markdown rows of the per-category scores at the corpus-wide thresholds."""
    lines = [
        "| category | files | windows | standard | low FP | low FN | windows detected (standard) |",
        "|---|---|---|---|---|---|---|",
    ]
    categories = sorted({f.category for f in corpus.files.values()})
    for category in categories:
        files = [f for f in corpus.files.values() if f.category == category]
        windows = sum(len(f.windows) for f in files)
        cells = []
        for profile in PROFILES:
            part = scores[profile].categories[category]
            value = category_score(profile, part.raw_score, windows)
            cells.append("n/a" if math.isnan(value) else f"{value:.1f}")
        detected = scores["standard"].categories[category].detected_windows
        lines.append(
            f"| {category} | {len(files)} | {windows} | {' | '.join(cells)} | {detected} |"
        )
    return lines


def plot_files(
    corpus: Corpus,
    values: Mapping[str, np.ndarray],
    results: Mapping[str, np.ndarray],
    threshold: float,
    names: list[str],
    path: Path,
) -> None:
    """Draw a few files with their labelled windows and our detections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(names), 1, figsize=(12, 2.6 * len(names)))
    for axis, name in zip(np.atleast_1d(axes), names, strict=True):
        data_file = corpus.files[name]
        times = data_file.timestamps
        axis.plot(times, values[name], linewidth=0.6, color="tab:blue")
        for start, end in data_file.windows:
            axis.axvspan(start, end, color="tab:green", alpha=0.2)
        hits = results[name] >= threshold
        axis.scatter(times[hits], values[name][hits], color="tab:red", s=12, zorder=3)
        axis.set_title(
            f"{name}  (green: labelled windows, red: detections at the standard threshold)",
            fontsize=9,
        )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def replace_section(document: Path, marker: str, body: str) -> None:
    """Write ``body`` between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = document.read_text() if document.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text(text)
