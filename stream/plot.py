"""PNG plots of a scored series (needs matplotlib, the [plot] extra)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stream.errors import AnomalyBertError
from stream.state import ScoredPoint


def plot_detection(
    detection, top: list[ScoredPoint], path: Path, title: str = ""
) -> None:
    """Draw the series, its scores and the top anomalies into ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AnomalyBertError(
            "--plot needs matplotlib: pip install 'anomalybert-stream[plot]'"
        ) from None

    def when(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, tz=UTC)

    points = sorted(detection.points, key=lambda p: p.timestamp)
    times = [when(p.timestamp) for p in points]
    figure, (top_axes, score_axes) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top_axes.plot(times, [p.value for p in points], linewidth=0.7, color="tab:blue")
    top_axes.scatter(
        [when(p.timestamp) for p in top],
        [p.value for p in top],
        color="tab:red",
        zorder=3,
        label=f"top {len(top)} anomalies",
    )
    top_axes.set_title(title)
    top_axes.set_ylabel("value")
    top_axes.legend(loc="upper left")
    score_axes.plot(times, [p.score for p in points], linewidth=0.7, color="tab:orange")
    score_axes.axhline(detection.threshold, color="grey", linestyle="--", linewidth=0.8)
    score_axes.set_ylabel("score")
    score_axes.set_ylim(-0.02, 1.02)
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise AnomalyBertError(f"cannot write plot {path}: {exc.strerror}") from exc
    finally:
        plt.close(figure)
