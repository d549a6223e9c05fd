"""PNG plots of a scored series (needs matplotlib, the [plot] extra)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stream.errors import AnomalyBertError
from stream.state import ScoredPoint


def check_plot_path(path: Path) -> None:
    """Check that matplotlib loads and that ``path`` is a .png file path in an existing directory.

    Raises AnomalyBertError otherwise. The command line runs it before scoring,
    so that a bad --plot fails before any output.
    """
    _import_pyplot()
    if path.suffix.lower() != ".png":
        raise AnomalyBertError(
            f"invalid --plot path {path}: the plot is a PNG image, so give a path "
            "ending in .png"
        )
    if path.is_dir():
        raise AnomalyBertError(
            f"invalid --plot path {path}: it is a directory; give a file path "
            "ending in .png"
        )
    parent = path.parent
    if not parent.is_dir():
        raise AnomalyBertError(
            f"invalid --plot path {path}: directory {parent} does not exist; "
            "create it or choose another path"
        )


def _import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AnomalyBertError(
            "--plot needs matplotlib: pip install 'anomalybert-stream[plot]'"
        ) from None
    return plt


def plot_detection(
    detection, top: list[ScoredPoint], path: Path, title: str = ""
) -> None:
    """Draw the series, its scores and the top anomalies into ``path`` as a PNG."""
    plt = _import_pyplot()

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
        # Without a format, matplotlib takes it from the suffix and appends
        # .png to a path that has none, so callers could get another file.
        figure.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise AnomalyBertError(f"cannot write plot {path}: {exc.strerror}") from exc
    finally:
        plt.close(figure)
